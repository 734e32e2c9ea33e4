"""The project's one benchmark: tokenizer, training, sampling speed, and quality at matched cost.

    python bench/run_all.py                                  # small size, newest checkpoint
    python bench/run_all.py --checkpoint checkpoints/mdlm_quick_gutenberg/ckpt.pt \\
        --judge checkpoints/ar_quick_gutenberg/ckpt.pt --size full --only train,sampling

Prints one table, a block per section, every cell a value with its unit, and writes the same
figures to JSON (default bench/results.json) with the machine and the command line. Progress
goes to stderr. Sections:

1. tokenizer: bench_tokenizer.py's figures for bpe_tokenizer, beside `tokenizers` if installed.
2. train: bench_train.py's tokens/s for MDLM and its AR twin at the same size, and the ratio.
3. sampling: bench_sampling.py's NFE and tokens/s for every diffusion sampler and step count,
   on the --checkpoint MDLM (default: the newest under checkpoints/); then the --judge AR twin
   (default: the newest with the same tokenizer), with and without its KV cache.
4. quality: the same samples judged: generative perplexity under the --judge AR model and
   unigram entropy, for every sampler and step count and for the AR model's own samples; then,
   per sampler, the fewest steps within 10% of AR (gen. perplexity at most 10% above AR's,
   entropy at least 90% of AR's: better than AR counts too) and the speed there.

Every sampler draws at temperature 1 with top-p 0.9, the AR model's setting, so that the
quality figures compare like with like. The quality figures use the very samples that were
timed, so a diffusion row's speed is exactly the cost of its quality.

Left out: training quality (train_model.ipynb's metrics.json has it), and any pass/fail
threshold: timings on a shared machine are noise, so this only reports.
"""

import datetime
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # so that `python bench/run_all.py` runs from any folder

import mdlm_sampling  # noqa: E402
from bench import bench_sampling, bench_tokenizer, bench_train  # noqa: E402
from mdlm_model import RUN_MODES, CheckpointError, load_model, pick_device  # noqa: E402
from tools import cli  # noqa: E402

SECTIONS = ("tokenizer", "train", "sampling", "quality")
DATA = ROOT.parent / "shared" / "data"
KNOBS = {"temperature": 1.0, "top_p": 0.9}  # every sampler, diffusion and AR
WITHIN = 0.10  # "comes within 10% of AR"
REFERENCE_NOTE = (  # the figure issue 3 asks to match, measured by others on a 2-core CPU
    "a reference MDLM implementation of this size trains at about 1,800 tokens/s on 2 CPU cores"
)


def mode_shape(mode: str) -> dict:
    """The model's shape and batch of one of train_model.ipynb's RUN_MODES (mdlm_model's)."""
    settings = RUN_MODES.get(mode)
    if settings is None:
        cli.refuse(f"train_model.ipynb defines no RUN_MODES[{mode!r}]: restore the notebook")
    shape = ("vocab_size", "seq_len", "n_layer", "n_head", "d_model")
    return {key: settings[key] for key in shape} | {"batch": settings["batch_size"]}


# fmt: off
SIZES = {  # small: train_model.ipynb's quick mode, a few minutes on a CPU; full: its full mode
    "small": {
        "tokenizer": dict(corpus=str(DATA / "tinyshakespeare.txt"), vocab_sizes=[1024, 2048],
                          repeats=3),
        "train": dict(**mode_shape("quick"), steps=5, warmup=2, compile_model=False),
        # nanoGPT's Tiny Shakespeare size (65 characters + the mask), the size of the reference
        # figure below; on a CPU a step takes seconds, so few are timed
        "train_reference": dict(vocab_size=66, seq_len=256, n_layer=6, n_head=6, d_model=384,
                                batch=64, steps=3, warmup=1, compile_model=False),
        "sampling": dict(steps=[16, 64, 256, 1000], num_samples=16, repeats=1),
    },
    "full": {
        "tokenizer": dict(corpus=str(DATA / "gutenberg_prose.txt"), vocab_sizes=[4096, 8192],
                          repeats=3),
        # compile only on CUDA, below
        "train": dict(**mode_shape("full"), steps=10, warmup=3, compile_model=True),
        "sampling": dict(steps=[16, 64, 256, 1000], num_samples=32, repeats=3),
    },
}
# fmt: on
STARTED = time.perf_counter()


