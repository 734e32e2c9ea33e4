"""Write RESULTS.md, and the small results tables of README.md and learning_guide.md, from results/.

    python tools/make_results.py          # rewrite RESULTS.md and every generated block
    python tools/make_results.py --check  # exit 1 if one differs from what results/ gives

The numbers come from files, never from a keyboard. A training run's metrics are the
metrics.json that train_model.ipynb writes into its OUT_DIR, copied to results/<run_name>.json
by tools/collect_metrics.py (tools/real_runs.sh does both for the project's runs); a file may
carry a "machine" key (what it ran on) and a "command" key (when the command rebuilt here from
the metrics would be wrong). sampling.ipynb's sampling_metrics.json sits there too. The
benchmark's reports are bench/reports/*.json, written by bench/run_all.py, which owns their
printing.

RESULTS.md is generated whole, grouped by the question each run answers. README.md and
learning_guide.md hold a few small tables, each between the markers
<!-- results:NAME:start --> and <!-- results:NAME:end --> (NAME one of BLOCKS); only those
lines are rewritten.

Every verdict ("a tie", "lower") comes from one rule, `compare`, explained in its docstring
and in the guide's §8. Runs that differ only in their seed are grouped; runs whose training
settings differ from their mode's defaults (a learning rate, a batch size) are never grouped
with others.

Left out on purpose: plots (train_model.ipynb, sampling.ipynb and docs/make_figures.py draw them
from the same files).
"""

import ast
import functools
import io
import json
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # so that `python tools/make_results.py` finds bench/
from tools import cli  # noqa: E402

RESULTS_MD = "RESULTS.md"
TARGETS = ("README.md", "learning_guide.md")  # files that may hold generated blocks
GENERATED = "<!-- made by tools/make_results.py from results/*.json: edit those, not this -->"
# train_model.ipynb's parameters that set a size; the others are named in the command anyway
SIZE_PARAMETERS = (
    "vocab_size",
    "seq_len",
    "n_layer",
    "n_head",
    "d_model",
    "batch_size",
    "grad_accum",
    "max_steps",
    "learning_rate",
    "eval_every",
    "max_chars",
)
# the settings that change what a run trains; max_steps is shown as the steps, and the rest of
# settings (how often and how carefully it is evaluated, the average of the weights) do not
RECIPE = tuple(key for key in SIZE_PARAMETERS if key not in ("max_steps", "eval_every"))
DEFAULT_CORPUS = "gutenberg"  # the 23 books, as the project's runs name their folder
SHAKESPEARE = "tinyshakespeare.txt"
MIN_SEEDS = 3  # fewer seeds than this on either side: ranges, and no verdict

# what each kind of run is; the MDLM's three variants and the twin's two
KINDS = {
    "mdlm": "MDLM, gated blocks fed t",
    "mdlm_const": "MDLM, gated blocks fed a constant",
    "mdlm_notc": "MDLM, plain blocks",
    "ar_const": "AR twin, gated blocks fed a constant",
    "ar": "AR twin, plain blocks",
}


# ---- reading the files ----


def load_results(folder: Path) -> tuple[list, list]:
    """(training runs, sampling runs) in results/, each a list of (name, dict) sorted by name."""
    training, sampling = [], []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as error:  # not JSON, or not UTF-8
            raise ValueError(f"{path} is not a JSON file ({error})") from None
        if isinstance(data, dict) and "sweep" in data:
            sampling.append((path.stem, data))
        elif isinstance(data, dict) and {"objective", "val_bpb", "unigram_bpb"} <= data.keys():
            training.append((path.stem, data))
        else:
            raise ValueError(
                f"{path} is neither a training run's metrics.json (no objective, val_bpb, "
                "unigram_bpb) nor sampling.ipynb's sampling_metrics.json (no sweep)"
            )
    return training, sampling


def mode_defaults(notebook: Path = ROOT / "train_model.ipynb") -> dict | None:
    """RUN_MODES as train_model.ipynb defines it, read without running it; None if not found."""
    try:
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        for cell in cells:
            source = "".join(cell["source"])
            if cell["cell_type"] != "code" or "RUN_MODES = {" not in source:
                continue
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == (
                    "RUN_MODES"
                ):
                    return {  # {"smoke": dict(vocab_size=384, ...), ...} -> plain dicts
                        ast.literal_eval(key): {
                            k.arg: ast.literal_eval(k.value) for k in value.keywords
                        }
                        for key, value in zip(node.value.keys, node.value.values)
                    }
    except (OSError, ValueError, KeyError, AttributeError, SyntaxError):
        pass
    return None


def command(run: dict, defaults: dict | None, name: str | None = None) -> str:
    """The papermill command that makes this run (its own "command" key wins); with the run's
    name, into its own OUT_DIR, checkpoints/<name>, as tools/real_runs.sh trains it."""
    if "command" in run:
        return run["command"]
    words = ["python -m papermill train_model.ipynb out.ipynb", f"-p RUN_MODE {run['mode']}"]
    words += [f"-p DATA {run['data']}", f"-p OBJECTIVE {run['objective']}"]
    if run["objective"] == "mdlm" or run.get("time_conditioning") is False:
        words.append(f"-p TIME_CONDITIONING {run.get('time_conditioning')}")
    if run.get("constant_conditioning"):
        words.append("-p CONSTANT_CONDITIONING True")
    if run.get("settings", {}).get("ema_decay"):  # an average of the weights (off by default)
        words.append(f"-p EMA_DECAY {run['settings']['ema_decay']}")
    if run.get("seed", 1337) != 1337:  # train_model.ipynb's default SEED
        words.append(f"-p SEED {run['seed']}")
    mode = (defaults or {}).get(run["mode"])
    for key in SIZE_PARAMETERS:  # the sizes that differ from the mode's (all, if unknown)
        value = run.get("settings", {}).get(key)
        if (mode is None and value is not None) or (mode and key in mode and value != mode[key]):
            words.append(f"-p {key.upper()} {value}")
    if name:
        words.append(f"-p OUT_DIR checkpoints/{name}")
    return " ".join(words)


def millions(n: float) -> str:
    """4_213_000 -> '4.21M'; 950 -> '950'."""
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n:,.0f}"


