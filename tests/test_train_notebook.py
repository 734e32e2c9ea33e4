"""train_model.ipynb end to end in smoke mode: metrics, checkpoint, exact resume, bad input,
and no lost work: a folder in use, or holding a finished run, is refused."""

import json
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, SMOKE_DATA, SMOKE_EMA_DECAY, hold_out_dir, run_notebook

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
    ema = checkpoint["ema"]  # the average of the weights, beside the trained ones
    assert (
        ema["decay"] == SMOKE_EMA_DECAY
        and ema["shadow"].keys() == dict(model.named_parameters()).keys()
    )
    figure, gain = metrics["final"]["ema"]["nelbo"], metrics["final"]["ema"]["ema - trained"]
    assert gain[0] == pytest.approx(figure[0] - metrics["final"]["nelbo"][0], abs=1e-9)


def test_interrupted_and_resumed_run_matches_one_go(smoke_run, tmp_path):
    """N steps in one go == N/2 steps, stop, resume, N/2 steps: identical losses."""
    common = dict(RUN_MODE="smoke", DATA=SMOKE_DATA, OUT_DIR=tmp_path, EMA_DECAY=SMOKE_EMA_DECAY)
    run_notebook("train_model.ipynb", tmp_path / "first", STOP_AFTER=20, **common)
    halfway = json.loads((tmp_path / "metrics.json").read_text())
    assert halfway["steps"] == 20
    run_notebook("train_model.ipynb", tmp_path / "second", RESUME=True, **common)
    resumed = json.loads((tmp_path / "metrics.json").read_text())
    one_go = json.loads((smoke_run / "metrics.json").read_text())
    assert resumed["history"]["train_loss"] == one_go["history"]["train_loss"]
    assert resumed["history"]["val_bpb"] == one_go["history"]["val_bpb"]
    assert resumed["final"] == {**one_go["final"], "seconds": resumed["final"]["seconds"]}
    averages = [
        M.load_checkpoint(folder / "ckpt.pt")["ema"]["shadow"] for folder in (tmp_path, smoke_run)
    ]
    assert all(torch.equal(averages[0][name], averages[1][name]) for name in averages[0])


