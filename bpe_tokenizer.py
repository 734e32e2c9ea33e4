"""
A byte-level BPE tokenizer written by hand, in the style of minbpe's RegexTokenizer.

Text -> UTF-8 bytes -> token ids. The first 256 ids are the raw bytes, so any string can be
encoded and nothing is ever "unknown". Training learns merges: "the pair of ids (a, b) becomes
the new id 256 + rank". Encoding replays those merges in rank order (true BPE, not greedy
longest match: see `encode`). The special tokens come last, after the merged ids. With
text = open("../shared/data/gutenberg_prose.txt").read(), 7.7 MB of prose:

    tok = BPETokenizer.train(text, vocab_size=8192)  # 256 bytes + 7933 merges + 3 specials
    tok.encode("hello world")                     -> [256, 282, 111, 1248]  he|ll|o| world
    tok.encode("<|mask|>")                        -> [60, 124, 109, 2162, 124, 62]  plain text
    tok.encode("<|mask|>", allowed_special="all") -> [8191]
    tok.decode(tok.encode(text)) == text          -> True, for every string
    tok.eot_id, tok.pad_id, tok.mask_id           -> 8189, 8190, 8191 (and vocab_size 8192)

Pre-tokenization: the text is first cut into chunks with GPT-4's split pattern (cl100k_base,
SPLIT_PATTERN below) and merges never cross a chunk boundary. Why this pattern: it keeps
letters, digits, punctuation and whitespace apart, so we never learn "dog." and "dog!" as
separate tokens; a word keeps its leading space (" world") so the same word mid-sentence is one
chunk; digits come in groups of at most three; the contraction rule is case-insensitive (GPT-2's
pattern misses "DON'T"). Trap: our Gutenberg text uses the curly apostrophe, so "Alice’s" is cut
as "Alice" + "’s" by the letters rule, not by the contraction rule. That is fine.

Training counts each distinct chunk once with its frequency (7.7 MB of prose is 1.8M chunks but
only 47k distinct ones), keeps the count of every adjacent pair and, for every pair, the set of
chunks that contain it. After a merge only those chunks are rewritten and only their pair
counts change: the corpus is never recounted. The best pair comes from a heap. Ties are broken
deterministically: highest count first, then the smallest pair (a, b) in Python's tuple order.

Left out, on purpose:
- Unicode normalization (NFC) and lower-casing: the bytes you give are the bytes you get back.
- GPT-2's byte-to-unicode table: we store merges as ids, so we never need printable bytes.
- Special tokens inside training text: a literal "<|endoftext|>" in the corpus trains as text.
- A bound on the encode cache (it grows with the number of distinct chunks seen), and speed on
  pathological chunks: a megabyte without a space is one chunk and encodes in quadratic time.
- Parallelism, BPE dropout, and a vocabulary larger than the text supports (training stops).
"""

import heapq
import json
import math
import os
import tempfile
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

import regex  # like `re`, but knows \p{L} (any letter) and possessive quantifiers (?+, ++)

