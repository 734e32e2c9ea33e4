"""Write a notebook's defining cells into an importable module, so the notebook stays the source.

The notebooks are the teaching text *and* the source of the model and sampler code. A code cell
whose first line is the comment `#| export` holds only definitions; this script copies those
cells, in order, into a module that other files import:

    train_model.ipynb  ->  mdlm_model.py
    sampling.ipynb     ->  mdlm_sampling.py

A code cell of train_model.ipynb whose first line is `#| train` belongs to the training run
itself (its parameters, data, model, loop and final figures). Those cells, in order, become the
script train.py, which runs the same training outside Jupyter, on one device or under torchrun
on several GPUs:

    train_model.ipynb  ->  train.py

The first `#| train` cell must be the parameters cell: train.py reads `--NAME=value` arguments
into its names (command_line_parameters), as papermill's `-p NAME value` does for the notebook.
The names that the `#| train` cells take from `#| export` cells are imported from the module, by
name, so that train.py runs what the notebook runs and ruff can check every name in it.

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
(they are not Python); the exporter refuses them with a message. train.py is written only from
the saved notebook (this script), not by KernelExporter: save the notebook after editing a
`#| train` cell, then run `python tools/nbexport.py`.
"""

import ast
import builtins
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

MARKER = "#| export"
TRAIN_MARKER = "#| train"
MODULE_FOR = {"train_model.ipynb": "mdlm_model.py", "sampling.ipynb": "mdlm_sampling.py"}
SCRIPT_FOR = {"train_model.ipynb": "train.py"}


def is_exported(source: str, marker: str = MARKER) -> bool:
    """True for a cell whose first line is the marker, e.g. '#| export\\nimport torch'."""
    return source.lstrip().startswith(marker)


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


def notebook_cells(notebook_path: str | Path, marker: str = MARKER) -> list[str]:
    """The cells of a saved notebook that start with the marker, in notebook order, cleaned."""
    notebook = json.loads(Path(notebook_path).read_text(encoding="utf-8"))
    sources = []
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = cell["source"]
        source = "".join(source) if isinstance(source, list) else source
        if is_exported(source, marker):
            sources.append(clean_cell(source))
    return sources


