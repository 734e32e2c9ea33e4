"""
Tests for bpe_tokenizer.py: merges worked out by hand, the fast trainer against a slow reference
that recounts everything before each merge, round trips on arbitrary Unicode (hypothesis),
special tokens, and the JSON file format. Runs in a few seconds.
"""

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import regex
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bpe_tokenizer import (
    DEFAULT_SPECIAL_TOKENS,
    SPLIT_PATTERN,
    BPETokenizer,
    TokenizerFileError,
    merge,
)

REPO = Path(__file__).resolve().parents[1]
FAST = settings(max_examples=60, deadline=None)  # deadline=None: the first example warms caches
TRAIN_TEXT = (
    "The quick brown fox jumps over the lazy dog. DON'T panic: 12345 + 678 = 13023!\n"
    "Héllo wörld, naïve café. 你好，世界。안녕하세요 🙂🙂👍🏽 e\u0301 \t\r\n"
) * 20
STRINGS = [
    "",
    "a",
    "hello world",
    "안녕하세요 👋 (hello in Korean!)",
    "e\u0301 a\u0308\u0323",  # combining marks: they follow the letter they modify
    "\x00\x07\t\r\n\x1b[0m\x7f",  # control characters
    "   leading and trailing spaces   \n\n\n",
    "<|mask|><|pad|><|endoftext|>",  # special strings are plain text by default
    (REPO / "bpe_tokenizer.py").read_text(encoding="utf-8"),  # a whole file, as in minbpe
]


@pytest.fixture(scope="module")
def tok():
    return BPETokenizer.train(TRAIN_TEXT, vocab_size=256 + 60 + 3)


def reference_merges(text, num_merges):
    """Recount every pair in the whole text before each merge: slow, but obviously right."""
    chunks = [list(chunk.encode("utf-8")) for chunk in regex.findall(SPLIT_PATTERN, text)]
    merges = []
    for rank in range(num_merges):
        counts = Counter(pair for ids in chunks for pair in zip(ids, ids[1:]))
        if not counts:
            break
        pair = min(counts, key=lambda p: (-counts[p], p))  # highest count, then smallest pair
        chunks = [merge(ids, pair, 256 + rank) for ids in chunks]
        merges.append(pair)
    return merges


# ---- training ----


@pytest.mark.parametrize(
    "ids, pair, idx, expected",
    [
        ([1, 2, 3, 1, 2], (1, 2), 4, [4, 3, 4]),
        ([1, 1, 1], (1, 1), 4, [4, 1]),  # left to right, never overlapping
        ([1, 1, 1, 1], (1, 1), 4, [4, 4]),
        ([1, 2], (2, 1), 4, [1, 2]),  # order matters
        ([], (1, 2), 4, []),
    ],
)
def test_merge(ids, pair, idx, expected):
    assert merge(ids, pair, idx) == expected


def test_train_by_hand():
    # "aaabdaaabac" is one chunk (all letters): a a a b d a a a b a c, with a=97 b=98 c=99 d=100.
    # pairs: aa x4, ab x2, bd da ba ac x1            -> merge 1: (97, 97) "aa" -> 256
    # 256 a b d 256 a b a c: (256, 97) x2, (97, 98) x2 tie; the smaller pair wins
    #                                                -> merge 2: (97, 98) "ab" -> 257
    # 256 257 d 256 257 a c: (256, 257) x2           -> merge 3: (256, 257) "aaab" -> 258
    # 258 d 258 a c; the specials come after the merges: 259, 260, 261.
    tok = BPETokenizer.train("aaabdaaabac", vocab_size=256 + 3 + 3)
    assert tok.merges == {(97, 97): 256, (97, 98): 257, (256, 257): 258}
    assert tok.special_tokens == {"<|endoftext|>": 259, "<|pad|>": 260, "<|mask|>": 261}
    assert (tok.eot_id, tok.pad_id, tok.mask_id) == (259, 260, 261)
    assert tok.vocab_size == len(tok) == 262
    assert tok.encode("aaabdaaabac") == [258, 100, 258, 97, 99]
    assert tok.token_bytes(258) == b"aaab"


WORDS = st.text(alphabet="abc", min_size=1, max_size=6)  # few letters: many repeats and ties


@FAST
@given(
    text=st.one_of(st.lists(WORDS, max_size=30).map(" ".join), st.text(max_size=40)),
    num_merges=st.integers(0, 40),
)
@example(text="the cat sat on the mat, the hat is that", num_merges=30)
@pytest.mark.filterwarnings("ignore:the text ran out of pairs")
def test_fast_trainer_matches_reference(text, num_merges):
    tok = BPETokenizer.train(text, vocab_size=256 + num_merges + 3)
    assert list(tok.merges) == reference_merges(text, num_merges)


