r"""Training text: download, clean, cache and split the text the diffusion model learns from.

    text = load_text("gutenberg")    # 23 public-domain novels, 7.7 MB, cached under data/
    text = load_text("shakespeare")  # Tiny Shakespeare, 1.1 MB
    text = load_text("~/my_books")   # or any .txt file, or a folder of .txt files (and subfolders)
    train_text, val_text = split_train_val(text)

A corpus name is downloaded on first use from its original source (Project Gutenberg for the
books, karpathy/char-rnn on GitHub for Tiny Shakespeare) and cached under data/; later runs read
the cache. The books lose Project Gutenberg's licence header and footer (see data/README.md).
Any text comes back as saved, except that a byte-order mark is dropped and \r\n and \r line
endings become \n.

Left out on purpose: other formats (EPUB, HTML, PDF), guessing a file's encoding (a file that is
not UTF-8 is an error, or read it with errors="replace"), download retries and mirrors, and any
change to the words themselves, such as turning curly quotes into ASCII ones.
"""

import argparse
import bisect
import hashlib
import http.client
import os
import re
import sys
import unicodedata
import urllib.request
from itertools import pairwise
from pathlib import Path

CORPORA = {
    "gutenberg": {
        "description": "23 public-domain children's and fantasy novels, Project Gutenberg, 7.7 MB",
        "url": "https://www.gutenberg.org/cache/epub/{number}/pg{number}.txt",
        "local_copy": "../shared/data/gutenberg_prose.txt",
    },
    "shakespeare": {
        "description": "Tiny Shakespeare: 40,000 lines from Shakespeare's plays (char-rnn), 1.1 MB",
        "url": (
            "https://raw.githubusercontent.com/karpathy/char-rnn/master/"
            "data/tinyshakespeare/input.txt"
        ),
        "sha256": "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        "local_copy": "../shared/data/tinyshakespeare.txt",
    },
}

# file name -> Project Gutenberg eBook number; titles and authors are in data/README.md
GUTENBERG_BOOKS = {
    "alice_in_wonderland": 11,
    "through_the_looking_glass": 12,
    "peter_and_wendy": 26654,
    "wonderful_wizard_of_oz": 55,
    "marvelous_land_of_oz": 54,
    "ozma_of_oz": 486,
    "dorothy_and_the_wizard_in_oz": 420,
    "road_to_oz": 485,
    "emerald_city_of_oz": 517,
    "wind_in_the_willows": 289,
    "secret_garden": 113,
    "little_princess": 146,
    "jungle_book": 236,
    "five_children_and_it": 778,
    "enchanted_castle": 3536,
    "princess_and_the_goblin": 708,
    "grimms_fairy_tales": 2591,
    "tom_browns_school_days": 1480,
    "christmas_carol": 46,
    "treasure_island": 120,
    "adventures_of_sherlock_holmes": 1661,
    "tom_sawyer": 74,
    "pride_and_prejudice": 1342,
}


class CorpusError(Exception):
    """Missing or unusable text; the message says what to do about it."""


def load_text(
    source: str = "gutenberg", data_dir: str | Path = "data", errors: str = "strict"
) -> str:
    """Return the text of a corpus name or a path.

    source: a name in CORPORA (downloaded on first use, then read from data_dir), a text file,
        or a folder: its .txt files and those of its subfolders, in the order of their paths
        (a/b.txt before a/c/d.txt before b.txt), joined with one blank line; files and folders
        whose names start with "." are passed over. Relative paths start from the current
        folder; ~ means your home folder.
    errors: "strict" stops at the first byte that is not UTF-8; "replace" turns such bytes
        into U+FFFD (the errors argument of bytes.decode).
    """
    if source == "gutenberg":
        path = fetch_gutenberg(Path(data_dir).expanduser())
    elif source == "shakespeare":
        path = fetch_shakespeare(Path(data_dir).expanduser())
    else:
        path = find_path(source)
    if not path.is_dir():
        return read_file(path, errors)
    files = text_files(path)
    if not files:
        raise CorpusError(
            f"no .txt files in the folder {path} or its subfolders: put your books there as .txt "
            "files"
        )
    texts = [read_file(file, errors) for file in files]
    size = sum(file.stat().st_size for file in files)
    print(f"read {len(files)} .txt file{'s' * (len(files) > 1)}, {size:,} bytes, from {path}")
    # each text ends with \n, so joining with \n leaves exactly one blank line between files
    return "\n".join(text if text.endswith("\n") else text + "\n" for text in texts)