def top_level_names(cells: list[str]) -> set[str]:
    """The names the cells define at the top level: functions, classes, assignments, imports.
    'import torch.nn as nn\\nX = 1\\ndef f(): y = 2' -> {'nn', 'X', 'f'}."""
    names = set()
    for cell in cells:
        for node in ast.parse(cell).body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Import | ast.ImportFrom):
                names |= {alias.asname or alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    return names


def imported_names(cells: list[str]) -> set[str]:
    """The names that the cells' own import statements bind, at any depth."""
    return {
        alias.asname or alias.name.split(".")[0]
        for cell in cells
        for node in ast.walk(ast.parse(cell))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }


def used_names(cells: list[str]) -> set[str]:
    """Every name the cells read, at any depth (builtins excepted)."""
    return {
        node.id
        for cell in cells
        for node in ast.walk(ast.parse(cell))
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
    } - set(dir(builtins))


def isort_order(name: str) -> tuple[int, str]:
    """Where ruff's isort puts a name in `from x import (...)`: constants, then classes, then the
    rest, each alphabetical regardless of case. ['load_model', 'F', 'EMA', 'RUN_MODES'] sorts to
    ['EMA', 'RUN_MODES', 'F', 'load_model']: 'F' is one letter, a class by isort's rule."""
    if name.isupper() and len(name) > 1:
        return 0, name.lower()
    return (1 if name[:1].isupper() else 2), name.lower()


def import_lines(names: set[str], export_cells: list[str], module: str, folder: Path) -> str:
    """The import statements that give train.py `names`, grouped and sorted as ruff's isort wants
    (standard library, third party, this project). A name that an #| export cell imported is
    imported from where that cell took it (torch.distributed as dist), every other name from the
    generated module."""
    origin = {}  # name -> (module it comes from, or None for `import x`; the statement's alias)
    for cell in export_cells:
        for node in ast.parse(cell).body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                for alias in node.names:
                    bound = alias.asname or alias.name.split(".")[0]
                    origin[bound] = (getattr(node, "module", None), alias)
    plain, members = {"sys"}, {"tools.nbexport": {"command_line_parameters"}}
    for name in names:
        source, alias = origin.get(name, (module, ast.alias(name)))
        if source is None:
            plain.add(f"{alias.name} as {alias.asname}" if alias.asname else alias.name)
        else:
            member = f"{alias.name} as {alias.asname}" if alias.asname else alias.name
            members.setdefault(source, set()).add(member)

    def section(statement: str) -> int:  # 0 standard library, 1 third party, 2 this project
        root = statement.split()[0].split(".")[0]
        if root in sys.stdlib_module_names:
            return 0
        ours = root in (module, Path(__file__).parent.name)  # the module, and tools/
        return 2 if ours or (folder / f"{root}.py").exists() or (folder / root).is_dir() else 1

    blocks = [[], [], []]
    for statement in sorted(plain):
        blocks[section(statement)].append(f"import {statement}\n")
    for source in sorted(members):
        ordered = sorted(members[source], key=lambda member: isort_order(member.split()[0]))
        line = f"from {source} import {', '.join(ordered)}\n"
        if len(line) > 100 or source == module:
            line = f"from {source} import (\n" + "".join(f"    {m},\n" for m in ordered) + ")\n"
        blocks[section(source)].append(line)
    return "\n".join("".join(block) for block in blocks if block)


def parameter_names(cell: str) -> list[str]:
    """The names a parameters cell assigns, in order; any other statement is refused."""
    names = []
    for node in ast.parse(cell).body:
        target = node.targets[0] if isinstance(node, ast.Assign) else None
        if not isinstance(target, ast.Name) or len(node.targets) > 1:
            raise ValueError(
                f"the first {TRAIN_MARKER} cell must be the parameters cell, only NAME = value "
                f"lines; line {node.lineno} is not one"
            )
        names.append(target.id)
    return names


def render_script(
    train_cells: list[str], export_cells: list[str], notebook_name: str, folder: Path = Path(".")
) -> str:
    """train.py's text: a header, the imports from the module, the parameters cell and its
    command-line overrides, then the other `#| train` cells, separated by two blank lines."""
    module = MODULE_FOR[notebook_name].removesuffix(".py")
    parameters, *rest = train_cells
    names = parameter_names(parameters)
    needed = (used_names(train_cells) & top_level_names(export_cells)) - imported_names(rest)
    needed -= set(names) | top_level_names(rest)
    script = SCRIPT_FOR[notebook_name]
    header = (
        f'"""Generated from {notebook_name}: edit the notebook, not this file.\n\n'
        f"The notebook's {TRAIN_MARKER} cells as a script, which trains on one device or, under\n"
        "torchrun, on several GPUs with DistributedDataParallel:\n\n"
        f"    python {script} --RUN_MODE=smoke --DATA=shakespeare\n"
        f"    torchrun --standalone --nproc_per_node=4 {script} --RUN_MODE=full --GRAD_ACCUM=4\n\n"
        "--NAME=value sets a parameter of the parameters cell, as papermill's -p NAME value does.\n"
        f"What the {MARKER} cells define comes from {module}.py. Save the notebook and run\n"
        f"`python tools/nbexport.py {notebook_name}` to regenerate this file;\n"
        'tests/test_nbexport.py fails when this file and the notebook disagree.\n"""\n'
    )
    imports = import_lines(needed, export_cells, module, Path(folder))
    overrides = (
        f"# {script} only: --NAME=value on the command line replaces the value above\n"
        "PARAMETERS = [\n" + "".join(f'    "{name}",\n' for name in names) + "]\n"
        "defaults = {name: globals()[name] for name in PARAMETERS}\n"
        "globals().update(command_line_parameters(sys.argv[1:], defaults))\n"
    )
    text = header + "\n" + imports + "\n" + parameters + "\n" + overrides
    for before, cell in zip([overrides, *rest], rest):
        text += separator(before, cell) + cell
    return text


def separator(before: str, after: str) -> str:
    """Blank lines between two cells as ruff wants them: two, but one after imports unless a
    function or class follows (isort's rule)."""
    last = ast.parse(before).body[-1]
    starts_definition = after.lstrip().startswith(("def ", "class ", "@", "async def "))
    if isinstance(last, ast.Import | ast.ImportFrom) and not starts_definition:
        return "\n"
    return "\n\n"


def command_line_parameters(argv: list[str], defaults: dict) -> dict:
    """The parameters that --NAME=value arguments set, as papermill's -p NAME value sets them.

    A value is read as a Python literal (8, 1e-3, True, None) unless the parameter's default is
    text, which keeps it as it stands; a value that is no literal stays text too. With defaults
    {"BATCH_SIZE": None, "DATA": "gutenberg"}: ["--BATCH_SIZE=8", "--DATA=12"] ->
    {"BATCH_SIZE": 8, "DATA": "12"}.
    """
    chosen = {}
    for argument in argv:
        name, equals, value = argument.removeprefix("--").partition("=")
        if not argument.startswith("--") or not equals or name not in defaults:
            raise SystemExit(
                f"{argument!r}: arguments are --NAME=value, NAME one of {', '.join(defaults)}"
            )
        try:
            chosen[name] = value if isinstance(defaults[name], str) else ast.literal_eval(value)
        except (ValueError, SyntaxError):
            chosen[name] = value
    return chosen


def write_if_changed(path: Path, text: str) -> bool:
    """Write atomically (temporary file, then rename); skip when the text is already there."""
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as file:
        file.write(text)
    os.replace(temporary, path)
    return True


def generated_files(notebook_path: str | Path) -> dict[Path, str]:
    """{path: text} of every file made from one saved notebook: its module, and its script."""
    notebook_path = Path(notebook_path)
    exports = notebook_cells(notebook_path)
    files = {
        notebook_path.with_name(MODULE_FOR[notebook_path.name]): render_module(
            exports, notebook_path.name
        )
    }
    train = notebook_cells(notebook_path, TRAIN_MARKER)
    if notebook_path.name in SCRIPT_FOR and train:
        script = render_script(train, exports, notebook_path.name, notebook_path.parent)
        files[notebook_path.with_name(SCRIPT_FOR[notebook_path.name])] = script
    return files


def export(notebook_path: str | Path) -> Path:
    """Regenerate the module (and script) of one notebook from the saved file; returns the
    module path."""
    files = generated_files(notebook_path)
    for path, text in files.items():
        write_if_changed(path, text)
    return next(iter(files))


def drift(notebook_path: str | Path) -> str | None:
    """None when the committed module (and script) match the notebook, else what to do."""
    notebook_path = Path(notebook_path)
    for path, expected in generated_files(notebook_path).items():
        if not path.exists() or path.read_text(encoding="utf-8") != expected:
            marker = TRAIN_MARKER if path.name in SCRIPT_FOR.values() else MARKER
            return (
                f"{path.name} does not match the {marker} cells of {notebook_path.name}. "
                f"Edit the notebook, then run `python tools/nbexport.py {notebook_path.name}`."
            )
    return None


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
