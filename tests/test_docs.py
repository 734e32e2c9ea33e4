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
from hypothesis import given, settings
from hypothesis import strategies as st

from bpe_tokenizer import BPETokenizer
from tools import make_results

sys.path.insert(0, str(ROOT / "docs"))
import make_figures  # noqa: E402

DOCS = ["learning_guide.md", "README.md", "RESULTS.md"]
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


def test_every_drawn_figure_is_shown_and_nothing_else_is():
    """The guide and RESULTS.md show make_figures.py's figures and sampling.ipynb's, no others."""
    shown = {
        Path(target).name
        for doc in ("learning_guide.md", "RESULTS.md")
        for _, target in links((ROOT / doc).read_text(encoding="utf-8"))
        if target.startswith("docs/img/")
    }
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


# ---- the results: RESULTS.md and the generated blocks ----


def test_results_agree_with_results_files():
    assert make_results.update(ROOT, check=True) == []


QUICK = make_results.mode_defaults()["quick"]


def metrics(**changes) -> dict:
    """A metrics.json as train_model.ipynb writes it, with round numbers, at quick's defaults."""
    run = {
        "run": "mdlm_quick_x",
        "objective": "mdlm",
        "data": "../shared/data/gutenberg",
        "mode": "quick",
        "time_conditioning": True,
        "val_bpb": 2.5,
        "unigram_bpb": 5.0,
        "steps": QUICK["max_steps"],
        "tokens_seen": 3_276_800,
        "params": 1_593_984,
        "device": "cpu",
        "threads": 1,
        "dtype": "float32",
        "wall_s": 930.0,
        "settings": {key: QUICK[key] for key in make_results.SIZE_PARAMETERS},
        "history": {},
        "held_out": {"files": 1, "files_contributing": 1, "characters": 1000, "tokens": 300},
    }
    return {**run, **changes}


def final(**figures) -> dict:
    """metrics.json's "final" key: figures as (bits per byte, standard error)."""
    return {"windows": 512, **figures}


@pytest.fixture
def project(tmp_path):
    """A folder with results/, a guide and a README with blocks, and the notebook's modes."""
    (tmp_path / "results").mkdir()
    blocks = "".join(
        f"{start}\nold\n{end}\n" for start, end in map(make_results.markers, ["twin", "headline"])
    )
    (tmp_path / "learning_guide.md").write_text(f"# Guide\n\nbefore\n\n{blocks}\nafter\n")
    (tmp_path / "README.md").write_text("# Readme without blocks\n")
    (tmp_path / "train_model.ipynb").write_text((ROOT / "train_model.ipynb").read_text())
    return tmp_path


def write_results(folder: Path, **runs) -> None:
    for name, run in runs.items():
        (folder / "results" / f"{name}.json").write_text(json.dumps(run))


@pytest.mark.parametrize(
    "df, quantile", [(1, 12.7062), (2, 4.3027), (3, 3.1824), (4, 2.7764), (9, 2.2622), (30, 2.0423)]
)
def test_t_quantiles_match_the_printed_tables(df, quantile):
    assert make_results.t_quantile(df) == pytest.approx(quantile, abs=1e-4)