def progress(message):
    """A line on stderr, so that stdout holds the table alone."""
    print(f"[run_all {time.perf_counter() - STARTED:5.0f} s] {message}", file=sys.stderr)


def row(label, figures=None, note=""):
    """A table row: figures {column: (value, unit)}, or a note in their place (or beside)."""
    figures = {
        name: {"value": value, "unit": unit} for name, (value, unit) in (figures or {}).items()
    }
    return {"label": label, "figures": figures, "note": note}


def describe_machine(device):
    """What the figures were measured on: CPU model, GPU, threads, versions."""
    cpu = platform.processor() or platform.machine()
    try:
        names = [
            line for line in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in line
        ]
        cpu = names[0].split(":", 1)[1].strip() if names else cpu
    except OSError:  # not Linux
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average": os.getloadavg()[0],  # > cores: others compete for the CPU
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


# ---------------------------------------------------------------------------------------------
# 1. tokenizer


def tokenizer_section(corpus, vocab_sizes, repeats):
    """Rows are bench_tokenizer's figures, columns the tokenizers."""
    results = bench_tokenizer.measure(corpus, vocab_sizes, repeats)
    columns = {k: v for k, v in results.items() if k != bench_tokenizer.SAME_MERGES}
    rows = []
    for name in next(iter(columns.values())):  # "encode, cold (MB/s)" -> "encode, cold", "MB/s"
        label, _, unit = name.removesuffix(")").partition(" (")
        unit = unit or ("bytes/token" if label == "bytes per token" else "")
        rows.append(
            row(label, {column: (figures[name], unit) for column, figures in columns.items()})
        )
    if len(columns) == 1:
        rows.append(row("tokenizers (Rust)", note="not installed (pip install tokenizers)"))
    if bench_tokenizer.SAME_MERGES in results:
        same = results[bench_tokenizer.SAME_MERGES]
        rows.append(
            row("same merges as tokenizers", note=f"set {same['set']}, rank {same['rank']}")
        )
    size = Path(corpus).stat().st_size / 1e6
    title = f"tokenizer: {Path(corpus).name} ({size:.2f} MB), median of {repeats}"
    return {"title": title, "rows": rows}


# ---------------------------------------------------------------------------------------------
# 2. train


def train_section(device, *, vocab_size, batch, steps, warmup, compile_model, **shape):
    """Training speed of MDLM and of its AR twin at the same size, side by side."""
    compile_model = compile_model and device.type == "cuda"  # on a CPU it only costs time
    figures = {}
    for objective in ("mdlm", "ar"):
        progress(f"train: {objective}, {steps} timed steps after {warmup}")
        config = bench_train.model_config(objective, vocab_size=vocab_size, **shape)
        figures[objective] = bench_train.measure(
            config,
            batch=batch,
            device=device,
            compile_model=compile_model,
            steps=steps,
            warmup=warmup,
        )
    mdlm, ar = figures["mdlm"], figures["ar"]
    lines = [  # label, unit, how to get the figure from bench_train.measure's dict
        ("training speed", "tokens/s", lambda f: f["tokens_per_second"]),
        ("step time", "ms", lambda f: f["median_step_seconds"] * 1000),
        ("parameters", "M", lambda f: f["params"] / 1e6),
        ("model FLOPs", "MFLOP/token", lambda f: f["flops_per_token"] / 1e6),
        ("achieved", "GFLOP/s", lambda f: f["achieved_flops"] / 1e9),
    ]
    if mdlm["mfu"] is not None:
        lines.append(("MFU, bf16 peak", "%", lambda f: f["mfu"] * 100))
    rows = [
        row(
            label,
            {
                "mdlm": (get(mdlm), unit),
                "ar": (get(ar), unit),
                "mdlm / ar": (get(mdlm) / get(ar), "x"),
            },
        )
        for label, unit, get in lines
    ]
    title = (
        f"train: vocab {vocab_size}, seq {shape['seq_len']}, {shape['n_layer']} layers, "
        f"{shape['n_head']} heads, d {shape['d_model']}, batch {batch}; {mdlm['dtype']}, "
        f"compile {compile_model}, median of {steps} steps"
    )
    return {"title": title, "rows": rows}