def duration(seconds: float) -> str:
    """42 -> '42 s'; 930 -> '15.5 min'; 7560 -> '2.10 h'."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.2f} h"


def machine(run: dict) -> str:
    """What the run ran on: its "machine" key, else what metrics.json records."""
    if run.get("machine"):
        return run["machine"]
    threads = run.get("threads")
    plural = "" if threads == 1 else "s"
    return ", ".join(
        [run["device"], run.get("dtype", "?")] + ([f"{threads} thread{plural}"] if threads else [])
    )


def data_name(data: str) -> str:
    """A corpus name as it is; a path as its file or folder name."""
    return Path(data).name if "/" in data or data.endswith(".txt") else data


def data_label(run: dict) -> str:
    """The run's corpus, marked when it was scored on the old split (ten interleaved pieces of
    the concatenated text, easier than the last tenth of every file): a run from before the
    split recorded its held-out files."""
    name = data_name(run["data"])
    return name if "held_out" in run else f"{name}, old split"


def kind(run: dict) -> str:
    """One of KINDS: the MDLM's variant ('mdlm' fed t, 'mdlm_const' the same gated blocks fed a
    constant, 'mdlm_notc' plain blocks), or the twin's ('ar_const' gated, 'ar' plain)."""
    if run["objective"] != "mdlm":
        return "ar_const" if run.get("constant_conditioning") else "ar"
    if run.get("time_conditioning"):
        return "mdlm"
    return "mdlm_const" if run.get("constant_conditioning") else "mdlm_notc"


def plateau_exit(run: dict, drop: float = 0.05, window: int = 50) -> int | None:
    """The first step at which the training loss, averaged over the `window` steps around it,
    is `drop` (a fraction) below the unigram entropy: where the run leaves the plateau that
    every run starts on, predicting token frequencies only. None if it never does."""
    history = run.get("history", {})
    losses, steps = history.get("train_loss"), history.get("step")
    if not losses or not steps or "bytes_per_token" not in run:
        return None
    plateau = run["unigram_bpb"] * run["bytes_per_token"] * math.log(2)  # nats per token
    half = window // 2
    for i in range(len(losses)):
        if statistics.fmean(losses[max(0, i - half) : i + window - half]) <= (1 - drop) * plateau:
            return steps[i]
    return None


def held_out(run: dict) -> tuple[float, float | None]:
    """A run's held-out bits per byte and its standard error over windows: the final figure
    (the MDLM's NELBO, the twin's exact loss), or the live estimate of its last evaluation
    (error None)."""
    final = run.get("final")
    if final:
        value, error = final["nelbo" if run["objective"] == "mdlm" else "nll"]
        return value, error
    return run["val_bpb"], None


def best_live(run: dict) -> tuple[float, int] | None:
    """The lowest live evaluation and its step. Biased low: it is the minimum of noisy
    estimates on 64 windows, so read it as an optimistic figure, not as a final one."""
    history = run.get("history", {})
    if not history.get("val_bpb"):
        return None
    return min(zip(history["val_bpb"], history["val_step"]))


def shown(value: float, error: float | None, bound: bool = False) -> str:
    """'≤ 2.231 ± 0.006'; a live estimate, without an error, as '≤ 2.210 (live)'."""
    text = f"{'≤ ' if bound else ''}{value:.3f}"
    return f"{text} ± {error:.3f}" if error is not None else f"{text} (live)"


# ---- the rule: when is a difference a difference? ----


@functools.cache
def t_quantile(df: float, p: float = 0.975) -> float:
    """The p-quantile of Student's t distribution with df degrees of freedom.

    t_quantile(1) = 12.706, t_quantile(2) = 4.303, t_quantile(4) = 2.776: with two seeds the
    half-width of a 95% interval is 12.7 standard errors, not 2. The cumulative distribution
    is the integral of the density, done by Simpson's rule, and inverted by bisection.
    """
    if not 0.5 <= p < 1 or df <= 0:
        raise ValueError(f"need 0.5 <= p < 1 and df > 0, not p={p}, df={df}")
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def density(x):
        return math.exp(log_norm - (df + 1) / 2 * math.log1p(x * x / df))

    def mass_up_to(x, pieces=2000):  # P(0 <= T <= x), Simpson's rule on an even grid
        h = x / pieces
        inner = sum((4 if k % 2 else 2) * density(k * h) for k in range(1, pieces))
        return h / 3 * (density(0) + inner + density(x))

    low, high = 0.0, 1.0
    while mass_up_to(high) < p - 0.5:  # widen until the quantile is inside
        low, high = high, 2 * high
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if mass_up_to(middle) < p - 0.5 else (low, middle)
    return (low + high) / 2


@dataclass
class Verdict:
    """The outcome of `compare`: a - b and its 95% interval, or no verdict and why."""

    difference: float  # mean of a minus mean of b, bits per byte
    relative: float  # the difference over the mean of b
    low: float | None  # the 95% interval of the difference; None without a verdict
    high: float | None
    text: str  # "a tie", "lower", "higher", or "no verdict: ..."


def compare(a: dict[int, float], b: dict[int, float], paired: bool) -> Verdict:
    """The one rule behind every verdict between two settings: seed -> figure for each side.

    Seeds of one setting end apart by more than the standard error of one run's estimate, so
    the run-to-run spread is what a difference must beat, and it takes seeds to measure it:
    - Fewer than MIN_SEEDS = 3 seeds on either side: no verdict, only the ranges.
    - paired (the runs of each seed drew the same training batches, times and masks, as the
      variants of one objective do): the differences a_s - b_s of the common seeds, their mean
      d and standard error e = stdev / sqrt(n), and the interval d +- t(n - 1) e.
    - unpaired (an MDLM against a twin: their seeds draw different streams): Welch's interval,
      with the Welch-Satterthwaite degrees of freedom.
    The 95% interval decides: it excludes 0, so a is "lower" or "higher" than b; it holds 0,
    so the two are "a tie". Each run's own window error is part of its figure, so the spread
    of the seeds already counts it.

    Worked example, paired: a = {1: 2.10, 2: 2.20, 3: 2.15}, b = {1: 2.00, 2: 2.05, 3: 2.10}.
    Differences 0.10, 0.15, 0.05: mean 0.10, stdev 0.05, e = 0.0289; t(2) = 4.303, so the
    interval is 0.10 +- 0.124 = [-0.024, 0.224]: it holds 0, a tie. The same six numbers
    unpaired: stdevs 0.05 and 0.05, e = 0.0408, df = 4, t(4) = 2.776, 0.10 +- 0.113: a tie.
    """
    mean_a, mean_b = statistics.fmean(a.values()), statistics.fmean(b.values())
    difference = mean_a - mean_b
    relative = difference / mean_b
    if min(len(a), len(b)) < MIN_SEEDS:
        span = " against ".join(
            f"{min(side.values()):.3f}"
            + (f" to {max(side.values()):.3f}" if len(side) > 1 else "")
            + f" ({len(side)} seed{'s' if len(side) > 1 else ''})"
            for side in (a, b)
        )
        return Verdict(difference, relative, None, None, f"no verdict: {span}")
    if paired:
        common = sorted(set(a) & set(b))
        if len(common) < MIN_SEEDS:
            raise ValueError(f"paired runs need {MIN_SEEDS} common seeds, not {common}")
        differences = [a[seed] - b[seed] for seed in common]
        difference = statistics.fmean(differences)
        error = statistics.stdev(differences) / math.sqrt(len(common))
        df = len(common) - 1
    else:
        va, vb = (statistics.variance(side.values()) / len(side) for side in (a, b))
        error = math.sqrt(va + vb)
        df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if error else 1
    half = t_quantile(df) * error
    low, high = difference - half, difference + half
    text = "a tie" if low <= 0 <= high else ("lower" if high < 0 else "higher")
    return Verdict(difference, relative, low, high, text)


