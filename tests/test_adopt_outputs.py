"""scripts/adopt_outputs.py: outputs come over, the injected parameters do not, code must match."""

import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from adopt_outputs import adopt  # noqa: E402


def notebook(*cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = list(cells)
    return nb


def code(source, tags=(), output=None):
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = list(tags)
    if output is not None:
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=output)]
    return cell


@pytest.fixture
def pair(tmp_path):
    target = notebook(code('DATA = "gutenberg"', ["parameters"]), code("print(DATA)"))
    executed = notebook(
        code('DATA = "gutenberg"', ["parameters"]),
        code('DATA = "../shared/data/x.txt"', ["injected-parameters"]),
        code("print(DATA)", output="../shared/data/x.txt\n"),
    )
    paths = tmp_path / "target.ipynb", tmp_path / "executed.ipynb"
    nbformat.write(target, paths[0])
    nbformat.write(executed, paths[1])
    return paths


def test_outputs_come_over_without_the_injected_cell(pair):
    target_path, executed_path = pair
    ids = [cell.id for cell in nbformat.read(target_path, as_version=4).cells]
    assert adopt(executed_path, target_path) == ['DATA = "../shared/data/x.txt"']
    adopted = nbformat.read(target_path, as_version=4)
    assert [cell.source for cell in adopted.cells] == ['DATA = "gutenberg"', "print(DATA)"]
    assert adopted.cells[1].outputs[0].text == "../shared/data/x.txt\n"
    assert [cell.id for cell in adopted.cells] == ids


def test_a_run_of_other_code_is_refused(pair):
    target_path, executed_path = pair
    target = nbformat.read(target_path, as_version=4)
    target.cells[1].source = "print(DATA * 2)"
    nbformat.write(target, target_path)
    with pytest.raises(SystemExit, match="other code .* cell 1"):
        adopt(executed_path, target_path)
    assert nbformat.read(target_path, as_version=4).cells[1].source == "print(DATA * 2)"