# ---------------------------------------------------------------------------------------------
# 3. sampling and 4. quality share the samples


def measure_ar(judge, *, length, num_samples, repeats, start_id, use_cache):
    """bench_sampling.measure for the AR model: medians over `repeats` seeds of ar_sample()."""
    runs = [
        mdlm_sampling.ar_sample(
            judge,
            num_samples=num_samples,
            length=length,
            start_id=start_id,
            seed=seed,
            use_cache=use_cache,
            **KNOBS,
        )
        for seed in range(repeats)
    ]
    seconds = statistics.median(run.seconds for run in runs)
    generated = length - 1  # the first token is start_id, given
    return {
        "method": "ar, kv cache" if use_cache else "ar, no cache",
        "steps": generated,  # one token per step
        "nfe": statistics.median(run.nfe for run in runs),
        "seconds": seconds,
        "tokens_per_second": num_samples * generated / seconds,
        "tokens": torch.cat([run.tokens for run in runs]),
    }


def draw_samples(model, judge, start_id, *, steps, num_samples, repeats):
    """Every sampler at every step count (and the AR model, if any): figures and tokens."""
    methods = mdlm_sampling.METHODS
    bench_sampling.warm_up(model, methods, num_samples)
    runs = []
    for method in methods:
        for num_steps in steps:
            progress(f"sampling: {method}, {num_steps} steps")
            runs.append(
                bench_sampling.measure(model, method, num_steps, num_samples, repeats, **KNOBS)
            )
    if judge is not None:
        for use_cache in (True, False):
            progress(f"sampling: ar, use_cache={use_cache}")
            mdlm_sampling.ar_sample(  # warm-up, as for the samplers above
                judge, num_samples=num_samples, length=8, start_id=start_id, use_cache=use_cache
            )
            runs.append(
                measure_ar(
                    judge,
                    length=model.config.seq_len,
                    num_samples=num_samples,
                    repeats=repeats,
                    start_id=start_id,
                    use_cache=use_cache,
                )
            )
    return runs


def sampling_section(model, path, runs, judge_note, num_samples, repeats):
    rows = [
        row(
            run["method"],
            {
                "steps": (run["steps"], "steps"),
                "NFE": (run["nfe"], "calls"),
                "time": (run["seconds"], "s"),
                "speed": (run["tokens_per_second"], "tokens/s"),
            },
        )
        for run in runs
    ]
    if judge_note:
        rows.append(row("ar", note=judge_note))
    ar = {run["method"]: run for run in runs if run["method"].startswith("ar")}
    if len(ar) == 2:
        speedup = ar["ar, no cache"]["seconds"] / ar["ar, kv cache"]["seconds"]
        rows.append(row("kv cache speed-up", {"speed": (speedup, "x")}))
    title = (
        f"sampling: {path}, L = {model.config.seq_len}, {num_samples} sequences per call, "
        f"median of {repeats}; temperature {KNOBS['temperature']}, top-p {KNOBS['top_p']}"
    )
    return {"title": title, "rows": rows}


def as_good_as_ar(runs, ar):
    """Per diffusion sampler, a row for its fewest steps whose gen. perplexity and entropy come
    within WITHIN of the AR model's (better counts too), with the speed there."""
    rows = []
    for method in dict.fromkeys(
        run["method"] for run in runs if not run["method"].startswith("ar")
    ):
        ladder = [run for run in runs if run["method"] == method]
        close = [
            run
            for run in ladder
            if run["generative_perplexity"] <= (1 + WITHIN) * ar["generative_perplexity"]
            and run["unigram_entropy"] >= (1 - WITHIN) * ar["unigram_entropy"]
        ]
        label = f"{method}, as good as ar"
        if not close:
            most = max(ladder, key=lambda run: run["steps"])
            ppl = most["generative_perplexity"] / ar["generative_perplexity"]
            entropy = most["unigram_entropy"] / ar["unigram_entropy"]
            note = (
                f"none at this size (at {most['steps']} steps: gen. perplexity {ppl:.2f} x ar's, "
                f"entropy {entropy:.2f} x ar's)"
            )
            rows.append(row(label, note=note))
            continue
        best = min(close, key=lambda run: run["steps"])
        figures = {
            "steps": (best["steps"], "steps"),
            "speed": (best["tokens_per_second"], "tokens/s"),
            "vs ar": (best["tokens_per_second"] / ar["tokens_per_second"], "x"),
        }
        rows.append(row(label, figures))
    return rows


