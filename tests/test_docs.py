"""The documentation checks itself: links, anchors, images, worked examples, the results table.

Fast: nothing here trains or samples. What is checked, for learning_guide.md and README.md:
- every relative link and image points at a file that exists, and every #anchor at a heading:
  into a .md file a heading slug as GitHub computes it, into a notebook a markdown heading as
  Jupyter computes it (the heading's text with spaces replaced by "-");
- a link whose text names functions in backticks points at the notebook section (or file) that
  defines them;
- the ```pycon examples in the guide run and print what the guide says (doctest);
- the tokenizer's worked example in the prose matches what bpe_tokenizer.py does;
- the results block agrees with results/*.json (make_results.py --check);
- math avoids what GitHub mis-renders: display math on lines of its own, no "}_" inline.
"""

import doctest
import json
import math
import re
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from bpe_tokenizer import BPETokenizer
from tools import make_results

sys.path.insert(0, str(ROOT / "docs"))
import make_figures  # noqa: E402

DOCS = ["learning_guide.md", "README.md"]
NOTEBOOKS = ["train_model.ipynb", "sampling.ipynb"]
RUN_FIGURES = {"denoising.gif", "quality_vs_steps.png"}  # made by sampling.ipynb in full mode
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"!?\[((?:[^\[\]]|\[[^\]]*\])*)\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HTML_SOURCE = re.compile(r"<(?:img|a)\s[^>]*(?:src|href)=\"([^\"]+)\"")
CODE_NAME = re.compile(r"`([A-Za-z_][\w.]*)`")


def read(name: str) -> str:
    path = ROOT / name
    if not path.exists():
        pytest.skip(f"{name} does not exist yet")
    return path.read_text(encoding="utf-8")


def without_code_blocks(markdown: str) -> str:
    return FENCE.sub("", markdown)


def rendered_text(heading: str) -> str:
    """What a heading shows: code spans and links reduced to their text, no bold markers."""
    heading = re.sub(r"`([^`]*)`", r"\1", heading)
    heading = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    return heading.replace("*", "").strip()


def github_slug(heading: str) -> str:
    """GitHub's anchor: lower case, punctuation dropped (not - or _), spaces become -.

    "4. The objective, derived" -> "4-the-objective-derived"
    """
    return re.sub(r"[^\w\- ]", "", rendered_text(heading).lower()).replace(" ", "-")


def jupyter_anchor(heading: str) -> str:
    """Jupyter's anchor: the text as it is, spaces become -.

    "9. Conditioning: prompts, infilling" -> "9.-Conditioning:-prompts,-infilling"
    """
    return rendered_text(heading).replace(" ", "-")


def markdown_headings(markdown: str) -> list[str]:
    return re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", without_code_blocks(markdown), re.MULTILINE)


def anchors(path: Path) -> set[str]:
    """Every anchor a link may use into the file at path: GitHub's for .md, Jupyter's for .ipynb."""
    if path.suffix == ".ipynb":
        return {jupyter_anchor(h) for h in notebook_sections(path)}
    seen, result = {}, set()
    for heading in markdown_headings(path.read_text(encoding="utf-8")):
        slug = github_slug(heading)
        result.add(f"{slug}-{seen[slug]}" if slug in seen else slug)  # repeats get -1, -2, ...
        seen[slug] = seen.get(slug, 0) + 1
    return result


def notebook_sections(path: Path) -> dict[str, str]:
    """{heading text: the code of every cell under it, up to the next heading of its level}."""
    sections, enclosing = {}, []  # (level, heading) of the sections the next cell belongs to
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            for hashes, heading in re.findall(r"^(#{1,6})\s+(.+?)\s*$", source, re.MULTILINE):
                enclosing = [(level, h) for level, h in enclosing if level < len(hashes)]
                enclosing.append((len(hashes), heading))
                sections[heading] = ""
        elif cell["cell_type"] == "code":
            for _, heading in enclosing:
                sections[heading] += source + "\n"
    return sections


