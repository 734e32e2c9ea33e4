"""Benchmark the samplers of mdlm_sampling.py: network calls and tokens per second versus steps.

    python bench/bench_sampling.py                           # the newest checkpoint, best device
    python bench/bench_sampling.py --checkpoint checkpoints/mdlm_quick_gutenberg/ckpt.pt \
        --device cpu --threads 1 --steps 16 128 1000 --repeats 5 --json bench_sampling.json

For every sampler and number of steps, each of --repeats calls generates --num-samples sequences
of seq_len tokens; the script prints the medians of the network function evaluations (NFE: calls
of the network, each on the whole batch), of the seconds per call and of the tokens per second.
Then the lazy sampler's speed-up over plain ancestral sampling at 1,000 steps: the same
samples, with the network called only in the steps that reveal something (the MDLM repository
reports its cache, which saves the same calls for a model that ignores t, 2.8 times faster at
5,000 steps and 3.4 times at 10,000).

A script that prints figures, never a test: timings depend on the machine and on what else runs.
Every sampler is warmed up once before timing.
"""

import json
import platform
import statistics
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # so it runs from any folder

from mdlm_model import CheckpointError, load_model, pick_device  # noqa: E402
from mdlm_sampling import METHODS, newest_checkpoint, sample  # noqa: E402
from tools import cli  # noqa: E402


def warm_up(model, methods, num_samples):
    """The first calls pay for allocation and kernel choice: make them before timing."""
    for method in methods:
        sample(model, num_samples=num_samples, steps=8, method=method)


def measure(model, method, steps, num_samples, repeats, **knobs):
    """Medians over `repeats` calls of sample(); each call uses another seed.

    knobs go to sample() (temperature, top_p, ...). "tokens" holds every call's samples,
    (repeats x num_samples, seq_len), for quality figures.
    """
    runs = [
        sample(model, num_samples=num_samples, steps=steps, method=method, seed=seed, **knobs)
        for seed in range(repeats)
    ]
    seconds = statistics.median(run.seconds for run in runs)
    return {
        "method": method,
        "steps": steps,
        "nfe": statistics.median(run.nfe for run in runs),
        "seconds": seconds,
        "tokens_per_second": num_samples * model.config.seq_len / seconds,
        "tokens": torch.cat([run.tokens for run in runs]),
    }


def main(argv=None):
    whole = cli.whole_number
    parser = cli.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default="", help="default: the newest under checkpoints/")
    parser.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), or a device")
    parser.add_argument("--steps", type=whole(1), nargs="+", default=[16, 64, 256, 1000])
    parser.add_argument("--num-samples", type=whole(1), default=1, help="sequences per call")
    parser.add_argument("--repeats", type=whole(1), default=3, help="calls per setting (median)")
    parser.add_argument("--threads", type=whole(0), default=0, help="CPU threads (0: torch's)")
    parser.add_argument("--json", default="", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.json:
        cli.writable(args.json, "--json")  # now, not after the measurements
    if args.threads:  # on a busy CPU, threads that wait for each other can be slower than one
        torch.set_num_threads(args.threads)

    # a device this machine lacks; no checkpoint, a corrupt or a foreign one: what to do
    with cli.refusing(ValueError, CheckpointError):
        device = pick_device(args.device, knob="--device")
        path = (
            Path(args.checkpoint)
            if args.checkpoint
            else newest_checkpoint(REPO / "checkpoints", knob="--checkpoint")
        )
        model, _, _ = load_model(path, device)
    config = model.config
    methods = list(METHODS)
    print(f"checkpoint {path}: {model.num_params() / 1e6:.2f}M parameters, L = {config.seq_len}")
    print(
        f"time conditioning {config.time_conditioning}; device {device}, torch {torch.__version__}"
    )
    print(
        f"{torch.get_num_threads()} CPU thread(s); {args.num_samples} sequence(s) per call, "
        f"median of {args.repeats} calls\n"
    )
    warm_up(model, methods, args.num_samples)

    rows = []
    print(f"{'method':>10} {'steps':>6} {'NFE':>7} {'s/call':>8} {'tokens/s':>9}")
    for method in methods:
        for steps in args.steps:
            row = measure(model, method, steps, args.num_samples, args.repeats)
            del row["tokens"]  # the samples themselves are not figures
            rows.append(row)
            print(
                f"{method:>10} {steps:>6} {row['nfe']:>7.0f} {row['seconds']:>8.3f} "
                f"{row['tokens_per_second']:>9.0f}"
            )

    at_1000 = {row["method"]: row for row in rows if row["steps"] == 1000}
    for method in ("ancestral", "lazy"):
        if method not in at_1000:
            at_1000[method] = measure(model, method, 1000, args.num_samples, args.repeats)
    plain, lazy = at_1000["ancestral"], at_1000["lazy"]
    speedup = plain["seconds"] / lazy["seconds"]
    print(
        f"\nlazy speed-up at 1000 steps: {speedup:.1f}x "
        f"({plain['nfe']:.0f} -> {lazy['nfe']:.0f} network calls per call of sample)"
    )

    if args.json:
        figures = {
            "checkpoint": str(path),
            "device": str(device),
            "machine": platform.platform(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "seq_len": config.seq_len,
            "num_samples": args.num_samples,
            "repeats": args.repeats,
            "rows": rows,
            "lazy_speedup_at_1000_steps": speedup,
        }
        Path(args.json).write_text(json.dumps(figures, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
