"""
Benchmark bpe_tokenizer.py on a corpus and print medians: training time per vocab size, encode
and decode speed, bytes per token, whether the whole corpus round-trips exactly, peak memory.
If the `tokenizers` package (Rust, not a project dependency) is importable, its ByteLevel BPE
trainer gets the same figures side by side, and a check that both learn the same merges.

    python bench/bench_tokenizer.py                      # ../shared/data/gutenberg_prose.txt
    python bench/bench_tokenizer.py --input my.txt --vocab-sizes 4096 8192 --repeats 5 --json o.json

Peak memory is the peak resident set (VmHWM, else ru_maxrss) of a fresh process that does one
tokenizer's measurements and nothing else: the whole process (interpreter, corpus, ids), so it
also sees Rust allocations, which tracemalloc cannot. "Encode, cold" starts from an empty
chunk cache (unseen text); "warm" encodes the same text again, so every chunk is a cache hit.
tokenizers trains on the corpus's lines (so it can use both cores) with its stock GPT-2 split,
hence its different bytes per token. The merge check trains it again with our split on the
whole text as one item: it learns the same set of merges, and the ranks differ only where two
pairs tie on count (it breaks ties by its own ids; checked once: the count at every rank agrees).

Left out: a timed test (timings on a shared machine are noise, so this only prints), and
tokenizers' faster batch calls (encode_batch_fast): both tokenizers encode the corpus in one call.
"""

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # so that `python bench/bench_tokenizer.py` finds bpe_tokenizer

from bpe_tokenizer import DEFAULT_SPECIAL_TOKENS, SPLIT_PATTERN, BPETokenizer  # noqa: E402
from tools import cli  # noqa: E402


def timed(fn, repeats):
    """Call fn() `repeats` times; return (median seconds, the last result)."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def figures(text, vocab_sizes, repeats, train, reload, encode, decode):
    """
    The same measurements for any tokenizer, given functions that use it: train(vocab_size)
    -> tok, reload(tok) -> the same tokenizer with nothing cached, encode(tok) -> ids of the
    whole text, decode(tok, ids) -> text. Encode and decode use the largest vocab.
    """
    out = {}
    for vocab_size in vocab_sizes:
        out[f"train, vocab {vocab_size} (s)"], tok = timed(partial(train, vocab_size), repeats)
    megabytes = len(text.encode("utf-8")) / 1e6
    cold, ids = timed(lambda: encode(reload(tok)), repeats)  # reload: a few ms, counted in
    warm, ids = timed(lambda: encode(tok), repeats)
    seconds, decoded = timed(lambda: decode(tok, ids), repeats)
    out["encode, cold (MB/s)"] = megabytes / cold
    out["encode, warm (MB/s)"] = megabytes / warm
    out["decode (MB/s)"] = megabytes / seconds
    out["bytes per token"] = megabytes * 1e6 / len(ids)
    out["exact round trip"] = decoded == text
    out["peak RSS (MB)"] = peak_rss_megabytes()
    return out


def peak_rss_megabytes():
    """
    This process's peak resident memory. subtle: Linux's ru_maxrss keeps the peak of whatever
    this process was before exec, so a child of a big process (run_all.py holds torch) would
    report its parent's size; VmHWM counts only this program's own memory.
    """
    status = Path("/proc/self/status")
    for line in status.read_text().splitlines() if status.exists() else []:
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def ours(path, vocab_sizes, repeats):
    text = Path(path).read_text(encoding="utf-8")
    return figures(
        text,
        vocab_sizes,
        repeats,
        train=lambda vocab_size: BPETokenizer.train(text, vocab_size),
        reload=lambda tok: BPETokenizer.from_json(tok.to_json()),
        encode=lambda tok: tok.encode(text),
        decode=lambda tok, ids: tok.decode(ids),
    )


def train_hf(items, vocab_size, pattern=None):
    """tokenizers' byte-level BPE; pattern=None is its stock GPT-2 split, else split like ours."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=pattern is None)
    if pattern is None:
        tok.pre_tokenizer = byte_level
    else:
        split = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
        tok.pre_tokenizer = pre_tokenizers.Sequence([split, byte_level])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(DEFAULT_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, as ours
        show_progress=False,
    )
    tok.train_from_iterator(items, trainer)
    return tok


def huggingface(path, vocab_sizes, repeats):
    from tokenizers import Tokenizer

    text = Path(path).read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)  # many items, so that it can use both cores
    return figures(
        text,
        vocab_sizes,
        repeats,
        train=lambda vocab_size: train_hf(lines, vocab_size),
        reload=lambda tok: Tokenizer.from_str(tok.to_str()),
        encode=lambda tok: tok.encode(text).ids,
        decode=lambda tok, ids: tok.decode(ids, skip_special_tokens=False),
    )