def within_run(difference: float, error: float) -> str:
    """A paired difference of two estimates on the same run's windows (left to right minus the
    bound, the average of the weights minus the weights): 'a tie' when its 95% interval,
    +- 1.96 standard errors over many windows, holds 0."""
    return "a tie" if abs(difference) <= 1.96 * error else ("lower" if difference < 0 else "higher")


def mcnemar(a: list[int], b: list[int]) -> tuple[int, int, float]:
    """Two fillers scored on the same passages (1 right, 0 wrong): (right only for a, right only
    for b, the exact two-sided p-value of McNemar's test).

    Passages both got right, or both wrong, say nothing about which is better; under "no
    difference" each of the n discordant passages is a fair coin. [1, 1, 0, 0, 1] against
    [0, 0, 0, 1, 1]: 2 against 1, p = 2 P(Binomial(3, 1/2) <= 1) = 1.0.
    """
    only_a = sum(x > y for x, y in zip(a, b))
    only_b = sum(y > x for x, y in zip(a, b))
    n = only_a + only_b
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2**n
    return only_a, only_b, min(1.0, 2 * tail)


def verdict_text(verdict: Verdict) -> str:
    """'+30.0%, higher: +0.488 [+0.40, +0.58]', '+2.3%, a tie: ...' or 'no verdict: ...'."""
    if verdict.low is None:
        return f"{verdict.relative:+.1%}; {verdict.text}"
    interval = f"[{verdict.low:+.3f}, {verdict.high:+.3f}]"
    return f"{verdict.relative:+.1%}, {verdict.text}: {verdict.difference:+.3f} {interval}"


# ---- grouping ----


def recipe(run: dict, defaults: dict | None) -> str:
    """The training settings in which a run differs from its mode's defaults, as they are
    written ('batch_size 16, learning_rate 0.003'; '' for none). With the defaults unknown,
    every setting the run recorded."""
    mode = (defaults or {}).get(run["mode"])
    settings = run.get("settings", {})
    return ", ".join(
        f"{key} {settings[key]}"
        for key in RECIPE
        if key in settings and (mode is None or key not in mode or settings[key] != mode[key])
    )


def steps_of(run: dict) -> int:
    return run.get("settings", {}).get("max_steps", run["steps"])


@dataclass
class Group:
    """The runs of one kind that differ only in their seed: seed -> run."""

    kind: str
    runs: dict

    def figures(self, figure=held_out) -> dict[int, float]:
        return {seed: figure(run)[0] for seed, run in self.runs.items()}

    def summary(self, bound: bool | None = None, compact: bool = False) -> str:
        """'≤ 2.115 ± 0.018 (3 seeds: 2.085, 2.145, 2.115)': the mean and its standard error
        over seeds, or one run's figure ± its window error; compact: '... (3 seeds)'."""
        bound = self.kind.startswith("mdlm") if bound is None else bound
        if len(self.runs) == 1:
            ((seed, run),) = self.runs.items()
            other = f" (seed {seed})" if seed != 1337 else ""  # 1337 is the notebook's SEED
            return shown(*held_out(run), bound=bound) + other
        values = list(self.figures().values())
        error = statistics.stdev(values) / math.sqrt(len(values))
        each = "" if compact else ": " + ", ".join(f"{v:.3f}" for v in values)
        return f"{shown(statistics.fmean(values), error, bound)} ({len(values)} seeds{each})"


def grouped(runs: list, defaults: dict | None = None) -> dict:
    """(data, mode, steps, recipe) -> {kind: Group}: the runs that compare like with like."""
    defaults = mode_defaults() if defaults is None else defaults
    groups = {}
    for _, run in runs:
        key = (data_label(run), run["mode"], steps_of(run), recipe(run, defaults))
        by_kind = groups.setdefault(key, {})
        group = by_kind.setdefault(kind(run), Group(kind(run), {}))
        group.runs[run.get("seed", 1337)] = run
    return groups


def quick_defaults(runs: list, data: str, defaults: dict | None) -> dict:
    """{kind: Group} of the runs with quick mode's defaults on `data` (steps and settings)."""
    steps = ((defaults or {}).get("quick") or {}).get("max_steps")
    return grouped(runs, defaults).get((data, "quick", steps, ""), {})


def paired(a: Group, b: Group) -> bool:
    """Same objective: the same seed drew the same batches, times and masks for both."""
    return a.kind[:2] == b.kind[:2]


# ---- tables ----


def table(header: list[str], rows: list[list[str]], right: int = 1) -> list[str]:
    """A markdown table; the columns from `right` on are right-aligned."""
    align = ["---"] * right + ["---:"] * (len(header) - right)
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(align) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def seeds_table(groups: dict) -> list[str]:
    """Each kind of model in `groups`: its figure per seed, the mean, and left to right."""
    seeds = sorted({seed for group in groups.values() for seed in group.runs})
    rows = []
    for kind_name in KINDS:
        if kind_name not in groups:
            continue
        group = groups[kind_name]
        per_seed = [f"{held_out(group.runs[s])[0]:.3f}" if s in group.runs else "" for s in seeds]
        lr = [left_to_right_minus_bound(run) for run in group.runs.values()]
        lr = [value for value in lr if value]
        lr_text = ", ".join(f"{d:+.3f} ± {e:.3f}" for d, e in lr)
        params = millions(next(iter(group.runs.values()))["params"])
        rows.append([KINDS[kind_name], params, *per_seed, group.summary(), lr_text])
    header = ["model", "parameters", *(f"seed {s}" for s in seeds)]
    return table(header + ["mean ± s.e. over seeds", "left to right − bound, per seed"], rows)


