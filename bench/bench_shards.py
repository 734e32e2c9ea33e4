"""Token shards, measured: encoding with 1 and 2 processes, and a training step whose windows come
from memory-mapped shards, from shards read into memory, or from one tensor of ids in memory (as
train_model.ipynb held them before shards). Side by side, in one run:

    python bench/bench_shards.py        # the 23 books, quick mode's model: a few minutes
    python bench/bench_shards.py --corpus tests/data/tiny.txt --vocab 384 --rounds 1 --steps 2

Rounds alternate the contenders (1 process, 2, 1, 2, ...), so that a machine that slows down or
speeds up during the run touches each about equally. Every figure is the median of its rounds
(encoding) or of all its timed steps (training), with the spread from the lowest to the highest.
A step is train_model.ipynb's: get_batch, the loss, backward, clipping, AdamW.

Left out: cold reads. The shards were just written, so their pages are in the operating
system's cache, as they are for every step after the first pass over a corpus that fits in
memory; reading a larger corpus from disk costs a page fault per window, which this does not see.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # so that `python bench/bench_shards.py` runs from any folder

import mdlm_model as M  # noqa: E402
import shards  # noqa: E402
from bench.bench_train import model_config  # noqa: E402
from bpe_tokenizer import BPETokenizer  # noqa: E402
from corpus import load_documents, split_documents, text_sha256  # noqa: E402

QUICK = M.RUN_MODES["quick"]


def spread(values: list[float]) -> dict:
    """{median, low, high, n} of some measurements."""
    return {"median": statistics.median(values), "low": min(values), "high": max(values),
            "n": len(values)}  # fmt: skip


def tokenizer_for(documents, vocab_size: int) -> BPETokenizer:
    """train_model.ipynb's tokenizer for these documents, from its cache, or trained (untimed)."""
    train_text = split_documents(documents).train
    path = ROOT / "data" / "tokenizers" / f"bpe_{text_sha256(train_text)[:16]}_{vocab_size}.json"
    return BPETokenizer.load(path) if path.exists() else BPETokenizer.train(train_text, vocab_size)


def encoding(documents, tokenizer, processes: list[int], rounds: int, work: Path) -> dict:
    """Encode the corpus into fresh folders `rounds` times with each number of processes."""
    megabytes = sum(len(text.encode("utf-8")) for _, text in documents) / 1e6
    seconds = {n: [] for n in processes}
    for round_ in range(rounds):
        for n in processes:
            folder = work / f"encode_{n}_{round_}"
            started = time.perf_counter()
            manifest = shards.encode_shards(documents, tokenizer, folder, processes=n,
                                            progress=False)  # fmt: skip
            seconds[n].append(time.perf_counter() - started)
            label = f"{n} process{'es' * (n > 1)}"
            print(f"  encoding, {label}, round {round_ + 1}: {seconds[n][-1]:.2f} s",
                  file=sys.stderr)  # fmt: skip
    tokens = sum(split["tokens"] for split in manifest["splits"].values())
    return {
        "megabytes": megabytes,
        "tokens": tokens,
        "seconds": {n: spread(s) for n, s in seconds.items()},
        "megabytes_per_s": {n: spread([megabytes / x for x in s]) for n, s in seconds.items()},
    }


def stepping(sources: dict, vocab_size: int, steps: int, warmup: int, rounds: int) -> dict:
    """Seconds per training step, and per get_batch alone, with each source of windows."""
    config = model_config(
        "mdlm", vocab_size=vocab_size, seq_len=QUICK["seq_len"], n_layer=QUICK["n_layer"],
        n_head=QUICK["n_head"], d_model=QUICK["d_model"],
    )  # fmt: skip
    torch.manual_seed(0)
    model = M.Transformer(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    batch, seq_len = QUICK["batch_size"], QUICK["seq_len"]
    step_s = {name: [] for name in sources}
    batch_s = {name: [] for name in sources}
    for round_ in range(rounds):
        for name, ids in sources.items():
            for step in range(warmup + steps):
                started = time.perf_counter()
                x0 = M.get_batch(ids, batch, seq_len, generator)
                loss = M.loss_on_batch(model, x0, generator)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if step >= warmup:
                    step_s[name].append(time.perf_counter() - started)
            for _ in range(200):  # get_batch alone: small next to a step, so timed many times
                started = time.perf_counter()
                M.get_batch(ids, batch, seq_len, generator)
                batch_s[name].append(time.perf_counter() - started)
            print(f"  steps from {name}, round {round_ + 1}: median "
                  f"{statistics.median(step_s[name][-steps:]) * 1000:.0f} ms",
                  file=sys.stderr)  # fmt: skip
    return {
        "config": vars(config),
        "batch": batch,
        "threads": torch.get_num_threads(),
        "step_seconds": {name: spread(s) for name, s in step_s.items()},
        "get_batch_seconds": {name: spread(s) for name, s in batch_s.items()},
    }


def show(label: str, figure: dict, scale: float, unit: str, digits: int = 1) -> str:
    median, low, high = (figure[k] * scale for k in ("median", "low", "high"))
    return (f"  {label:<28} {median:10.{digits}f} {unit:<6} (from {low:.{digits}f} to "
            f"{high:.{digits}f}, n = {figure['n']})")  # fmt: skip


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default = ROOT.parent / "shared" / "data" / "gutenberg"
    parser.add_argument("--corpus", default=str(default), help="a corpus name, file or folder")
    parser.add_argument("--vocab", type=int, default=QUICK["vocab_size"])
    parser.add_argument("--processes", default="1,2", help="encoding: numbers of processes")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="timed training steps a round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first, each round")
    parser.add_argument("--json", default="", help="also write the figures to this file")
    args = parser.parse_args(argv)

    documents = load_documents(args.corpus)
    tokenizer = tokenizer_for(documents, args.vocab)
    processes = [int(n) for n in args.processes.split(",")]
    with tempfile.TemporaryDirectory() as work:
        encoded = encoding(documents, tokenizer, processes, args.rounds, Path(work))
        folder = next(Path(work).glob("encode_*"))
        sources = {
            "a tensor in memory": shards.load_tokens(folder, "train", tokenizer)[:],
            "shards, memory-mapped": shards.load_tokens(folder, "train", tokenizer),
            "shards, read into memory": shards.load_tokens(folder, "train", tokenizer,
                                                           in_memory=True),
        }  # fmt: skip
        stepped = stepping(sources, tokenizer.vocab_size, args.steps, args.warmup, args.rounds)
        load = os.getloadavg()[0]

    print(f"corpus {args.corpus}: {encoded['megabytes']:.2f} MB, {encoded['tokens']:,} tokens, "
          f"vocab {tokenizer.vocab_size}; load average {load:.2f} on {os.cpu_count()} "
          "cores (above the cores: others compete for them)")  # fmt: skip
    print(f"encoding into shards, median of {args.rounds} rounds:")
    for n in processes:
        print(show(f"{n} process{'es' * (n > 1)}", encoded["megabytes_per_s"][n], 1, "MB/s", 2))
    config = stepped["config"]
    print(
        f"a training step of {stepped['batch']} windows of {config['seq_len']} tokens, "
        f"{config['n_layer']} layers of {config['d_model']}, {stepped['threads']} threads:"
    )
    for name, figure in stepped["step_seconds"].items():
        print(show(name, figure, 1000, "ms"))
    print("get_batch alone:")
    for name, figure in stepped["get_batch_seconds"].items():
        print(show(name, figure, 1e6, "µs", 0))
    if args.json:
        report = {"command": " ".join(sys.argv), "load_average": load, "encoding": encoded,
                  "training": stepped}  # fmt: skip
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
