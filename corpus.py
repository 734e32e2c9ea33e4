r"""Training text: download, clean, cache and split the text the diffusion model learns from.

    books = load_documents("gutenberg")    # 23 public-domain novels, 7.7 MB, cached under data/
    books = load_documents("shakespeare")  # Tiny Shakespeare, 1.1 MB, one file
    books = load_documents("~/my_books")   # any .txt file, or a folder of them (and subfolders)
    split = split_documents(books)         # the last tenth of every file is held out
    split.train, split.val                 # the two texts; split.describe() says what went where
    text = load_text("gutenberg")          # or all of it as one text


A corpus name is downloaded on first use from its original source (Project Gutenberg for the
books, karpathy/char-rnn on GitHub for Tiny Shakespeare) and cached under data/; later runs read
the cache. The books lose Project Gutenberg's licence header and footer (see data/README.md).
Any text comes back as saved, except that a byte-order mark is dropped and \r\n and \r line
endings become \n.

Left out on purpose: other formats (EPUB, HTML, PDF), guessing a file's encoding (a file that is
not UTF-8 is an error, or read it with errors="replace"), download retries and mirrors, and any
change to the words themselves, such as turning curly quotes into ASCII ones.
"""

import hashlib
import http.client
import os
import re
import unicodedata
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

