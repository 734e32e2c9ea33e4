"""The generated modules and train.py match their notebooks, and the exporter itself behaves."""

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

from tools import nbexport


@pytest.mark.parametrize("notebook", sorted(nbexport.MODULE_FOR))
def test_committed_module_and_script_match_notebook(notebook):
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


def test_train_cells_become_a_script_that_imports_what_they_use(tmp_path):
    notebook = tmp_path / "train_model.ipynb"
    (tmp_path / "helpers.py").write_text("def triple(x):\n    return 3 * x\n")
    write_notebook(
        notebook,
        [
            '#| train\nN = 2  # the parameters cell\nNAME = "a"\n',
            "#| export\nimport json as js\nfrom helpers import triple\n\n\ndef double(x):\n"
            "    return 2 * x\n\n\nX, UNUSED = 3, 4\n",
            "print('notebook only')",
            "#| train\nimport sys\n\nprint(js.dumps([double(N), triple(X), NAME]))",
            "#| train\nprint(len(sys.argv))",
        ],
    )
    nbexport.export(notebook)
    script = (tmp_path / "train.py").read_text()
    assert script.startswith('"""Generated from train_model.ipynb: edit the notebook')
    assert (
        "import json as js\nimport sys\n\nfrom helpers import triple\nfrom mdlm_model import (\n"
        in script
    )
    assert "    X,\n    double,\n)\nfrom tools.nbexport import command_line_parameters" in script
    assert "UNUSED" not in script and "notebook only" not in script
    # one blank line after the imports of a cell, two between other cells (ruff's layout)
    assert "import sys\n\nprint(js.dumps(" in script and "NAME]))\n\n\nprint(len" in script
    assert nbexport.drift(notebook) is None
    result = subprocess.run(
        [sys.executable, "train.py", "--N=5", "--NAME=7"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"},
        capture_output=True,
        text=True,
    )
    assert result.stdout.split("\n")[:2] == ['[10, 9, "7"]', "3"], result.stderr


def test_the_first_train_cell_must_be_the_parameters_cell(tmp_path):
    notebook = tmp_path / "train_model.ipynb"
    write_notebook(notebook, ["#| train\nimport torch\n", "#| train\nN = 1\n"])
    with pytest.raises(ValueError, match="must be the parameters cell"):
        nbexport.export(notebook)


DEFAULTS = {"BATCH_SIZE": None, "DATA": "gutenberg", "RESUME": False, "LEARNING_RATE": 1e-3}


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--BATCH_SIZE=8", "--DATA=12"], {"BATCH_SIZE": 8, "DATA": "12"}),  # the docstring's
        (["--RESUME=True", "--LEARNING_RATE=3e-4"], {"RESUME": True, "LEARNING_RATE": 3e-4}),
        (["--BATCH_SIZE=None", "--DATA="], {"BATCH_SIZE": None, "DATA": ""}),
        (["--DATA=my books/a=b.txt"], {"DATA": "my books/a=b.txt"}),  # the first = splits
        (["--BATCH_SIZE=eight"], {"BATCH_SIZE": "eight"}),  # no literal: text, as papermill
        ([], {}),
    ],
)
def test_command_line_parameters_worked_out_by_hand(argv, expected):
    assert nbexport.command_line_parameters(argv, DEFAULTS) == expected


@pytest.mark.parametrize("argument", ["BATCH_SIZE=8", "--BATCH_SIZE", "-BATCH_SIZE=8", "--SIZE=8"])
def test_command_line_parameters_refuse_what_is_not_a_parameter(argument):
    with pytest.raises(SystemExit, match="BATCH_SIZE, DATA, RESUME, LEARNING_RATE"):
        nbexport.command_line_parameters([argument], DEFAULTS)


def test_names_are_ordered_as_isort_orders_them():
    names = ["load_model", "F", "EMA", "RUN_MODES", "CheckpointError", "dist"]
    assert sorted(names, key=nbexport.isort_order) == [
        "EMA", "RUN_MODES", "CheckpointError", "F", "dist", "load_model"
    ]  # fmt: skip