def left_to_right_minus_bound(run: dict) -> tuple[float, float] | None:
    """The MDLM's exact left-to-right likelihood minus its bound on the same windows."""
    final = run.get("final") or {}
    return tuple(final["left-to-right - nelbo"]) if "left-to-right - nelbo" in final else None


PAIRINGS = [  # (a, b, what the pair is): like for like first
    ("mdlm_const", "ar_const", "gated blocks fed a constant, both"),
    ("mdlm", "ar_const", "the gated MDLM fed t against the gated twin"),
    ("mdlm_notc", "ar", "plain blocks, both"),
    ("mdlm", "ar", "the gated MDLM fed t against the plain twin (not like for like)"),
]


def pairing_rows(groups: dict, compact: bool = False) -> list[list[str]]:
    rows = []
    for a, b, what in PAIRINGS:
        if a in groups and b in groups:
            verdict = compare(groups[a].figures(), groups[b].figures(), paired=False)
            mdlm, twin = (groups[k].summary(compact=compact) for k in (a, b))
            rows.append([what, mdlm, twin, verdict_text(verdict)])
    return rows


def pairing_table(groups: dict) -> list[str]:
    header = ["pairing", "MDLM", "twin", "MDLM over the twin; 95% interval of the difference"]
    lines = table(header, pairing_rows(groups), right=1)
    if "ar_const" in groups and "ar" in groups:  # the two twins: one objective, paired by seed
        verdict = compare(groups["ar_const"].figures(), groups["ar"].figures(), paired=True)
        lines += ["", f"The two twins, gated over plain, paired by seed: {verdict_text(verdict)}."]
    return lines


CONDITIONING = [  # (kind, what it is), against t fed
    ("mdlm", "t fed: adaLN-Zero blocks, modulated by t"),
    ("mdlm_const", "constant: the same blocks, fed the features of t = 0"),
    ("mdlm_notc", "plain: pre-norm blocks, no modulation or gates"),
]


def conditioning_table(groups: dict, plateau: bool = True) -> list[str]:
    rows = []
    for variant, description in CONDITIONING:
        if variant not in groups:
            continue
        group = groups[variant]
        against = ""
        if variant != "mdlm" and "mdlm" in groups:
            against = verdict_text(compare(group.figures(), groups["mdlm"].figures(), True))
        row = [description, group.summary(compact=not plateau), against]
        if plateau:
            exits = [plateau_exit(run) for run in group.runs.values()]
            row.append(", ".join(f"{e:,}" if e else "never" for e in exits))
        rows.append(row)
    header = ["variant", "held-out bits/byte", "against t fed (paired by seed)"]
    return table(header + (["leaves the plateau at step"] if plateau else []), rows)


def training_table(runs: list) -> list[str]:
    rows = []
    for name, run in runs:
        value, error = held_out(run)
        lr = left_to_right_minus_bound(run)
        rows.append(
            [
                name,
                data_label(run),
                KINDS[kind(run)],
                millions(run["params"]),
                f"{run['steps']:,}",
                millions(run["tokens_seen"]),
                machine(run),
                duration(run["wall_s"]),
                shown(value, error, bound=run["objective"] == "mdlm"),
                f"{lr[0]:+.3f} ± {lr[1]:.3f}" if lr else "",
                f"{run['unigram_bpb']:.3f}",
            ]
        )
    header = ["run", "data", "model", "params", "steps", "tokens seen", "machine", "wall time"]
    header += ["held-out bits/byte", "left to right − bound", "unigram bits/byte"]
    return table(header, rows, right=3)


# ---- RESULTS.md ----


def section(title: str, queue: str, reading: str, lines: list[str]) -> list[str]:
    """A group of RESULTS.md: its question, the command that makes its runs, how to read it."""
    queues = [name.strip() for name in queue.split(",") if name.strip()]
    made = ""
    if queues:
        made = f"Made by `bash tools/real_runs.sh {queues[0]}`"
        made += f" (and the queues {', '.join(queues[1:])}). " if queues[1:] else ". "
    return ["", f"## {title}", "", made + reading, "", *lines]


def machines(runs) -> str:
    names = sorted({machine(run) for run in runs})
    return "Ran on " + "; ".join(names) + "." if names else ""


def quick_pair_section(runs: list, defaults) -> list[str]:
    groups = quick_defaults(runs, DEFAULT_CORPUS, defaults)
    if not groups:
        return []
    reading = (
        "Quick mode on the default corpus (the 23 books, the last tenth of each held out), "
        "every model with the same data, tokenizer, optimizer, steps and seeds. Held-out bits "
        "per byte: the NELBO, an upper bound, for an MDLM; the exact loss for a twin. Each "
        "seed's figure is scored on 512 held-out windows (± about 0.009); the seeds differ by "
        "more than that, so the mean's ± is the standard error over seeds. Left to right: the "
        "MDLM's exact likelihood when it writes each window left to right, minus its bound on "
        "the same 64 windows. The pairings compare like with like: the rule of `compare` in "
        "`tools/make_results.py` (fewer than three seeds a side: no verdict). "
        + machines(r for g in groups.values() for r in g.runs.values())
    )
    return section(
        "The quick pair: the MDLM against its twin",
        "gutenberg, gutenberg_seeds, third_seed, conditioning, gated_twin",
        reading,
        seeds_table(groups) + ["", *pairing_table(groups)],
    )


def conditioning_section(runs: list, defaults) -> list[str]:
    lines = []
    for key, groups in sorted(grouped(runs, defaults).items()):
        data, mode, steps, changes = key
        if data != DEFAULT_CORPUS or "mdlm" not in groups:
            continue
        if sum(k in groups for k, _ in CONDITIONING) < 2:
            continue
        name = "quick mode's defaults" if not changes else f"{changes} ({steps:,} steps)"
        lines += ["", f"With {name}:", "", *conditioning_table(groups)]
    if not lines:
        return []
    reading = (
        "Three variants of the MDLM on the default corpus: the gated adaLN-Zero blocks fed t, "
        "the same blocks fed a constant (the same parameters and initialisation, without the "
        "information in t), and plain pre-norm blocks. The same seed gives all three the same "
        "batches, times and masks, so they are compared seed by seed (paired). The plateau: the "
        "first step at which the training loss, averaged over 50 steps, is 5% below the unigram "
        "entropy, per seed. " + machines(run for _, run in runs if run["objective"] == "mdlm")
    )
    return section("Does the network need t?", "third_seed, conditioning, former", reading, lines)