def links(markdown: str) -> list[tuple[str, str]]:
    """(text, target) of every markdown link, image and HTML src/href outside code blocks."""
    text = without_code_blocks(markdown)
    found = [(m.group(1), m.group(2)) for m in LINK.finditer(text)]
    return found + [("", target) for target in HTML_SOURCE.findall(text)]


def local(target: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9+.-]*:", target)  # http:, https:, mailto: are not ours


def broken(doc: str, target: str) -> str | None:
    """Why a link from doc to target does not resolve, or None if it does."""
    file_part, _, anchor = target.partition("#")
    path = (ROOT / doc).parent / file_part if file_part else ROOT / doc
    if not path.exists():
        return f"{target}: no such file"
    if anchor and path.suffix not in (".md", ".ipynb"):
        return f"{target}: an anchor into a {path.suffix} file cannot be checked"
    if anchor and anchor not in anchors(path):
        return f"{target}: no heading with anchor #{anchor} in {path.name}"
    return None


def defines(code: str, name: str) -> bool:
    return all(
        re.search(rf"^\s*(?:def|class)\s+{re.escape(part)}\b|^{re.escape(part)}\s*=", code, re.M)
        for part in name.split(".")
    )


def pycon_blocks(markdown: str) -> list:
    """A pytest.param(line number, text) for every ```pycon block, named by its section."""
    blocks = []
    for m in re.finditer(r"^```pycon\n(.*?)^```", markdown, re.MULTILINE | re.DOTALL):
        section = markdown_headings(markdown[: m.start()])[-1]
        line = markdown[: m.start()].count("\n") + 2
        blocks.append(pytest.param(line, m.group(1), id=f"{github_slug(section)}, line {line}"))
    return blocks


# ---- links, anchors and images ----


@pytest.mark.parametrize("doc", DOCS)
def test_every_link_anchor_and_image_resolves(doc):
    targets = [target for _, target in links(read(doc)) if local(target)]
    problems = [problem for target in targets if (problem := broken(doc, target))]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebook_links_into_the_guide_resolve(notebook):
    markdown = "\n".join(
        "".join(cell["source"])
        for cell in json.loads((ROOT / notebook).read_text(encoding="utf-8"))["cells"]
        if cell["cell_type"] == "markdown"
    )
    targets = [t for _, t in links(markdown) if t.startswith("learning_guide.md")]
    problems = [problem for target in targets if (problem := broken(notebook, target))]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("doc", DOCS)
def test_cited_functions_are_defined_where_the_link_points(doc):
    """[`mdlm_loss`](train_model.ipynb#4.-The-objective) must land on the cell defining it."""
    problems = []
    for text, target in links(read(doc)):
        file_part, _, anchor = target.partition("#")
        names = [n for n in CODE_NAME.findall(text) if not re.search(r"\.(py|md|ipynb)$", n)]
        if not names or not local(target) or not file_part.endswith((".py", ".ipynb")):
            continue
        path = ROOT / file_part
        if not path.exists():
            continue  # test_every_link_anchor_and_image_resolves reports it
        if path.suffix == ".ipynb":
            sections = {jupyter_anchor(h): code for h, code in notebook_sections(path).items()}
            code = sections.get(anchor, "") if anchor else "".join(sections.values())
        else:
            code = path.read_text(encoding="utf-8")
        problems += [
            f"{name} is not defined at {target}" for name in names if not defines(code, name)
        ]
    assert not problems, "\n".join(problems)


def test_the_anchors_are_computed_like_github_and_jupyter():
    assert github_slug("4. The objective, derived") == "4-the-objective-derived"
    assert github_slug("Train on `your` own text") == "train-on-your-own-text"
    assert jupyter_anchor("2. The reverse step, derived") == "2.-The-reverse-step,-derived"


# ---- the worked examples ----


@pytest.mark.parametrize(
    "line,block", pycon_blocks((ROOT / "learning_guide.md").read_text(encoding="utf-8"))
)
def test_guide_examples_print_what_the_guide_says(line, block):
    test = doctest.DocTestParser().get_doctest(block, {}, "learning_guide.md", None, line)
    report = []
    result = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS).run(test, out=report.append)
    assert result.failed == 0, f"the example at learning_guide.md line {line}:\n" + "".join(report)


