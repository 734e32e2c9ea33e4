r"""Token shards: a corpus encoded once into files of token ids that training memory-maps.

    folder = Path("data/shards") / shard_name(documents, tok)
    encode_shards(documents, tok, folder)          # once: several processes, resumes if cut off
    train_ids = load_tokens(folder, "train", tok)  # memory-mapped; refuses another tokenizer
    len(train_ids), train_ids[1000:1256]           # N tokens; (256,) int64, read from the file

As nanoGPT's prepare.py does, the ids go to disk once and training reads them with numpy's
memmap: the operating system pages in what a batch touches, so the ids never have to fit in
memory, and processes that train together (torchrun) share one copy in the page cache. A
`TokenStream` behaves like the 1-D tensor of ids it replaces (len, slices that come back as int64
tensors, bincount), so get_batch and estimate_loss take either. Small corpora go the same way.

Layout: data/shards/<hash of the documents>_<hash of the tokenizer>/ holds train_00000.bin, ...
and val_00000.bin, ..., then shards.json, written last. Each .bin is a 1,024-byte header (JSON,
padded with spaces: the tokenizer's sha256, the dtype, the token count) followed by the ids,
little-endian uint16 while the vocabulary has at most 65,536 tokens, uint32 beyond.

The split is corpus.split_documents': train is the first nine tenths of every file, val the last
tenth. Each split's text (its parts joined by corpus.join_documents) is cut into pieces of about
PIECE_CHARS characters, only after a line end that a non-space character follows. The tokenizer's
split pattern always ends a chunk there, and BPE never merges across chunks, so the pieces,
encoded apart, give exactly tok.encode(split text): the tokens of the in-memory tensor before.
Worker processes encode the pieces; the main process writes them in order, SHARD_TOKENS or a
little more per shard, each to a temporary file renamed when complete. A run that is cut off
resumes after its last complete shard; only a folder with shards.json is ever read.

Left out: reading a corpus lazily (encode_shards takes the documents in memory, as corpus.py
loads them), a tokenizer trained on a sample of a larger corpus, and compression.
"""

import bisect
import hashlib
import json
import multiprocessing
import os
import re
from collections import deque
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from bpe_tokenizer import SPLIT_PATTERN, BPETokenizer
from corpus import held_out_start

FORMAT, VERSION = "mdlm-token-shard", 1
HEADER_BYTES = 1024
MANIFEST = "shards.json"
SPLITS = ("train", "val")
PIECE_CHARS = 1 << 20  # about a megabyte of text: a worker's task
SHARD_TOKENS = 100_000_000  # at least this many tokens per shard (200 MB in uint16), but the last
SAFE_CUT = re.compile(r"\n(?=\S)")  # after a line end, before a character that is not whitespace


class ShardError(RuntimeError):
    """Shards that are missing, unfinished, damaged, or of another tokenizer."""


def tokenizer_sha256(tokenizer: BPETokenizer) -> str:
    """The sha256 of the tokenizer's JSON (what a checkpoint stores): its identity."""
    return hashlib.sha256(tokenizer.to_json().encode("utf-8")).hexdigest()