def test_the_rule_worked_out_by_hand():
    """The docstring's example: differences 0.10, 0.15, 0.05, paired: [-0.024, 0.224], a tie;
    unpaired, Welch with 4 degrees of freedom: [-0.013, 0.213], a tie."""
    a, b = {1: 2.10, 2: 2.20, 3: 2.15}, {1: 2.00, 2: 2.05, 3: 2.10}
    verdict = make_results.compare(a, b, paired=True)
    assert (verdict.low, verdict.high, verdict.text) == (
        pytest.approx(0.10 - 4.3027 * 0.05 / math.sqrt(3), abs=1e-4),
        pytest.approx(0.10 + 4.3027 * 0.05 / math.sqrt(3), abs=1e-4),
        "a tie",
    )
    unpaired = make_results.compare(a, b, paired=False)
    assert unpaired.high - unpaired.difference == pytest.approx(2.7764 * 0.0408248, abs=1e-4)
    far = make_results.compare({1: 2.1, 2: 2.2, 3: 2.15}, {1: 1.6, 2: 1.65, 3: 1.6}, False)
    assert far.text == "higher" and far.low > 0
    two = make_results.compare({1: 2.1, 2: 2.2}, b, paired=False)  # two seeds: no verdict
    assert two.low is None and two.text == (
        "no verdict: 2.100 to 2.200 (2 seeds) against 2.000 to 2.100 (3 seeds)"
    )


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(1.0, 3.0), min_size=3, max_size=6),
    st.floats(-0.5, 0.5),
    st.floats(0.0, 0.05),
)
def test_a_constant_shift_is_found_and_noise_widens_the_interval(base, shift, noise):
    """b = a + shift exactly (paired): the interval is the shift itself. With the seeds of b
    jittered, the interval still holds the mean difference, and widens."""
    a = dict(enumerate(base))
    exact = make_results.compare({s: v + shift for s, v in a.items()}, a, paired=True)
    assert exact.low == pytest.approx(shift, abs=1e-9) == exact.high
    jitter = {s: v + shift + noise * (-1) ** s for s, v in a.items()}
    verdict = make_results.compare(jitter, a, paired=True)
    assert verdict.low <= verdict.difference <= verdict.high
    assert verdict.high - verdict.low >= exact.high - exact.low


def test_mcnemar_worked_out_by_hand():
    assert make_results.mcnemar([1, 1, 0, 0, 1], [0, 0, 0, 1, 1]) == (2, 1, 1.0)
    # 10 discordant passages, all one way: p = 2 / 2^10
    assert make_results.mcnemar([1] * 10 + [0] * 5, [0] * 15) == (10, 0, pytest.approx(2 / 1024))


def test_seeds_are_grouped_and_pairings_compare_like_with_like(project):
    """Three seeds each of the gated MDLM (2.1, 2.2, 2.15) and the gated twin (1.6, 1.65, 1.6):
    mean 2.15 against 1.6167, +33.0%, Welch's interval far from 0: higher."""
    runs = {}
    for seed, mdlm, twin in [(1337, 2.1, 1.6), (1338, 2.2, 1.65), (1339, 2.15, 1.6)]:
        suffix = "" if seed == 1337 else f"_seed{seed}"
        runs[f"mdlm_quick_x{suffix}"] = metrics(seed=seed, final=final(nelbo=[mdlm, 0.01]))
        runs[f"ar_const_quick_x{suffix}"] = metrics(
            objective="ar",
            time_conditioning=False,
            constant_conditioning=True,
            seed=seed,
            final=final(nll=[twin, 0.01]),
        )
    write_results(project, **runs)
    assert make_results.update(project) == [
        "RESULTS.md: not what results/ gives",
        "learning_guide.md: not what results/ gives",
    ]
    results = (project / "RESULTS.md").read_text()
    guide = (project / "learning_guide.md").read_text()
    assert "| MDLM, gated blocks fed t | 1.59M | 2.100 | 2.200 | 2.150 |" in results
    assert "the gated MDLM fed t against the gated twin" in guide
    assert "+33.0%, higher: +0.533" in guide
    assert guide.startswith("# Guide\n\nbefore\n") and guide.endswith("\nafter\n")
    assert "old" not in guide
    assert (project / "README.md").read_text() == "# Readme without blocks\n"
    assert make_results.update(project, check=True) == []  # now in agreement
    assert "-p OBJECTIVE ar -p TIME_CONDITIONING False -p CONSTANT_CONDITIONING True" in results


