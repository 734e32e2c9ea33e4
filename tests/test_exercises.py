"""exercises/check.py: every check passes or waits on the unmodified project, and each one
passes for a right answer and fails for a wrong one (the answers here are the tests' own)."""

import json
import math
import subprocess
import sys

import pytest
import torch
from conftest import ROOT

import mdlm_model as M

sys.path.insert(0, str(ROOT))
from exercises import check  # noqa: E402


@pytest.mark.slow
def test_on_the_project_as_it_is_nothing_fails():
    command = [sys.executable, "exercises/check.py", "all"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("exercise ")]
    assert len(lines) == 10 and not any(": FAIL." in line for line in lines), result.stdout
    assert "exercise 7, samplers at equal cost: PASS." in result.stdout


def cosine(t):
    return torch.cos(math.pi * t / 2)


def cosine_slope(t):
    return -math.pi / 2 * torch.sin(math.pi * t / 2)


def test_a_cosine_schedule_passes_and_a_wrong_slope_fails(monkeypatch):
    assert check.exercise_4().status == check.LATER  # linear, as shipped
    monkeypatch.setattr(M, "alpha", cosine)
    monkeypatch.setattr(M, "alpha_prime", cosine_slope)
    assert check.exercise_4().status == check.PASS
    monkeypatch.setattr(M, "alpha_prime", lambda t: -math.pi / 2 * torch.cos(math.pi * t / 2))
    assert check.exercise_4().status == check.FAIL


def test_uniform_weighting_done_right_passes(monkeypatch):
    loss = M.mdlm_loss

    def with_weighting(logits, x0, is_masked, t, weighting="nelbo"):
        if weighting == "nelbo":
            return loss(logits, x0, is_masked, t)
        return M.masked_nll(logits, x0, is_masked).mean() / x0.size(1)  # weight 1

    monkeypatch.setattr(M, "mdlm_loss", with_weighting)
    assert check.exercise_6().status == check.PASS


def gumbel_step(logits, z, t, s, *, mask_id, dtype, generator):
    """MDLM's original step: Gumbel-max over V + 1 outcomes, in `dtype`."""
    reveal, stay = (t - s) / t, s / t  # (alpha_s - alpha_t) / (1 - alpha_t) and the rest
    probabilities = logits.to(dtype).softmax(-1) * reveal  # (B, L, V), 0 at the mask
    probabilities[..., mask_id] = stay
    uniform = torch.rand(probabilities.shape, generator=generator, dtype=dtype)
    draw = (probabilities.log() - torch.log(-torch.log(uniform))).argmax(-1)  # (B, L)
    return torch.where(z == mask_id, draw, z)


def test_a_gumbel_step_that_ignores_the_dtype_fails(monkeypatch):
    """Exercise 8's check runs a few minutes for a real answer (the reference above passes it:
    the closing note of the issue that added it has the figures). A step that reveals every
    position at once with the first token has no tail to lose: no gap, a FAIL, in a second."""
    assert check.exercise_8().status == check.LATER

    def everything_at_once(logits, z, t, s, *, mask_id, dtype, generator):
        return torch.zeros_like(z)

    monkeypatch.setattr(check.solutions, "gumbel_step", everything_at_once)
    assert check.exercise_8().status == check.FAIL


def test_combining_outcomes():
    fail, later, done = (check.Outcome(s, s) for s in (check.FAIL, check.LATER, check.PASS))
    assert check.combine([done, later]).status == check.LATER
    assert check.combine([done, later, fail]).status == check.FAIL
    assert check.combine([done, done]).status == check.PASS


def test_quick_mode_on_target_compares_with_runs_of_the_same_settings_only(tmp_path, monkeypatch):
    """Committed 2.40 +- 0.01; a run of earlier defaults at 2.60 must not widen the tolerance,
    which stays 3 * hypot(0.01, 0.01) = 0.042: 2.43 passes, 2.45 fails, and a run with
    another batch size is refused whatever its figure."""
    quick = {"batch_size": 16, "max_steps": 3650, "learning_rate": 1e-3}

    def run(nelbo, **changes):
        return {"settings": {**quick, **changes}, "final": {"nelbo": [nelbo, 0.01]}}

    def write(path, figures):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(figures))

    mine = tmp_path / "checkpoints" / "mdlm_quick_tinyshakespeare" / "metrics.json"
    monkeypatch.setattr(check, "ROOT", tmp_path)
    write(mine, run(2.43))
    assert check.exercise_5().status == check.LATER  # nothing committed to compare with
    write(tmp_path / "results" / "mdlm_quick_tinyshakespeare.json", run(2.40))
    write(
        tmp_path / "results" / "mdlm_quick_tinyshakespeare_b32.json",
        run(2.60, batch_size=32, max_steps=1600),
    )
    mine.unlink()
    assert check.exercise_5().status == check.LATER
    write(mine, run(2.43))
    assert check.exercise_5().status == check.PASS
    write(mine, run(2.45))
    assert check.exercise_5().status == check.FAIL
    write(mine, run(2.40, batch_size=32))
    outcome = check.exercise_5()
    assert outcome.status == check.FAIL and "batch_size" in outcome.what


def conditional_bound(model, windows, *, start, end, num_times=8, seed=0):
    """Exercise 9 done right: only the middle is ever masked, the network is told the fraction
    of its window masked, and the weighted cross-entropy is divided by the middle's length."""
    W, L = windows.shape
    n = end - start
    generator = torch.Generator().manual_seed(seed)
    total = torch.zeros(W, dtype=torch.float64)
    for k in range(num_times):
        t = (k + 0.5) / num_times
        masked = torch.zeros(W, L, dtype=torch.bool)
        masked[:, start:end] = torch.rand(W, n, generator=generator) < t
        z = windows.masked_fill(masked, model.config.mask_id)
        with torch.no_grad():
            logits = model(z, torch.full((W,), t * n / L))  # (W, L, V)
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), windows, reduction="none")
        total += (nll * masked).sum(1).double() / t
    return total / num_times / n


def test_infilling_scored_right_passes(monkeypatch):
    if check.trained_mdlm() is None:
        pytest.skip("no trained MDLM whose held-out text is on this machine")
    monkeypatch.setattr(check.solutions, "conditional_bound", conditional_bound)
    outcome = check.exercise_9()
    assert outcome.status == check.PASS, outcome.what