def shard_name(documents, tokenizer: BPETokenizer) -> str:
    """The folder name of a corpus's shards: 16 hex digits of the documents (names and texts),
    then 16 of the tokenizer. Another text, split or tokenizer gets another folder."""
    digest = hashlib.sha256()
    for name, text in documents:
        digest.update(name.encode("utf-8") + b"\0" + text.encode("utf-8") + b"\0")
    return f"{digest.hexdigest()[:16]}_{tokenizer_sha256(tokenizer)[:16]}"


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 while every id fits in 16 bits, uint32 beyond: 65,536 -> uint16, 65,537 -> uint32."""
    return np.dtype("<u2") if vocab_size <= 2**16 else np.dtype("<u4")


def split_parts(documents, split: str, val_fraction: float = 0.1) -> list[str]:
    """One split's text, file by file, cut as corpus.split_documents cuts it: joined by
    join_documents, the parts are split_documents(documents).train (or .val)."""
    parts = []
    for _, text in documents:
        start = held_out_start(text, val_fraction)
        if split == "train":
            parts.append(text[:start])
        elif start < len(text):  # a file of one character holds nothing out
            parts.append(text[start:])
    return parts


def pieces(parts: list[str], piece_chars: int = PIECE_CHARS):
    r"""The text join_documents(parts) in pieces of at least piece_chars characters (but the
    last), each ending at a safe cut: "".join(pieces(parts)) == join_documents(parts).

    ['a\nb\n', 'c'], piece_chars 2 -> 'a\n', 'b\n\n', 'c' (join_documents gives 'a\nb\n\nc').
    """
    pending, start = "", 0  # the text not yet given out is pending[start:]
    for k, part in enumerate(parts):
        if k < len(parts) - 1:  # join_documents: a final line end, then one blank line
            part = (part if part.endswith("\n") else part + "\n") + "\n"
        pending, start = pending[start:] + part, 0
        while len(pending) - start > piece_chars:
            cut = SAFE_CUT.search(pending, start + piece_chars - 1)
            if cut is None:
                break  # no safe cut yet: the next part may bring one
            yield pending[start : cut.end()]
            start = cut.end()
    if len(pending) > start:
        yield pending[start:]


def joined_length(parts: list[str]) -> int:
    """len(join_documents(parts)), without joining them: for the progress bar."""
    return sum(len(p) + (2 - p.endswith("\n")) for p in parts[:-1]) + sum(map(len, parts[-1:]))


_worker_tokenizer, _worker_dtype = None, None


def _start_worker(tokenizer_json: str, dtype: str) -> None:
    global _worker_tokenizer, _worker_dtype
    _worker_tokenizer, _worker_dtype = BPETokenizer.from_json(tokenizer_json), np.dtype(dtype)


def _encode_piece(piece: str) -> tuple[int, np.ndarray]:
    """(characters, ids) of one piece."""
    return len(piece), np.array(_worker_tokenizer.encode(piece), dtype=_worker_dtype)


def encoded(piece_iterator, tokenizer: BPETokenizer, dtype: np.dtype, processes: int):
    """(characters, ids) of each piece, in order, encoded by `processes` worker processes (or
    here, for 1), at most 2 pieces per worker in flight: memory holds a few pieces at a time.

    Workers are forked: a spawned worker would re-run the script that started it (train.py has
    no `if __name__ == "__main__"` guard). Without fork (Windows) the encoding runs here.
    """
    if processes == 1 or "fork" not in multiprocessing.get_all_start_methods():
        _start_worker(tokenizer.to_json(), dtype.str)
        yield from map(_encode_piece, piece_iterator)
        return
    context = multiprocessing.get_context("fork")
    initargs = (tokenizer.to_json(), dtype.str)
    with context.Pool(processes, initializer=_start_worker, initargs=initargs) as pool:
        in_flight = deque()
        for piece in piece_iterator:
            in_flight.append(pool.apply_async(_encode_piece, (piece,)))
            if len(in_flight) >= 2 * processes:
                yield in_flight.popleft().get()
        while in_flight:
            yield in_flight.popleft().get()


def header_bytes(header: dict) -> bytes:
    text = json.dumps(header).encode("utf-8")
    if len(text) >= HEADER_BYTES:
        raise ValueError(f"a shard header of {len(text)} bytes does not fit in {HEADER_BYTES}")
    return text + b" " * (HEADER_BYTES - 1 - len(text)) + b"\n"


def write_atomic(path: Path, chunks) -> None:
    """Write the byte strings to a temporary file beside path, then rename it: a reader finds
    the whole file or none. The temporary name carries the process id, so two processes that
    encode the same corpus at once (tools/gpu_run.py starts several runs) never share one."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as file:
            for chunk in chunks:
                file.write(chunk)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)  # still there only if the write failed


def read_header(path: Path) -> dict:
    """A shard's header, checked against its size: a short file is an error, never a shard."""
    try:
        with open(path, "rb") as file:
            header = json.loads(file.read(HEADER_BYTES))
        if header.get("format") != FORMAT or header.get("version") != VERSION:
            raise ValueError(f"format {header.get('format')!r} version {header.get('version')}")
        size = HEADER_BYTES + header["tokens"] * np.dtype(header["dtype"]).itemsize
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ShardError(f"{path} is not a token shard ({error}): delete its folder") from None
    if path.stat().st_size != size:
        raise ShardError(
            f"{path} has {path.stat().st_size:,} bytes, its header says {size:,}: it is damaged, "
            "delete its folder and encode again"
        )
    return header