def quality_section(runs, judge, judge_path):
    """Judge every run's samples (adds its figures to the run) and compare with AR's."""
    progress("quality: judging the samples")
    for run in runs:
        run["generative_perplexity"] = mdlm_sampling.generative_perplexity(judge, run["tokens"])
        # over the tokens the judge scores: an AR sample's first token is always start_id
        run["unigram_entropy"] = mdlm_sampling.ngram_entropy(run["tokens"][:, 1:], 1)
    ar = next(run for run in runs if run["method"] == "ar, kv cache")
    rows = []
    for run in runs:
        note = ""
        if run["method"] == "ar, no cache":  # the cache must change the speed, not the text
            note = f"same samples as with the cache: {torch.equal(run['tokens'], ar['tokens'])}"
        figures = {
            "steps": (run["steps"], "steps"),
            "gen. perplexity": (run["generative_perplexity"], "ppl"),
            "unigram entropy": (run["unigram_entropy"], "bits"),
            "speed": (run["tokens_per_second"], "tokens/s"),
        }
        rows.append(row(run["method"], figures, note))
    rows += as_good_as_ar(runs, ar)
    title = (
        f"quality: judge {judge_path}, {len(runs[0]['tokens'])} samples per row (those timed "
        f"above); 'as good as ar': the fewest steps with gen. perplexity <= {1 + WITHIN:g} x "
        f"ar's and entropy >= {1 - WITHIN:g} x ar's, the speed there and its ratio to ar's"
    )
    return {"title": title, "rows": rows}


def load_mdlm(checkpoint, device):
    """(model, path, tokenizer) of --checkpoint, by default the newest MDLM under checkpoints/."""
    path = (
        Path(checkpoint)
        if checkpoint
        else mdlm_sampling.newest_checkpoint(ROOT / "checkpoints", knob="--checkpoint")
    )
    model, tokenizer, _ = load_model(path, device)
    if model.config.causal:
        raise CheckpointError(f"{path} is an AR twin (OBJECTIVE='ar'): pass it as --judge")
    return model, path, tokenizer


def load_judge(judge_path, tokenizer, device):
    """(judge or None, its path, why there is none): --judge, or else the newest AR twin that
    shares the MDLM's tokenizer. A judge that does not fit drops the AR rows, not the section."""
    if not judge_path:
        root = ROOT / "checkpoints"
        found = mdlm_sampling.checkpoints_newest_first(root, causal=True, tokenizer=tokenizer)
        if not found:
            why = (
                "no AR twin with this tokenizer under checkpoints/: train one with "
                "train_model.ipynb (OBJECTIVE='ar', same DATA and VOCAB_SIZE) or pass --judge"
            )
            return None, None, why
        judge_path = found[0]
    try:
        return mdlm_sampling.load_judge(judge_path, tokenizer, device), judge_path, ""
    except CheckpointError as error:
        return None, judge_path, f"skipped: {error}"


def note_section(title, label, note):
    """A section that could not run: one row that says why."""
    return {"title": title, "rows": [row(label, note=note)]}


def sample_sections(wanted, sampling, checkpoint, judge, device):
    """The sampling and quality sections (those in `wanted`): they share one set of samples."""
    try:
        model, path, tokenizer = load_mdlm(checkpoint, device)
    except CheckpointError as error:
        message = f"skipped: {error}" + ("" if checkpoint else " (here: --checkpoint MDLM_CKPT)")
        progress(message)
        return {name: note_section(name, "no checkpoint", message) for name in wanted}
    judge_model, judge, judge_note = load_judge(judge, tokenizer, device)
    sections = {}
    if judge_model is None and "quality" in wanted:
        sections["quality"] = note_section("quality", "judge", judge_note)
        if "sampling" not in wanted:  # nothing to judge with, and no timing asked for
            return sections
    runs = draw_samples(model, judge_model, tokenizer.eot_id, **sampling)
    if "sampling" in wanted:
        sections["sampling"] = sampling_section(
            model, path, runs, judge_note, sampling["num_samples"], sampling["repeats"]
        )
    if "quality" in wanted and judge_model is not None:
        sections["quality"] = quality_section(runs, judge_model, judge)
    return {name: sections[name] for name in wanted}  # in the order of SECTIONS