def greedy_longest_match(tok: BPETokenizer, text: str) -> list[int]:
    """The wrong way to encode, which the guide contrasts with BPE: the longest known piece."""
    pieces = {tok.token_bytes(i): i for i in range(256 + len(tok.merges))}
    data, ids = text.encode("utf-8"), []
    while data:
        size = max(n for n in range(1, len(data) + 1) if data[:n] in pieces)
        ids.append(pieces[data[:size]])
        data = data[size:]
    return ids


def test_tokenizer_prose_matches_bpe_tokenizer():
    """The numbers the guide states in prose about its worked example (the doctest above checks
    the printed lines), recomputed from the tokenizer."""
    guide = (ROOT / "learning_guide.md").read_text(encoding="utf-8")
    text = "the theater there then the other three"
    tok = BPETokenizer.train(text, vocab_size=256 + 8 + 3)
    word = " weather"
    ranks = {pair: rank for rank, pair in enumerate(tok.merges)}
    greedy = [tok.decode([i]) for i in greedy_longest_match(tok, word)]
    expected = [
        f'text = "{text}"',
        f"Its bytes are `{list(word.encode('utf-8'))}`",
        f"`(116, 104)`, rank {ranks[(116, 104)]}",
        f'("at", rank {ranks[(97, 116)]})',
        "ended with `" + ", ".join(repr(piece) for piece in greedy) + "`",
        f"`vocab_size` is {tok.vocab_size} and `mask_id` is {tok.mask_id}",
    ]
    assert tok.encode(word) != greedy_longest_match(tok, word)  # the point of the example
    missing = [claim for claim in expected if claim not in guide]
    assert not missing, "the guide no longer says:\n" + "\n".join(missing)


def test_code_quoted_in_the_guide_is_the_projects_code():
    """Every line of a ```python block in the guide, comments aside, is in a notebook cell."""
    guide = (ROOT / "learning_guide.md").read_text(encoding="utf-8")
    source = "\n".join(
        "".join(cell["source"])
        for notebook in NOTEBOOKS
        for cell in json.loads((ROOT / notebook).read_text(encoding="utf-8"))["cells"]
        if cell["cell_type"] == "code"
    )
    quoted = re.findall(r"^```python\n(.*?)^```", guide, re.MULTILINE | re.DOTALL)
    lines = [line.split("  #")[0].strip() for block in quoted for line in block.splitlines()]
    missing = [line for line in lines if line and line not in source]
    assert quoted and not missing, "no longer in the notebooks:\n" + "\n".join(missing)


# ---- figures ----


def test_every_drawn_figure_is_in_the_guide_and_nothing_else_is():
    """The guide shows make_figures.py's figures and sampling.ipynb's, and no others."""
    guide = (ROOT / "learning_guide.md").read_text(encoding="utf-8")
    shown = {Path(t).name for _, t in links(guide) if t.startswith("docs/img/")}
    assert shown == set(make_figures.FIGURES) | RUN_FIGURES
    assert all((ROOT / "docs" / "img" / name).exists() for name in make_figures.FIGURES)


# ---- math ----


@pytest.mark.parametrize("doc", DOCS)
def test_math_avoids_what_github_misrenders(doc):
    problems = []
    for number, line in enumerate(without_code_blocks(read(doc)).splitlines(), 1):
        if "$$" in line:
            if not (line.startswith("$$") and line.rstrip().endswith("$$")):
                problems.append(f"line {number}: $$ must open and close a line of its own")
            continue
        problems += [
            f"line {number}: '}}_' in ${math}$ (write it as a $$ block)"
            for math in re.findall(r"\$([^$]+)\$", line)
            if "}_" in math
        ]
    assert not problems, "\n".join(problems)


# ---- the results table ----


def test_results_blocks_agree_with_results_files():
    assert make_results.update(ROOT, check=True) == []