def test_the_conditioning_variants_are_paired_by_seed(project):
    """t fed 2.1, 2.2, 2.15; constant 2.12, 2.22, 2.16: differences 0.02, 0.02, 0.01, mean 0.0167,
    stdev 0.00577, interval 0.0167 +- 4.303 x 0.00333 = [0.0023, 0.0310]: higher, though the
    ranges overlap. Plain blocks with two seeds: no verdict."""
    runs = {}
    for seed, fed, const in [(1337, 2.1, 2.12), (1338, 2.2, 2.22), (1339, 2.15, 2.16)]:
        suffix = "" if seed == 1337 else f"_seed{seed}"
        runs[f"mdlm_quick_x{suffix}"] = metrics(seed=seed, final=final(nelbo=[fed, 0.01]))
        runs[f"mdlm_const_quick_x{suffix}"] = metrics(
            seed=seed,
            time_conditioning=False,
            constant_conditioning=True,
            final=final(nelbo=[const, 0.01]),
        )
    for seed in (1337, 1338):
        suffix = "" if seed == 1337 else f"_seed{seed}"
        runs[f"mdlm_notc_quick_x{suffix}"] = metrics(
            seed=seed, time_conditioning=False, final=final(nelbo=[2.4, 0.01])
        )
    write_results(project, **runs)
    make_results.update(project)
    results = (project / "RESULTS.md").read_text()
    assert "+0.8%, higher: +0.017 [+0.002, +0.031]" in results
    assert "no verdict: 2.400 to 2.400 (2 seeds) against 2.100 to 2.200 (3 seeds)" in results


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


def test_every_run_is_listed_with_its_machine_and_command(project):
    write_results(
        project,
        mdlm_quick_x=metrics(final=final(nelbo=[2.2341, 0.0061])),
        ar_quick_x=metrics(objective="ar", time_conditioning=False, val_bpb=2.0, wall_s=90.0),
    )
    make_results.update(project)
    results = (project / "RESULTS.md").read_text()
    assert "| ar_quick_x | gutenberg | AR twin, plain blocks | 1.59M |" in results
    assert "| 90 s | 2.000 (live) |" in results and "| 15.5 min | ≤ 2.234 ± 0.006 |" in results
    assert "- ar_quick_x: `python -m papermill train_model.ipynb out.ipynb" in results


def test_the_average_of_the_weights_is_shown_with_its_paired_difference(project):
    ema = {"decay": 0.995, "nelbo": [2.19, 0.01], "ema - trained": [-0.01, 0.002]}
    small = {"decay": 0.995, "nll": [1.499, 0.01], "ema - trained": [-0.001, 0.002]}
    write_results(
        project,
        mdlm_quick_x=metrics(final={**final(nelbo=[2.2, 0.01]), "ema": ema}),
        ar_quick_x=metrics(objective="ar", final={**final(nll=[1.5, 0.01]), "ema": small}),
    )
    make_results.update(project)
    results = (project / "RESULTS.md").read_text()
    assert (
        "| `mdlm_quick_x` | 0.995 | 2.200 ± 0.010 | 2.190 ± 0.010 | -0.0100 ± 0.0020, lower |"
        in (results)
    )
    assert "| -0.0010 ± 0.0020, a tie |" in results


def test_a_stale_file_is_found_and_not_written(project):
    write_results(project, mdlm_quick_x=metrics())
    make_results.update(project)
    results = project / "RESULTS.md"
    stale = results.read_text().replace("2.500", "2.499")
    results.write_text(stale)
    assert make_results.update(project, check=True) == ["RESULTS.md: not what results/ gives"]
    assert results.read_text() == stale


def test_an_unknown_block_is_an_error(project):
    (project / "README.md").write_text(
        "<!-- results:nonsense:start -->\n<!-- results:nonsense:end -->\n"
    )
    with pytest.raises(ValueError, match="nonsense"):
        make_results.update(project)