# ---------------------------------------------------------------------------------------------


def run(settings, *, only=SECTIONS, checkpoint="", judge="", device="auto"):
    """Run the sections in `only` with `settings` (one of SIZES); return the report as a dict."""
    started = time.perf_counter()
    device = pick_device(device)
    report = {"machine": describe_machine(device), "settings": settings, "sections": {}}
    sections = report["sections"]
    if "tokenizer" in only:
        progress("tokenizer")
        sections["tokenizer"] = tokenizer_section(**settings["tokenizer"])
    if "train" in only:
        sections["train"] = train_section(device, **settings["train"])
        if "train_reference" in settings:
            section = train_section(device, **settings["train_reference"])
            section["title"] = f"{section['title']} (nanoGPT's Tiny Shakespeare size)"
            section["rows"].append(row("reference", note=REFERENCE_NOTE))
            sections["train_reference"] = section
    wanted = [name for name in ("sampling", "quality") if name in only]
    if wanted:
        sections |= sample_sections(wanted, settings["sampling"], checkpoint, judge, device)
    report["seconds"] = time.perf_counter() - started
    return report


def show(value):
    """A figure as printed: 12,345 / 123 / 12.3 / 0.0123; booleans and text as they are."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def print_report(report, file=None):
    """One table: per section a title, a header of column names, then rows of `value unit`."""
    file = file or sys.stdout  # looked up now, so that a redirected stdout gets it
    for section in report["sections"].values():
        rows = section["rows"]
        columns = list(dict.fromkeys(column for r in rows for column in r["figures"]))

        def cell(r, column):
            if column not in r["figures"]:
                return ""
            return f"{show(r['figures'][column]['value'])} {r['figures'][column]['unit']}".strip()

        label_width = max(len(r["label"]) for r in rows)
        widths = [max(len(c), *(len(cell(r, c)) for r in rows)) for c in columns]
        print(f"\n== {section['title']}", file=file)
        if columns:
            header = "".join(f"  {c:>{w}}" for c, w in zip(columns, widths))
            print(f"{'':{label_width}}{header}", file=file)
        for r in rows:
            cells = "".join(f"  {cell(r, c):>{w}}" for c, w in zip(columns, widths))
            cells = cells.rstrip() if r["figures"] else ""
            print(f"{r['label']:{label_width}}{cells}  {r['note']}".rstrip(), file=file)
    machine = report["machine"]
    print(
        f"\n{machine['cpu']}, {machine['cores']} cores (load {machine['load_average']:.1f}), "
        f"device {machine['device']}, threads {machine['threads']}, torch {machine['torch']}; "
        f"{report['seconds']:.0f} s in all",
        file=file,
    )


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default="", help="MDLM ckpt.pt; default: the newest")
    parser.add_argument("--judge", default="", help="AR ckpt.pt; default: the newest that fits")
    parser.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), or a device")
    parser.add_argument("--size", choices=list(SIZES), default="small")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results.json"), help="'' for none")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    args = parser.parse_args(argv)
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    if unknown := set(only) - set(SECTIONS):
        parser.error(f"--only: unknown {sorted(unknown)}; choose from {','.join(SECTIONS)}")
    if args.json:
        cli.writable(args.json, "--json")  # now, not after the benchmark
    with cli.refusing(ValueError):  # a device this machine lacks
        pick_device(args.device, knob="--device")

    command = ["python", *sys.argv] if argv is None else ["python", "bench/run_all.py", *argv]
    report = {
        "command": shlex.join(command),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "size": args.size,
    }
    settings = SIZES[args.size]
    report |= run(
        settings, only=only, checkpoint=args.checkpoint, judge=args.judge, device=args.device
    )
    print_report(report)
    if args.json:
        text = json.dumps(report, indent=1, default=str) + "\n"  # default: paths
        Path(args.json).write_text(text, encoding="utf-8")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
