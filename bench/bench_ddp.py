"""train.py's step in 2 processes (DDP over gloo, on the CPU) against 1 process, at the same global
batch: seconds per step, side by side, in one run.

    python bench/bench_ddp.py                  # quick mode's model and batch (2 x 8 windows)
    python bench/bench_ddp.py --rounds 1 --steps 2 --n-layer 1 --d-model 32   # a smoke check

Three contenders, each a fresh launch per round, the rounds alternating them:
- 1 process: `python bench/bench_ddp.py --worker`, as the notebook trains (no DDP), with torch's
  default threads (all the cores);
- 1 process under torchrun: DDP with one rank, the path tools/gpu_run.py checks on a GPU;
- 2 processes under torchrun: DDP over gloo, one micro-batch each, one thread each (torchrun sets
  OMP_NUM_THREADS=1 when it starts several).
Every one computes GRAD_ACCUM micro-batches of BATCH_SIZE windows a step, in all, with the calls
of train.py's loop (micro_batch_generators, no_sync_unless, loss_on_batch, mean_over_processes,
clipping, AdamW), on random token ids; warm-up steps are not timed. Each figure is the median of
all the timed steps of its contender, with the spread from the fastest step to the slowest.

On 2 cores, 2 processes of 1 thread do the arithmetic that 1 process of 2 threads does, and add
an all-reduce of every gradient each step: expect them no faster. DDP pays off when each
process has a device of its own.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # so that `python bench/bench_ddp.py` runs from any folder

import mdlm_model as M  # noqa: E402
from bench.bench_train import model_config  # noqa: E402

QUICK = M.RUN_MODES["quick"]
CONTENDERS = {  # name -> how to launch the worker
    "1 process": [],
    "1 process, DDP": ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1"],
    "2 processes, DDP": ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"],
}


def worker(args) -> None:
    """Time train.py's step in this process (one of several under torchrun); rank 0 writes JSON."""
    rank, world_size, device = M.start_processes(torch.device("cpu"))
    config = model_config(
        "mdlm", vocab_size=args.vocab, seq_len=args.seq_len, n_layer=args.n_layer,
        n_head=args.n_head, d_model=args.d_model,
    )  # fmt: skip
    torch.manual_seed(0)
    model = M.Transformer(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95))
    generators = M.micro_batch_generators(0, args.grad_accum, rank, world_size)
    train_model = M.DDP(model) if M.dist.is_initialized() else model
    ids = torch.randint(args.vocab - 1, (1_000_000,), generator=torch.Generator().manual_seed(0))
    seconds = []
    for step in range(args.warmup + args.steps):
        started = time.perf_counter()
        loss_sum = 0.0
        for micro_step, generator in enumerate(generators):
            x0 = M.get_batch(ids, args.batch, args.seq_len, generator)
            with M.no_sync_unless(micro_step == len(generators) - 1, train_model):
                loss = M.loss_on_batch(train_model, x0, generator) / len(generators)
                loss.backward()
            loss_sum += loss.item()
        M.check_finite(M.mean_over_processes(loss_sum, device), step, "-")
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step >= args.warmup:
            seconds.append(time.perf_counter() - started)
    if rank == 0:
        figures = {"processes": world_size, "threads": torch.get_num_threads(), "seconds": seconds}
        Path(args.json).write_text(json.dumps(figures))
    M.end_processes(rank)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vocab", type=int, default=QUICK["vocab_size"])
    parser.add_argument("--seq-len", type=int, default=QUICK["seq_len"])
    parser.add_argument("--n-layer", type=int, default=QUICK["n_layer"])
    parser.add_argument("--n-head", type=int, default=QUICK["n_head"])
    parser.add_argument("--d-model", type=int, default=QUICK["d_model"])
    parser.add_argument("--batch", type=int, default=QUICK["batch_size"] // 2, help="a micro-batch")
    parser.add_argument("--grad-accum", type=int, default=2, help="micro-batches a step, in all")
    parser.add_argument("--steps", type=int, default=10, help="timed steps a launch")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=3, help="launches of each contender")
    parser.add_argument("--json", default="", help="where the figures go")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)

    shape = ("vocab", "seq_len", "n_layer", "n_head", "d_model", "batch", "grad_accum", "steps")
    options = [f"--{key.replace('_', '-')}={getattr(args, key)}" for key in (*shape, "warmup")]
    seconds, threads = {name: [] for name in CONTENDERS}, {}
    with tempfile.TemporaryDirectory() as work:
        for round_ in range(args.rounds):
            for name, launcher in CONTENDERS.items():
                out = Path(work) / "figures.json"
                command = [sys.executable, *launcher, str(Path(__file__)), "--worker"]
                command += [*options, "--json", str(out)]
                subprocess.run(command, check=True, cwd=ROOT, capture_output=True)
                figures = json.loads(out.read_text())
                seconds[name] += figures["seconds"]
                threads[name] = figures["threads"]
                median = statistics.median(figures["seconds"]) * 1000
                print(f"  {name}, round {round_ + 1}: median {median:.0f} ms", file=sys.stderr)
    tokens = args.batch * args.grad_accum * args.seq_len
    print(f"a step of {args.grad_accum} x {args.batch} windows of {args.seq_len} tokens "
          f"({tokens:,} tokens), {args.n_layer} layers of {args.d_model}, vocab {args.vocab}; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")  # fmt: skip
    base = statistics.median(seconds["1 process"])
    report = {"command": " ".join(sys.argv), "tokens_per_step": tokens, "rows": []}
    for name, values in seconds.items():
        median, low, high = statistics.median(values), min(values), max(values)
        print(f"  {name:<18} {median * 1000:8.0f} ms a step (from {low * 1000:.0f} to "
              f"{high * 1000:.0f}, n = {len(values)}), {tokens / median:8,.0f} tokens/s, "
              f"{threads[name]} thread(s) a process, {median / base:.2f} x 1 process")  # fmt: skip
        report["rows"].append({"name": name, "median_s": median, "low_s": low, "high_s": high,
                               "n": len(values), "threads": threads[name]})  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
