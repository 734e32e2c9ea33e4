r"""Training text: download, clean, cache and split the text the diffusion model learns from.

    text = load_text("gutenberg")    # 23 public-domain novels, 7.7 MB, cached under data/
    text = load_text("shakespeare")  # Tiny Shakespeare, 1.1 MB
    text = load_text("~/my_books")   # or any .txt file, or a folder of .txt files
    train_text, val_text = split_train_val(text)

A corpus name is downloaded on first use from its original source (Project Gutenberg for the
books, karpathy/char-rnn on GitHub for Tiny Shakespeare) and cached under data/; later runs read
the cache. The books lose Project Gutenberg's licence header and footer (see data/README.md).
Any text comes back as saved, except that a byte-order mark is dropped and \r\n and \r line
endings become \n.

Left out on purpose: other formats (EPUB, HTML, PDF), guessing a file's encoding (a file that is
not UTF-8 is an error, or pass errors="replace"), download retries and mirrors, and any change to
the words themselves, such as turning curly quotes into ASCII ones.
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
        or a folder whose .txt files are read in name order and joined with one blank line.
        Relative paths start from the current folder; ~ means your home folder.
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
    files = sorted(path.glob("*.txt"))
    if not files:
        raise CorpusError(f"no .txt files in the folder {path}: put your books there as .txt files")
    texts = [read_file(file, errors) for file in files]
    # each text ends with \n, so joining with \n leaves exactly one blank line between files
    return "\n".join(text if text.endswith("\n") else text + "\n" for text in texts)


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
            "Save it again as UTF-8, or pass errors='replace' to turn bad bytes into U+FFFD"
        ) from None
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def download(url: str, name: str) -> bytes:
    """Return the bytes at url, or a CorpusError that says how to work offline."""
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.read()  # raises IncompleteRead if the connection dies halfway
    except (OSError, http.client.HTTPException) as error:
        raise CorpusError(
            f"could not download {url} ({error}). Offline? Pass a local copy instead of the "
            f"name {name!r}, e.g. DATA='{CORPORA[name]['local_copy']}', or any .txt file"
        ) from error


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
                f"{digest}, not {info['sha256']}. It was not kept; try again, or pass a local "
                f"copy, e.g. DATA='{info['local_copy']}'"
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
            f"so its licence text cannot be removed. Pass a local copy instead, e.g. "
            f"DATA='{CORPORA['gutenberg']['local_copy']}'"
        )
    book = text[start.end() : end.start()]
    book = "\n".join(line.rstrip(" \t") for line in book.split("\n")).strip("\n")
    book = END_LINE.sub("", CREDIT.sub("", book)).strip("\n")
    return unicodedata.normalize("NFC", book) + "\n"


def cut_into_pieces(text: str, num_pieces: int) -> list[str]:
    r"""Cut text at line ends into num_pieces contiguous pieces of about equal length.

    '0\n1\n2\n3\n', num_pieces=2 -> ['0\n1\n', '2\n3\n']
    """
    line_ends = [match.end() for match in re.finditer("\n", text)]
    if not text.endswith("\n"):
        line_ends.append(len(text))  # the last line has no \n
    if len(line_ends) < num_pieces:
        raise CorpusError(
            f"the text is too short to split: it has {len(line_ends)} lines, and each of the "
            f"{num_pieces} pieces needs at least one. Use a longer text or a smaller num_pieces"
        )
    cuts, line = [0], -1  # line: index of the line that ends the previous piece
    for piece in range(1, num_pieces):
        target = piece * len(text) // num_pieces
        line = max(line + 1, bisect.bisect_left(line_ends, target))  # first line end >= target
        line = min(line, len(line_ends) - 1 - (num_pieces - piece))  # a line for each piece left
        cuts.append(line_ends[line])
    cuts.append(len(text))
    return [text[start:end] for start, end in pairwise(cuts)]


def split_train_val(text: str, val_fraction: float = 0.1, num_pieces: int = 100) -> tuple[str, str]:
    r"""Split text into (train_text, val_text), holding out evenly spaced pieces for validation.

    The text is cut at line ends into num_pieces contiguous pieces of about equal length, and
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