def test_train_stops_early_with_a_warning():
    with pytest.warns(UserWarning, match="ran out of pairs after 2 of 10 merges"):
        tok = BPETokenizer.train("abc", vocab_size=256 + 10 + 3)  # "ab", then "abc"
    assert tok.vocab_size == 256 + 2 + 3 and tok.mask_id == tok.vocab_size - 1


@pytest.mark.parametrize(
    "vocab_size, special_tokens, message",
    [
        (258, DEFAULT_SPECIAL_TOKENS, "too small: it needs at least 259"),
        (300, ("<|mask|>", "<|mask|>"), "distinct"),
        (300, ("<|mask|>", ""), "non-empty"),
    ],
)
def test_train_rejects_bad_arguments(vocab_size, special_tokens, message):
    with pytest.raises(ValueError, match=message):
        BPETokenizer.train("some text", vocab_size, special_tokens)


# ---- encoding and decoding ----


@pytest.mark.parametrize(
    "merges, text, expected",
    [
        # merges: (98, 99) "bc" -> 256 first, then (97, 98) "ab" -> 257. "abc" has the pairs
        # ab (rank 1) and bc (rank 0): bc merges first -> [97, 256], and no merge is left.
        # Greedy longest match would take "ab" first and give [257, 99]: not what BPE does.
        ([(98, 99), (97, 98)], "abc", [97, 256]),
        # "a b" is cut into the chunks "a" and " b": the merge "a " never crosses that boundary
        ([(97, 32)], "a b", [97, 32, 98]),
        # "aaaa": (97, 97) -> 256 gives [256, 256], then (256, 256) -> 257
        ([(97, 97), (256, 256)], "aaaa", [257]),
    ],
)
def test_encode_by_hand(merges, text, expected):
    assert BPETokenizer(merges).encode(text) == expected


@pytest.mark.parametrize("text", STRINGS)
def test_round_trip(tok, text):
    ids = tok.encode(text)
    assert all(0 <= i < 256 + len(tok.merges) for i in ids)
    assert tok.decode(ids) == text
    assert tok.decode(ids, errors="strict") == text


@FAST
@given(text=st.text())  # any code point but surrogates: emoji, CJK, combining, control, ""
def test_round_trip_any_unicode(tok, text):
    assert tok.decode(tok.encode(text)) == text


@pytest.mark.parametrize("char", ["é", "€", "🙂"])  # 2, 3 and 4 bytes of UTF-8
def test_decode_partial_utf8(tok, char):
    byte_ids = list(char.encode("utf-8"))  # ids 0-255 are the bytes themselves
    for cut in range(1, len(byte_ids)):
        assert tok.decode(byte_ids[:cut]) == "\ufffd"  # replaced, never a crash
        with pytest.raises(UnicodeDecodeError):
            tok.decode(byte_ids[:cut], errors="strict")


@FAST
@given(ids=st.lists(st.integers(0, 256 + 60 + 3 - 1)))
def test_decode_never_crashes(tok, ids):
    assert isinstance(tok.decode(ids), str)


def test_decode_takes_numpy_and_torch(tok):
    ids = tok.encode("hello world")
    assert tok.decode(np.array(ids)) == "hello world"
    torch = pytest.importorskip("torch")
    assert tok.decode(torch.tensor(ids)) == "hello world"
    assert tok.token_bytes(np.int64(104)) == b"h"


@pytest.mark.parametrize("bad_id", [-1, 256 + 60 + 3])
def test_decode_rejects_ids_outside_the_vocabulary(tok, bad_id):
    with pytest.raises(ValueError, match="not in"):
        tok.decode([104, bad_id])


# ---- special tokens ----


def test_special_ids_come_after_the_merges(tok):
    first = 256 + len(tok.merges)
    assert list(tok.special_tokens.values()) == list(range(first, tok.vocab_size))
    assert (tok.eot_id, tok.pad_id, tok.mask_id) == (first, first + 1, first + 2)
    assert tok.token_bytes(tok.mask_id) == b"<|mask|>"  # so decode shows a mask as "<|mask|>"


@FAST
@given(text=st.lists(st.one_of(st.text(), st.sampled_from(DEFAULT_SPECIAL_TOKENS))).map("".join))
def test_ordinary_text_never_makes_a_special_id(tok, text):
    assert all(i < 256 + len(tok.merges) for i in tok.encode(text))


