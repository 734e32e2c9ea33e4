"""train.py in two processes (torchrun, gloo on the CPU) against one: the same steps, a check
that fails when the gradients are not averaged, checkpoints that resume and sample.

Every run stops after STOP steps of the smoke model (at MAX_STEPS 40, so that the learning rate
schedule is the one of a real smoke run, without the minute of final figures). Two processes
with one micro-batch of BATCH_SIZE windows each and one process with GRAD_ACCUM = 2 micro-batches
draw the same windows and masks (micro_batch_generators), so their losses must agree.
"""

import json
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, SMOKE_DATA

import mdlm_model as M
from mdlm_sampling import sample
from sample_visual import Settings, sample_trajectory

pytestmark = pytest.mark.slow
STOP = 8
COMMON = dict(RUN_MODE="smoke", DATA=SMOKE_DATA, BATCH_SIZE=4, GRAD_ACCUM=2, EVAL_EVERY=4)
TOLERANCE = 1e-6  # relative; two processes average exactly here (a sum of two, halved)


def train(out_dir, processes=1, script="train.py", **parameters) -> dict:
    """Run train.py (or a wrapper of it) in `processes` processes; return its metrics.json."""
    command = [sys.executable]
    if processes > 1:
        command += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    command.append(script)
    settings = {**COMMON, "STOP_AFTER": STOP, "OUT_DIR": out_dir, **parameters}
    command += [f"--{name}={value}" for name, value in settings.items()]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        output = f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        pytest.fail(f"{' '.join(map(str, command))} failed:\n{output}")
    return json.loads((out_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    return train(tmp_path_factory.mktemp("one_process"))


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("two_processes")
    return out_dir, train(out_dir, processes=2)


def agree(first: list[float], second: list[float]) -> bool:
    """Whether two runs' figures agree step by step, within TOLERANCE."""
    return len(first) == len(second) and all(
        a == pytest.approx(b, rel=TOLERANCE) for a, b in zip(first, second)
    )


def test_two_processes_take_the_steps_of_one(one_process, two_processes):
    _, two = two_processes
    assert (one_process["processes"], two["processes"]) == (1, 2)
    assert len(two["history"]["train_loss"]) == STOP and two["tokens_seen"] == STOP * 8 * 64
    for key in ("train_loss", "val_bpb"):
        assert agree(one_process["history"][key], two["history"][key]), key


def test_the_comparison_fails_without_the_all_reduce(one_process, tmp_path):
    alone = train(tmp_path, processes=2, script="tests/ddp_without_allreduce.py")
    ones, twos = one_process["history"]["train_loss"], alone["history"]["train_loss"]
    assert ones[0] == pytest.approx(twos[0], rel=TOLERANCE)  # the same weights and windows
    assert not agree(ones, twos)  # then each process stepped on its own gradients
    assert not agree(one_process["history"]["val_bpb"], alone["history"]["val_bpb"])


def test_the_checkpoint_has_plain_names_and_every_random_state(two_processes):
    out_dir, _ = two_processes
    checkpoint = torch.load(out_dir / "ckpt.pt", weights_only=True)
    assert not [k for k in checkpoint["model"] if k.startswith(("module.", "_orig_mod."))]
    rng = checkpoint["rng"]
    assert len(rng["generators"]) == 2 and len(rng["torch"]) == 2  # one a micro-batch, a rank
    assert not torch.equal(rng["generators"][0], rng["generators"][1])


def test_the_checkpoint_samples_in_the_sampler_and_the_viewer(two_processes):
    out_dir, _ = two_processes
    model, tokenizer, checkpoint = M.load_model(out_dir / "ckpt.pt")
    assert checkpoint["step"] == STOP and checkpoint["code_sha256"] == M.SOURCE_SHA256
    result = sample(model, num_samples=2, length=16, steps=4)
    assert result.tokens.shape == (2, 16) and not (result.tokens == tokenizer.mask_id).any()
    trajectory = sample_trajectory(model, tokenizer, Settings(steps=4, length=16), "cpu")
    assert not (trajectory.tokens[-1] == tokenizer.mask_id).any()


def test_an_interrupted_run_resumes_exactly_in_two_processes_and_closely_in_one(
    two_processes, tmp_path
):
    _, uninterrupted = two_processes
    first = tmp_path / "two"
    train(first, processes=2, STOP_AFTER=STOP // 2)
    shutil.copytree(first, tmp_path / "one")
    resumed = train(first, processes=2, RESUME=True)
    assert resumed["history"] == uninterrupted["history"]
    # the single-device path (the notebook's) reads a checkpoint of two processes
    alone = train(tmp_path / "one", RESUME=True)
    for key in ("train_loss", "val_bpb"):
        assert agree(alone["history"][key], uninterrupted["history"][key]), key
