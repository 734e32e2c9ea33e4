"""shards.py: token files that hold exactly tok.encode of each split, resume, and refuse others."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import shards
from bpe_tokenizer import BPETokenizer
from corpus import Document, join_documents, split_documents
from mdlm_model import get_batch

TEXT = (Path(__file__).parent / "data" / "tiny.txt").read_text(encoding="utf-8")
# three "books" of Tiny Shakespeare; the second starts with blank lines, which the tokenizer
# joins to the blank line that join_documents puts before it: no cut may fall there
DOCUMENTS = [
    Document("one", TEXT[:70_000]),
    Document("two", "\n\n  " + TEXT[70_000:140_000]),
    Document("three", TEXT[140_000:]),
]
TOKENIZER = BPETokenizer.train(TEXT[:50_000], 300)
SMALL = dict(piece_chars=2_000, shard_tokens=20_000, progress=False)  # many pieces and shards


def encode(folder, documents=DOCUMENTS, tokenizer=TOKENIZER, **options):
    return shards.encode_shards(documents, tokenizer, folder, **{**SMALL, **options})


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shards")
    encode(folder, processes=2)
    return folder


@pytest.mark.parametrize(
    "parts, piece_chars, expected",
    [
        (["a\nb\n", "c"], 2, ["a\n", "b\n\n", "c"]),  # the docstring's example
        (["a\nb\n", "c"], 100, ["a\nb\n\nc"]),  # shorter than a piece: one
        (["x\n", "\n\ny"], 1, ["x\n\n\n\n", "y"]),  # its blank lines join the one before
        (["aaaa", "b"], 1, ["aaaa\n\n", "b"]),  # a part without a line end gets one
        (["one line", ""], 1, ["one line\n\n"]),
    ],
)
def test_pieces_worked_out_by_hand(parts, piece_chars, expected):
    assert list(shards.pieces(parts, piece_chars)) == expected
    assert "".join(expected) == join_documents(parts)


texts = st.text(alphabet="ab .,'’1é\n", min_size=2, max_size=60)


@settings(max_examples=200, deadline=None)
@given(st.lists(texts, min_size=1, max_size=5), st.integers(1, 30))
def test_pieces_encode_to_the_tokens_of_the_joined_text(texts, piece_chars):
    documents = [Document(str(k), text) for k, text in enumerate(texts)]
    split = split_documents(documents)
    for name, joined in (("train", split.train), ("val", split.val)):
        parts = shards.split_parts(documents, name)
        pieces = list(shards.pieces(parts, piece_chars))
        assert "".join(pieces) == joined and shards.joined_length(parts) == len(joined)
        assert [i for piece in pieces for i in TOKENIZER.encode(piece)] == TOKENIZER.encode(joined)


@pytest.mark.parametrize("in_memory", [False, True], ids=["memory-mapped", "in memory"])
def test_the_shards_hold_the_tokens_of_each_split(folder, in_memory):
    split = split_documents(DOCUMENTS)
    manifest = shards.read_manifest(folder, TOKENIZER)
    assert len(manifest["splits"]["train"]["shards"]) > 2  # several, so windows cross them
    for name, text in (("train", split.train), ("val", split.val)):
        ids = shards.load_tokens(folder, name, TOKENIZER, in_memory=in_memory)
        expected = torch.tensor(TOKENIZER.encode(text))
        assert len(ids) == len(expected) == manifest["splits"][name]["tokens"]
        assert torch.equal(ids[:], expected) and ids[:].dtype == torch.long
        assert manifest["splits"][name]["characters"] == len(text)
        for start in (0, 1, 19_990, len(ids) - 5):  # 19,990: across the first shard's end
            assert torch.equal(ids[start : start + 64], expected[start : start + 64])
        assert torch.equal(ids.bincount(minlength=400), expected.bincount(minlength=400))


def test_one_process_writes_the_same_files_as_two(folder, tmp_path):
    encode(tmp_path, processes=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in folder.iterdir())
    for path in folder.iterdir():
        assert (tmp_path / path.name).read_bytes() == path.read_bytes(), path.name


def test_get_batch_draws_the_same_windows_from_shards_as_from_a_tensor(folder):
    ids = shards.load_tokens(folder, "train", TOKENIZER)
    tensor = ids[:]
    from_shards = get_batch(ids, 16, 64, torch.Generator().manual_seed(0))
    from_tensor = get_batch(tensor, 16, 64, torch.Generator().manual_seed(0))
    assert torch.equal(from_shards, from_tensor) and from_shards.dtype == torch.long


def test_an_interrupted_encoding_resumes_after_its_last_complete_shard(
    folder, tmp_path, monkeypatch
):
    encode_piece, calls = shards._encode_piece, []

    def counted(piece):
        calls.append(piece)
        if len(calls) == 40 and interrupt:  # of about 90 train pieces: after two shards of 18
            raise InterruptedError("the machine went down")
        return encode_piece(piece)

    monkeypatch.setattr(shards, "_encode_piece", counted)
    interrupt = True
    with pytest.raises(InterruptedError):
        encode(tmp_path, processes=1)
    finished = sorted(p.name for p in tmp_path.iterdir())
    assert finished == ["train_00000.bin", "train_00001.bin"]  # no manifest, no .tmp file
    with pytest.raises(shards.ShardError, match="resumes where it stopped"):
        shards.load_tokens(tmp_path, "train", TOKENIZER)
    done = shards.read_header(tmp_path / "train_00001.bin")["pieces"][1]
    (tmp_path / ".train_00002.bin.12345.tmp").write_bytes(b"half a shard")  # a killed run's
    calls.clear()
    interrupt = False
    encode(tmp_path, processes=1)
    total = sum(
        len(list(shards.pieces(shards.split_parts(DOCUMENTS, split), SMALL["piece_chars"])))
        for split in shards.SPLITS
    )
    assert len(calls) == total - done  # the pieces of the finished shards were not encoded again
    assert (tmp_path / ".train_00002.bin.12345.tmp").exists()  # never read, never removed
    for path in folder.iterdir():
        assert (tmp_path / path.name).read_bytes() == path.read_bytes(), path.name


def test_shards_of_another_tokenizer_are_refused(folder):
    other = BPETokenizer.train(TEXT[:50_000], 280)
    with pytest.raises(shards.ShardError, match="another tokenizer"):
        shards.load_tokens(folder, "train", other)
    with pytest.raises(shards.ShardError, match="another tokenizer"):
        encode(folder, tokenizer=other)  # a finished folder is checked, never rewritten


def test_a_damaged_shard_is_refused(folder, tmp_path):
    for path in folder.iterdir():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    shard = tmp_path / "val_00000.bin"
    shard.write_bytes(shard.read_bytes()[:-2])  # one uint16 short
    with pytest.raises(shards.ShardError, match="damaged"):
        shards.load_tokens(tmp_path, "val", TOKENIZER)
    shard.write_bytes(b"not a shard")
    with pytest.raises(shards.ShardError, match="not a token shard"):
        shards.load_tokens(tmp_path, "val", TOKENIZER)


@pytest.mark.parametrize(
    "vocab_size, dtype", [(384, "<u2"), (65_536, "<u2"), (65_537, "<u4"), (200_000, "<u4")]
)
def test_ids_take_16_bits_while_the_vocabulary_fits(vocab_size, dtype):
    assert shards.token_dtype(vocab_size) == np.dtype(dtype)


def test_32_bit_shards_read_back_the_same_ids(tmp_path, monkeypatch):
    monkeypatch.setattr(shards, "token_dtype", lambda vocab_size: np.dtype("<u4"))
    encode(tmp_path, processes=1)
    header = json.loads((tmp_path / "train_00000.bin").read_bytes()[: shards.HEADER_BYTES])
    assert header["dtype"] == "<u4" and header["tokenizer_sha256"] == shards.tokenizer_sha256(
        TOKENIZER
    )
    ids = shards.load_tokens(tmp_path, "train", TOKENIZER)
    assert ids[:].tolist() == TOKENIZER.encode(split_documents(DOCUMENTS).train)


def test_windows_are_slices(folder):
    ids = shards.load_tokens(folder, "val", TOKENIZER)
    assert len(ids[len(ids) - 3 : len(ids) + 10]) == 3 and len(ids[5:5]) == 0
    with pytest.raises(TypeError, match="windows"):
        ids[3]
    with pytest.raises(TypeError, match="windows"):
        ids[0:10:2]


def test_the_folder_name_follows_the_documents_and_the_tokenizer():
    name = shards.shard_name(DOCUMENTS, TOKENIZER)
    assert name == shards.shard_name(list(DOCUMENTS), TOKENIZER)
    assert name.endswith(shards.tokenizer_sha256(TOKENIZER)[:16])
    assert name != shards.shard_name(DOCUMENTS[:2], TOKENIZER)
    cut_here = [Document("a", "xy"), Document("b", "z")]
    cut_there = [Document("a", "x"), Document("b", "yz")]  # the same letters, split otherwise
    assert shards.shard_name(cut_here, TOKENIZER) != shards.shard_name(cut_there, TOKENIZER)
