"""Tests for corpus.py. Offline: downloads come from a local HTTP server on 127.0.0.1."""

import hashlib
import http.server
import socket
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import corpus
from corpus import (
    CorpusError,
    Document,
    load_documents,
    load_text,
    split_documents,
    split_train_val,
    text_sha256,
)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # next to the repository

ALICE = "Alice was beginning to get very tired.\n\nSo she was considering.\n"
OZ = "Dorothy lived in the midst of the great Kansas prairies.\n"


def gutenberg_file(
    body: str,
    start: str = "*** START OF THE PROJECT GUTENBERG EBOOK ALICE ***",
    credit: str = "Produced by Ann Volunteer and the Online\nDistributed Proofreading Team",
    end_line: str = "End of the Project Gutenberg EBook of Alice, by Lewis Carroll",
) -> bytes:
    """A small fake Project Gutenberg file as the site serves it: BOM, \\r\\n, licence around."""
    lines = [
        "The Project Gutenberg eBook of Alice",
        "This ebook is for the use of anyone anywhere at no cost.",
        "",
        start,
        credit,
        "",
        body,
        end_line,
        "",
        "*** END OF THE PROJECT GUTENBERG EBOOK ALICE ***",
        "Section 1. General Terms of Use and Redistributing Project Gutenberg",
    ]
    return ("\ufeff" + "\n".join(lines)).replace("\n", "\r\n").encode("utf-8")


def write_files(folder: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)


def files_in(folder: Path) -> list[str]:
    return sorted(
        path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()
    )


class FakeWeb(http.server.BaseHTTPRequestHandler):
    """Serves server.files {path: bytes}; a path in server.broken sends half, then hangs up."""

    def do_GET(self):
        self.server.requests.append(self.path)
        data = self.server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2] if self.path in self.server.broken else data)

    def log_message(self, *args):  # keep the test output quiet
        pass


@pytest.fixture
def web(monkeypatch):
    """A local stand-in for Project Gutenberg (two books) and GitHub (Tiny Shakespeare)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeWeb)
    server.requests, server.broken = [], set()
    server.files = {
        "/cache/epub/11/pg11.txt": gutenberg_file(ALICE),
        "/cache/epub/55/pg55.txt": gutenberg_file(OZ),
    }
    threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()  # poll 10 ms
    base = f"http://127.0.0.1:{server.server_port}"
    gutenberg_url = base + "/cache/epub/{number}/pg{number}.txt"
    monkeypatch.setitem(corpus.CORPORA["gutenberg"], "url", gutenberg_url)
    monkeypatch.setitem(corpus.CORPORA["shakespeare"], "url", base + "/input.txt")
    monkeypatch.setattr(corpus, "GUTENBERG_BOOKS", {"alice": 11, "oz": 55})
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def offline(monkeypatch):
    """Point every download at a local port where nothing listens, like a machine offline."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for metadata in corpus.CORPORA.values():
        monkeypatch.setitem(metadata, "url", f"http://127.0.0.1:{port}/input.txt")


# ---------------------------------------------------------------- downloads and the cache


def test_gutenberg_downloads_cleans_and_caches(web, tmp_path, capsys):
    text = load_text("gutenberg", tmp_path)
    assert text == ALICE + "\n" + OZ  # one blank line between books
    assert files_in(tmp_path) == ["gutenberg/alice.txt", "gutenberg/oz.txt"]
    assert (tmp_path / "gutenberg" / "oz.txt").read_text(encoding="utf-8") == OZ
    assert load_documents("gutenberg", tmp_path) == [("alice", ALICE), ("oz", OZ)]  # book order
    assert capsys.readouterr().out.count("downloading") == 2  # one line per book
    assert load_text("gutenberg", tmp_path) == text  # the second time from the cache
    assert len(web.requests) == 2


def test_interrupted_download_leaves_no_half_file(web, tmp_path):
    web.broken.add("/cache/epub/55/pg55.txt")
    with pytest.raises(CorpusError, match="could not download .*pg55.txt"):
        load_text("gutenberg", tmp_path)
    assert files_in(tmp_path) == ["gutenberg/alice.txt"]  # no half oz.txt

    (tmp_path / "gutenberg" / "oz.txt.part").write_text("Dorothy li")  # left by a killed run
    web.broken.clear()
    assert load_text("gutenberg", tmp_path) == ALICE + "\n" + OZ
    assert web.requests[-1] == "/cache/epub/55/pg55.txt"  # alice.txt was not downloaded again
    assert len(web.requests) == 3
    assert files_in(tmp_path) == ["gutenberg/alice.txt", "gutenberg/oz.txt"]


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def rename_fails(source, destination):
        raise OSError("disk full")

    monkeypatch.setattr(corpus.os, "replace", rename_fails)
    with pytest.raises(OSError, match="disk full"):
        corpus.write_atomic(tmp_path / "book.txt", b"Once upon a time\n")
    assert files_in(tmp_path) == []


