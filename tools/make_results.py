"""Render the results tables of README.md and learning_guide.md from the committed run metrics.

    python tools/make_results.py          # rewrite the generated blocks and RESULTS.md
    python tools/make_results.py --check  # exit 1 if one differs from what results/ gives

The numbers come from files, never from a keyboard. A training run's metrics are the
metrics.json that train_model.ipynb writes into its OUT_DIR, copied to results/<run_name>.json;
sampling.ipynb's sampling_metrics.json can sit there too (results/<name>.json), and gets a
table of its own. Each file may carry two keys of its own, added by whoever copies it:
"machine" (what the run ran on, say "2-core Linux CPU"), and "command" (the exact command, when
the one rebuilt here from the metrics would be wrong).

The block sits between the markers START and END below, each on a line of its own. Only that
block is rewritten. learning_guide.md must have the markers; README.md may lack them (or be
missing), and is then left alone.

A second block, between PERF_START and PERF_END, holds the benchmark reports that
`python bench/run_all.py --json bench/reports/<name>.json` wrote, printed as run_all prints
them, with the command that made each; files without these markers are left alone there.

A run's figure is its final estimate (metrics.json's "final": mean +- standard error over
held-out windows) where it has one, and otherwise the live estimate of its last evaluation,
marked "live". Runs that differ only in their seed are averaged in the MDLM-against-twin
and time-conditioning tables, with their spread; runs whose training settings differ from
their mode's defaults (a learning rate, a batch size) are never averaged with others, and get a
table of their own beside the defaults' runs. A difference the error bars do not support is
called a tie.

Left out on purpose: plots (train_model.ipynb and sampling.ipynb draw them from the same
metrics).
"""

import ast
import json
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # so that `python tools/make_results.py` finds bench/
from tools import cli  # noqa: E402

START, END = "<!-- results:start -->", "<!-- results:end -->"
PERF_START, PERF_END = "<!-- performance:start -->", "<!-- performance:end -->"
TARGETS = {"learning_guide.md": True, "README.md": False}  # file -> must it have the markers?
GENERATED = "<!-- made by make_results.py from results/*.json: edit those, not this block -->"
HOW_TO = (
    "No results are committed yet. To add one, train (for example "
    "`python -m papermill train_model.ipynb out.ipynb -p RUN_MODE quick -p DATA shakespeare`), "
    "copy the run's `metrics.json` (in its `OUT_DIR`, by default `checkpoints/<run name>/`) to "
    "`results/<run name>.json`, and run `python tools/make_results.py`. `tools/real_runs.sh` does "
    "this for the project's own runs."
)
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


def command(run: dict, defaults: dict | None) -> str:
    """The papermill command that makes this run (its own "command" key wins)."""
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
    """'cpu, float32, 1 thread' from what metrics.json records (it does not name the CPU/GPU)."""
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
    """'ar'; or the MDLM's variant: 'mdlm' (adaLN fed t), 'mdlm_const' (the same blocks fed a
    constant) or 'mdlm_notc' (plain blocks)."""
    if run["objective"] != "mdlm":
        return "ar"
    if run.get("time_conditioning"):
        return "mdlm"
    return "mdlm_const" if run.get("constant_conditioning") else "mdlm_notc"


# the time conditioning column of the training table, and the rows of the conditioning table
CONDITIONING = {"mdlm": "on", "mdlm_const": "constant", "mdlm_notc": "off", "ar": "n/a"}
VARIANTS = {
    "mdlm": "t fed: adaLN-Zero blocks, modulated by t",
    "mdlm_const": "constant: the same blocks, modulated by the features of t = 0 always",
    "mdlm_notc": "plain: pre-norm blocks without modulation or gates",
}


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
    """A run's held-out bits per byte and its standard error: the final figure (the MDLM's
    NELBO, the twin's exact loss), or the live estimate of its last evaluation (error None)."""
    final = run.get("final")
    if final:
        value, error = final["nelbo" if run["objective"] == "mdlm" else "nll"]
        return value, error
    return run["val_bpb"], None


def left_to_right(run: dict) -> tuple[float, float] | None:
    """An MDLM's exact likelihood left to right, (bits per byte, standard error), if measured."""
    final = run.get("final") or {}
    return tuple(final["left-to-right"]) if "left-to-right" in final else None


def shown(value: float, error: float | None, bound: bool = False) -> str:
    """'≤ 2.231 ± 0.006'; a live estimate, without an error, as '≤ 2.210 (live)'."""
    text = f"{'≤ ' if bound else ''}{value:.3f}"
    return f"{text} ± {error:.3f}" if error is not None else f"{text} (live)"