def text_files(folder: Path) -> list[Path]:
    """The .txt files in folder and its subfolders, sorted by their path inside it.

    Sorted as text with / between names, the same on every system: books/a.txt, books/b/c.txt,
    books/d.txt. Hidden files and folders (.git, .ipynb_checkpoints) are not read.
    """
    found = [
        path
        for path in folder.rglob("*.txt")
        if path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    ]
    return sorted(found, key=lambda path: path.relative_to(folder).as_posix())


def find_path(source: str) -> Path:
    """Turn a source that is not a corpus name into an existing path, or explain what is wrong."""
    path = Path(source).expanduser()
    if path.exists():
        return path.resolve()  # so that messages show the full path
    if len(path.parts) == 1 and not path.suffix:  # a bare word: most likely a mistyped name
        raise CorpusError(
            f"unknown corpus {source!r}: use one of {', '.join(CORPORA)}, "
            "or the path of a .txt file or of a folder of .txt files"
        )
    raise CorpusError(
        f"no such file or folder: {path.resolve()} (relative paths start from the current folder)"
    )


def read_file(path: Path, errors: str = "strict") -> str:
    """Read a UTF-8 text file; an empty or binary file is an error."""
    text = decode(path.read_bytes(), str(path), errors)
    if not text.strip():
        raise CorpusError(f"{path} is empty: there is nothing to train on")
    return text


def decode(data: bytes, origin: str, errors: str = "strict") -> str:
    r"""UTF-8 bytes -> text, without a byte-order mark and with \n line endings.

    b'\xef\xbb\xbfTo be\r\nor not\r' -> 'To be\nor not\n'
    """
    nul = data.find(b"\x00")
    if nul >= 0:  # never in text saved as UTF-8, always in binary files and in UTF-16 text
        raise CorpusError(
            f"{origin} is not a UTF-8 text file: it has a NUL byte at offset {nul}. "
            "If it is text, save it again as UTF-8"
        )
    try:
        text = data.decode("utf-8", errors)
    except UnicodeDecodeError as error:
        raise CorpusError(
            f"{origin} is not UTF-8: byte 0x{data[error.start]:02x} at offset {error.start}. "
            "Save it again as UTF-8, or read it with bad bytes turned into U+FFFD: "
            "TEXT_ERRORS = 'replace' in train_model.ipynb, --errors replace for corpus.py, "
            "errors='replace' for load_text"
        ) from None
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def download(url: str, name: str) -> bytes:
    """Return the bytes at url, or a CorpusError that says how to work offline."""
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.read()  # raises IncompleteRead if the connection dies halfway
    except (OSError, http.client.HTTPException) as error:
        raise CorpusError(
            f"could not download {url} ({error}). Offline? {local_copy_advice(name)}"
        ) from error


def local_copy_advice(name: str) -> str:
    """What to do when a named corpus cannot be downloaded, naming the knob of every caller."""
    return (
        f"Give the path of a local copy instead of the name {name!r} (DATA in train_model.ipynb, "
        f"the first argument of corpus.py), e.g. {CORPORA[name]['local_copy']}, or any .txt file "
        "or folder"
    )


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename it to path.

    A rename is all or nothing, so a run that dies halfway never leaves a half-written path that
    a later run would trust as the finished cache.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    try:
        part.write_bytes(data)
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)  # only still there if the write failed


def fetch_shakespeare(data_dir: Path) -> Path:
    """Download Tiny Shakespeare to data_dir/shakespeare.txt, byte for byte, unless it is there."""
    path, info = data_dir / "shakespeare.txt", CORPORA["shakespeare"]
    if not path.exists():
        print(f"downloading shakespeare from {info['url']}")
        data = download(info["url"], "shakespeare")
        digest = hashlib.sha256(data).hexdigest()
        if digest != info["sha256"]:
            raise CorpusError(
                f"the download from {info['url']} is corrupt or has changed: its sha256 is "
                f"{digest}, not {info['sha256']}. It was not kept. Try again, or: "
                f"{local_copy_advice('shakespeare')}"
            )
        write_atomic(path, data)
    return path


