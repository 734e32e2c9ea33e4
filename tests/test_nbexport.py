"""The generated modules match their notebooks, and the exporter itself behaves."""

import json

import pytest

import nbexport


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
    assert "python nbexport.py sampling.ipynb" in nbexport.drift(notebook)


def test_magics_are_refused(tmp_path):
    notebook = tmp_path / "train_model.ipynb"
    write_notebook(notebook, ["#| export\n%matplotlib inline\n"])
    with pytest.raises(ValueError, match="plain Python"):
        nbexport.export(notebook)