def settings_section(runs: list, stopped: list, defaults) -> list[str]:
    """Each model's runs with settings other than its mode's defaults, beside the defaults."""
    default_steps = {name: mode.get("max_steps") for name, mode in (defaults or {}).items()}
    rows = []
    for (data, mode, steps, changes), groups in sorted(grouped(runs, defaults).items()):
        if data != DEFAULT_CORPUS or not changes:
            continue
        base_groups = grouped(runs, defaults).get((data, mode, default_steps.get(mode), ""), {})
        for kind_name, group in groups.items():
            base = base_groups.get(kind_name)
            against = ""
            if base:  # another batch or vocabulary draws another stream: not paired
                verdict = compare(group.figures(), base.figures(), paired=False)
                against = verdict_text(verdict) if verdict.low is not None else verdict.text
            times = ", ".join(duration(run["wall_s"]) for run in group.runs.values())
            rows.append([KINDS[kind_name], changes, f"{steps:,}", group.summary(), against, times])
    lines = table(
        ["model", "settings", "steps", "held-out bits/byte", "against the defaults", "wall time"],
        rows,
        right=2,
    )
    lines += [
        "",
        "![Held-out bits per byte against the share of the run for the quick MDLM on the "
        "default corpus, with each setting tried, every setting given the same wall time.]"
        "(docs/img/settings_tried.png)",
        "",
        "*Drawn by `python docs/make_figures.py` from the same files.*",
    ]
    if stopped:
        lines += ["", "Stopped by hand once clearly behind (their last live figure):", ""]
        lines += [f"- `{name}`: {run.get('note', '')}" for name, run in stopped]
    ema = ema_table(runs)
    if ema:
        lines += ["", "The average of the weights (EMA) against the trained weights, paired on "]
        lines[-1] += "the same windows, times and masks of one run:"
        lines += ["", *ema]
    reading = (
        "The tuning log of quick mode: every setting tried, given the steps that take the wall "
        "time of the defaults of the day (`bench/bench_settings.py` times them side by side). "
        "Settings are written as they differ from today's defaults. Most were tried with one "
        "or two seeds, so they carry ranges, not verdicts. " + machines(run for _, run in runs)
    )
    return section("Settings tried for quick mode", "former, v2048", reading, lines)


def ema_table(runs: list) -> list[str]:
    rows = []
    for name, run in runs:
        ema = (run.get("final") or {}).get("ema")
        if not ema:
            continue
        key = "nelbo" if run["objective"] == "mdlm" else "nll"
        difference, error = ema["ema - trained"]
        rows.append(
            [
                f"`{name}`",
                f"{ema['decay']}",
                shown(*run["final"][key]),
                shown(*ema[key]),
                f"{difference:+.4f} ± {error:.4f}, {within_run(difference, error)}",
            ]
        )
    return table(["run", "decay", "trained weights", "their average", "average − trained"], rows)


def longer_section(runs: list, defaults) -> list[str]:
    quick_steps = ((defaults or {}).get("quick") or {}).get("max_steps")
    rows = []
    for (data, mode, steps, changes), groups in sorted(grouped(runs, defaults).items()):
        if mode != "quick" or changes or steps == quick_steps or "old split" in data:
            continue
        for kind_name, group in sorted(groups.items()):
            run = next(iter(group.runs.values()))
            best = best_live(run)
            rows.append(
                [
                    data,
                    f"{steps:,}",
                    KINDS[kind_name],
                    group.summary(),
                    f"{best[0]:.3f} ({best[1]:,})" if best else "",
                    f"{run['tokens_seen'] / run['held_out']['tokens'] / 9:.1f}",
                ]
            )
    if not rows:
        return []
    header = ["data", "steps", "model", "held-out bits/byte", "best live (step)", "passes"]
    reading = (
        "The quick models trained for longer, one seed each (so no verdicts). Best live: the "
        "lowest of the live evaluations on 64 windows, with its step; a minimum of noisy "
        "estimates, so biased low. Passes: tokens seen over the training tokens (nine times the "
        "held-out tokens, since a tenth of every file is held out). "
        + machines(run for _, run in runs)
    )
    return section("Longer runs", "longer, longer_gutenberg", reading, table(header, rows, 3))


def first_section(runs: list, tried: list, defaults) -> list[str]:
    """RUN_MODE first: the committed run, and the settings tried at equal training time."""
    chosen = [(name, run) for name, run in runs if run["mode"] == "first"]
    if not chosen and not tried:
        return []
    rows = []
    for name, run in chosen + tried:
        changes = recipe(run, defaults) or "the defaults"
        value, error = held_out(run)
        rows.append(
            [
                f"`{name}`",
                changes,
                f"{run['steps']:,}",
                duration(run["wall_s"]),
                shown(value, error, bound=True),
                f"{run['unigram_bpb']:.3f}",
            ]
        )
    lines = table(
        ["run", "settings", "steps", "training time", "held-out bits/byte", "unigram"], rows, 2
    )
    for name, run in chosen:
        if run.get("samples"):
            sample = run["samples"][0].strip().replace("\n", " / ")
            lines += ["", f"The first sample of `{name}`, line ends shown as /:", "", f"> {sample}"]
    reading = (
        '`RUN_MODE = "first"` on Tiny Shakespeare: the best held-out figure found for about '
        "three minutes of training on 2 CPU cores. Each setting was tried once, with the steps "
        "that take the same training time (`bench/bench_settings.py --mode first` timed their "
        "steps side by side), so the choice is the best figure seen, not a verdict. Settings are "
        "written as they differ from the mode's. " + machines(run for _, run in chosen + tried)
    )
    return section("A first run in three minutes", "", reading, lines)


def shakespeare_section(runs: list, defaults) -> list[str]:
    groups = quick_defaults(runs, SHAKESPEARE, defaults)
    if not groups:
        return []
    rows = []
    for kind_name in KINDS:
        if kind_name in groups:
            run = next(iter(groups[kind_name].runs.values()))
            best = best_live(run)
            rows.append(
                [
                    KINDS[kind_name],
                    millions(run["params"]),
                    groups[kind_name].summary(),
                    f"{best[0]:.3f} ({best[1]:,})" if best else "",
                ]
            )
    reading = (
        "Tiny Shakespeare (1.1 MB; nanoGPT's and char-rnn's split: the last tenth held out) at "
        "quick mode's defaults, about 25 passes over the training text. One seed each: figures "
        "and ranges, no verdicts. A twin whose best live figure lies far below its final one "
        "has overfitted: it learned the training text by heart. "
        + machines(r for g in groups.values() for r in g.runs.values())
    )
    header = ["model", "parameters", "held-out bits/byte", "best live (step)"]
    return section("Tiny Shakespeare", "shakespeare, gated_twin", reading, table(header, rows))