QUICK_VOCAB = make_results.mode_defaults()["quick"]["vocab_size"]  # a run of quick's vocabulary


def metrics(**changes) -> dict:
    """A metrics.json as train_model.ipynb writes it, with round numbers."""
    run = {
        "run": "mdlm_quick_x",
        "objective": "mdlm",
        "data": "../shared/data/x.txt",
        "mode": "quick",
        "time_conditioning": True,
        "val_bpb": 2.5,
        "unigram_bpb": 5.0,
        "steps": 800,
        "tokens_seen": 3_276_800,
        "params": 1_593_984,
        "device": "cpu",
        "threads": 1,
        "dtype": "float32",
        "wall_s": 930.0,
        "settings": {"vocab_size": QUICK_VOCAB, "max_steps": 800},
        "history": {},
        "held_out": {"files": 1, "files_contributing": 1, "characters": 1000, "tokens": 300},
    }
    return {**run, **changes}


@pytest.fixture
def project(tmp_path):
    """A folder with results/, a guide with the markers and a README without them."""
    (tmp_path / "results").mkdir()
    guide = f"# Guide\n\nbefore\n\n{make_results.START}\nold\n{make_results.END}\n\nafter\n"
    (tmp_path / "learning_guide.md").write_text(guide)
    (tmp_path / "README.md").write_text("# Readme without markers\n")
    return tmp_path


def write_results(folder: Path, **runs) -> None:
    for name, run in runs.items():
        (folder / "results" / f"{name}.json").write_text(json.dumps(run))


def test_results_table_rows_worked_out_by_hand(project):
    write_results(
        project,
        mdlm_quick_x=metrics(),
        ar_quick_x=metrics(objective="ar", val_bpb=2.0, wall_s=90.0, params=1_115_264),
    )
    assert make_results.update(project) == [
        "learning_guide.md: the results block is not what results/ gives"
    ]
    guide = (project / "learning_guide.md").read_text()
    rows = [
        "| ar_quick_x | x.txt | AR twin | n/a | 1.12M | 800 | 3.28M | cpu, float32, 1 thread "
        "| 90 s | 2.000 (live) |  | 5.000 | 0.400 |",
        "| mdlm_quick_x | x.txt | MDLM | on | 1.59M | 800 | 3.28M | cpu, float32, 1 thread "
        "| 15.5 min | ≤ 2.500 (live) |  | 5.000 | 0.500 |",
    ]
    assert all(row in guide for row in rows), guide
    assert guide.startswith("# Guide\n\nbefore\n") and guide.endswith("\n\nafter\n")
    assert "old" not in guide
    assert (project / "README.md").read_text() == "# Readme without markers\n"  # skipped
    assert make_results.update(project, check=True) == []  # now in agreement


def final(**figures) -> dict:
    """metrics.json's "final" key: figures as (bits per byte, standard error)."""
    return {"windows": 512, **figures}


def test_final_figures_are_shown_with_their_error(project):
    write_results(
        project,
        mdlm_quick_x=metrics(final=final(nelbo=[2.2341, 0.0061], **{"left-to-right": [2.1, 0.02]})),
        ar_quick_x=metrics(objective="ar", val_bpb=2.0, final=final(nll=[1.5, 0.004])),
    )
    make_results.update(project)
    guide = (project / "learning_guide.md").read_text()
    assert "| 15.5 min | ≤ 2.234 ± 0.006 | 2.100 ± 0.020 | 5.000 | 0.447 |" in guide
    assert "| 15.5 min | 1.500 ± 0.004 |  | 5.000 | 0.300 |" in guide