# tokenizers' ByteLevel shows each byte as a printable character (GPT-2's table): bytes that
# print already stand for themselves, the other 68 become chr(256), chr(257), ... in order.
PRINTABLE = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), 256)]
OTHERS = [b for b in range(256) if b not in PRINTABLE]
BYTE_OF_CHAR = {chr(b): b for b in PRINTABLE} | {chr(256 + k): b for k, b in enumerate(OTHERS)}


def same_merges(text, vocab_size):
    """Train both on the same split; return (same set of merges, how many at the same rank)."""
    ours = BPETokenizer.train(text, vocab_size)
    ours_merges = [(ours.token_bytes(a), ours.token_bytes(b)) for a, b in ours.merges]
    # one item, the whole text, so that pairs are counted exactly as ours counts them
    hf = json.loads(train_hf([text], vocab_size, SPLIT_PATTERN).to_str())["model"]["merges"]
    hf = [pair.split(" ") if isinstance(pair, str) else pair for pair in hf]  # older: "a b"
    hf_merges = [tuple(bytes(BYTE_OF_CHAR[c] for c in token) for token in pair) for pair in hf]
    same_rank = sum(a == b for a, b in zip(ours_merges, hf_merges))
    return set(ours_merges) == set(hf_merges), f"{same_rank}/{len(ours_merges)}"


def in_fresh_process(fn, *args):
    """
    Run fn(*args) of this file in a new interpreter, so that its peak memory is its own; the
    arguments and the result travel as JSON. subtle: not multiprocessing's spawn, whose child
    imports the caller's main module too (run_all.py's imports torch: +200 MB of RSS).
    """
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import bench_tokenizer; "
        "result = getattr(bench_tokenizer, sys.argv[2])(*json.loads(sys.argv[3])); "
        "print(json.dumps(result))"
    )
    command = [
        sys.executable,
        "-c",
        code,
        str(Path(__file__).parent),
        fn.__name__,
        json.dumps(args),
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(output.splitlines()[-1])


SAME_MERGES = "same merges as tokenizers with our split"


def measure(path, vocab_sizes, repeats, check_merges=True):
    """
    {tokenizer name: figures} for bpe_tokenizer and, when importable, tokenizers; with both and
    check_merges, also SAME_MERGES: {"set": same set of merges, "rank": "k/n at the same rank"}.
    """
    settings = (path, vocab_sizes, repeats)
    results = {"bpe_tokenizer (Python)": in_fresh_process(ours, *settings)}
    try:
        import tokenizers
    except ImportError:
        return results
    results[f"tokenizers {tokenizers.__version__} (Rust)"] = in_fresh_process(
        huggingface, *settings
    )
    if check_merges:
        text = Path(path).read_text(encoding="utf-8")
        same_set, same_rank = same_merges(text, max(vocab_sizes))
        results[SAME_MERGES] = {"set": same_set, "rank": same_rank}
    return results


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__.strip().splitlines()[0])
    default_input = ROOT.parent / "shared" / "data" / "gutenberg_prose.txt"
    least = 256 + len(DEFAULT_SPECIAL_TOKENS)  # the bytes and the special tokens
    parser.add_argument("--input", default=str(default_input), help="UTF-8 text corpus")
    parser.add_argument("--vocab-sizes", type=cli.whole_number(least), nargs="+")
    parser.set_defaults(vocab_sizes=[4096, 8192])
    parser.add_argument(
        "--repeats", type=cli.whole_number(1), default=3, help="runs per figure; medians shown"
    )
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    cli.read_text(args.input, "--input")  # a missing or binary corpus: refused before timing
    if args.json:
        cli.writable(args.json, "--json")

    size = Path(args.input).stat().st_size / 1e6
    print(f"corpus {args.input} ({size:.2f} MB), median of {args.repeats} runs")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (busy = slower)\n")
    results = measure(args.input, args.vocab_sizes, args.repeats)
    columns = {name: figures for name, figures in results.items() if name != SAME_MERGES}
    if len(columns) == 1:
        print("(tokenizers is not installed: showing bpe_tokenizer alone)")
    show = lambda cell: f"{cell!s:>28}" if isinstance(cell, bool) else f"{cell:>28.2f}"
    print(f"{'':24}" + "".join(f"{name:>28}" for name in columns))
    for row in next(iter(columns.values())):
        print(f"{row:24}" + "".join(show(columns[name][row]) for name in columns))
    if SAME_MERGES in results:
        same = results[SAME_MERGES]
        print(f"\nsame merges as tokenizers, split like ours: {same['set']}, ", end="")
        print(f"same rank: {same['rank']}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