def sampling_section(sampling: list) -> list[str]:
    lines = []
    for name, figures in sampling:
        lines += ["", *sampling_table(name, figures)]
    if sampling:
        lines += [
            "",
            "![Sample quality and cost of the shipped model's samplers against the number of "
            "steps, beside its twin's own samples and held-out text.]"
            "(docs/img/quality_vs_steps.png)",
            "",
            "*From `sampling.ipynb` in full mode, which writes it to its `OUT_DIR`; copied here.*",
        ]
    lines += benchmark_lines(ROOT / "bench" / "reports")
    reading = (
        "`sampling.ipynb` in full mode on the shipped model, with the shipped twin as judge "
        "(8 samples a row, each its own call, temperature 1, no top-p). Generative perplexity: "
        "the exponential of the judge's mean loss on the samples; lower is likelier, and "
        "repetition lowers it too, so read it beside the entropy. The intervals are 95% "
        "bootstrap intervals over the 8 samples. Then the benchmark's reports "
        "(`bench/run_all.py`), each with its command: compare figures within one report only, "
        "since the machine's speed varies from day to day."
    )
    return section("Samples and samplers", "", reading, lines)


def sampling_table(name: str, figures: dict) -> list[str]:
    judge = figures.get("judge")
    lines = [
        f"Samplers of `{figures.get('checkpoint', '?')}` ({name}, on "
        f"{figures.get('machine') or figures.get('device', '?')}; generative perplexity under "
        f"{f'`{judge}`' if judge else 'no judge'}):",
        "",
    ]

    def cell(row, key, form):
        value, interval = row.get(key), row.get(f"{key}_interval")
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        text = format(value, form)
        return text + (f" [{interval[0]:{form}}, {interval[1]:{form}}]" if interval else "")

    twin = [
        {**row, "method": f"{row['method']} (the judge's own samples, judged by itself)"}
        for row in figures.get("autoregressive_reference", [])
    ]
    calibration = [
        {**row, "method": f"{row['method']} of the training split (calibration)"}
        for row in figures.get("calibration", [])
    ]
    reference = figures.get("held_out_reference")
    held = [{**reference, "method": "held-out text", "steps": ""}] if reference else []
    rows = [
        [
            row["method"],
            str(row.get("steps", "")),
            cell(row, "nfe_per_sequence", ".1f"),
            cell(row, "tokens_per_second", ".0f"),
            cell(row, "unigram_entropy", ".2f"),
            cell(row, "distinct_2", ".3f"),
            cell(row, "generative_perplexity", ".1f"),
        ]
        for row in figures["sweep"] + twin + calibration + held
    ]
    header = ["sampler", "steps", "calls per sequence", "tokens/s", "unigram entropy (bits)"]
    lines += table(header + ["distinct-2", "generative perplexity"], rows)
    lazy = figures.get("lazy") or figures.get("cache")
    if lazy:
        calls = lazy.get("nfe_lazy", lazy.get("nfe_cached"))
        what = "The lazy sampler" if "nfe_lazy" in lazy else "The cache (of an earlier version)"
        lines += [
            "",
            f"{what} at {lazy['steps']} steps: {calls} network calls instead of "
            f"{lazy['nfe_plain']}, {lazy['speedup']:.1f}x faster, the same samples: "
            f"{lazy['same_samples']}.",
        ]
    infill = figures.get("infill_recovery")
    if infill:
        lines += ["", *infill_lines(infill)]
    return lines


def infill_lines(infill: dict) -> list[str]:
    lines = [
        f"Filling a gap in the middle of {infill['passages']} held-out passages of "
        f"{infill['passage_length']} tokens (greedy; the twin sees only the beginning):",
        "",
    ]
    rows, tests = [], []
    for span, by_whom in infill["spans"].items():
        for who, row in by_whom.items():
            rows.append(
                [str(span), who, f"{row['exact_match']:.3f}", f"{row['token_accuracy']:.3f}"]
            )
        names = [who for who, row in by_whom.items() if "matched" in row]
        for first, second in zip(names, names[1:]):
            only_a, only_b, p = mcnemar(by_whom[first]["matched"], by_whom[second]["matched"])
            verdict = "a tie" if p >= 0.05 else "a difference"
            tests.append(
                f"- gap {span}: {first} right alone on {only_a} passages, {second} on "
                f"{only_b}: McNemar's exact p = {p:.2f}, {verdict}."
            )
    lines += table(["gap (tokens)", "who", "exact match", "token accuracy"], rows, right=2)
    return lines + (["", *tests] if tests else [])


def benchmark_lines(reports_dir: Path) -> list[str]:
    """Every bench/reports/*.json as bench/run_all.py prints it, with its command."""
    paths = sorted(Path(reports_dir).glob("*.json"))
    if not paths:
        return []
    from bench.run_all import print_report  # imports torch: only when there is a report

    lines = []
    for path in paths:
        report = json.loads(path.read_text(encoding="utf-8"))
        printed = io.StringIO()
        print_report(report, file=printed)
        lines += [
            "",
            f"`{report['command']}` ({path.name}, {report['date'][:10]}, size {report['size']}):",
            "",
            "```text",
            printed.getvalue().strip("\n"),
            "```",
        ]
    return lines


def distributed_section(folder: Path) -> list[str]:
    """bench/bench_shards.py's and bench/bench_ddp.py's reports: shards and processes."""
    shards, ddp = folder / "cpu_2core_shards.json", folder / "cpu_2core_ddp.json"
    lines = []

    def spread(figure, scale=1.0, form=".1f"):
        low, high = figure["low"] * scale, figure["high"] * scale
        return (
            f"{figure['median'] * scale:{form}} ({low:{form}} to {high:{form}}, n = {figure['n']})"
        )

    if shards.exists():
        report = json.loads(shards.read_text(encoding="utf-8"))
        encoding = report["encoding"]
        rows = [
            [f"{processes} process{'es' if processes != '1' else ''}", spread(figure)]
            for processes, figure in encoding["megabytes_per_s"].items()
        ]
        lines += [
            f"`python {report['command']}` (load average {report['load_average']:.1f}): "
            f"encoding {encoding['megabytes']:.2f} MB into {encoding['tokens']:,} token ids, "
            "median and range over the rounds:",
            "",
            *table(["encoding", "MB/s"], rows),
            "",
        ]
        training = report["training"]
        rows = [
            [name, spread(training["step_seconds"][name], 1000), spread(figure, 1e6, ".0f")]
            for name, figure in training["get_batch_seconds"].items()
        ]
        lines += table(["tokens from", "a training step (ms)", "get_batch alone (µs)"], rows)
    if ddp.exists():
        report = json.loads(ddp.read_text(encoding="utf-8"))
        rows = [
            [
                row["name"],
                f"{row['median_s'] * 1000:.0f} ({row['low_s'] * 1000:.0f} to "
                f"{row['high_s'] * 1000:.0f}, n = {row['n']})",
                str(row["threads"]),
            ]
            for row in report["rows"]
        ]
        lines += [
            "",
            f"`python {report['command']}`: a step of {report['tokens_per_step']:,} tokens, the "
            "same global batch in every row:",
            "",
            *table(["processes", "a step (ms)", "threads a process"], rows),
        ]
    if not lines:
        return []
    reading = (
        "Token shards on disk, and the training loop under torchrun with two gloo processes, "
        "measured side by side on this project's 2-core CPU with nothing else running. On 2 "
        "cores two processes should be no faster than one: they split the same arithmetic and "
        "add an all-reduce of every gradient. Their medians differ by less than the spreads."
    )
    return section("Beyond one GPU", "", reading, lines)