def test_twin_table_states_the_gap_worked_out_by_hand(project):
    write_results(
        project,
        mdlm_quick_x=metrics(val_bpb=2.2),
        mdlm_notc_quick_x=metrics(time_conditioning=False, val_bpb=2.5),
        ar_quick_x=metrics(
            objective="ar",
            time_conditioning=False,
            val_bpb=2.0,
            history={"val_step": [100, 200, 300], "val_bpb": [2.2, 1.9, 2.0]},  # overfits
        ),
        mdlm_quick_y=metrics(data="y.txt"),  # no twin on y: no row
    )
    make_results.update(project)
    guide = (project / "learning_guide.md").read_text()
    # 2.2 / 2.0 - 1 = +10.0%; 2.2 / 1.9 - 1 = +15.8%; 2.5 / 2.0 - 1 = +25.0%; 2.5 / 2.2 - 1 = 13.6%
    row = (
        "| x.txt | quick, 800 | 2.000 (live) | 1.900 (200) | ≤ 2.200 (live) | +10.0% | +15.8% "
        "|  |  | ≤ 2.500 (live) | +25.0% | +13.6% |"
    )
    assert row in guide, guide
    assert "| y.txt | quick" not in guide


def test_seeds_are_averaged_and_a_difference_within_the_errors_is_a_tie(project):
    """Two seeds of the MDLM, 2.2 and 2.4 (each +- 0.01): mean 2.3, error max(sqrt(2) 0.01 / 2,
    std 0.1414 / sqrt 2 = 0.1) = 0.1. Against the twin, 1.0 +- 0.01: far apart. Without time
    conditioning, 2.35 +- 0.01: 0.05 from the mean, within 2 hypot(0.1, 0.01): a tie."""
    mdlm = dict(final=final(nelbo=[2.2, 0.01]))
    write_results(
        project,
        mdlm_quick_x=metrics(**mdlm),
        mdlm_quick_x_seed7=metrics(seed=7, final=final(nelbo=[2.4, 0.01])),
        mdlm_notc_quick_x=metrics(time_conditioning=False, final=final(nelbo=[2.35, 0.01])),
        ar_quick_x=metrics(objective="ar", final=final(nll=[1.0, 0.01])),
    )
    make_results.update(project)
    guide = (project / "learning_guide.md").read_text()
    row = (
        "| x.txt | quick, 800 | 1.000 ± 0.010 |  | ≤ 2.300 ± 0.100 (2 seeds: 2.200, 2.400) "
        "| +130.0% |  |  |  | ≤ 2.350 ± 0.010 | +135.0% | +2.2%, a tie |"
    )
    assert row in guide, guide
    assert "-p SEED 7" in guide  # the command of the second seed


def test_the_plateau_exit_worked_out_by_hand():
    """Loss at the unigram entropy u for steps 1 to 300, then 0.8 u. A 50-step window around
    step s covers steps s - 24 to s + 25; its mean is 5% below u once 0.2 k >= 2.5 of its k
    low steps, k = 13: steps 301 to 313, so s = 288 + 1 = 289."""
    u = 5.0 * 2.0 * math.log(2)  # unigram bits per byte * bytes per token * ln 2: nats/token
    run = metrics(
        bytes_per_token=2.0,
        history={"step": list(range(1, 601)), "train_loss": [u] * 300 + [0.8 * u] * 300},
    )
    assert make_results.plateau_exit(run) == 289
    assert make_results.plateau_exit(metrics(bytes_per_token=2.0)) is None  # no history
    flat = {"step": list(range(1, 601)), "train_loss": [u] * 600}
    assert make_results.plateau_exit(metrics(bytes_per_token=2.0, history=flat)) is None