# GPT-4's pattern, as in tiktoken's cl100k_base. The alternatives, tried left to right:
# contractions | optional non-letter + letters | 1-3 digits | optional space + punctuation
# | newlines (with the whitespace before them) | whitespace not followed by text | whitespace.
SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*"""
    r"""|\s*[\r\n]|\s+(?!\S)|\s+"""
)
DEFAULT_SPECIAL_TOKENS = ("<|endoftext|>", "<|pad|>", "<|mask|>")
FORMAT, VERSION = "mdlm-bpe-tokenizer", 1  # written into every saved file and checked on load
RETRAIN = "retrain: python bpe_tokenizer.py train --input TEXT --vocab-size N --out FILE"


class TokenizerFileError(ValueError):
    """A tokenizer file (or JSON string) that is corrupt, of another format or another version."""


def merge(ids: list[int], pair: tuple[int, int], idx: int) -> list[int]:
    """
    Replace every occurrence of `pair` in `ids` by the new id `idx`, left to right.

    ids=[1, 2, 3, 1, 2], pair=(1, 2), idx=4 -> [4, 3, 4]
    ids=[1, 1, 1],       pair=(1, 1), idx=4 -> [4, 1]   (occurrences never overlap)
    """
    a, b = pair
    out, i = [], 0
    while i < len(ids):
        if ids[i] == a and i + 1 < len(ids) and ids[i + 1] == b:
            out.append(idx)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def learn_merges(
    chunk_counts: dict[str, int], num_merges: int, verbose=False
) -> list[tuple[int, int]]:
    """
    Learn up to `num_merges` merges from distinct chunks and their counts; return [(a, b), ...].

    {"aaabdaaabac": 1}, num_merges=3 -> [(97, 97), (97, 98), (256, 257)]
    i.e. "aa" -> 256, then "ab" -> 257 (it ties with (256, 97) at 2 and is the smaller pair),
    then "aa"+"ab" -> 258. Stops early when no pair is left.
    """
    words = [list(chunk.encode("utf-8")) for chunk in chunk_counts]  # each chunk as a list of ids
    freqs = list(chunk_counts.values())
    counts = defaultdict(int)  # (a, b) -> occurrences in the whole text (chunk count included)
    where = defaultdict(set)  # (a, b) -> indices of the words that contain it
    for i, (word, freq) in enumerate(zip(words, freqs)):
        for pair in zip(word, word[1:]):
            counts[pair] += freq
            where[pair].add(i)
    # A min-heap of (-count, pair): its top is the highest count, then the smallest pair.
    # Counts change after every merge, and a heap cannot update an entry in place, so we keep one
    # invariant instead: every pair in the text has an entry whose count is at least its true
    # count. Counts that fall are fixed only when their entry reaches the top ("lazy deletion");
    # a count can only grow for a pair made with the new id, and such a pair is pushed at once.
    heap = [(-count, pair) for pair, count in counts.items()]
    heapq.heapify(heap)
    merges, vocab = [], {i: bytes([i]) for i in range(256)}
    while len(merges) < num_merges and heap:
        neg_count, pair = heapq.heappop(heap)
        if counts[pair] < -neg_count:  # stale: the count fell since this entry was pushed
            if counts[pair] > 0:
                heapq.heappush(heap, (-counts[pair], pair))  # back in, at its true count
            continue
        idx = 256 + len(merges)  # top entry with its true count: by the invariant, the best pair
        merges.append(pair)
        vocab[idx] = vocab[pair[0]] + vocab[pair[1]]
        if verbose:
            print(f"merge {len(merges)}/{num_merges}: {pair} -> {idx} {vocab[idx]!r} x{-neg_count}")
        made = set()  # pairs that contain idx: new, so their counts only grew
        for i in where.pop(pair):  # rewrite only the words that contain the pair
            old, freq = words[i], freqs[i]
            new = words[i] = merge(old, pair, idx)
            for p in zip(old, old[1:]):
                counts[p] -= freq
            for p in zip(new, new[1:]):
                counts[p] += freq
            old_pairs, new_pairs = set(zip(old, old[1:])), set(zip(new, new[1:]))
            for p in old_pairs - new_pairs:
                where[p].discard(i)
            for p in new_pairs - old_pairs:  # exactly the pairs that contain idx
                where[p].add(i)
                made.add(p)
        for p in made:
            heapq.heappush(heap, (-counts[p], p))
        del counts[pair]  # now 0: merge leaves no (a, b) behind
    return merges


class BPETokenizer:
    """Byte-level BPE: ids 0-255 are bytes, then one id per merge, then the special tokens."""

    def __init__(
        self,
        merges: Iterable[tuple[int, int]],
        special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS,
        pattern: str = SPLIT_PATTERN,
    ):
        """
        merges: [(a, b), ...] in rank order; merge r makes id 256 + r from ids a and b.
        special_tokens: strings that get the ids after the merges, in this order.

        BPETokenizer([(97, 98)], ["<|mask|>"]) -> "ab" is 256, "<|mask|>" is 257, vocab_size 258
        """
        self.pattern = pattern
        self._split = regex.compile(pattern)
        self.merges = {}  # (a, b) -> new id; dicts keep insertion order, which is rank order
        self._vocab = {i: bytes([i]) for i in range(256)}  # id -> the bytes it stands for
        for a, b in merges:
            idx = 256 + len(self.merges)
            if not (0 <= a < idx and 0 <= b < idx) or (a, b) in self.merges:
                raise ValueError(f"merge {(a, b)} -> {idx} uses an id not yet made, or repeats")
            self.merges[(a, b)] = idx
            self._vocab[idx] = self._vocab[a] + self._vocab[b]
        if len(set(special_tokens)) < len(special_tokens) or not all(special_tokens):
            raise ValueError(f"special tokens must be distinct non-empty strings: {special_tokens}")
        self.special_tokens = {s: len(self._vocab) + k for k, s in enumerate(special_tokens)}
        # a special id decodes to its own string, so decode(encode(s, allowed_special="all")) == s
        self._vocab.update({i: s.encode("utf-8") for s, i in self.special_tokens.items()})
        self._cache = {}  # chunk (str) -> its ids; text repeats the same words over and over

    @classmethod
    def train(
        cls,
        text: str,
        vocab_size: int,
        special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS,
        verbose: bool = False,
    ) -> "BPETokenizer":
        """
        Learn merges from `text` until the vocabulary (bytes + merges + specials) has
        `vocab_size` ids. If the text runs out of pairs first, warn and stop: the tokenizer's
        vocab_size is then smaller than asked.

        train("aaabdaaabac", vocab_size=256 + 3 + 3) -> merges "aa", "ab", "aaab" (ids 256-258),
        then <|endoftext|> 259, <|pad|> 260, <|mask|> 261.
        """
        num_merges = vocab_size - 256 - len(special_tokens)
        if num_merges < 0:
            raise ValueError(
                f"vocab_size={vocab_size} is too small: it needs at least {vocab_size - num_merges}"
                f" (256 byte tokens + {len(special_tokens)} special tokens)"
            )
        cls([], special_tokens)  # checks the special tokens now, not after the slow part
        chunk_counts = Counter(regex.findall(SPLIT_PATTERN, text))
        tok = cls(learn_merges(chunk_counts, num_merges, verbose), special_tokens)
        if len(tok.merges) < num_merges:
            warnings.warn(
                f"the text ran out of pairs after {len(tok.merges)} of {num_merges} merges: "
                f"vocab_size is {tok.vocab_size}, not {vocab_size}; train on more text for more",
                stacklevel=2,
            )
        return tok

    def encode(self, text: str, allowed_special: str | Iterable[str] = ()) -> list[int]:
        """
        Text -> ids. A special-token string in `text` is plain text unless it is allowed:
        allowed_special="all", or a collection such as {"<|endoftext|>"}.

        With the merges (98, 99) -> 256 ("bc", rank 0) and (97, 98) -> 257 ("ab", rank 1):
        encode("abc") -> [97, 256], because "bc" was merged first in training. Greedy longest
        match would take "ab" first and give [257, 99], a tokenization training never made.
        """
        if allowed_special == "all":
            allowed_special = self.special_tokens
        elif isinstance(allowed_special, str):
            raise ValueError('allowed_special must be "all" or a collection like {"<|mask|>"}')
        unknown = set(allowed_special) - set(self.special_tokens)
        if unknown:
            raise ValueError(
                f"unknown special tokens {unknown}; I know {list(self.special_tokens)}"
            )
        if not allowed_special:
            return self._encode_ordinary(text)
        # longest first, so that a special string that starts another one never cuts it short
        names = sorted(allowed_special, key=len, reverse=True)
        parts = regex.split("(" + "|".join(regex.escape(s) for s in names) + ")", text)
        ids = []
        for k, part in enumerate(parts):  # split with a group: text, special, text, special, ...
            ids.extend([self.special_tokens[part]] if k % 2 else self._encode_ordinary(part))
        return ids

    def _encode_ordinary(self, text: str) -> list[int]:
        """Encode text that holds no special tokens: split into chunks, BPE each chunk once."""
        ids = []
        for chunk in self._split.findall(text):
            if chunk not in self._cache:
                self._cache[chunk] = self._encode_chunk(chunk)
            ids.extend(self._cache[chunk])
        return ids

    def _encode_chunk(self, chunk: str) -> list[int]:
        """Replay merges on one chunk, earliest-learned pair first (lowest new id = lowest rank)."""
        ids = list(chunk.encode("utf-8"))
        while len(ids) >= 2:
            # the adjacent pair merged earliest in training; a pair never merged ranks last
            pair = min(zip(ids, ids[1:]), key=lambda p: self.merges.get(p, math.inf))
            if pair not in self.merges:
                break  # no adjacent pair was ever merged: done
            ids = merge(ids, pair, self.merges[pair])
        return ids

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """
        Ids -> text. A sequence cut inside a UTF-8 character (as a model's output may be) gives
        U+FFFD with errors="replace"; errors="strict" raises UnicodeDecodeError instead.

        decode([104, 105]) -> "hi";  decode([195]) -> "\ufffd" (half of "é", which is [195, 169])
        """
        if hasattr(ids, "tolist"):  # a numpy array or a torch tensor -> a list of Python ints
            ids = ids.tolist()
        try:
            data = b"".join(map(self._vocab.__getitem__, ids))
        except KeyError as e:
            raise ValueError(f"token id {e.args[0]} is not in [0, {self.vocab_size})") from None
        return data.decode("utf-8", errors=errors)

    def token_bytes(self, idx: int) -> bytes:
        """
        The raw bytes of one token: 104 -> b"h"; a merged id -> the bytes it joins, e.g. b"th";
        a special id -> its string in UTF-8, e.g. b"<|mask|>". Raises KeyError outside the vocab.
        """
        return self._vocab[int(idx)]

    @property
    def vocab_size(self) -> int:
        return len(self._vocab)

    def __len__(self) -> int:
        return self.vocab_size

    def _special_id(self, name: str) -> int:
        if name not in self.special_tokens:
            raise KeyError(f"this tokenizer has no {name}, only {list(self.special_tokens)}")
        return self.special_tokens[name]

    mask_id = property(lambda self: self._special_id("<|mask|>"))
    pad_id = property(lambda self: self._special_id("<|pad|>"))
    eot_id = property(lambda self: self._special_id("<|endoftext|>"))

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size}, special_tokens={self.special_tokens})"

    # ---- saving and loading: readable, versioned JSON ----

    def to_json(self) -> str:
        """
        The tokenizer as JSON text, one merge per line: [a, b, "the merged token"], e.g.
        [116, 104, "th"]. The string is for humans (bytes that are not whole UTF-8 characters
        show as \\xNN) and is ignored on load. A checkpoint stores exactly this string.
        """
        header = {
            "format": FORMAT,
            "version": VERSION,
            "pattern": self.pattern,
            "special_tokens": self.special_tokens,
        }
        lines = []
        for (a, b), idx in self.merges.items():
            readable = self._vocab[idx].decode("utf-8", errors="backslashreplace")
            lines.append("    " + json.dumps([a, b, readable], ensure_ascii=False))
        # json.dumps would put every number on its own line: write the merges list by hand
        head = json.dumps(header, indent=2, ensure_ascii=False)[: -len("\n}")]
        return head + ',\n  "merges": [\n' + ",\n".join(lines) + "\n  ]\n}\n"

    @classmethod
    def from_json(cls, s: str) -> "BPETokenizer":
        """Rebuild from `to_json`'s text; raise TokenizerFileError for anything else."""
        try:
            data = json.loads(s)
        except json.JSONDecodeError as e:
            raise TokenizerFileError(
                f"not valid JSON ({e}): corrupt or cut short? {RETRAIN}"
            ) from None
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        if found != FORMAT:
            raise TokenizerFileError(
                f'not a tokenizer file: "format" is {found!r}, expected {FORMAT!r}. '
                "Pass a file written by BPETokenizer.save (or a checkpoint's tokenizer string)."
            )
        if data.get("version") != VERSION:
            raise TokenizerFileError(
                f"format version {data.get('version')!r}, but this code reads version {VERSION}: "
                f"use the code that wrote it, or {RETRAIN}"
            )
        try:
            merges = [(a, b) for a, b, *_readable in data["merges"]]
            tok = cls(merges, list(data["special_tokens"]), data["pattern"])
            if tok.special_tokens != data["special_tokens"]:
                raise ValueError(f"special token ids {data['special_tokens']} must follow merges")
        except (KeyError, TypeError, ValueError, regex.error) as e:  # a field missing or wrong
            raise TokenizerFileError(f"corrupt: {type(e).__name__}: {e}. {RETRAIN}") from None
        return tok

    def save(self, path) -> None:
        """Write `to_json()` to the file `path` (UTF-8), all or nothing.

        The text goes to a temporary file beside `path`, which is then renamed: a reader (a
        second training run started at the same time, say) sees the old file or the whole new
        one, never half of it.
        """
        folder = os.path.dirname(os.path.abspath(path))
        handle, temporary = tempfile.mkstemp(dir=folder, suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as f:
                f.write(self.to_json())
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)

    @classmethod
    def load(cls, path) -> "BPETokenizer":
        """Read a file written by `save`; a bad file raises TokenizerFileError naming it."""
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except UnicodeDecodeError:  # a binary file: no tokenizer file is anything but UTF-8
            raise TokenizerFileError(f"{path}: not UTF-8 text, so not a tokenizer file") from None
        try:
            return cls.from_json(text)
        except TokenizerFileError as e:
            raise TokenizerFileError(f"{path}: {e}") from None


def main(argv=None):
    from tools import cli  # the project's one way to refuse bad input: one line, status 2

    parser = cli.ArgumentParser(description=__doc__.strip().splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="learn merges from a text file, save as JSON")
    train.add_argument("--input", required=True, help="UTF-8 text file to train on")
    train.add_argument("--vocab-size", type=int, required=True, help="total, specials included")
    train.add_argument("--out", required=True, help="where to write the tokenizer JSON")
    train.add_argument("--verbose", action="store_true", help="print every merge")
    encode = commands.add_parser("encode", help="encode a text file, print speed and compression")
    encode.add_argument("--tokenizer", required=True, help="a JSON file written by `train`")
    encode.add_argument("--input", required=True, help="UTF-8 text file to encode")
    args = parser.parse_args(argv)

    least = 256 + len(DEFAULT_SPECIAL_TOKENS)
    if args.command == "train" and args.vocab_size < least:
        cli.refuse(
            f"--vocab-size {args.vocab_size} is too small: it needs at least {least} "
            f"(256 byte tokens + {len(DEFAULT_SPECIAL_TOKENS)} special tokens)"
        )
    text = cli.read_text(args.input, "--input")
    num_bytes = len(text.encode("utf-8"))
    if args.command == "train":
        out = cli.writable(args.out, "--out")  # before training, not after it
        start = time.perf_counter()
        tok = BPETokenizer.train(text, args.vocab_size, verbose=args.verbose)
        print(f"trained in {time.perf_counter() - start:.2f} s: {tok}")
        tok.save(out)
        bytes_per_token = num_bytes / max(len(tok.encode(text)), 1)
        print(f"saved to {out}; {bytes_per_token:.2f} bytes per token on the training text")
    else:
        try:
            tok = BPETokenizer.from_json(cli.read_text(args.tokenizer, "--tokenizer"))
        except TokenizerFileError as error:
            cli.refuse(f"--tokenizer {args.tokenizer}: {error}")
        start = time.perf_counter()
        ids = tok.encode(text)
        seconds = time.perf_counter() - start
        print("first ids:   ", ids[:12])
        print("first tokens:", [tok.decode([i]) for i in ids[:12]])
        print(f"{len(ids)} tokens, {num_bytes / max(len(ids), 1):.2f} bytes per token")
        megabytes = num_bytes / 1e6
        speed = megabytes / max(seconds, 1e-9)  # an empty file takes no time
        print(f"encoded {megabytes:.2f} MB in {seconds:.2f} s: {speed:.2f} MB/s")


if __name__ == "__main__":
    main()