def test_shakespeare_is_kept_when_its_sha256_matches(web, tmp_path, monkeypatch):
    data = b"First Citizen:\r\nBefore we proceed any further, hear me speak.  \n"
    monkeypatch.setitem(corpus.CORPORA["shakespeare"], "sha256", hashlib.sha256(data).hexdigest())
    web.files["/input.txt"] = data
    assert load_text("shakespeare", tmp_path) == data.decode().replace("\r\n", "\n")
    assert (tmp_path / "shakespeare.txt").read_bytes() == data  # stored byte for byte


def test_shakespeare_with_wrong_sha256_is_not_kept(web, tmp_path):
    web.files["/input.txt"] = b"<html>Rate limit exceeded</html>\n"
    with pytest.raises(CorpusError) as error:
        load_text("shakespeare", tmp_path)
    assert "corrupt" in str(error.value)
    assert "not kept" in str(error.value)
    assert corpus.CORPORA["shakespeare"]["sha256"] in str(error.value)
    assert files_in(tmp_path) == []


@pytest.mark.parametrize(
    "name, local_copy",
    [("gutenberg", "gutenberg"), ("shakespeare", "tinyshakespeare.txt")],
)
def test_no_network_says_how_to_work_offline(offline, tmp_path, name, local_copy):
    with pytest.raises(CorpusError) as error:
        load_text(name, tmp_path)
    message = str(error.value)
    assert "could not download http://127.0.0.1:" in message
    knobs = "(DATA in train_model.ipynb, the first argument of corpus.py)"
    assert f"{knobs}, e.g. ../shared/data/{local_copy}" in message
    assert "any .txt file" in message
    assert files_in(tmp_path) == []


# ---------------------------------------------------------------- cleaning Project Gutenberg


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"start": "*** START OF THIS PROJECT GUTENBERG EBOOK ALICE ***"},
        {"start": "***START OF THE PROJECT GUTENBERG EBOOK ALICE ***"},
        {"end_line": "End of Project Gutenberg's Alice's Adventures, by Charles\nLutwidge Dodgson"},
        {"credit": "This etext was prepared from the 1897 edition by David Price"},
        {"credit": "", "end_line": ""},
    ],
    ids=["modern", "this", "no-space", "two-line-end", "etext-credit", "no-credit"],
)
def test_clean_gutenberg(changes):
    body = "CHAPTER I.  \nDown the Rabbit-Hole\t\n\nAlice sat by the cafe\u0301.\n\n"
    expected = "CHAPTER I.\nDown the Rabbit-Hole\n\nAlice sat by the caf\u00e9.\n"  # NFC: one é
    raw = gutenberg_file(body, **changes)
    assert corpus.clean_gutenberg(corpus.decode(raw, "pg11.txt")) == expected


def test_clean_gutenberg_docstring_example():
    text = (
        "Licence\n*** START OF THE PROJECT GUTENBERG EBOOK OZ ***\nProduced by Ann\n\n"
        "Chapter 1  \nDorothy\n\nEnd of the Project Gutenberg EBook of Oz\n"
        "*** END OF THE PROJECT GUTENBERG EBOOK OZ ***\nLicence"
    )
    assert corpus.clean_gutenberg(text) == "Chapter 1\nDorothy\n"


@pytest.mark.parametrize(
    "text",
    [
        "<html><body>Service unavailable</body></html>\n",
        "*** START OF THE PROJECT GUTENBERG EBOOK OZ ***\nDorothy\n",  # cut off before the end
        "Dorothy\n*** END OF THE PROJECT GUTENBERG EBOOK OZ ***\n",
    ],
)
def test_clean_gutenberg_without_markers_is_an_error(text):
    expected = r"pg55.txt has no '\*\*\* START OF'.*shared/data/gutenberg"
    with pytest.raises(CorpusError, match=expected):
        corpus.clean_gutenberg(text, "pg55.txt")


# ---------------------------------------------------------------- local files and folders


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"\xef\xbb\xbfTo be\r\nor not\r\n", "To be\nor not\n"),  # BOM and Windows line endings
        (b"To be\ror not\r", "To be\nor not\n"),  # old Mac line endings
        (b"To be  \n\nor not", "To be  \n\nor not"),  # otherwise exactly as saved
        ("cafe\u0301\n".encode(), "cafe\u0301\n"),  # no NFC for your own text
    ],
)
def test_files_load_as_saved_but_with_newline_endings(tmp_path, data, expected):
    write_files(tmp_path, {"book.txt": data})
    assert load_text(str(tmp_path / "book.txt")) == expected