def test_the_conditioning_table_sets_the_variants_side_by_side(project):
    """t fed 2.2 and 2.4 (seeds; error 0.1 as above), constant 2.25 +- 0.01: 2.25 / 2.3 - 1 =
    -2.2%, within 2 hypot(0.1, 0.01): a tie. Plain 2.6 +- 0.01: +13.0%, not a tie."""
    u = 5.0 * 2.0 * math.log(2)
    history = {"step": list(range(1, 601)), "train_loss": [u] * 300 + [0.8 * u] * 300}
    same = dict(bytes_per_token=2.0, history=history)
    write_results(
        project,
        mdlm_quick_x=metrics(final=final(nelbo=[2.2, 0.01]), **same),
        mdlm_quick_x_seed7=metrics(seed=7, final=final(nelbo=[2.4, 0.01]), **same),
        mdlm_const_quick_x=metrics(
            time_conditioning=False, constant_conditioning=True, final=final(nelbo=[2.25, 0.01])
        ),
        mdlm_notc_quick_x=metrics(time_conditioning=False, final=final(nelbo=[2.6, 0.01])),
    )
    make_results.update(project)
    guide = (project / "learning_guide.md").read_text()
    rows = [
        "| x.txt | quick, 800 | t fed: adaLN-Zero blocks, modulated by t "
        "| ≤ 2.300 ± 0.100 (2 seeds: 2.200, 2.400) |  | 289, 289 |",
        "| x.txt | quick, 800 | constant: the same blocks, modulated by the features of t = 0 "
        "always | ≤ 2.250 ± 0.010 | -2.2%, a tie | never |",
        "| x.txt | quick, 800 | plain: pre-norm blocks without modulation or gates "
        "| ≤ 2.600 ± 0.010 | +13.0% | never |",
    ]
    for row in rows:
        assert row in guide, guide
    assert "| mdlm_const_quick_x | x.txt | MDLM | constant |" in guide
    assert "-p TIME_CONDITIONING False -p CONSTANT_CONDITIONING True" in guide
    assert "EMA_DECAY" not in guide  # no average of the weights in these runs: the default


def test_the_command_of_a_run_with_an_average_of_the_weights_names_its_decay():
    run = metrics(settings={"vocab_size": 2048, "max_steps": 800, "ema_decay": 0.995})
    assert "-p TIME_CONDITIONING True -p EMA_DECAY 0.995 -p" in make_results.command(run, None)


def test_the_average_of_the_weights_is_shown_with_its_paired_difference(project):
    ema = {"decay": 0.995, "nelbo": [2.19, 0.01], "ema - trained": [-0.01, 0.002]}
    small = {"decay": 0.995, "nll": [1.499, 0.01], "ema - trained": [-0.001, 0.002]}
    write_results(
        project,
        mdlm_quick_x=metrics(final={**final(nelbo=[2.2, 0.01]), "ema": ema}),
        ar_quick_x=metrics(objective="ar", final={**final(nll=[1.5, 0.01]), "ema": small}),
        mdlm_quick_y=metrics(data="y.txt", final=final(nelbo=[2.2, 0.01])),  # no average: no row
    )
    make_results.update(project)
    guide = (project / "learning_guide.md").read_text()
    assert (
        "| mdlm_quick_x | 0.995 | ≤ 2.200 ± 0.010 | ≤ 2.190 ± 0.010 | -0.0100 ± 0.0020 |" in guide
    )
    assert (
        "| ar_quick_x | 0.995 | 1.500 ± 0.010 | 1.499 ± 0.010 | -0.0010 ± 0.0020, a tie |" in guide
    )
    assert "| mdlm_quick_y | 0.995" not in guide


def test_a_run_from_before_the_split_fix_is_marked_and_paired_only_with_its_own_kind(project):
    old = {key: value for key, value in metrics().items() if key != "held_out"}
    write_results(
        project,
        mdlm_quick_x=metrics(),
        ar_quick_x_old={**old, "objective": "ar", "val_bpb": 2.0},  # no twin on the new split
    )
    make_results.update(project)
    guide = (project / "learning_guide.md").read_text()
    assert "| ar_quick_x_old | x.txt, old split | AR twin |" in guide
    assert "| mdlm_quick_x | x.txt | MDLM |" in guide
    assert "| x.txt | quick, 800 |" not in guide  # the MDLM's twin ran on another split


def test_results_check_finds_a_stale_block_and_does_not_write(project):
    write_results(project, mdlm_quick_x=metrics())
    make_results.update(project)
    guide = project / "learning_guide.md"
    stale = guide.read_text().replace("0.500", "0.499")
    guide.write_text(stale)
    assert make_results.update(project, check=True) != []
    assert guide.read_text() == stale


