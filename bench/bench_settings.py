"""Step time of a run mode's settings against variants of them, measured side by side.

    python bench/bench_settings.py --try batch_size=16 --try vocab_size=1024
    python bench/bench_settings.py --mode quick --try n_layer=6,d_model=96 --rounds 7

A change of settings is fair only at equal cost. This times full optimizer steps (as
bench_train.py does, on random tokens) of the mode's defaults, read from train_model.ipynb's
RUN_MODES, and of each variant, in rounds: every round times every setting once, in turn, so
that a machine that slows down or speeds up during the measurement slows every setting alike.
It prints each setting's median step time, its ratio to the defaults', and how many steps of
it take the wall time of the defaults' max_steps: the MAX_STEPS to train the variant with.

Only the step is timed: a run also evaluates every eval_every steps, which costs in proportion
to the windows scored, the same for every setting with the same seq_len, and spends a little on
every step outside it (the learning rate, the progress bar), which weighs more in a short step:
on this project's 2-core machine a batch-8 step took 0.17 s in a real run against 0.14 s here.
"""

import datetime
import json
import shlex
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import mdlm_model as M  # noqa: E402
from bench import bench_train  # noqa: E402
from bench.run_all import describe_machine  # noqa: E402
from tools import cli  # noqa: E402

SHAPE = ("vocab_size", "seq_len", "n_layer", "n_head", "d_model", "batch_size")


def parse_setting(text: str) -> dict:
    """'batch_size=16,vocab_size=1024' -> {'batch_size': 16, 'vocab_size': 1024}."""
    changes = {}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        if key not in SHAPE or not value.isdigit() or int(value) < 1:
            cli.refuse(f"--try {text!r}: write key=integer pairs (1 or more), keys among {SHAPE}")
        changes[key] = int(value)
    return changes


def label(changes: dict) -> str:
    return ", ".join(f"{key} {value}" for key, value in changes.items()) or "the defaults"


def model_config(setting: dict, objective: str):
    """The network one setting trains (ModelConfig refuses a shape that cannot work)."""
    shape = {key: setting[key] for key in ("seq_len", "n_layer", "n_head", "d_model")}
    return bench_train.model_config(objective, vocab_size=setting["vocab_size"], **shape)


def step_times(settings: list[dict], objective: str, rounds: int, steps: int) -> list[list]:
    """Per setting, the step times of all rounds: each round measures every setting in turn."""
    device = M.pick_device("cpu")
    times = [[] for _ in settings]
    for round_ in range(rounds):
        for i, setting in enumerate(settings):
            config = model_config(setting, objective)
            figures = bench_train.measure(
                config, batch=setting["batch_size"], device=device, steps=steps, warmup=2
            )
            times[i] += figures["step_seconds"]
        print(f"round {round_ + 1} of {rounds} done", file=sys.stderr)
    return times


def main(argv=None) -> None:
    parser = cli.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", default="quick", help="a run mode of train_model.ipynb")
    parser.add_argument("--try", dest="variants", action="append", default=[], metavar="K=V,..")
    parser.add_argument("--objective", choices=["mdlm", "ar"], default="mdlm")
    parser.add_argument("--rounds", type=cli.whole_number(1), default=5)
    parser.add_argument(
        "--steps", type=cli.whole_number(1), default=4, help="timed steps per setting per round"
    )
    parser.add_argument("--json", default="", help="also write the figures to this file")
    words = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(words)

    if args.json:
        cli.writable(args.json, "--json")  # now, not after the measurements
    defaults = M.RUN_MODES.get(args.mode)
    if defaults is None:
        cli.refuse(f"no run mode {args.mode!r} in train_model.ipynb's RUN_MODES")
    changes = [{}] + [parse_setting(text) for text in args.variants]
    settings = [{**defaults, **change} for change in changes]
    with cli.refusing(ValueError):  # a shape ModelConfig refuses, before any timing
        for setting in settings:
            model_config(setting, args.objective)
    times = step_times(settings, args.objective, args.rounds, args.steps)
    base = statistics.median(times[0])
    rows = []
    for change, setting, seconds in zip(changes, settings, times):
        median = statistics.median(seconds)
        rows.append(
            {
                "setting": label(change),
                "median_step_ms": median * 1000,
                "ratio": median / base,
                "tokens_per_step": setting["batch_size"] * setting["seq_len"],
                "equal_time_steps": round(defaults["max_steps"] * base / median),
            }
        )
    print(f"{args.objective}, {args.mode} mode; {args.rounds} rounds of {args.steps} steps each")
    header = ("setting", "step (ms)", "ratio", "tokens/step", "equal-time steps")
    print(f"{header[0]:32} {header[1]:>10} {header[2]:>6} {header[3]:>12} {header[4]:>17}")
    for row in rows:
        print(
            f"{row['setting']:32} {row['median_step_ms']:10.0f} {row['ratio']:6.2f} "
            f"{row['tokens_per_step']:12,} {row['equal_time_steps']:17,}"
        )
    if args.json:
        report = {
            "command": shlex.join(["python", "bench/bench_settings.py", *words]),
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "machine": describe_machine(M.pick_device("cpu")),
            "mode": args.mode,
            "defaults": defaults,  # the mode's settings when it ran: defaults change over time
            "objective": args.objective,
            "rows": rows,
        }
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
