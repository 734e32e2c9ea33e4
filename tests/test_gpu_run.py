"""tools/gpu_run.py: its plan worked out by hand, its deadlines, and the whole run, dry.

The dry run does everything the GPU run does (speed, four training runs at once, the gpu tests,
train.py under torchrun, sampling, the packed outputs) at smoke sizes on this machine, so the
script cannot rot before a GPU is at hand.
"""

import hashlib
import json
import subprocess
import sys
import tarfile

import pytest
from conftest import ROOT, SMOKE_DATA

import mdlm_model as M
from tools import gpu_run  # noqa: E402


def test_plan_steps_worked_out_by_hand():
    # (300 - 45) x 0.85 x 1,000,000 tokens/s x 1/3 of the GPU / 32,768 tokens a step = 2,204.9
    assert gpu_run.plan_steps(1_000_000, 32_768, 300, 1 / 3) == 2204
    assert gpu_run.plan_steps(1_000_000, 32_768, 40, 1 / 3) == gpu_run.MIN_STEPS  # no time left


def test_a_child_past_its_deadline_is_stopped_with_what_it_started(tmp_path):
    runs = gpu_run.Runs(env=None)
    sleeper = [sys.executable, "-c", "import subprocess, sys, time; "
               "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
               "time.sleep(60)"]  # fmt: skip
    runs.start("sleeper", sleeper, tmp_path / "sleeper.log", gpu_run.elapsed() + 1)
    result = runs.wait("sleeper")
    assert result["stopped_at_deadline"] and result["seconds"] < 15


def test_the_pair_is_shipped_in_parts_that_join(
    smoke_checkpoint, smoke_twin, tmp_path, monkeypatch
):
    work, out = tmp_path / "work", tmp_path / "out"
    for name, source in [("ship_mdlm", smoke_checkpoint), ("ship_ar", smoke_twin)]:
        (work / "checkpoints" / name).mkdir(parents=True)
        (work / "checkpoints" / name / "ckpt.pt").write_bytes(source.read_bytes())
    out.mkdir()
    monkeypatch.setattr(gpu_run, "PART_BYTES", 40_000)
    shipped = gpu_run.ship_pair(work, out)
    parts = [out / name for name in shipped["parts"]]
    assert len(parts) > 1 and all(part.stat().st_size <= 40_000 for part in parts)
    joined = b"".join(part.read_bytes() for part in sorted(parts))
    assert hashlib.sha256(joined).hexdigest() == shipped["sha256"]


@pytest.mark.slow
def test_the_dry_run_does_every_phase(tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "tools/gpu_run.py", "--dry-run", "--out", str(out)]
    command += ["--data", str(SMOKE_DATA), "--budget", "600"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())

    speed = summary["speed"]
    assert len(speed) == 6 and all(row["tokens_per_second"] > 0 for row in speed.values())
    assert "aten::" in speed["full_mdlm_compiled"]["profile"]  # the profiled step's table
    for name, run in summary["train"].items():
        assert run["exit"] == 0 and not run["stopped_at_deadline"], name
        assert run["steps"] == 6 and run["val_bpb"] > 0, name
    assert summary["train"]["ship_mdlm"]["params"] < summary["train"]["full_mdlm"]["params"]
    assert summary["gpu_tests"]["exit"] == 0
    ddp = summary["ddp"]  # train.py under torchrun, one process
    assert ddp["exit"] == 0 and ddp["processes"] == 1 and ddp["steps"] == 6, ddp["tail"]
    assert summary["sampling"]["exit"] == 0 and summary["sampling"]["metrics"]["masks_left"] == 0

    files = sorted(out.iterdir())
    assert len(files) <= 8 and all(f.stat().st_size <= 16 * 2**20 for f in files)
    joined = tmp_path / "ship.tar"
    joined.write_bytes(b"".join((out / part).read_bytes() for part in summary["ship"]["parts"]))
    with tarfile.open(joined) as tar:
        tar.extractall(tmp_path / "joined", filter="data")
    model, _, checkpoint = M.load_model(tmp_path / "joined" / "shipped" / "ckpt.pt")
    twin, _, _ = M.load_model(tmp_path / "joined" / "shipped" / "ar_twin" / "ckpt.pt")
    assert not model.config.causal and twin.config.causal and checkpoint["optimizer"] is None
    with tarfile.open(out / "runs.tar.gz") as tar:
        names = tar.getnames()
    for notebook in ("full_mdlm", "full_ar", "ship_mdlm", "ship_ar", "sampling"):
        assert f"{notebook}.ipynb" in names