def test_folder_and_subfolders_are_read_in_path_order(tmp_path, capsys):
    files = {
        "books/b.txt": b"second\n",
        "books/a.txt": b"first",  # no final newline: one is added before joining
        "books/notes.md": b"not a .txt file\n",
        "books/Z/c.txt": b"third: in a subfolder\n",  # "Z/c.txt" < "a.txt": upper case first
        "books/a/x/d.txt": b"fourth, two folders down\n",  # "a.txt" < "a/x/d.txt"
        "books/.ipynb_checkpoints/a-checkpoint.txt": b"hidden: not read\n",
        "books/.e.txt": b"hidden: not read\n",
    }
    write_files(tmp_path, files)
    text = load_text(str(tmp_path / "books"))
    assert text == "third: in a subfolder\n\nfirst\n\nfourth, two folders down\n\nsecond\n"
    assert [name for name, _ in load_documents(str(tmp_path / "books"))] == [
        "Z/c",
        "a",
        "a/x/d",
        "b",
    ]
    read = f"read 4 .txt files, {7 + 5 + 22 + 25} bytes, from {(tmp_path / 'books').resolve()}"
    assert read in capsys.readouterr().out


@pytest.mark.parametrize("source", ["a.txt", "./sub/../a.txt", "~/a.txt", "~", "."])
def test_relative_paths_start_from_the_current_folder(tmp_path, monkeypatch, source):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    write_files(tmp_path, {"a.txt": b"hello\n", "sub/readme.md": b"\n"})
    assert load_text(source) == "hello\n"


@pytest.mark.parametrize(
    "files, source, message",
    [
        ({}, "gutenbrg", "unknown corpus 'gutenbrg': use one of gutenberg, shakespeare, or"),
        ({}, "books/missing.txt", "no such file or folder: {tmp_path}/books/missing.txt"),
        ({"empty.txt": b""}, "empty.txt", "{tmp_path}/empty.txt is empty"),
        ({"blank.txt": b" \r\n\n"}, "blank.txt", "blank.txt is empty"),
        ({"books/notes.md": b"hi\n"}, "books", "no .txt files in the folder {tmp_path}/books"),
        ({"a.txt": "café".encode("latin-1")}, "a.txt", "a.txt is not UTF-8: byte 0xe9 at offset 3"),
        (
            {"a.txt": b"\x89PNG\r\n\x1a\n\x00\x00"},
            "a.txt",
            "a.txt is not a UTF-8 text file: it has",
        ),
        ({"a.txt": "hi".encode("utf-16")}, "a.txt", "has a NUL byte at offset 3"),
        ({"b/1.txt": b"ok\n", "b/2.txt": b"\xff\n"}, "b", "b/2.txt is not UTF-8: byte 0xff at"),
    ],
    ids=["name", "missing", "empty", "blank", "no-txt", "latin-1", "binary", "utf-16", "folder"],
)
def test_bad_input_says_what_to_do(tmp_path, monkeypatch, files, source, message):
    monkeypatch.chdir(tmp_path)
    write_files(tmp_path, files)
    with pytest.raises(CorpusError) as error:
        load_text(source, tmp_path / "data")
    assert message.format(tmp_path=tmp_path.resolve()) in str(error.value)


def test_not_utf8_offers_errors_replace_by_the_name_of_each_knob(tmp_path):
    write_files(tmp_path, {"a.txt": "café\n".encode("latin-1")})
    with pytest.raises(CorpusError) as error:
        load_text(str(tmp_path / "a.txt"))
    for knob in ["TEXT_ERRORS = 'replace' in train_model.ipynb", "--errors replace for corpus.py"]:
        assert knob in str(error.value)
    assert load_text(str(tmp_path / "a.txt"), errors="replace") == "caf\ufffd\n"


@pytest.mark.parametrize(
    "name, sha256",
    [
        ("tinyshakespeare.txt", "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"),
        ("gutenberg_prose.txt", "2b23d782735abd3e14bf5d6275d62f83000f91721e7fc88517b04bd3dc113e75"),
    ],
)
def test_shared_files_load_unchanged(name, sha256):
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is not here")
    assert text_sha256(load_text(str(path))) == sha256  # the sha256s in shared/data/README.md


def test_shakespeare_download_of_the_real_file(web, tmp_path):
    path = SHARED_DATA / "tinyshakespeare.txt"
    if not path.exists():
        pytest.skip(f"{path} is not here")
    web.files["/input.txt"] = path.read_bytes()  # the real sha256 check, no monkeypatching
    text = load_text("shakespeare", tmp_path)
    assert text_sha256(text) == corpus.CORPORA["shakespeare"]["sha256"]