def failed_run(tmp_path, **parameters) -> str:
    """Run the notebook in smoke mode expecting it to stop; return what it printed."""
    command = [sys.executable, "-m", "papermill", "train_model.ipynb", str(tmp_path / "out.ipynb")]
    for name, value in {"RUN_MODE": "smoke", "OUT_DIR": tmp_path, **parameters}.items():
        command += ["-p", name, str(value)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    return result.stdout + result.stderr


@pytest.mark.parametrize(
    "parameters,message",
    [
        ({"DATA": "no/such/book.txt"}, "no such file or folder"),
        ({"DATA": SMOKE_DATA, "MAX_CHARS": 3000, "SEQ_LEN": 4096}, "lower SEQ_LEN"),
        ({"DATA": SMOKE_DATA, "PRECISION": "fp8"}, "PRECISION must be auto or one of"),
        ({"DATA": SMOKE_DATA, "DEVICE": "gpu"}, "DEVICE 'gpu' is not a device"),
        ({"DATA": SMOKE_DATA, "N_HEAD": 3}, "N_HEAD = 3: the heads split D_MODEL evenly"),
        ({"DATA": SMOKE_DATA, "RESUME": "false"}, "RESUME = 'false': must be True or False"),
        # every knob is checked before any data is read: the bad knob is named, not the DATA
        ({"DATA": "no/such/book.txt", "MAX_STEPS": -5}, "MAX_STEPS = -5: must be None"),
    ],
)
def test_bad_input_stops_with_a_clear_message(tmp_path, parameters, message):
    assert message in failed_run(tmp_path, **parameters)


def test_text_that_is_not_utf8_names_the_knob_that_reads_it(tmp_path):
    latin1 = tmp_path / "latin1.txt"
    text = SMOKE_DATA.read_text(encoding="utf-8")[:60_000].replace("e", "\u00e9")  # é
    latin1.write_bytes(text.encode("latin-1", errors="replace"))
    assert "TEXT_ERRORS = 'replace' in train_model.ipynb" in failed_run(tmp_path, DATA=latin1)
    run_notebook(
        "train_model.ipynb",
        tmp_path / "replaced",
        RUN_MODE="smoke",
        DATA=latin1,
        TEXT_ERRORS="replace",
        MAX_STEPS=4,
        EVAL_EVERY=4,
        OUT_DIR=tmp_path / "replaced",
    )
    assert json.loads((tmp_path / "replaced" / "metrics.json").read_text())["steps"] == 4


def test_the_twin_trains_with_the_gated_blocks(tmp_path):
    """OBJECTIVE ar with CONSTANT_CONDITIONING: the MDLM's gated adaLN blocks, fed a constant,
    under a causal mask, so the two can be compared on the same backbone."""
    run_notebook(
        "train_model.ipynb",
        tmp_path,
        RUN_MODE="smoke",
        DATA=SMOKE_DATA,
        OBJECTIVE="ar",
        CONSTANT_CONDITIONING=True,
        MAX_STEPS=4,
        EVAL_EVERY=4,
        OUT_DIR=tmp_path,
    )
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["objective"] == "ar" and metrics["constant_conditioning"] is True
    model, _, _ = M.load_model(tmp_path / "ckpt.pt")
    assert model.config.causal and model.config.adaln and not model.config.time_conditioning


def copy_of_run(run, folder) -> dict:
    """A copy of a finished run's files in `folder`; returns their bytes, to compare after."""
    folder.mkdir(parents=True)
    for name in ("ckpt.pt", "metrics.json"):
        shutil.copy(run / name, folder / name)
    return {name: (folder / name).read_bytes() for name in ("ckpt.pt", "metrics.json")}


@pytest.mark.parametrize(
    "parameters, message",
    [
        # other sizes or another seed, into the same folder: the run name leaves the sizes out
        ({"N_LAYER": 3}, "already holds a run (mdlm_smoke_tinyshakespeare, seed 1337, 40 of 40"),
        ({"SEED": 1338}, "to continue it, OUT_DIR to another folder, or OVERWRITE = True"),
        ({"MAX_STEPS": 0}, "MAX_STEPS = 0: must be None (the run mode's) or a whole number"),
        ({"MAX_STEPS": 0, "RESUME": True}, "MAX_STEPS = 0: must be None"),
        ({"RESUME": True}, "nothing to train: the checkpoint is at step 40"),  # no step: no file
    ],
)
def test_a_finished_run_is_left_as_it_was(smoke_run, tmp_path, parameters, message):
    if SMOKE_DATA.stem != "tinyshakespeare":
        message = message.replace("tinyshakespeare", SMOKE_DATA.stem)
    run = tmp_path / "run"
    before = copy_of_run(smoke_run, run)
    common = dict(DATA=SMOKE_DATA, OUT_DIR=run, EMA_DECAY=SMOKE_EMA_DECAY)
    assert message in failed_run(tmp_path, **{**common, **parameters})
    assert {name: (run / name).read_bytes() for name in before} == before
    assert sorted(path.name for path in run.iterdir()) == ["ckpt.pt", "metrics.json"]  # no lock


def test_overwrite_replaces_a_finished_run(smoke_run, tmp_path):
    run = tmp_path / "run"
    copy_of_run(smoke_run, run)
    run_notebook(
        "train_model.ipynb",
        tmp_path / "notebook",
        RUN_MODE="smoke",
        DATA=SMOKE_DATA,
        OUT_DIR=run,
        OVERWRITE=True,
        MAX_STEPS=4,
        EVAL_EVERY=4,
    )
    assert json.loads((run / "metrics.json").read_text())["steps"] == 4
    assert M.load_checkpoint(run / "ckpt.pt")["step"] == 4
    assert not (run / "train.lock").exists()  # released at the end


def test_a_second_run_into_a_folder_in_use_is_refused_naming_the_first(tmp_path):
    """The lock is what train_model.ipynb takes in section 1: here a process holds it as a run
    would, so that the second run surely starts while the first holds the folder."""
    run = tmp_path / "run"
    first = hold_out_dir(run)
    try:
        output = failed_run(tmp_path, DATA=SMOKE_DATA, OUT_DIR=run, SEED=1338)
        assert (run / "train.lock").read_text().startswith(f"process {first.pid} (the first run")
    finally:
        first.kill()
        first.wait()
    assert f"is in use by process {first.pid} (the first run, since " in output
    assert not (run / "metrics.json").exists() and not (run / "ckpt.pt").exists()


def test_the_first_run_mode_runs_at_smoke_size(tmp_path):
    """RUN_MODE first with all its own settings but a handful of steps, so they cannot rot:
    its evaluation, final figures and first look all run on its sizes."""
    run_notebook(
        "train_model.ipynb",
        tmp_path,
        RUN_MODE="first",
        DATA=SMOKE_DATA,
        MAX_STEPS=4,
        EVAL_EVERY=2,
        OUT_DIR=tmp_path,
    )
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    first = M.RUN_MODES["first"]
    assert metrics["mode"] == "first" and metrics["steps"] == 4
    expected = {**first, "max_steps": 4, "eval_every": 2}
    assert {key: metrics["settings"][key] for key in expected} == expected
    assert "final" in metrics and metrics["final"]["nelbo"][1] > 0  # with its standard error