def fetch_gutenberg(data_dir: Path) -> Path:
    """Download, clean and cache each missing book, then join them all into gutenberg.txt.

    Each book is kept as data_dir/gutenberg/<name>.txt, so a run that was cut off resumes with
    the first book that is missing.
    """
    path = data_dir / "gutenberg.txt"
    if path.exists():
        return path
    books = []
    for i, (name, number) in enumerate(GUTENBERG_BOOKS.items(), start=1):
        book_path = data_dir / "gutenberg" / f"{name}.txt"
        if not book_path.exists():
            url = CORPORA["gutenberg"]["url"].format(number=number)
            print(f"downloading {i}/{len(GUTENBERG_BOOKS)} {name} from {url}")
            book = clean_gutenberg(decode(download(url, "gutenberg"), url), url)
            write_atomic(book_path, book.encode("utf-8"))
        books.append(read_file(book_path))
    # each book ends with \n, so joining with \n leaves exactly one blank line between books
    write_atomic(path, "\n".join(books).encode("utf-8"))
    return path


START = re.compile(r"^\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG EBOOK.*\n", re.I | re.M)
END = re.compile(r"^\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG EBOOK", re.I | re.M)
CREDIT = re.compile(r"\A(Produced by|This etext was prepared).*(\n.+)*", re.I)  # to a blank line
END_LINE = re.compile(r"^End of (the )?Project Gutenberg.*(\n.+)*\Z", re.I | re.M)


def clean_gutenberg(text: str, origin: str = "the file") -> str:
    r"""Keep only the book from a Project Gutenberg file with \n line endings.

    Drops the licence header (up to '*** START OF THE PROJECT GUTENBERG EBOOK ...') and footer
    (from '*** END OF ...'), the volunteer credit paragraph at the top ('Produced by ...') and
    the 'End of the Project Gutenberg EBook of ...' line; then strips spaces at line ends,
    composes accents (Unicode NFC: 'e' + U+0301 -> 'é'), and ends with exactly one \n.

    '*** START OF THE PROJECT GUTENBERG EBOOK OZ ***\nProduced by Ann\n\nChapter 1  \nDorothy\n'
    '\nEnd of the Project Gutenberg EBook of Oz\n*** END OF THE PROJECT GUTENBERG EBOOK OZ ***\n'
    -> 'Chapter 1\nDorothy\n'
    """
    start = START.search(text)
    end = END.search(text, start.end()) if start else None
    if end is None:  # e.g. an error page, or Project Gutenberg changed its format
        raise CorpusError(
            f"{origin} has no '*** START OF' and '*** END OF THE PROJECT GUTENBERG EBOOK' lines, "
            f"so its licence text cannot be removed. {local_copy_advice('gutenberg')}"
        )
    book = text[start.end() : end.start()]
    book = "\n".join(line.rstrip(" \t") for line in book.split("\n")).strip("\n")
    book = END_LINE.sub("", CREDIT.sub("", book)).strip("\n")
    return unicodedata.normalize("NFC", book) + "\n"


# Where a piece may end, best first: after a line, after any whitespace, after any character.
BOUNDARIES = [("lines", "\n"), ("words", r"\s")]