PEERS = [  # (model, data, held-out figure, source): other projects' numbers, with their source
    (
        "nanoGPT, character-level, 6 layers of 384",
        "Tiny Shakespeare",
        "1.4697 nats/char = 2.120 bits/byte (its best evaluation)",
        "[karpathy/nanoGPT](https://github.com/karpathy/nanoGPT) README",
    ),
    (
        "nanoGPT's CPU recipe, character-level, 4 layers of 128",
        "Tiny Shakespeare",
        "1.88 nats/char = 2.71 bits/byte",
        "[karpathy/nanoGPT](https://github.com/karpathy/nanoGPT) README",
    ),
    (
        "nanoDLM, character-level MDLM, 10M parameters",
        "Tiny Shakespeare",
        "NELBO 1.617 nats/char = 2.333 bits/byte",
        "[nanoDLM](https://github.com/SoumilBhandari/nanoDLM)",
    ),
    (
        "nanoDLM, MDLM and its matched AR model",
        "TinyStories (50 MB)",
        "at most 1.097 against 0.527 nats/char",
        "[nanoDLM](https://github.com/SoumilBhandari/nanoDLM)",
    ),
    (
        "MDLM and AR transformer, 110M parameters",
        "LM1B, 33B tokens",
        "perplexity at most 27.04 against 22.32",
        "[Sahoo et al., 2024](https://arxiv.org/abs/2406.07524)",
    ),
    (
        "MDLM and AR transformer",
        "OpenWebText",
        "perplexity at most 23.21 against 17.54",
        "[Sahoo et al., 2024](https://arxiv.org/abs/2406.07524)",
    ),
]


def peers_section() -> list[str]:
    reading = (
        "Other projects' figures, with their sources, to set the scale. Tiny Shakespeare is "
        "ASCII, so a character is a byte and nats per character over ln 2 are bits per byte; "
        "nanoGPT holds out the same last tenth, so its figures compare with the Tiny "
        "Shakespeare runs above (compare its best evaluation with a twin's best live figure). "
        "The perplexities are per token of other tokenizers and do not convert to bits per "
        "byte without the byte counts."
    )
    rows = [list(peer) for peer in PEERS]
    return section("The peers", "", reading, table(["model", "data", "held-out", "source"], rows))


REMOVED = [  # (the runs, the lesson in one sentence, the commit that holds their files)
    (
        "`*_gutenberg_prose`: four runs scored on the old split",
        "The old split (every tenth of 100 pieces of the joined corpus) sat between training "
        "text of the same chapters and flattered every figure: the same quick MDLM's live "
        "estimate was 2.210 bits per byte on it (`mdlm_quick_gutenberg_prose`) and 2.261 on the "
        "last tenth of every book (`mdlm_quick_gutenberg_b32`, still in results/), the unigram "
        "baseline 2.892 against 2.924.",
        "ccdfdbb",
    ),
]


def removed_section() -> list[str]:
    lines = [
        f"- {runs}. {lesson} Their files: `git show {commit}:results/`."
        for runs, lesson, commit in REMOVED
    ]
    return section(
        "Runs that left results/",
        "",
        "Runs of superseded settings whose lesson is one sentence; the commit keeps their files.",
        lines,
    )


def every_run_section(runs: list, defaults) -> list[str]:
    lines = training_table(runs) + ["", "Each run, made with:", ""]
    lines += [f"- {name}: `{command(run, defaults, name)}`" for name, run in runs]
    reading = (
        "Every training run in `results/`, with the machine it ran on and the command that "
        "makes it. Wall times include the final figures and vary with the machine's load; they "
        "do not compare across days."
    )
    return section("Every run", "", reading, lines)


def render_results(root: Path) -> str:
    """The whole of RESULTS.md."""
    training, sampling = load_results(root / "results")
    stopped, _ = load_results(root / "results" / "stopped")
    tried, _ = load_results(root / "results" / "first_tried")
    defaults = mode_defaults(root / "train_model.ipynb")
    lines = [
        "# Results",
        "",
        GENERATED,
        "",
        "Every number the README and the guide quote, with the runs behind it, grouped by the "
        "question it answers. `python tools/make_results.py` writes this file from "
        "`results/*.json` and `bench/reports/*.json`; a test fails when the two disagree. The "
        "rule for calling a difference a difference is `compare` in `tools/make_results.py`: "
        "at least three seeds a side, and a 95% t-interval that excludes zero; with fewer "
        "seeds, ranges and no verdict.",
    ]
    if not training and not sampling:
        lines += ["", "No results are committed yet: `bash tools/real_runs.sh` makes them."]
    lines += first_section(training, tried, defaults)
    lines += quick_pair_section(training, defaults)
    lines += conditioning_section(training, defaults)
    lines += settings_section(training, stopped, defaults)
    lines += longer_section(training, defaults)
    lines += shakespeare_section(training, defaults)
    lines += sampling_section(sampling)
    lines += distributed_section(root / "bench" / "reports" / "distributed")
    lines += peers_section()
    lines += removed_section()
    if training:
        lines += every_run_section(training, defaults)
    return "\n".join(lines) + "\n"


# ---- the small blocks of README.md and learning_guide.md ----


def link(anchor: str) -> str:
    return f"[details](RESULTS.md#{anchor})"


