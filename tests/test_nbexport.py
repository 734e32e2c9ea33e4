"""The generated modules match their notebooks, and the exporter itself behaves."""

import json

import pytest

from tools import nbexport


@pytest.mark.parametrize("notebook", sorted(nbexport.MODULE_FOR))
def test_committed_module_matches_notebook(notebook):
    assert nbexport.drift(notebook) is None, nbexport.drift(notebook)


def write_notebook(path, sources):
    cells = [{"cell_type": "code", "source": s, "metadata": {}, "outputs": []} for s in sources]
    cells.insert(0, {"cell_type": "markdown", "source": "#| export\nnot code", "metadata": {}})
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4}))


def test_only_marked_cells_are_exported_in_order(tmp_path):
    notebook = tmp_path / "train_model.ipynb"
    write_notebook(notebook, ["#| export\nimport os\n", "print('not me')", "#| export\n\nX = 1\n"])
    module = nbexport.export(notebook)
    text = module.read_text()
    assert module.name == "mdlm_model.py"
    assert "import os\n\n\nX = 1\n" in text and "not me" not in text and "not code" not in text
    assert text.startswith('"""Generated from train_model.ipynb: edit the notebook')
    sha = nbexport.source_sha256(["import os\n", "X = 1\n"])
    assert f'SOURCE_SHA256 = "{sha}"' in text
    namespace = {}
    exec(compile(text, str(module), "exec"), namespace)  # the module runs
    assert namespace["X"] == 1


def test_drift_is_detected_and_explained(tmp_path):
    notebook = tmp_path / "sampling.ipynb"
    write_notebook(notebook, ["#| export\nY = 2\n"])
    nbexport.export(notebook)
    assert nbexport.drift(notebook) is None
    write_notebook(notebook, ["#| export\nY = 3\n"])
    assert "python tools/nbexport.py sampling.ipynb" in nbexport.drift(notebook)


def test_magics_are_refused(tmp_path):
    notebook = tmp_path / "train_model.ipynb"
    write_notebook(notebook, ["#| export\n%matplotlib inline\n"])
    with pytest.raises(ValueError, match="plain Python"):
        nbexport.export(notebook)


class FakeInfo:
    def __init__(self, raw_cell, cell_id=None):
        self.raw_cell, self.cell_id = raw_cell, cell_id


class FakeResult:
    def __init__(self, raw_cell, cell_id=None, success=True):
        self.info, self.success = FakeInfo(raw_cell, cell_id), success


def recorder() -> "nbexport.KernelExporter":
    """A KernelExporter without a kernel: only its recording logic is under test."""
    exporter = object.__new__(nbexport.KernelExporter)
    exporter.cells = {}
    return exporter


def test_kernel_exporter_keeps_cells_that_share_a_first_line_without_ids():
    # papermill gives no cell ids; two cells starting with the same decorator must both survive
    exporter = recorder()
    first = "#| export\n@torch.no_grad()\ndef a():\n    pass"
    second = "#| export\n@torch.no_grad()\ndef b():\n    pass"
    for source in (first, second, "x = 1", first):  # not exported; a repeat adds nothing
        exporter._record(FakeResult(source))
    assert list(exporter.cells.values()) == [
        nbexport.clean_cell(first),
        nbexport.clean_cell(second),
    ]


def test_kernel_exporter_replaces_an_edited_cell_by_its_id_and_skips_failures():
    exporter = recorder()
    exporter._record(FakeResult("#| export\ndef a():\n    return 1", cell_id="c1"))
    exporter._record(FakeResult("#| export\ndef a():\n    return 2", cell_id="c1"))
    exporter._record(FakeResult("#| export\ndef broken(", cell_id="c2", success=False))
    assert list(exporter.cells.values()) == [
        nbexport.clean_cell("#| export\ndef a():\n    return 2")
    ]
