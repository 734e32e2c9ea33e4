"""scripts/collect_metrics.py: a run's metrics.json goes to results/ with the machine named."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import collect_metrics  # noqa: E402


@pytest.mark.parametrize(
    ("metrics", "ending"),
    [
        ({"device": "cpu", "dtype": "float32", "threads": 1}, "cores, float32, 1 thread"),
        ({"device": "cpu", "dtype": "float32", "threads": 2}, "cores, float32, 2 threads"),
        ({"device": "cuda", "dtype": "bfloat16", "threads": 16}, "cuda, bfloat16"),
        ({"device": "mps", "dtype": "float16"}, "mps, float16"),
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