def test_no_results_says_how_to_make_them_and_missing_markers_are_reported(project):
    make_results.update(project)
    assert "No results are committed yet" in (project / "learning_guide.md").read_text()
    (project / "learning_guide.md").write_text("# Guide without markers\n")
    assert make_results.update(project, check=True) == [
        f"learning_guide.md: no {make_results.START} ... {make_results.END} block"
    ]


def test_sampling_figures_get_a_table_of_their_own(project):
    row = {"method": "ancestral", "steps": 8, "nfe_per_sequence": 8.0, "tokens_per_second": 1234.5}
    row |= {"unigram_entropy": 7.1234, "distinct_2": 0.9}
    cache = {"steps": 1000, "nfe_cached": 119, "nfe_plain": 1000, "speedup": 4.0}
    figures = {"checkpoint": "ckpt.pt", "device": "cpu", "sweep": [row], "cache": cache}
    write_results(project, sampling_full={**figures, "cache": {**cache, "same_samples": True}})
    make_results.update(project)
    guide = (project / "learning_guide.md").read_text()
    assert "| ancestral | 8 | 8.0 | 1234 | 7.123 | 0.900 |  |" in guide  # no judge: blank
    assert "119 network calls instead of 1000, 4.0x faster, the same samples: True" in guide


def test_sampling_table_with_a_judge_the_twin_and_infilling(project):
    row = {"method": "confidence", "steps": 64, "nfe_per_sequence": 64.0, "tokens_per_second": 99.6}
    row |= {"unigram_entropy": 6.0, "distinct_2": 0.5, "generative_perplexity": 41.26}
    twin = row | {"method": "AR p=0.9", "steps": "", "nfe_per_sequence": 127.0}
    infill = {"passages": 32, "passage_length": 128, "spans": {}}
    infill["spans"]["16"] = {"MDLM, both sides": {"exact_match": 0.0625, "token_accuracy": 0.25}}
    figures = {"checkpoint": "ckpt.pt", "judge": "ar.pt", "device": "cpu", "sweep": [row]}
    figures |= {"autoregressive_reference": [twin], "infill_recovery": infill}
    write_results(project, sampling_full=figures)
    make_results.update(project)
    guide = (project / "learning_guide.md").read_text()
    assert "generative perplexity under `ar.pt`" in guide
    assert "| confidence | 64 | 64.0 | 100 | 6.000 | 0.500 | 41.3 |" in guide
    assert (
        "| AR p=0.9 (the judge's own samples, judged by itself) |  | 127.0 | 100 | 6.000 | 0.500 "
        "| 41.3 |" in guide
    )
    assert "in the middle of 32 held-out passages of 128 tokens" in guide
    assert "| 16 | MDLM, both sides | 0.062 | 0.250 |" in guide


def test_benchmark_reports_fill_the_performance_block(project):
    guide = project / "learning_guide.md"
    perf = f"{make_results.PERF_START}\nold\n{make_results.PERF_END}\n"
    guide.write_text(guide.read_text() + perf)
    make_results.update(project)
    assert "No benchmark report is committed yet" in guide.read_text()
    report = {
        "command": "python bench/run_all.py --json bench/reports/cpu.json",
        "date": "2026-11-28T08:00:00",
        "size": "small",
        "machine": {"cpu": "Some CPU", "cores": 2, "load_average": 0.5, "device": "cpu"}
        | {"threads": 2, "torch": "2.13.0"},
        "sections": {
            "train": {
                "title": "train: tiny",
                "rows": [{"label": "speed", "figures": {"mdlm": {"value": 1234.5, "unit": "tok/s"}}}
                         | {"note": ""}],
            }
        },
        "seconds": 61.0,
    }  # fmt: skip
    (project / "bench" / "reports").mkdir(parents=True)
    (project / "bench" / "reports" / "cpu.json").write_text(json.dumps(report))
    assert make_results.update(project, check=True) != []  # stale until rewritten
    make_results.update(project)
    text = guide.read_text()
    assert "`python bench/run_all.py --json bench/reports/cpu.json` (cpu.json, 2026-11-28" in text
    assert "speed  1,234 tok/s" in text and "Some CPU, 2 cores" in text
    assert "old" not in text and make_results.update(project, check=True) == []