@pytest.mark.parametrize(
    "allowed, expected_specials",
    [
        ((), []),  # the default: special strings are plain text
        ({"<|mask|>"}, ["<|mask|>"]),
        ({"<|pad|>", "<|mask|>"}, ["<|pad|>", "<|mask|>"]),
        ("all", ["<|pad|>", "<|mask|>"]),
    ],
)
def test_allowed_special(tok, allowed, expected_specials):
    text = "say <|pad|> and <|mask|>!"
    ids = tok.encode(text, allowed_special=allowed)
    names = {i: name for name, i in tok.special_tokens.items()}
    assert [names[i] for i in ids if i in names] == expected_specials
    assert tok.decode(ids) == text  # either way, decoding gives the text back
    if allowed == "all":
        pad, mask = tok.pad_id, tok.mask_id
        assert ids == tok.encode("say ") + [pad] + tok.encode(" and ") + [mask] + tok.encode("!")


def test_longest_special_string_wins():
    tok = BPETokenizer([], special_tokens=["<|s|>", "<|s|>2"])  # one starts the other
    assert tok.encode("<|s|>2<|s|>", allowed_special="all") == [257, 256]


@pytest.mark.parametrize("allowed", ["<|mask|>", {"<|nope|>"}])
def test_allowed_special_rejects_mistakes(tok, allowed):
    with pytest.raises(ValueError):
        tok.encode("text", allowed_special=allowed)


def test_missing_special_token_says_so():
    tok = BPETokenizer([], special_tokens=["<|endoftext|>"])
    with pytest.raises(KeyError, match=re.escape("no <|mask|>")):
        _ = tok.mask_id


# ---- saving and loading ----


def test_save_load_round_trip(tok, tmp_path):
    path = tmp_path / "tok.json"
    tok.save(path)
    loaded = BPETokenizer.load(path)
    assert loaded.merges == tok.merges and loaded.special_tokens == tok.special_tokens
    assert [loaded.encode(s) for s in STRINGS] == [tok.encode(s) for s in STRINGS]
    assert BPETokenizer.from_json(tok.to_json()).to_json() == tok.to_json()


def test_a_failed_save_keeps_the_old_file_whole(tok, tmp_path, monkeypatch):
    """Two runs may share data/tokenizers/: a save is a rename, so no reader sees half a file."""
    path = tmp_path / "tok.json"
    path.write_text("the old file")

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr("bpe_tokenizer.os.replace", crash)
    with pytest.raises(OSError, match="disk full"):
        tok.save(path)
    assert path.read_text() == "the old file" and [p.name for p in tmp_path.iterdir()] == [
        "tok.json"
    ]


def test_json_is_readable(tok):
    data = json.loads(tok.to_json())
    assert (data["format"], data["version"]) == ("mdlm-bpe-tokenizer", 1)
    a, b, readable = data["merges"][0]
    assert readable == (tok.token_bytes(a) + tok.token_bytes(b)).decode("utf-8", "backslashreplace")
    assert tok.to_json().count("\n") > len(tok.merges)  # one merge per line


GOOD_JSON = BPETokenizer([(97, 98)]).to_json()
GOOD = json.loads(GOOD_JSON)


def edit(**changes):
    """GOOD's JSON with some fields replaced (a value None drops the field)."""
    return json.dumps({k: v for k, v in {**GOOD, **changes}.items() if v is not None})


BAD_FILES = [
    ("{", "not valid JSON"),
    (GOOD_JSON[:80], "not valid JSON"),  # cut short
    ("[1, 2]", "not a tokenizer file"),
    ('{"version": "1.0", "model": {"type": "BPE"}}', "not a tokenizer file"),  # e.g. HF's
    (edit(version=2), "version 2, but this code reads version 1"),
    (edit(merges=[[300, 1]]), "corrupt"),  # id 300 does not exist yet
    (edit(merges=[["a", "b"]]), "corrupt"),
    (edit(special_tokens={"<|mask|>": 5}), "corrupt"),  # must be 257, right after the merge
    (edit(merges=None), "corrupt"),
]


@pytest.mark.parametrize("content, message", BAD_FILES)
def test_load_rejects_bad_files(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=message) as error:
        BPETokenizer.load(path)
    assert isinstance(error.value, ValueError) and str(path) in str(error.value)


def test_command_line(tmp_path):
    text_path, tok_path = tmp_path / "text.txt", tmp_path / "tok.json"
    text_path.write_text(TRAIN_TEXT, encoding="utf-8")
    script = str(REPO / "bpe_tokenizer.py")
    train = [script, "train", "--input", text_path, "--vocab-size", "300", "--out", tok_path]
    out = subprocess.run([sys.executable, *train], capture_output=True, text=True, check=True)
    assert "bytes per token" in out.stdout and BPETokenizer.load(tok_path).vocab_size == 300
    encode = [script, "encode", "--tokenizer", tok_path, "--input", text_path]
    out = subprocess.run([sys.executable, *encode], capture_output=True, text=True, check=True)
    assert "MB/s" in out.stdout