def finished_shards(folder: Path, split: str, plan: dict) -> list[dict]:
    """The headers of the complete shards of a split made with this plan, from index 0 on."""
    headers = []
    while (path := folder / f"{split}_{len(headers):05d}.bin").exists():
        header = read_header(path)
        if any(header.get(key) != value for key, value in plan.items()):
            break  # another tokenizer or cutting: encode again from here
        headers.append(header)
    return headers


def encode_shards(
    documents,
    tokenizer: BPETokenizer,
    folder,
    *,
    processes: int | None = None,
    val_fraction: float = 0.1,
    piece_chars: int = PIECE_CHARS,
    shard_tokens: int = SHARD_TOKENS,
    progress: bool = True,
) -> dict:
    """Encode the documents' train and val splits into shards in `folder`; return shards.json.

    A folder that is complete already (shards.json) is checked against the tokenizer and left
    as it is; one that an earlier call left unfinished is continued after its last complete
    shard. processes: workers that encode (default: the CPU count, at most 8).
    """
    folder = Path(folder)
    if (folder / MANIFEST).exists():
        return read_manifest(folder, tokenizer)
    folder.mkdir(parents=True, exist_ok=True)
    processes = processes or min(8, os.cpu_count() or 1)
    dtype = token_dtype(tokenizer.vocab_size)
    if tokenizer.pattern != SPLIT_PATTERN:  # the safe cuts are those of GPT-4's pattern only
        piece_chars = 2**62
    plan = dict(
        tokenizer_sha256=tokenizer_sha256(tokenizer), dtype=dtype.str, val_fraction=val_fraction,
        piece_chars=piece_chars, shard_tokens=shard_tokens,
    )  # fmt: skip
    manifest = {"format": FORMAT + "s", "version": VERSION, **plan, "splits": {}}
    for split in SPLITS:
        parts = split_parts(documents, split, val_fraction)
        done = finished_shards(folder, split, plan)
        encode_split(parts, tokenizer, folder, split, done, plan, processes, progress)
        manifest["splits"][split] = {
            "shards": [f"{split}_{header['index']:05d}.bin" for header in done],
            "tokens": sum(header["tokens"] for header in done),
            "characters": sum(header["characters"] for header in done),
        }
    write_atomic(folder / MANIFEST, [json.dumps(manifest, indent=1).encode("utf-8")])
    return manifest