def test_sampling_figures_with_intervals_the_lazy_sampler_and_mcnemar(project):
    row = {"method": "confidence", "steps": 64, "nfe_per_sequence": 64.0, "tokens_per_second": 99.6}
    row |= {"unigram_entropy": 6.0, "distinct_2": 0.5, "generative_perplexity": 41.26}
    row |= {"generative_perplexity_interval": [30.0, 55.5]}
    lazy = {"steps": 1000, "nfe_lazy": 119, "nfe_plain": 992, "speedup": 4.0, "same_samples": True}
    matched = {"MDLM, both sides": [1, 1, 0, 0, 1], "AR twin, prefix only": [0, 0, 0, 1, 1]}
    spans = {
        "1": {
            who: {"exact_match": sum(m) / 5, "token_accuracy": sum(m) / 5, "matched": m}
            for who, m in matched.items()
        }
    }
    infill = {"passages": 5, "passage_length": 128, "spans": spans}
    figures = {"checkpoint": "ckpt.pt", "judge": "ar.pt", "device": "cpu", "sweep": [row]}
    figures |= {"lazy": lazy, "infill_recovery": infill}
    write_results(project, sampling_full=figures)
    make_results.update(project)
    results = (project / "RESULTS.md").read_text()
    assert "| confidence | 64 | 64.0 | 100 | 6.00 | 0.500 | 41.3 [30.0, 55.5] |" in results
    assert "The lazy sampler at 1000 steps: 119 network calls instead of 992" in results
    assert "| 1 | MDLM, both sides | 0.600 | 0.600 |" in results
    assert (
        "gap 1: MDLM, both sides right alone on 2 passages, AR twin, prefix only on 1: "
        "McNemar's exact p = 1.00, a tie." in results
    )


def test_benchmark_reports_are_printed_by_the_benchmark(project):
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
    lines = "\n".join(make_results.benchmark_lines(project / "bench" / "reports"))
    assert "`python bench/run_all.py --json bench/reports/cpu.json` (cpu.json, 2026-11-28" in lines
    assert "speed  1,234 tok/s" in lines and "Some CPU, 2 cores" in lines


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
            "-p RUN_MODE quick -p DATA ../shared/data/gutenberg -p OBJECTIVE mdlm "
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


def test_runs_with_other_settings_are_kept_apart_and_set_beside_the_defaults(project):
    faster = QUICK["learning_rate"] * 2
    settings = {key: QUICK[key] for key in make_results.SIZE_PARAMETERS}
    write_results(
        project,
        mdlm_quick_x=metrics(final=final(nelbo=[2.2, 0.01])),
        mdlm_quick_x_lr=metrics(
            settings={**settings, "learning_rate": faster}, final=final(nelbo=[2.0, 0.01])
        ),
        mdlm_quick_x_long=metrics(
            settings={**settings, "max_steps": 4 * QUICK["max_steps"]},
            steps=4 * QUICK["max_steps"],
            final=final(nelbo=[1.8, 0.01]),
        ),
    )
    make_results.update(project)
    results = (project / "RESULTS.md").read_text()
    steps = f"{QUICK['max_steps']:,}"
    assert (
        f"| MDLM, gated blocks fed t | learning_rate {faster} | {steps} | ≤ 2.000 ± 0.010 "
        "| no verdict: 2.000 (1 seed) against 2.200 (1 seed) |" in results
    )
    assert (
        f"| gutenberg | {4 * QUICK['max_steps']:,} | MDLM, gated blocks fed t | ≤ 1.800" in results
    )
    assert f"-p LEARNING_RATE {faster}" in results  # the command of the run with its change


def test_the_contents_give_each_section_its_reading_time():
    """A reading time beside each section: its words at 200 a minute, rounded, at least 1."""
    guide = (ROOT / "learning_guide.md").read_text(encoding="utf-8")
    listed = dict(re.findall(r"^\| \[(\d+)\. [^\]]+\]\(#[^)]+\) \| (\d+) min \|$", guide, re.M))
    sections = re.split(r"(?m)^## (\d+)\. .*$", guide)[1:]
    words = {number: len(body.split()) for number, body in zip(sections[::2], sections[1::2])}
    expected = {number: str(max(1, round(count / 200))) for number, count in words.items()}
    assert listed == expected, f"the contents should say {expected}"
