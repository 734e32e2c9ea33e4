"""Write a notebook's defining cells into an importable module, so the notebook stays the source.

The notebooks are the teaching text *and* the source of the model and sampler code. A code cell
whose first line is the comment `#| export` holds only definitions; this script copies those
cells, in order, into a module that other files import:

    train_model.ipynb  ->  mdlm_model.py
    sampling.ipynb     ->  mdlm_sampling.py

Two ways to get the module, and they write the same text:

- From the shell (and in the tests): `python tools/nbexport.py train_model.ipynb` reads the saved
  notebook; `python tools/nbexport.py --check` exits non-zero when a committed module has drifted.
- From inside the notebook: `exporter = KernelExporter("train_model.ipynb")` in the first cell
  records every `#| export` cell as it runs, and `exporter.write()` writes the module. This reads
  what the kernel actually ran, so a learner who edits a model cell and re-runs the notebook gets
  a matching module even before Jupyter has saved the file.

The module ends with `SOURCE_SHA256`, a hash of the exported cells. Checkpoints store it, so
loading a checkpoint made by other code can say so (see `load_checkpoint` in the notebook).

Left out: cell magics, `%` line magics and `!` shell lines are not allowed in exported cells
(they are not Python); the exporter refuses them with a message.
"""

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

MARKER = "#| export"
MODULE_FOR = {"train_model.ipynb": "mdlm_model.py", "sampling.ipynb": "mdlm_sampling.py"}


def is_exported(source: str) -> bool:
    """True for a cell whose first line is the marker, e.g. '#| export\\nimport torch'."""
    return source.lstrip().startswith(MARKER)


def clean_cell(source: str) -> str:
    """Drop the marker line and surrounding blank lines; refuse IPython-only syntax."""
    lines = source.strip().splitlines()[1:]  # line 0 is the marker
    for line in lines:
        if line.lstrip().startswith(("%", "!")):
            raise ValueError(f"exported cells must be plain Python, found: {line.strip()!r}")
    return "\n".join(lines).strip("\n") + "\n"


def source_sha256(cells: list[str]) -> str:
    return hashlib.sha256("\n".join(cells).encode("utf-8")).hexdigest()


def render_module(cells: list[str], notebook_name: str) -> str:
    """The module text: a header, the cells separated by two blank lines, and the hash."""
    header = (
        f'"""Generated from {notebook_name}: edit the notebook, not this file.\n\n'
        f"Re-run the notebook, or `python tools/nbexport.py {notebook_name}`, to regenerate it;\n"
        f'tests/test_nbexport.py fails when this file and the notebook disagree.\n"""\n'
    )
    footer = f'SOURCE_SHA256 = "{source_sha256(cells)}"\n'
    return header + "\n" + "\n\n".join([*cells, footer])


def notebook_cells(notebook_path: str | Path) -> list[str]:
    """The exported cells of a saved notebook, in notebook order, cleaned."""
    notebook = json.loads(Path(notebook_path).read_text(encoding="utf-8"))
    sources = []
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = cell["source"]
        source = "".join(source) if isinstance(source, list) else source
        if is_exported(source):
            sources.append(clean_cell(source))
    return sources


def write_if_changed(path: Path, text: str) -> bool:
    """Write atomically (temporary file, then rename); skip when the text is already there."""
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as file:
        file.write(text)
    os.replace(temporary, path)
    return True


def export(notebook_path: str | Path) -> Path:
    """Regenerate the module of one notebook from the saved file; returns the module path."""
    notebook_path = Path(notebook_path)
    module_path = notebook_path.with_name(MODULE_FOR[notebook_path.name])
    write_if_changed(module_path, render_module(notebook_cells(notebook_path), notebook_path.name))
    return module_path


def drift(notebook_path: str | Path) -> str | None:
    """None when the committed module matches the notebook, else a message saying what to do."""
    notebook_path = Path(notebook_path)
    module_path = notebook_path.with_name(MODULE_FOR[notebook_path.name])
    expected = render_module(notebook_cells(notebook_path), notebook_path.name)
    if module_path.exists() and module_path.read_text(encoding="utf-8") == expected:
        return None
    return (
        f"{module_path.name} does not match the #| export cells of {notebook_path.name}. "
        f"Edit the notebook, then run `python tools/nbexport.py {notebook_path.name}`."
    )


class KernelExporter:
    """Records the `#| export` cells as the kernel runs them; `write()` writes the module.

    Cells are keyed by the front end's cell id, so re-running an edited cell replaces its old
    text instead of adding a second copy; the order is the order in which cells first ran,
    which is notebook order after Restart & Run All. Without ids (papermill) the key is the
    cell's text.
    """

    def __init__(self, notebook_name: str, folder: str | Path = "."):
        from IPython import get_ipython  # only needed inside a notebook

        self.notebook_name = notebook_name
        self.module_path = Path(folder) / MODULE_FOR[notebook_name]
        self.cells: dict[str, str] = {}
        shell = get_ipython()
        if shell is None:
            raise RuntimeError("KernelExporter records cells inside Jupyter; use export() here")
        shell.events.register("post_run_cell", self._record)

    def _record(self, result) -> None:
        source = result.info.raw_cell
        if result.success and is_exported(source):
            cleaned = clean_cell(source)
            # Outside Jupyter (papermill, IPython) there is no cell id, and each cell runs once:
            # key by the whole text. Subtle: a first-line key would merge two cells that both
            # start with, say, @torch.no_grad(), and silently drop one from the module.
            key = result.info.cell_id or cleaned
            self.cells[key] = cleaned

    def write(self) -> str:
        """Write the module (only if it changed) and return its SOURCE_SHA256."""
        cells = list(self.cells.values())
        changed = write_if_changed(self.module_path, render_module(cells, self.notebook_name))
        print(f"{self.module_path.name}: {'rewritten' if changed else 'up to date'}")
        return source_sha256(cells)


def main(argv=None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script, too
    from tools import cli

    parser = cli.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="*", default=sorted(MODULE_FOR), help="notebooks")
    parser.add_argument("--check", action="store_true", help="fail if a module has drifted")
    args = parser.parse_args(argv)
    unknown = [name for name in args.notebooks if name not in MODULE_FOR]
    if unknown:  # argparse's choices would also refuse the default list (nargs="*")
        parser.error(f"no module is made from {unknown}: the notebooks are {sorted(MODULE_FOR)}")
    failed = False
    for notebook in args.notebooks:
        with cli.refusing(OSError, ValueError):  # a notebook that is not JSON, a cell with magic
            if args.check:
                problem = drift(notebook)
                print(problem or f"{notebook}: module up to date")
                failed |= problem is not None
            else:
                print(f"{notebook} -> {export(notebook)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