def cut_into_pieces(text: str, num_pieces: int) -> list[str]:
    r"""Cut text into num_pieces contiguous pieces of about equal length, at line ends.

    A text with fewer lines than pieces (a whole book on one line, say) is cut after whitespace
    instead, and one with too little whitespace too (Chinese without line breaks) anywhere.
    '0\n1\n2\n3\n', num_pieces=2 -> ['0\n1\n', '2\n3\n']; 'a b c d', 2 -> ['a b ', 'c d']
    """
    for _, pattern in BOUNDARIES:
        ends = [match.end() for match in re.finditer(pattern, text)]
        if not ends or ends[-1] != len(text):
            ends.append(len(text))  # the text itself ends the last piece
        if len(ends) >= num_pieces:
            break
    else:
        ends = range(1, len(text) + 1)  # after any character, without a list of millions
        if len(ends) < num_pieces:
            raise CorpusError(
                f"the text is too short to split: it has {len(text)} characters, and each of "
                f"the {num_pieces} pieces needs at least one. Use a longer text"
            )
    cuts, end = [0], -1  # end: index in `ends` of the end of the previous piece
    for piece in range(1, num_pieces):
        target = piece * len(text) // num_pieces
        end = max(end + 1, bisect.bisect_left(ends, target))  # the first end at or after target
        end = min(end, len(ends) - 1 - (num_pieces - piece))  # leave an end for each piece left
        cuts.append(ends[end])
    cuts.append(len(text))
    return [text[start:stop] for start, stop in pairwise(cuts)]


def split_train_val(text: str, val_fraction: float = 0.1, num_pieces: int = 100) -> tuple[str, str]:
    r"""Split text into (train_text, val_text), holding out evenly spaced pieces for validation.

    The text is cut at line ends (see cut_into_pieces for a text of very few lines) into
    num_pieces contiguous pieces of about equal length, and
    val_fraction of them are held out, spread evenly: with the defaults every 10th piece
    (pieces 9, 19, ..., 99). Why not simply the last 10%? For gutenberg that would be all
    Jane Austen, the last book, so validation would measure one author. Evenly spaced pieces
    sample every book, while each one is still long contiguous text (about 77 KB for gutenberg),
    so the only passages shared by train and validation are the 19 at the seams between them.
    Splitting by random lines or sentences would instead validate on passages the model has
    half-read in training.

    The pieces of each part are joined in order with nothing in between, so every character of
    text is in exactly one part, len(train) + len(val) == len(text), and no line is broken or
    glued to another (every piece but the last ends with \n).

    text = '0\n1\n2\n3\n4\n5\n6\n7\n8\n9\n', num_pieces=5: pieces '0\n1\n', '2\n3\n', ..., '8\n9\n'
        val_fraction=0.2 -> val = piece 4 = '8\n9\n'
        val_fraction=0.4 -> val = pieces 1 and 4 = '2\n3\n8\n9\n'
    """
    num_val = round(val_fraction * num_pieces)
    if not 0 < num_val < num_pieces:
        raise ValueError(
            f"val_fraction={val_fraction} holds out {num_val} of {num_pieces} pieces; "
            "it must hold out at least one piece and leave at least one for training"
        )
    pieces = cut_into_pieces(text, num_pieces)
    # the last piece of each of num_val equal groups: 9, 19, ..., 99 for 10 of 100
    val_ids = {(group + 1) * num_pieces // num_val - 1 for group in range(num_val)}
    train = "".join(piece for i, piece in enumerate(pieces) if i not in val_ids)
    val = "".join(piece for i, piece in enumerate(pieces) if i in val_ids)
    return train, val


def text_sha256(text: str) -> str:
    """Hex sha256 of the text's UTF-8 bytes: 'abc' -> 'ba7816bf...15ad'."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def main(argv: list[str] | None = None) -> None:
    """python corpus.py [gutenberg | shakespeare | PATH]: load a text, show its size and split."""
    corpora = "; ".join(f"{name}: {info['description']}" for name, info in CORPORA.items())
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("source", nargs="?", default="gutenberg", help=f"{corpora}; or a path")
    parser.add_argument("--data-dir", default="data", help="where downloads are cached")
    parser.add_argument("--errors", default="strict", choices=["strict", "replace"])
    args = parser.parse_args(argv)
    try:
        text = load_text(args.source, args.data_dir, args.errors)
        train, val = split_train_val(text)
    except CorpusError as error:
        sys.exit(f"error: {error}")
    size = f"{len(text):,} characters, {len(text.encode()):,} bytes, {len(set(text))} distinct"
    print(f"{args.source}: {size}")
    print(f"sha256 {text_sha256(text)}")
    print(f"train {len(train):,} characters, val {len(val):,} ({len(val) / len(text):.1%})")


if __name__ == "__main__":
    main()