def training_table(runs: list) -> list[str]:
    header = (
        "| run | data | objective | time conditioning | params | steps | tokens seen | device "
        "| wall time | held-out bits/byte | left to right | unigram bits/byte | ratio |"
    )
    lines = [header, "|" + "---|" * 3 + ":---:|" + "---:|" * 3 + "---|" + "---:|" * 5]
    for name, run in runs:
        is_mdlm = run["objective"] == "mdlm"
        conditioning = CONDITIONING[kind(run)]
        device = run.get("machine") or machine(run)
        value, error = held_out(run)
        exact = left_to_right(run)
        lines.append(
            f"| {name} | {data_label(run)} | {'MDLM' if is_mdlm else 'AR twin'} "
            f"| {conditioning} | {millions(run['params'])} | {run['steps']:,} "
            f"| {millions(run['tokens_seen'])} | {device} | {duration(run['wall_s'])} "
            f"| {shown(value, error, bound=is_mdlm)} | {shown(*exact) if exact else ''} "
            f"| {run['unigram_bpb']:.3f} | {value / run['unigram_bpb']:.3f} |"
        )
    defaults = mode_defaults()
    lines += ["", "Each run, made with:", ""]
    lines += [f"- {name}: `{command(run, defaults)}`" for name, run in runs]
    lines += [
        "",
        "Held-out bits per byte: the NELBO (an upper bound) for MDLM, the exact next-token loss "
        "for the AR twin, each as mean ± standard error over the held-out windows of the run's "
        "final estimate. Left to right: the MDLM's exact likelihood when it reveals one token "
        "at a time from the left, on a subset of those windows (the guide's §8 says why it is "
        "lower than the bound). Ratio: held-out bits per byte over the unigram baseline of "
        "the same run's tokenizer (lower is better; 1 means no better than token frequencies). "
        "Old split: a run made before the held-out text became the last tenth of every file, "
        "scored on ten pieces interleaved with the training text, which are easier (the guide's "
        "§6); compare it only with runs on the same split.",
    ]
    return lines


def average(runs: list[dict], figure=held_out) -> tuple[float, float | None, str]:
    """(mean, its error, a note on the seeds) of one figure over runs that differ in seed only.

    The error of the mean combines the runs' own standard errors, sqrt(sum e^2) / n, and, with
    two seeds or more, the spread between them, std / sqrt(n): the larger of the two counts.
    """
    pairs = [figure(run) for run in runs]
    values = [value for value, _ in pairs]
    errors = [error for _, error in pairs if error is not None]
    mean = statistics.fmean(values)
    error = math.sqrt(sum(e * e for e in errors)) / len(errors) if errors else None
    note = ""
    if len(values) > 1:
        between = statistics.stdev(values) / math.sqrt(len(values))
        error = max(error or 0.0, between)
        note = f" ({len(values)} seeds: {', '.join(f'{v:.3f}' for v in values)})"
    return mean, error, note


def gap(mdlm: tuple, reference: tuple) -> str:
    """'+35.1%', or '+0.8%, a tie' when the difference is within two combined errors."""
    (value, error, _), (base, base_error, _) = mdlm, reference
    text = f"{value / base - 1:+.1%}"
    if error is None or base_error is None:
        return text
    return text + (", a tie" if abs(value - base) < 2 * math.hypot(error, base_error) else "")


# the settings that change what a run trains; max_steps is shown as the steps, and the rest of
# settings (how often and how carefully it is evaluated, the average of the weights) do not
RECIPE = tuple(key for key in SIZE_PARAMETERS if key not in ("max_steps", "eval_every"))


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


def setting(mode: str, steps: int, changes: str) -> str:
    """'quick, 1,600' or, with changes from the mode's defaults, 'quick, 3,200; batch_size 16'."""
    return f"{mode}, {steps:,}" + (f"; {changes}" if changes else "")


def grouped(runs: list) -> dict:
    """(data, mode, max_steps, recipe) -> {kind: [runs]}: the runs that compare like with like,
    the same data, mode, steps and training settings, whatever their seed."""
    groups, defaults = {}, mode_defaults()
    for _, run in runs:
        steps = run.get("settings", {}).get("max_steps", run["steps"])
        key = (data_label(run), run["mode"], steps, recipe(run, defaults))
        groups.setdefault(key, {}).setdefault(kind(run), []).append(run)
    return groups


