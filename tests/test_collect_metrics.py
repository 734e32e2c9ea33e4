"""tools/collect_metrics.py: a run's metrics.json goes to results/ with the machine named."""

import json

import pytest

from tools import collect_metrics  # noqa: E402


@pytest.mark.parametrize(
    ("metrics", "ending"),
    [
        ({"device": "cpu", "dtype": "float32", "threads": 1}, "cores, float32, 1 thread"),
        ({"device": "cpu", "dtype": "float32", "threads": 2}, "cores, float32, 2 threads"),
        ({"device": "cuda", "dtype": "bfloat16", "threads": 16}, "cuda, bfloat16"),
        ({"device": "mps", "dtype": "float16"}, "mps, float16"),
        ({"device": "cpu"}, "cores"),  # sampling_metrics.json names no precision: none is made up
    ],
)
def test_the_machine_is_described_from_the_metrics(metrics, ending):
    assert collect_metrics.describe(metrics).endswith(ending)


def test_collect_adds_the_machine_and_keeps_one_already_there(tmp_path):
    source = tmp_path / "metrics.json"
    source.write_text(json.dumps({"device": "cpu", "dtype": "float32", "val_bpb": 2.5}))
    collect_metrics.main([str(source), str(tmp_path / "results" / "run.json")])
    collected = json.loads((tmp_path / "results" / "run.json").read_text())
    assert collected["val_bpb"] == 2.5 and "cores, float32" in collected["machine"]
    source.write_text(json.dumps({"device": "cpu", "machine": "my laptop"}))
    collect_metrics.main([str(source), str(tmp_path / "run.json")])
    assert json.loads((tmp_path / "run.json").read_text())["machine"] == "my laptop"


def executed_notebook(path, *streams):
    """A notebook whose one code cell printed these stdout chunks, as papermill saves it."""
    outputs = [{"output_type": "stream", "name": "stdout", "text": chunk} for chunk in streams]
    cell = {"cell_type": "code", "source": "", "metadata": {}, "outputs": outputs}
    path.write_text(json.dumps({"cells": [{"cell_type": "markdown", "source": ""}, cell]}))
    return path


def test_samples_come_from_the_notebook_exactly_as_printed(tmp_path):
    # print(f"--- sample {i}\n{text}\n") for three texts, the second ending in a newline of its
    # own and holding a blank line, the output split in two by the kernel
    notebook = executed_notebook(
        tmp_path / "run.ipynb",
        "--- sample 0\nThe cat.\n\n--- sample 1\n“Oh!”\n\nsaid ",
        "she.\n\n\n--- sample 2\n --- sample 9 is text here\n\n",
    )
    assert collect_metrics.printed_samples(notebook) == [
        "The cat.",
        "“Oh!”\n\nsaid she.\n",
        " --- sample 9 is text here",
    ]
    source = tmp_path / "metrics.json"
    source.write_text(json.dumps({"device": "cpu", "val_bpb": 2.5}))
    collect_metrics.main([str(source), str(tmp_path / "r.json"), "--notebook", str(notebook)])
    assert json.loads((tmp_path / "r.json").read_text())["samples"][0] == "The cat."


def test_a_notebook_without_samples_is_an_error_that_says_why(tmp_path):
    notebook = executed_notebook(tmp_path / "run.ipynb", "step 100: loss 3.2\n")
    with pytest.raises(SystemExit, match="no '--- sample' output; was it executed to the end"):
        collect_metrics.printed_samples(notebook)