# ---------------------------------------------------------------- the train/val split

DIGITS = "".join(f"{i}\n" for i in range(10))  # '0\n1\n...9\n'


@pytest.mark.parametrize(
    "text, val_fraction, start",
    [
        ("a\nb\nc\nd\n", 0.5, 4),  # the line end at the middle
        ("aaaa\nb\nc\n", 0.5, 5),  # target 4: the line ends at 5 and 7, the nearer
        ("a\nb\nccccccc\n", 0.4, 4),  # target 7: 4 is nearer than the end, which is no cut
        ("a\nbbbbbbbb\n", 0.1, 2),  # the only line end to cut at
        ("ab cd ef", 0.5, 3),  # no line end: the nearest whitespace (3 and 6 from target 4)
        ("abcdef", 0.5, 3),  # no whitespace either: right there
        ("ab", 0.9, 1),  # both parts keep a character
        ("a", 0.1, 1),  # one character: nothing is held out
    ],
)
def test_where_the_held_out_end_begins_by_hand(text, val_fraction, start):
    assert corpus.held_out_start(text, val_fraction) == start


def test_every_file_gives_its_last_tenth():
    books = [Document("a", "".join(f"a{i}\n" for i in range(20))), Document("b", "b0\nb1\n")]
    split = split_documents(books, 0.1)
    # a: 70 characters, target 63, nearest line end 62; b: 6 characters, its one line end
    assert split.val == "a18\na19\n\nb1\n"  # each file's ending, one blank line between
    assert split.train == "".join(f"a{i}\n" for i in range(18)) + "\nb0\n"
    assert split.held_out == [("a", 8), ("b", 3)]
    assert split.describe() == (
        "held out the last 10% of every file: 2 of 2 files give 11 characters, from 3 (b) to 8 (a)"
    )


def test_one_file_is_split_like_nanogpt():
    """For one file the held-out text is its last 10%, cut at the first line end from there on:
    within one line of nanoGPT's and char-rnn's text[int(0.9 * len(text)):]."""
    lines = [f"line {i:03}\n" for i in range(1000)]
    text = "".join(lines)
    train, val = split_train_val(text)
    assert val == text[int(0.9 * len(text)) :] == "".join(lines[900:])
    assert train + val == text


@given(
    st.lists(st.text(min_size=1, max_size=300), min_size=1, max_size=8),
    st.sampled_from([0.1, 0.25, 0.5]),
)
def test_every_character_of_every_file_lands_in_one_part(texts, val_fraction):
    documents = [Document(str(i), text) for i, text in enumerate(texts)]
    if all(len(text) < 2 for text in texts):
        with pytest.raises(CorpusError, match="too short to split"):
            split_documents(documents, val_fraction)
        return
    split = split_documents(documents, val_fraction)
    for (_, text), (_, held) in zip(documents, split.held_out, strict=True):
        start = len(text) - held
        assert (held == 0) == (len(text) < 2)  # every file of 2 characters or more gives some
        assert 0 < start <= len(text) and text[start:] in split.val
    assert sum(held for _, held in split.held_out) <= len(split.val)


def test_a_book_on_one_line_splits():
    """A 5 MB text without line breaks is long, not short: its end is cut after whitespace."""
    text = ("It was a dark and stormy night; the rain fell in torrents. " * 90_000).strip()
    train, val = split_train_val(text)
    assert len(val) == pytest.approx(0.1 * len(text), rel=1e-4) and train.endswith(" ")


def test_too_short_text_is_an_error():
    with pytest.raises(CorpusError, match="too short to split"):
        split_documents([Document("a", "x")])
    with pytest.raises(ValueError, match="between 0 and 1"):
        split_documents([Document("a", "xyz")], 1.0)


# ---------------------------------------------------------------- sha256 and the command line


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        ("é", hashlib.sha256(b"\xc3\xa9").hexdigest()),  # the UTF-8 bytes, not the code point
    ],
)
def test_text_sha256(text, expected):
    assert text_sha256(text) == expected


def test_command_line(tmp_path, capsys):
    write_files(tmp_path, {"book.txt": DIGITS.encode() * 100})
    corpus.main([str(tmp_path / "book.txt")])
    out = capsys.readouterr().out
    assert "2,000 characters, 2,000 bytes, 11 distinct" in out
    assert f"sha256 {text_sha256(DIGITS * 100)}" in out
    assert "held out the last 10% of every file: 1 of 1 files give 200 characters" in out
    assert "train 1,800 characters, val 200" in out
    with pytest.raises(SystemExit, match="unknown corpus 'gutenbrg'") as refused:
        corpus.main(["gutenbrg"])
    assert refused.value.code == 2  # argparse's status for a bad command line
