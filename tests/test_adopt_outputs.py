"""tools/adopt_outputs.py: outputs come over, the injected parameters do not, code must match,
and tqdm's bars show their final state in plain text."""

import nbformat
import pytest

from tools.adopt_outputs import WIDGET_STATE, WIDGET_VIEW, adopt, settle_progress_bars  # noqa: E402


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


def with_bar(nb, value, total, prefix, suffix):
    """Give nb's first cell a tqdm widget as papermill saves it: the view, and its state."""
    ids = ["box", "left", "bar", "right"]
    nb.cells[0].outputs = [
        nbformat.v4.new_output(
            "display_data",
            data={WIDGET_VIEW: {"model_id": "box"}, "text/plain": "training:   0%|          | 0/8"},
        )
    ]
    models = [
        ("HBoxModel", {"children": [f"IPY_MODEL_{i}" for i in ids[1:]]}),
        ("HTMLModel", {"value": prefix}),
        ("FloatProgressModel", {"value": value, "max": total}),
        ("HTMLModel", {"value": suffix}),
    ]
    nb.metadata["widgets"] = {
        WIDGET_STATE: {
            "state": {i: {"model_name": n, "state": s} for i, (n, s) in zip(ids, models)}
        }
    }
    return nb


def test_a_progress_bar_shows_its_final_state():
    nb = with_bar(
        notebook(code("train()")), 8, 8, "training:\u2007100%", "\u20078/8\u2007[00:02&lt;00:00]"
    )
    assert settle_progress_bars(nb) == 1
    assert (
        nb.cells[0].outputs[0].data["text/plain"] == "training: 100%|██████████| 8/8 [00:02<00:00]"
    )


def test_a_bar_stopped_early_is_drawn_part_filled():
    nb = with_bar(notebook(code("train()")), 3, 8, "training:\u2007\u200738%", "\u20073/8")
    settle_progress_bars(nb)
    assert nb.cells[0].outputs[0].data["text/plain"] == "training:  38%|████      | 3/8"


def test_other_widgets_and_notebooks_without_state_are_left_alone():
    nb = with_bar(notebook(code("train()")), 8, 8, "a", "b")
    nb.metadata["widgets"][WIDGET_STATE]["state"]["box"]["model_name"] = "VBoxModel"
    assert settle_progress_bars(nb) == 0
    assert nb.cells[0].outputs[0].data["text/plain"] == "training:   0%|          | 0/8"
    del nb.metadata["widgets"]
    assert settle_progress_bars(nb) == 0
