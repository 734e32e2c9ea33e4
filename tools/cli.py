"""How every command-line tool of the project refuses bad input: one line on stderr, status 2.

    parser = cli.ArgumentParser(description=...)  # argparse, but an error is one line
    parser.add_argument("--steps", type=cli.whole_number(1))  # "argument --steps: ... not 0"
    text = cli.read_text(args.input, "--input")  # missing, a folder, not UTF-8: one line each
    out = cli.writable(args.out, "--out")  # checked before the work, not after it
    with cli.refusing(CheckpointError):  # errors whose own message already says what to do
        model = load_model(args.checkpoint)

Status 2 is argparse's own for a bad command line; a missing or unreadable file is a bad
argument too. Only the errors a tool names become one line: a bug still shows its traceback.
"""

import argparse
import math
import sys
from contextlib import contextmanager
from pathlib import Path


class Refused(SystemExit):
    """Exit status 2, the line already printed; str() is that line, so tests can match it."""

    def __init__(self, line: str):
        super().__init__(2)
        self.line = line

    def __str__(self) -> str:
        return self.line


def refuse(message: str):
    """Print `<tool>: message` on stderr and exit with status 2."""
    line = f"{Path(sys.argv[0]).name}: {message}"
    print(line, file=sys.stderr)
    raise Refused(line)


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, whose errors are one line: argparse prints the whole usage first."""

    def error(self, message):
        refuse(f"{message} (--help lists the options)")


def whole_number(minimum: int):
    """An argparse type: an integer >= minimum. whole_number(1)("0") is refused, naming both."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more, not {value}")
        return value

    return parse


def finite_number(text: str) -> float:
    """An argparse type: a float that is not nan or inf (float() accepts both, and a sampler
    then fails deep inside torch)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
    return value


def read_text(path, knob: str) -> str:
    """The UTF-8 text of the file `path`, or a refusal that names `knob` and what is wrong."""
    path = Path(path)
    if path.is_dir():
        refuse(f"{knob} {path} is a folder: give a text file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        refuse(f"{knob} {path} is not UTF-8 text (byte {error.start}): give a text file")
    except OSError as error:
        refuse(f"{knob} {path}: {error.strerror or error}")


def writable(path, knob: str) -> Path:
    """`path` if a file can be written there: its folder exists and it is not itself a folder.

    Checked before the work, so that a typo does not cost a training run, and so that the
    error names the path given, not the temporary file an atomic write goes through.
    """
    path = Path(path)
    if path.is_dir():
        refuse(f"{knob} {path} is a folder: give a file name")
    if not path.parent.is_dir():
        refuse(f"{knob} {path}: there is no folder {path.parent}, make it first")
    return path


def folder(path, knob: str) -> Path:
    """`path` as a folder to write into, made if missing; refused if it is a file."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        refuse(f"{knob} {path} is a file, not a folder")
    except OSError as error:
        refuse(f"{knob} {path}: {error.strerror or error}")
    return path


def describe(error: BaseException) -> str:
    """One line for an error: an OSError names its file; others give their message."""
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror or error}"
    return str(error).splitlines()[0] if str(error) else type(error).__name__


@contextmanager
def refusing(*errors: type[BaseException]):
    """Inside the block, the named errors become refuse(their message): for the files and
    settings a tool reads, whose errors say what to fix."""
    try:
        yield
    except errors as error:
        refuse(describe(error))
