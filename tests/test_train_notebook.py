"""train_model.ipynb end to end in smoke mode: metrics, checkpoint, exact resume, bad input."""

import json
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, SMOKE_DATA, run_notebook

import mdlm_model as M

pytestmark = pytest.mark.slow
METRIC_KEYS = {
    "val_bpb",
    "val_nats_per_token",
    "unigram_bpb",
    "steps",
    "tokens_seen",
    "train_tokens_per_s",
    "params",
    "device",
    "dtype",
    "wall_s",
    "history",
}


def test_smoke_run_writes_metrics_and_a_loadable_checkpoint(smoke_run):
    metrics = json.loads((smoke_run / "metrics.json").read_text())
    assert METRIC_KEYS <= metrics.keys()
    assert metrics["steps"] == 40 and len(metrics["history"]["train_loss"]) == 40
    assert (
        metrics["val_bpb"]
        < metrics["history"]["train_loss"][0] / 0.6931 / metrics["bytes_per_token"]
    )
    model, tokenizer, checkpoint = M.load_model(smoke_run / "ckpt.pt")
    assert checkpoint["step"] == 40 and checkpoint["code_sha256"] == M.SOURCE_SHA256
    assert (
        model.config.mask_id == tokenizer.mask_id
        and model.config.vocab_size == tokenizer.vocab_size
    )
    idx = torch.full((1, 8), tokenizer.mask_id)
    assert model(idx, torch.ones(1)).shape == (1, 8, tokenizer.vocab_size)


def test_interrupted_and_resumed_run_matches_one_go(smoke_run, tmp_path):
    """N steps in one go == N/2 steps, stop, resume, N/2 steps: identical losses."""
    common = dict(RUN_MODE="smoke", DATA=SMOKE_DATA, OUT_DIR=tmp_path)
    run_notebook("train_model.ipynb", tmp_path / "first", STOP_AFTER=20, **common)
    halfway = json.loads((tmp_path / "metrics.json").read_text())
    assert halfway["steps"] == 20
    run_notebook("train_model.ipynb", tmp_path / "second", RESUME=True, **common)
    resumed = json.loads((tmp_path / "metrics.json").read_text())
    one_go = json.loads((smoke_run / "metrics.json").read_text())
    assert resumed["history"]["train_loss"] == one_go["history"]["train_loss"]
    assert resumed["history"]["val_bpb"] == one_go["history"]["val_bpb"]


@pytest.mark.parametrize(
    "parameters,message",
    [
        ({"DATA": "no/such/book.txt"}, "no such file or folder"),
        ({"DATA": SMOKE_DATA, "MAX_CHARS": 3000, "SEQ_LEN": 4096}, "lower SEQ_LEN"),
    ],
)
def test_bad_input_stops_with_a_clear_message(tmp_path, parameters, message):
    command = [
        sys.executable,
        "-m",
        "papermill",
        "train_model.ipynb",
        str(tmp_path / "out.ipynb"),
        "-p",
        "RUN_MODE",
        "smoke",
        "-p",
        "OUT_DIR",
        str(tmp_path),
    ]
    for name, value in parameters.items():
        command += ["-p", name, str(value)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