def test_a_results_file_of_unknown_shape_is_an_error(project):
    write_results(project, mystery={"loss": 1.0})
    with pytest.raises(ValueError, match="mystery.json"):
        make_results.update(project)


@pytest.mark.parametrize("seconds,shown", [(42, "42 s"), (930, "15.5 min"), (7560, "2.10 h")])
def test_durations(seconds, shown):
    assert make_results.duration(seconds) == shown


@pytest.mark.parametrize(
    "changes,words",
    [
        (
            {},
            "-p RUN_MODE quick -p DATA ../shared/data/x.txt -p OBJECTIVE mdlm "
            "-p TIME_CONDITIONING True",
        ),
        (
            {"objective": "ar", "time_conditioning": False},
            "-p OBJECTIVE ar -p TIME_CONDITIONING False",
        ),
        ({"command": "bash tools/real_runs.sh x"}, "bash tools/real_runs.sh x"),
    ],
)
def test_the_command_behind_a_run(changes, words):
    defaults = {"quick": {"vocab_size": 2048, "max_steps": 800}}
    assert words in make_results.command(metrics(**changes), defaults)
    overridden = make_results.command(
        metrics(settings={"vocab_size": 2048, "max_steps": 99}), defaults
    )
    assert overridden.endswith("-p MAX_STEPS 99") and "VOCAB_SIZE" not in overridden


def test_runs_with_other_settings_are_kept_apart_and_tabled_against_the_defaults(project):
    """Quick defaults: 2.2 +- 0.01. Twice the learning rate: 2.0 +- 0.01, 2.0 / 2.2 - 1 = -9.1%,
    far outside 2 hypot(0.01, 0.01); ratios 2.2 / 5 = 0.440 and 2.0 / 5 = 0.400. A longer run
    with the defaults is not a setting tried, and no run is averaged with another's settings."""
    quick = make_results.mode_defaults()["quick"]
    settings = {key: quick[key] for key in make_results.SIZE_PARAMETERS}
    faster = quick["learning_rate"] * 2
    write_results(
        project,
        mdlm_quick_x=metrics(settings=settings, final=final(nelbo=[2.2, 0.01])),
        mdlm_quick_x_lr=metrics(
            settings={**settings, "learning_rate": faster}, final=final(nelbo=[2.0, 0.01])
        ),
        mdlm_quick_x_long=metrics(
            settings={**settings, "max_steps": 4 * quick["max_steps"]},
            final=final(nelbo=[1.8, 0.01]),
        ),
        ar_quick_x=metrics(objective="ar", settings=settings, final=final(nll=[1.0, 0.01])),
        mdlm_quick_y_lr=metrics(  # no run of the defaults on y: nothing to set it beside
            data="../shared/data/y.txt",
            settings={**settings, "learning_rate": faster},
            final=final(nelbo=[2.1, 0.01]),
        ),
    )
    make_results.update(project)
    guide = (project / "learning_guide.md").read_text()
    steps = f"{quick['max_steps']:,}"
    assert "| y.txt | quick | MDLM |" not in guide
    rows = [
        f"| x.txt | quick | MDLM | the defaults | {steps} | ≤ 2.200 ± 0.010 |  | 0.440 "
        "| 15.5 min |",
        f"| x.txt | quick | MDLM | learning_rate {faster} | {steps} | ≤ 2.000 ± 0.010 | -9.1% "
        "| 0.400 | 15.5 min |",
        f"| x.txt | quick, {steps} | 1.000 ± 0.010 |  | ≤ 2.200 ± 0.010 | +120.0% |",  # twins
    ]
    for row in rows:
        assert row in guide, guide
    assert f"| x.txt | quick | MDLM | the defaults | {4 * quick['max_steps']:,} |" not in guide
    assert f"-p LEARNING_RATE {faster}" in guide  # the command of the run with its change