def twin_table(runs: list) -> list[str]:
    """MDLM against its AR twin, per corpus and run mode: the gap in held-out bits per byte."""
    groups = grouped(runs)
    pairs = [
        (key, group)
        for key, group in sorted(groups.items())
        if "ar" in group and ("mdlm" in group or "mdlm_notc" in group)
    ]
    if not pairs:
        return []
    lines = [
        "",
        "MDLM against its AR twin (same data, tokenizer, split, backbone, optimizer and steps): "
        "held-out bits per byte, mean ± its error over seeds and windows; gap = MDLM over the "
        "twin, minus 1, called a tie when the difference is within two combined errors. The "
        "twin's best is the lowest of its live evaluations (64 windows) and its step, where it "
        "began to overfit; the last column compares the MDLM without time conditioning with "
        "the one with it:",
        "",
        "| data | mode, steps | AR twin | AR twin, best (step) | MDLM | gap | gap to the best "
        "| MDLM, left to right | gap | MDLM, no time conditioning | gap | against MDLM |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (data, mode, steps, changes), group in pairs:
        ar = average(group["ar"])
        history = group["ar"][0].get("history", {})
        best = min(zip(history["val_bpb"], history["val_step"])) if history.get("val_bpb") else None
        cells = [shown(ar[0], ar[1]) + ar[2], f"{best[0]:.3f} ({best[1]:,})" if best else ""]
        mdlm = average(group["mdlm"]) if "mdlm" in group else None
        if mdlm:
            to_best = f"{mdlm[0] / best[0] - 1:+.1%}" if best else ""
            cells += [shown(mdlm[0], mdlm[1], bound=True) + mdlm[2], gap(mdlm, ar), to_best]
            exact = [run for run in group["mdlm"] if left_to_right(run)]
            lr = average(exact, left_to_right) if exact else None
            cells += [shown(*lr[:2]) + lr[2], gap(lr, ar)] if lr else ["", ""]
        else:
            cells += [""] * 5
        notc = average(group["mdlm_notc"]) if "mdlm_notc" in group else None
        if notc:
            cells += [shown(notc[0], notc[1], bound=True) + notc[2], gap(notc, ar)]
            cells.append(gap(notc, mdlm) if mdlm else "")
        else:
            cells += [""] * 3
        lines.append(f"| {data} | {setting(mode, steps, changes)} | " + " | ".join(cells) + " |")
    return lines


def conditioning_table(runs: list) -> list[str]:
    """The MDLM's three variants side by side where at least two of them ran: what t adds, and
    what the gated adaLN blocks add without t."""
    groups = sorted(grouped(runs).items())
    groups = [(key, g) for key, g in groups if sum(k in g for k in VARIANTS) >= 2 and "mdlm" in g]
    if not groups:
        return []
    lines = [
        "",
        "Time conditioning, controlled (same data, tokenizer, steps and seeds; t fed and "
        "constant have the same parameters and initialisation): held-out bits per byte, mean "
        "± its error over seeds and windows; the gap to t fed is called a tie when the "
        "difference is within two combined errors. The plateau: the first step at which the "
        "training loss, averaged over 50 steps, is 5% below the unigram entropy, per seed:",
        "",
        "| data | mode, steps | variant | held-out bits/byte | against t fed | leaves the plateau "
        "at step |",
        "|---|---|---|---:|---:|---|",
    ]
    for (data, mode, steps, changes), group in groups:
        fed = average(group["mdlm"])
        for variant, description in VARIANTS.items():
            if variant not in group:
                continue
            mean = average(group[variant])
            exits = [plateau_exit(run) for run in group[variant]]
            lines.append(
                f"| {data} | {setting(mode, steps, changes)} | {description} "
                f"| {shown(mean[0], mean[1], bound=True) + mean[2]} "
                f"| {gap(mean, fed) if variant != 'mdlm' else ''} "
                f"| {', '.join(f'{e:,}' if e else 'never' for e in exits)} |"
            )
    return lines


def settings_table(runs: list) -> list[str]:
    """Each model's runs with training settings other than its mode's defaults, beside the runs
    with the defaults (the same data, mode and kind of model): the settings tried for a mode.
    Runs that differ from the defaults only in their steps (longer runs) are left out, and so
    are models with no run of the defaults on that data (runs of earlier defaults, say)."""
    defaults = mode_defaults()
    default_steps = {name: mode.get("max_steps") for name, mode in (defaults or {}).items()}
    families = {}  # (data, mode, kind) -> {(steps, changes): [runs]}
    for (data, mode, steps, changes), group in grouped(runs).items():
        for variant, members in group.items():
            if changes or steps == default_steps.get(mode):
                families.setdefault((data, mode, variant), {})[steps, changes] = members
    families = {  # a model with the defaults and with something else on the same data
        (data, mode, variant): tried
        for (data, mode, variant), tried in families.items()
        if any(changes for _, changes in tried) and (default_steps.get(mode), "") in tried
    }
    if not families:
        return []
    lines = [
        "",
        "Settings tried: runs whose training settings differ from their mode's defaults (named "
        "in the settings column), beside the runs with the defaults, on the same data; held-out "
        "bits per byte, mean ± its error over seeds and windows, against the defaults' (a tie "
        "when within two combined errors), and over the unigram baseline of the run's own "
        "tokenizer (lower is better). Wall time per seed, on the machine of the training table:",
        "",
        "| data | mode | model | settings | steps | held-out bits/byte | against the defaults "
        "| ratio | wall time |",
        "|---|---|---|---|---:|---:|---:|---:|---|",
    ]
    for (data, mode, variant), tried in sorted(families.items()):
        base = tried.get((default_steps.get(mode), ""))
        reference = average(base) if base else None
        for (steps, changes), members in sorted(tried.items(), key=lambda item: bool(item[0][1])):
            mean = average(members)
            ratio = statistics.fmean(held_out(run)[0] / run["unigram_bpb"] for run in members)
            against = gap(mean, reference) if reference and changes else ""
            times = ", ".join(duration(run["wall_s"]) for run in members)
            model = {"mdlm": "MDLM", "ar": "AR twin"}.get(variant, f"MDLM, {CONDITIONING[variant]}")
            seeds = sorted({run.get("seed", 1337) for run in members})
            named = (changes or "the defaults") + (
                f"; seed {seeds[0]}" if seeds != [1337] and len(seeds) == 1 else ""
            )  # one run of another seed: say which
            lines.append(
                f"| {data} | {mode} | {model} | {named} | {steps:,} "
                f"| {shown(mean[0], mean[1], bound=variant != 'ar') + mean[2]} | {against} "
                f"| {ratio:.3f} | {times} |"
            )
    return lines


def average_table(runs: list) -> list[str]:
    """Every run that scored the average of its weights (EMA) beside its trained weights."""
    rows = [(name, run) for name, run in runs if (run.get("final") or {}).get("ema")]
    if not rows:
        return []
    lines = [
        "",
        "The average of the weights (EMA) against the trained weights, each run on the same "
        "held-out windows, times and masks: held-out bits per byte ± standard error, and the "
        "paired difference, called a tie when it is within two of its standard errors:",
        "",
        "| run | decay | trained weights | their average | average minus trained |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, run in rows:
        ema, is_mdlm = run["final"]["ema"], run["objective"] == "mdlm"
        key = "nelbo" if is_mdlm else "nll"
        difference, error = ema["ema - trained"]
        tie = ", a tie" if abs(difference) < 2 * error else ""
        lines.append(
            f"| {name} | {ema['decay']} | {shown(*run['final'][key], bound=is_mdlm)} "
            f"| {shown(*ema[key], bound=is_mdlm)} | {difference:+.4f} ± {error:.4f}{tie} |"
        )
    return lines


def sampling_table(name: str, figures: dict) -> list[str]:
    where = figures.get("machine") or figures.get("device", "?")
    judge = figures.get("judge")
    lines = [
        f"Samplers of `{figures.get('checkpoint', '?')}` ({name}, on {where}; temperature 1, "
        "no top-k or top-p except where the row says so, one sequence per network call; "
        f"generative perplexity under {f'`{judge}`' if judge else 'no judge'}):",
        "",
        "| sampler | steps | network calls per sequence | tokens/s | unigram entropy (bits) "
        "| distinct-2 | generative perplexity |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]

    def perplexity(row: dict) -> str:
        value = row.get("generative_perplexity")
        return "" if value is None else f"{value:.1f}"

    def number(value: float, form: str) -> str:
        return "" if value is None or math.isnan(value) else format(value, form)

    twin = [
        {**row, "method": f"{row['method']} (the judge's own samples, judged by itself)"}
        for row in figures.get("autoregressive_reference", [])
    ]
    calibration = [
        {**row, "method": f"{row['method']} of the training split (calibration)"}
        for row in figures.get("calibration", [])
    ]
    for row in figures["sweep"] + twin + calibration:
        lines.append(
            f"| {row['method']} | {row['steps']} | {number(row['nfe_per_sequence'], '.1f')} "
            f"| {number(row['tokens_per_second'], '.0f')} | {row['unigram_entropy']:.3f} "
            f"| {row['distinct_2']:.3f} | {perplexity(row)} |"
        )
    reference = figures.get("held_out_reference")
    if reference:
        lines.append(
            f"| held-out text | | | | {reference['unigram_entropy']:.3f} "
            f"| {reference['distinct_2']:.3f} | {perplexity(reference)} |"
        )
    cache = figures.get("cache")
    if cache:
        on = f" (on `{cache['checkpoint']}`)" if cache.get("checkpoint") else ""
        lines += [
            "",
            f"The cache at {cache['steps']} steps{on}: {cache['nfe_cached']} network calls "
            f"instead of {cache['nfe_plain']}, {cache['speedup']:.1f}x faster, the same samples: "
            f"{cache['same_samples']}.",
        ]
    infill = figures.get("infill_recovery")
    if infill:
        lines += [
            "",
            f"Filling a gap in the middle of {infill['passages']} held-out passages of "
            f"{infill['passage_length']} tokens, spread over the held-out text (greedy; the "
            "twin sees only the beginning; t = gap / L starts a time-conditioned MDLM at the "
            "t that matches the gap):",
            "",
            "| gap (tokens) | who | exact match | token accuracy |",
            "|---:|---|---:|---:|",
        ]
        for span, by_whom in infill["spans"].items():
            for who, row in by_whom.items():
                lines.append(
                    f"| {span} | {who} | {row['exact_match']:.3f} | {row['token_accuracy']:.3f} |"
                )
    return lines


def render(results_dir: Path) -> str:
    """The text between the markers (without them), from the files in results_dir."""
    training, sampling = load_results(results_dir)
    lines = [GENERATED]
    if not training and not sampling:
        lines.append(HOW_TO)
    if training:
        lines += training_table(training)
        lines += twin_table(training)
        lines += conditioning_table(training)
        lines += settings_table(training)
        lines += average_table(training)
    for name, figures in sampling:
        lines += [""] + sampling_table(name, figures)
    return "\n".join(lines)


def render_performance(reports_dir: Path) -> str:
    """The performance block: every bench/reports/*.json of bench/run_all.py, as it printed it."""
    import io

    from bench.run_all import print_report  # imports torch: only when there is a report

    lines = [GENERATED.replace("results/*.json", "bench/reports/*.json")]
    paths = sorted(Path(reports_dir).glob("*.json"))
    if not paths:
        lines.append(
            "No benchmark report is committed yet: run `python bench/run_all.py --json "
            "bench/reports/<machine>.json` and then `python tools/make_results.py`."
        )
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
    return "\n".join(lines)


def replace_block(text: str, block: str, start_marker=START, end_marker=END) -> str | None:
    """text with the lines between the markers replaced by block; None if no markers."""
    start, end = text.find(start_marker), text.find(end_marker)
    if start < 0 or end < start:
        return None
    return text[: start + len(start_marker)] + "\n" + block + "\n" + text[end:]


def update(root: Path = ROOT, check: bool = False) -> list[str]:
    """Rewrite (or with check, only compare) every target's block. Returns what was wrong."""
    block = render(root / "results")
    problems = []
    for name, required in TARGETS.items():
        path = root / name
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        new = replace_block(text, block)
        if new is None:
            if required:
                problems.append(f"{name}: no {START} ... {END} block")
            continue
        if PERF_START in new:  # the benchmark block, where a file has its markers
            new = replace_block(
                new, render_performance(root / "bench" / "reports"), PERF_START, PERF_END
            )
        if new != text:
            problems.append(f"{name}: the results block is not what results/ gives")
            if not check:
                path.write_text(new, encoding="utf-8")
    return problems


def main(argv=None) -> int:
    parser = cli.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 if stale")
    args = parser.parse_args(argv)
    with cli.refusing(ValueError):  # a file in results/ that is not a run's figures
        problems = update(ROOT, check=args.check)
    missing = [problem for problem in problems if f"no {START}" in problem]
    for problem in problems:
        stale = " (run python tools/make_results.py)" if args.check else " (rewritten)"
        print(problem + ("" if problem in missing else stale))
    if not problems:
        print("results blocks agree with results/")
    return 1 if missing or (args.check and problems) else 0


if __name__ == "__main__":
    sys.exit(main())