CORPORA = {
    "gutenberg": {
        "description": "23 public-domain children's and fantasy novels, Project Gutenberg, 7.7 MB",
        "url": "https://www.gutenberg.org/cache/epub/{number}/pg{number}.txt",
        "local_copy": "../shared/data/gutenberg",
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


class Document(NamedTuple):
    """One file of a corpus: its name (the path inside its folder, without .txt) and its text."""

    name: str
    text: str


def load_documents(
    source: str = "gutenberg", data_dir: str | Path = "data", errors: str = "strict"
) -> list[Document]:
    """The files of a corpus name or a path, in order, each as a Document.

    source: a name in CORPORA (downloaded on first use, then read from data_dir), a text file,
        or a folder: its .txt files and those of its subfolders, in the order of their paths
        (a/b.txt before a/c/d.txt before b.txt); files and folders whose names start with "."
        are passed over. Relative paths start from the current folder; ~ is your home folder.
    errors: "strict" stops at the first byte that is not UTF-8; "replace" turns such bytes
        into U+FFFD (the errors argument of bytes.decode).
    """
    data_dir = Path(data_dir).expanduser()
    if source == "gutenberg":
        folder, files = data_dir / "gutenberg", fetch_gutenberg(data_dir)
    elif source == "shakespeare":
        path = fetch_shakespeare(data_dir)
        folder, files = path.parent, [path]
    else:
        path = find_path(source)
        folder, files = (path, text_files(path)) if path.is_dir() else (path.parent, [path])
        if not files:
            raise CorpusError(
                f"no .txt files in the folder {path} or its subfolders: put your books there as "
                ".txt files"
            )
    documents = [
        Document(file.relative_to(folder).with_suffix("").as_posix(), read_file(file, errors))
        for file in files
    ]
    if len(files) > 1:
        size = sum(file.stat().st_size for file in files)
        print(f"read {len(files)} .txt files, {size:,} bytes, from {folder}")
    return documents


def load_text(
    source: str = "gutenberg", data_dir: str | Path = "data", errors: str = "strict"
) -> str:
    """The text of a corpus name or a path: its files (load_documents) joined by join_documents."""
    return join_documents(load_documents(source, data_dir, errors))


def join_documents(documents) -> str:
    r"""Texts (or Documents) joined with one blank line between them; one text comes back as is.

    ['a', 'b\n', 'c'] -> 'a\n\nb\n\nc': a text followed by another gets a final \n first.
    """
    texts = [getattr(document, "text", document) for document in documents]
    ended = [text if text.endswith("\n") else text + "\n" for text in texts[:-1]]
    # each of them ends with \n, so joining with \n leaves exactly one blank line between texts
    return "\n".join(ended + texts[-1:])


def truncate_documents(documents: list[Document], max_chars: int) -> list[Document]:
    """The documents cut to max_chars characters in all: whole ones while they fit, then the
    start of the next (smoke runs train on a small slice of a corpus)."""
    kept, left = [], max_chars
    for document in documents:
        if left <= 0:
            break
        kept.append(Document(document.name, document.text[:left]))
        left -= len(document.text)
    return kept


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


def fetch_gutenberg(data_dir: Path) -> list[Path]:
    """Download, clean and cache each missing book; the paths of all 23, in catalogue order.

    Each book is kept as data_dir/gutenberg/<name>.txt, so a run that was cut off resumes with
    the first book that is missing.
    """
    paths = []
    for i, (name, number) in enumerate(GUTENBERG_BOOKS.items(), start=1):
        book_path = data_dir / "gutenberg" / f"{name}.txt"
        if not book_path.exists():
            url = CORPORA["gutenberg"]["url"].format(number=number)
            print(f"downloading {i}/{len(GUTENBERG_BOOKS)} {name} from {url}")
            book = clean_gutenberg(decode(download(url, "gutenberg"), url), url)
            write_atomic(book_path, book.encode("utf-8"))
        paths.append(book_path)
    return paths


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


def held_out_start(text: str, val_fraction: float = 0.1) -> int:
    r"""Where the held-out end of a text begins: at the line end nearest to 1 - val_fraction of
    it; in a text with no line end to cut at, at the nearest whitespace; with none, right there.

    Both parts keep at least one character. 'a\nb\nc\nd\n', 0.5 -> 4 ('a\nb\n' | 'c\nd\n');
    'ab cd', 0.5 -> 3 ('ab ' | 'cd'); 'abcd', 0.5 -> 2 ('ab' | 'cd').
    """
    if len(text) < 2:
        return len(text)  # nothing to hold out from a single character
    target = min(max(1, round(len(text) * (1 - val_fraction))), len(text) - 1)
    for boundary in (r"\n", r"\s"):  # cut after a line end, else after any whitespace
        cuts = [match.end() for match in re.compile(boundary).finditer(text, 0, len(text) - 1)]
        if cuts:  # the nearest to the target; of two as near, the earlier
            return min(cuts, key=lambda cut: (abs(cut - target), cut))
    return target


@dataclass
class Split:
    """The training and held-out texts, and how much of each file went where."""

    train: str
    val: str
    held_out: list[tuple[str, int]]  # (file name, characters held out), for every file
    val_fraction: float

    def describe(self) -> str:
        """ "held out the last 10% of every file: 23 of 23 files give 760,866 characters, ..." """
        contributing = [(chars, name) for name, chars in self.held_out if chars]
        line = (
            f"held out the last {self.val_fraction:.0%} of every file: {len(contributing)} of "
            f"{len(self.held_out)} files give {sum(c for c, _ in contributing):,} characters"
        )
        if len(contributing) > 1:
            (low, low_name), (high, high_name) = min(contributing), max(contributing)
            line += f", from {low:,} ({low_name}) to {high:,} ({high_name})"
        return line


def split_documents(documents: list[Document], val_fraction: float = 0.1) -> Split:
    r"""Hold out the last val_fraction of every file (cut at a line end: held_out_start).

    For one file this is the split of nanoGPT and char-rnn (Tiny Shakespeare's last 10%), so
    figures compare with theirs; for a corpus of books every book contributes, its ending. The
    parts of each kind are joined in order by join_documents.

    [('a', '1\n2\n3\n4\n'), ('b', 'x\ny\n')], 0.5 -> train '1\n2\n\nx\n', val '3\n4\n\ny\n'
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, not {val_fraction}")
    train, val, held_out = [], [], []
    for name, text in documents:
        start = held_out_start(text, val_fraction)
        train.append(text[:start])
        if start < len(text):
            val.append(text[start:])
        held_out.append((name, len(text) - start))
    if not val:
        raise CorpusError(
            "the text is too short to split: every file has fewer than 2 characters. Use a "
            "longer text"
        )
    return Split(join_documents(train), join_documents(val), held_out, val_fraction)


def split_train_val(text: str, val_fraction: float = 0.1) -> tuple[str, str]:
    """(train, val) of one text: its last val_fraction is held out (split_documents)."""
    split = split_documents([Document("text", text)], val_fraction)
    return split.train, split.val


def text_sha256(text: str) -> str:
    """Hex sha256 of the text's UTF-8 bytes: 'abc' -> 'ba7816bf...15ad'."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def main(argv: list[str] | None = None) -> None:
    """python corpus.py [gutenberg | shakespeare | PATH]: load a text, show its size and split."""
    from tools import cli  # the project's one way to refuse bad input: one line, status 2

    corpora = "; ".join(f"{name}: {info['description']}" for name, info in CORPORA.items())
    parser = cli.ArgumentParser(description=main.__doc__)
    parser.add_argument("source", nargs="?", default="gutenberg", help=f"{corpora}; or a path")
    parser.add_argument("--data-dir", default="data", help="where downloads are cached")
    parser.add_argument("--errors", default="strict", choices=["strict", "replace"])
    args = parser.parse_args(argv)
    try:
        documents = load_documents(args.source, args.data_dir, args.errors)
        split = split_documents(documents)
    except CorpusError as error:
        cli.refuse(str(error))
    text = join_documents(documents)
    size = f"{len(text):,} characters, {len(text.encode()):,} bytes, {len(set(text))} distinct"
    print(f"{args.source}: {size}")
    print(f"sha256 {text_sha256(text)}")
    print(split.describe())
    print(f"train {len(split.train):,} characters, val {len(split.val):,}")


if __name__ == "__main__":
    main()