def headline_block(training: list, sampling: list, defaults) -> list[str]:
    """The README's one table, at most 8 rows: the quick MDLM and its twins on the default corpus,
    the quick pair on Tiny Shakespeare (the twin on the MDLM's own gated blocks where it ran,
    else the plain one), the longer runs, the peers."""
    rows = []
    for data, corpus in [(DEFAULT_CORPUS, "23 novels"), (SHAKESPEARE, "Tiny Shakespeare")]:
        groups = quick_defaults(training, data, defaults)
        anchor = (
            "the-quick-pair-the-mdlm-against-its-twin"
            if data == DEFAULT_CORPUS
            else ("tiny-shakespeare")
        )
        twins = ("ar_const", "ar") if data == DEFAULT_CORPUS else ("ar_const",)
        twins = tuple(k for k in twins if k in groups) or ("ar",)  # like for like where it ran
        for kind_name in ("mdlm", *twins):
            if kind_name in groups:
                label = f"quick {KINDS[kind_name]}"
                summary = groups[kind_name].summary(compact=True)
                rows.append([label, corpus, summary, link(anchor)])
    quick_steps = ((defaults or {}).get("quick") or {}).get("max_steps")
    for (data, mode, steps, changes), groups in sorted(grouped(training, defaults).items()):
        if data == DEFAULT_CORPUS and mode == "quick" and not changes and steps > quick_steps:
            for kind_name in ("mdlm", "ar"):
                if kind_name in groups:
                    label = f"{KINDS[kind_name]}, {steps:,} steps"
                    rows.append(
                        [label, "23 novels", groups[kind_name].summary(), link("longer-runs")]
                    )
    rows.append(["nanoGPT, characters, 10.7M parameters (a peer)", "Tiny Shakespeare", "2.120",
                 link("the-peers")])  # fmt: skip
    header = ["model", "data", "held-out bits/byte (± s.e.)", ""]
    assert len(rows) <= 8, f"the README's headline table has {len(rows)} rows, at most 8"
    return table(header, rows, right=2)


def twin_block(training: list, sampling: list, defaults) -> list[str]:
    groups = quick_defaults(training, DEFAULT_CORPUS, defaults)
    return table(
        ["pairing", "MDLM", "twin", "MDLM over the twin; 95% interval"],
        pairing_rows(groups, compact=True),
    )


def conditioning_block(training: list, sampling: list, defaults) -> list[str]:
    groups = quick_defaults(training, DEFAULT_CORPUS, defaults)
    return conditioning_table(groups, plateau=False)


def small_data_block(training: list, sampling: list, defaults) -> list[str]:
    rows = []
    for (data, mode, steps, changes), groups in sorted(grouped(training, defaults).items()):
        if data != SHAKESPEARE or changes or mode != "quick":
            continue
        for kind_name in ("mdlm", "ar_const", "ar"):
            if kind_name in groups:
                run = next(iter(groups[kind_name].runs.values()))
                best = best_live(run)
                rows.append(
                    [
                        KINDS[kind_name],
                        f"{steps:,}",
                        f"{best[0]:.3f} ({best[1]:,})" if best else "",
                        groups[kind_name].summary(),
                    ]
                )
    return table(["model", "steps", "best live (step)", "at the end"], rows)


def samples_block(training: list, sampling: list, defaults) -> list[str]:
    if not sampling:
        return ["No sampling results are committed yet."]
    figures = sampling[-1][1]
    wanted = [row for row in figures["sweep"] if row["steps"] in (64,) and row["method"] != "lazy"]
    wanted += figures.get("autoregressive_reference", [])[:1] + figures.get("calibration", [])
    reference = figures.get("held_out_reference")
    rows = []
    for row in wanted + ([{**reference, "method": "held-out text"}] if reference else []):
        name = row["method"] + (f", {row['steps']} steps" if row.get("steps") else "")
        ppl, interval = row.get("generative_perplexity"), row.get("generative_perplexity_interval")
        ppl_text = "" if ppl is None else f"{ppl:.0f}"
        if interval:
            ppl_text += f" [{interval[0]:.0f}, {interval[1]:.0f}]"
        rows.append([name, ppl_text, f"{row['unigram_entropy']:.2f}"])
    return table(["text", "generative perplexity [95%]", "unigram entropy (bits)"], rows)


BLOCKS = {
    "headline": headline_block,
    "twin": twin_block,
    "conditioning": conditioning_block,
    "small_data": small_data_block,
    "samples": samples_block,
}


def markers(name: str) -> tuple[str, str]:
    return f"<!-- results:{name}:start -->", f"<!-- results:{name}:end -->"


def replace_blocks(text: str, rendered: dict[str, list[str]]) -> str:
    """text with the lines between each pair of markers replaced; unknown names are an error."""
    start = 0
    while (found := text.find("<!-- results:", start)) >= 0:
        name = text[found + len("<!-- results:") :].split(":", 1)[0]
        begin, end = markers(name)
        if name not in rendered or not text.startswith(begin, found):
            raise ValueError(f"unknown or broken results block {name!r}: names are {list(BLOCKS)}")
        stop = text.find(end, found)
        if stop < 0:
            raise ValueError(f"results block {name!r} has no {end}")
        block = "\n".join([GENERATED, *rendered[name]])
        text = text[: found + len(begin)] + "\n" + block + "\n" + text[stop:]
        start = text.find(end, found) + len(end)
    return text


def update(root: Path = ROOT, check: bool = False) -> list[str]:
    """Rewrite (or with check, only compare) RESULTS.md and every block. Returns what differed."""
    training, sampling = load_results(root / "results")
    defaults = mode_defaults(root / "train_model.ipynb")
    rendered = {name: block(training, sampling, defaults) for name, block in BLOCKS.items()}
    wanted = {root / RESULTS_MD: render_results(root)}
    for name in TARGETS:
        path = root / name
        if path.exists():
            wanted[path] = replace_blocks(path.read_text(encoding="utf-8"), rendered)
    problems = []
    for path, text in wanted.items():
        old = path.read_text(encoding="utf-8") if path.exists() else None
        if old != text:
            problems.append(f"{path.name}: not what results/ gives")
            if not check:
                path.write_text(text, encoding="utf-8")
    return problems


def main(argv=None) -> int:
    parser = cli.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 if stale")
    args = parser.parse_args(argv)
    with cli.refusing(ValueError):  # a file in results/ that is not a run's figures
        problems = update(ROOT, check=args.check)
    for problem in problems:
        print(problem + (" (run python tools/make_results.py)" if args.check else " (rewritten)"))
    if not problems:
        print("RESULTS.md and the results blocks agree with results/")
    return 1 if args.check and problems else 0


if __name__ == "__main__":
    sys.exit(main())