def encode_split(parts, tokenizer, folder, split, done, plan, processes, progress) -> None:
    """Encode one split's pieces after those of its finished shards `done`, and append the header
    of every shard written to `done`."""
    dtype = np.dtype(plan["dtype"])
    first = done[-1]["pieces"][1] if done else 0  # the first piece of the shard being filled
    buffer, tokens, characters = [], 0, 0  # its pieces' ids, and how many tokens and characters

    def write() -> None:
        ids = np.concatenate(buffer) if buffer else np.zeros(0, dtype)
        header = dict(
            format=FORMAT, version=VERSION, split=split, index=len(done), tokens=len(ids),
            pieces=[first, first + len(buffer)], characters=characters, **plan,
        )  # fmt: skip
        path = folder / f"{split}_{len(done):05d}.bin"
        write_atomic(path, [header_bytes(header), ids.tobytes()])
        done.append(header)

    bar = tqdm(
        total=joined_length(parts), unit="char", unit_scale=True, disable=not progress,
        desc=f"encoding {split}",
    )  # fmt: skip
    bar.update(sum(header["characters"] for header in done))  # a resumed run's finished shards
    todo = islice(pieces(parts, plan["piece_chars"]), first, None)
    workers = min(processes, joined_length(parts) // plan["piece_chars"] + 1)  # <= the pieces
    with bar:
        for length, ids in encoded(todo, tokenizer, dtype, workers):
            buffer.append(ids)
            tokens, characters = tokens + len(ids), characters + length
            bar.update(length)
            if tokens >= plan["shard_tokens"]:
                write()
                first, buffer, tokens, characters = first + len(buffer), [], 0, 0
        if buffer or not done:  # the last shard; a split without text still gets one, empty
            write()


def read_manifest(folder, tokenizer: BPETokenizer | None = None) -> dict:
    """shards.json of a complete folder; with a tokenizer, refuse shards of another one."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        raise ShardError(
            f"{folder} holds no finished shards ({MANIFEST} is written last): run encode_shards "
            "on it again, it resumes where it stopped"
        )
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if tokenizer is not None:
        check_tokenizer(manifest, tokenizer, folder)
    return manifest


def check_tokenizer(header: dict, tokenizer: BPETokenizer, where) -> None:
    if header["tokenizer_sha256"] != tokenizer_sha256(tokenizer):
        raise ShardError(
            f"{where} was encoded with another tokenizer (sha256 {header['tokenizer_sha256'][:12]}"
            f", this run's is {tokenizer_sha256(tokenizer)[:12]}): its ids mean other tokens. "
            "Encode the corpus with this tokenizer into its own folder (shard_name)"
        )


def load_tokens(folder, split: str, tokenizer=None, *, in_memory: bool = False) -> "TokenStream":
    """The ids of one split as a TokenStream: memory-mapped from the shards (in_memory=False), or
    read into memory. Every shard is checked: complete, and of `tokenizer` when one is given."""
    folder = Path(folder)
    manifest = read_manifest(folder, tokenizer)
    if split not in manifest["splits"]:
        raise ShardError(f"{folder} has the splits {list(manifest['splits'])}, not {split!r}")
    arrays = []
    for name in manifest["splits"][split]["shards"]:
        header = read_header(folder / name)
        if tokenizer is not None:
            check_tokenizer(header, tokenizer, folder / name)
        dtype, count = np.dtype(header["dtype"]), header["tokens"]
        if in_memory:
            arrays.append(np.fromfile(folder / name, dtype, count, offset=HEADER_BYTES))
        elif count:  # np.memmap refuses an empty file region
            arrays.append(np.memmap(folder / name, dtype, "r", HEADER_BYTES, (count,)))
    return TokenStream(arrays)


class TokenStream:
    """The ids of a split over its shards, used like a 1-D tensor of ids: len(ids), ids[a:b] (a
    new int64 tensor, read from the shards), ids.bincount(minlength=V).

    Reading a memory-mapped shard maps its pages into the process: its resident memory grows as
    batches touch the corpus, but those pages are the page cache, shared by every process that
    maps the file and given back when memory runs short.
    """

    def __init__(self, arrays: list[np.ndarray]):
        self.arrays = arrays
        self.starts = np.cumsum([0] + [len(a) for a in arrays]).tolist()  # where each begins

    def __len__(self) -> int:
        return self.starts[-1]

    def __getitem__(self, index: slice) -> torch.Tensor:
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError(f"a TokenStream gives windows, ids[a:b], not ids[{index!r}]")
        start, stop, _ = index.indices(len(self))
        pieces = []
        shard = bisect.bisect_right(self.starts, start) - 1
        while start < stop:  # a window that crosses into the next shard reads from both
            offset = start - self.starts[shard]
            piece = self.arrays[shard][offset : offset + stop - start]
            pieces.append(piece)
            start += len(piece)
            shard += 1
        window = pieces[0] if len(pieces) == 1 else np.concatenate([np.zeros(0, int), *pieces])
        return torch.from_numpy(window.astype(np.int64))  # (b - a,) long, a copy

    def bincount(self, minlength: int = 0) -> torch.Tensor:
        """How often each id occurs, as torch.bincount counts them: (max(minlength, max id + 1),)
        long. It reads 16M ids at a time: np.bincount makes an int64 copy of what it counts."""
        counts = np.zeros(minlength, np.int64)
        for array in self.arrays:
            for start in range(0, len(array), 1 << 24):
                part = np.bincount(array[start : start + (1 << 24)], minlength=len(counts))
                counts = np.pad(counts, (0, len(part) - len(counts))) + part
        return torch.from_numpy(counts)

    def __repr__(self) -> str:
        return f"TokenStream({len(self):,} tokens in {len(self.arrays)} shards)"
