"""What train_model.ipynb checks before any work: every knob (resolve_settings), the device, the
model's shape, the claim on OUT_DIR (a lock, no silent overwrite) and the steps left to train."""

import ast
import json
import math
import os

import pytest
import torch
from conftest import ROOT, hold_out_dir
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mdlm_model as M


def parameters_cell() -> dict:
    """The knobs of train_model.ipynb's parameters cell, with their default values."""
    cells = json.loads((ROOT / "train_model.ipynb").read_text(encoding="utf-8"))["cells"]
    (cell,) = [c for c in cells if "parameters" in c["metadata"].get("tags", [])]
    return {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in ast.parse("".join(cell["source"])).body
    }


DEFAULTS = {**parameters_cell(), "RUN_MODE": "smoke"}  # smoke: the same sizes on any machine
NUMERIC = [*M.SIZE_KNOBS, "SEED", "EMA_DECAY", "STOP_AFTER", "LEARNING_RATE"]
ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.integers(-3, 300),  # near the limits, where mistakes are
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
)


def names_the_knob(error: ValueError, name: str, value) -> bool:
    """Whether the message starts a clause with "NAME = value", as every refusal does."""
    return f"{name} = {value!r}" in str(error)


def test_the_defaults_are_accepted():
    assert M.resolve_settings(DEFAULTS) == ("smoke", {**M.RUN_MODES["smoke"], "ema_decay": 0.0})


def test_every_knob_of_a_run_mode_is_used_when_set():
    """Each setting of RUN_MODES that the parameters cell has a knob for: set to another value
    that works (twice the mode's), S holds that value; left at None, the mode's."""
    smoke = M.RUN_MODES["smoke"]
    knobs = [key.upper() for key in smoke if key.upper() in DEFAULTS]
    assert len(knobs) == 11  # vocab_size ... max_chars: every size, and the learning rate
    for name in knobs:
        value = 2 * smoke[name.lower()]
        assert M.resolve_settings({**DEFAULTS, name: value})[1][name.lower()] == value, name
        assert M.resolve_settings({**DEFAULTS, name: None})[1][name.lower()] == smoke[name.lower()]


def test_every_knob_of_the_parameters_cell_is_checked():
    checked = {*M.SWITCH_KNOBS, *M.TEXT_KNOBS, *NUMERIC}
    assert checked == set(DEFAULTS), "a knob the parameters cell has and the checks lack"
    for name in DEFAULTS:
        with pytest.raises(ValueError) as refused:
            M.resolve_settings({**DEFAULTS, name: ["not", "a", "setting"]})
        assert names_the_knob(refused.value, name, ["not", "a", "setting"])


@settings(max_examples=400, deadline=None)
@given(name=st.sampled_from(NUMERIC), value=ANY_VALUE)
def test_a_numeric_knob_is_used_as_given_or_refused_by_name(name, value):
    try:
        mode, S = M.resolve_settings({**DEFAULTS, name: value})
    except ValueError as error:
        assert names_the_knob(error, name, value), str(error)
        return
    assert mode == "smoke" and not isinstance(value, bool | str)
    if name in M.SIZE_KNOBS:
        assert S[name.lower()] == (M.RUN_MODES["smoke"][name.lower()] if value is None else value)
        assert value is None or (isinstance(value, int) and value >= M.SIZE_KNOBS[name])
    if name in ("EMA_DECAY", "LEARNING_RATE") and value is not None:
        assert math.isfinite(value) and value >= 0 and S[name.lower()] == value


SMALL_SHAPES = st.fixed_dictionaries(
    {
        "VOCAB_SIZE": st.one_of(st.none(), st.integers(250, 300)),
        "SEQ_LEN": st.one_of(st.none(), st.integers(-1, 12)),
        "N_LAYER": st.one_of(st.none(), st.integers(-1, 2)),
        "N_HEAD": st.one_of(st.none(), st.integers(-1, 6)),
        "D_MODEL": st.one_of(st.none(), st.integers(-1, 24)),
        "BATCH_SIZE": st.one_of(st.none(), st.integers(-1, 3)),
        "LEARNING_RATE": st.one_of(st.none(), st.floats(-1, 1)),
        "EMA_DECAY": st.floats(-0.5, 1.5),
    }
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(knobs=SMALL_SHAPES)
def test_settings_accepted_train_a_step_and_refused_ones_name_a_knob_that_was_set(knobs):
    """Several knobs at once: either the model they describe trains one step with a finite
    loss, or the refusal names one of the knobs set here (not one left at its default)."""
    try:
        _, S = M.resolve_settings({**DEFAULTS, **knobs})
    except ValueError as error:
        assert any(names_the_knob(error, name, value) for name, value in knobs.items()), error
        return
    torch.manual_seed(0)
    vocab_size = S["vocab_size"] if knobs["VOCAB_SIZE"] is not None else 40  # small is quicker
    config = M.ModelConfig(
        vocab_size=vocab_size, mask_id=vocab_size - 1, seq_len=S["seq_len"],
        n_layer=S["n_layer"], n_head=S["n_head"], d_model=S["d_model"],
    )  # fmt: skip
    model = M.Transformer(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=S["learning_rate"])
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randint(vocab_size - 1, (S["batch_size"], S["seq_len"]), generator=generator)
    loss = M.loss_on_batch(model, x0, generator)
    loss.backward()
    optimizer.step()
    assert math.isfinite(loss.item())


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"MAX_STEPS": -5}, "MAX_STEPS = -5: must be None (the run mode's) or a whole number, 1"),
        ({"MAX_STEPS": 1.5}, "MAX_STEPS = 1.5: must be None (the run mode's) or a whole number"),
        ({"BATCH_SIZE": 0}, "BATCH_SIZE = 0: must be"),
        ({"EVAL_EVERY": 0}, "EVAL_EVERY = 0: must be"),
        ({"GRAD_ACCUM": 0}, "GRAD_ACCUM = 0: must be"),
        ({"MAX_CHARS": 0}, "MAX_CHARS = 0: must be"),
        (
            {"VOCAB_SIZE": 100},
            "VOCAB_SIZE = 100: must be None (the run mode's) or a whole number, 259",
        ),
        ({"N_HEAD": 3}, "D_MODEL = 64 (smoke mode's), N_HEAD = 3: the heads split D_MODEL evenly"),
        (
            {"D_MODEL": 66},
            "D_MODEL = 66, N_HEAD = 2 (smoke mode's): D_MODEL / N_HEAD = 33 channels",
        ),
        (
            {"STOP_AFTER": 0},
            "STOP_AFTER = 0: must be None (train to MAX_STEPS) or a number of steps",
        ),
        ({"LEARNING_RATE": 0}, "LEARNING_RATE = 0: must be None (the run mode's) or a positive"),
        ({"EMA_DECAY": 1.5}, "EMA_DECAY = 1.5: must be a number in [0, 1)"),
        ({"SEED": "abc"}, "SEED = 'abc': must be a whole number"),
        ({"RESUME": "false"}, "RESUME = 'false': must be True or False"),  # papermill's -p false
        ({"TIME_CONDITIONING": "false"}, "TIME_CONDITIONING = 'false': must be True or False"),
        ({"DATA": 5}, "DATA = 5: must be a string"),
        ({"DATA": ""}, "DATA = '': must name a corpus"),
        (
            {"RUN_MODE": "fast"},
            "RUN_MODE = 'fast': must be 'auto' or one of ['smoke', 'first', 'quick', 'full']",
        ),
        ({"OBJECTIVE": "gpt"}, "OBJECTIVE = 'gpt': must be 'mdlm' (masked diffusion) or 'ar'"),
        ({"TEXT_ERRORS": "ignore"}, "TEXT_ERRORS = 'ignore': must be 'strict'"),
        (
            {"CONSTANT_CONDITIONING": True},
            "CONSTANT_CONDITIONING = True: feeds the blocks a constant instead of t: set TIME_",
        ),
        (
            {"RESUME": True, "OVERWRITE": True},
            "OVERWRITE = True: replaces the run in OUT_DIR that RESUME = True",
        ),
    ],
)
def test_each_mistake_is_named_with_its_fix(changes, message):
    with pytest.raises(ValueError) as refused:
        M.resolve_settings({**DEFAULTS, **changes})
    assert message in str(refused.value)


def test_the_twin_takes_the_gated_blocks_fed_a_constant():
    """TIME_CONDITIONING (True by default) means nothing to the twin: no conflict there."""
    knobs = {**DEFAULTS, "OBJECTIVE": "ar", "CONSTANT_CONDITIONING": True}
    assert M.resolve_settings(knobs)[0] == "smoke"


@pytest.mark.parametrize("d_model, n_head", [(64, 3), (66, 2), (8, 8)])
def test_the_model_config_refuses_heads_of_an_odd_or_uneven_width(d_model, n_head):
    with pytest.raises(ValueError, match="RoPE turns in pairs"):
        M.ModelConfig(vocab_size=10, mask_id=9, n_head=n_head, d_model=d_model)


# ----- the device


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.mark.parametrize(
    "name, message",
    [
        ("gpu", "DEVICE 'gpu' is not a device: use 'auto', 'cpu', 'cuda' or 'mps'"),
        ("meta", "DEVICE 'meta' is not a device"),
        (5, "DEVICE 5 is not a device"),
        ("cuda", "DEVICE 'cuda', but torch finds no CUDA GPU"),
        ("cuda:1", "DEVICE 'cuda:1', but torch finds no CUDA GPU"),
        ("mps", "DEVICE 'mps', but there is no Apple GPU (MPS) here: use 'auto'"),
    ],
)
def test_a_device_that_is_not_here_is_refused_by_name(no_gpu, name, message):
    with pytest.raises(ValueError) as refused:
        M.pick_device(name)
    assert message in str(refused.value)


def test_a_script_names_its_own_flag_and_auto_finds_the_cpu(no_gpu):
    with pytest.raises(ValueError, match="^--device 'gpu' is not a device"):
        M.pick_device("gpu", knob="--device")
    assert M.pick_device("auto") == M.pick_device("cpu") == torch.device("cpu")


def test_a_gpu_index_beyond_the_machine_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert M.pick_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ValueError, match="this machine's GPUs are cuda:0 to cuda:1"):
        M.pick_device("cuda:2")


# ----- the steps of a session, and the NaN message


@pytest.mark.parametrize(
    "start, max_steps, stop_after, stop",
    [(0, 40, None, 40), (20, 40, None, 40), (0, 40, 20, 20), (20, 40, 30, 30), (0, 40, 99, 40)],
)
def test_a_session_stops_at_max_steps_or_stop_after(start, max_steps, stop_after, stop):
    assert M.last_step(start, max_steps, stop_after) == stop


@pytest.mark.parametrize(
    "start, max_steps, stop_after", [(40, 40, None), (20, 40, 10), (20, 40, 20)]
)
def test_a_session_that_would_train_nothing_is_refused(start, max_steps, stop_after):
    with pytest.raises(ValueError, match=f"nothing to train: the checkpoint is at step {start}"):
        M.last_step(start, max_steps, stop_after)


def test_the_nan_message_says_whether_a_checkpoint_is_kept(tmp_path):
    checkpoint = tmp_path / "ckpt.pt"
    M.check_finite(2.5, 3, checkpoint)  # finite: nothing to say
    with pytest.raises(FloatingPointError, match="at step 3. No checkpoint was written before"):
        M.check_finite(math.nan, 3, checkpoint)
    checkpoint.write_bytes(b"")
    with pytest.raises(FloatingPointError, match=f"good checkpoint is kept at {checkpoint}"):
        M.check_finite(math.inf, 30, checkpoint)


# ----- the claim on OUT_DIR


@pytest.fixture(autouse=True)
def release_every_lock():
    yield
    for key in list(M.held_locks):
        M.held_locks.pop(key).release()


def finished_run(folder):
    """The files a finished run leaves, with its metrics."""
    folder.mkdir(parents=True, exist_ok=True)
    metrics = {"run": "mdlm_smoke_tiny", "seed": 1337, "steps": 40, "settings": {"max_steps": 40}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "ckpt.pt").write_bytes(b"weights")
    return {name: (folder / name).read_bytes() for name in ("metrics.json", "ckpt.pt")}


def test_a_claim_writes_a_lock_that_names_this_process_and_release_removes_it(tmp_path):
    lock = M.claim_out_dir(tmp_path / "run", run_name="mdlm_smoke_tiny")
    text = (tmp_path / "run" / "train.lock").read_text()
    assert text.startswith(f"process {os.getpid()} (mdlm_smoke_tiny, since ")
    assert M.claim_out_dir(tmp_path / "run") is lock  # a Jupyter cell run again: the same lock
    M.claim_out_dir(tmp_path / "other")  # one run per process: the first folder is free again
    assert not (tmp_path / "run" / "train.lock").exists()


def test_a_folder_that_holds_a_run_is_refused_and_left_as_it_was(tmp_path):
    before = finished_run(tmp_path)
    with pytest.raises(M.OutDirError) as refused:
        M.claim_out_dir(tmp_path)
    message = str(refused.value)
    assert (
        "already holds a run (mdlm_smoke_tiny, seed 1337, 40 of 40 steps; ckpt.pt, metrics"
        in message
    )
    assert "RESUME = True" in message and "OVERWRITE = True" in message and "OUT_DIR" in message
    assert {name: (tmp_path / name).read_bytes() for name in before} == before
    assert not (tmp_path / "train.lock").exists()  # refused: not held either


def test_resume_continues_the_run_there_and_needs_one(tmp_path):
    before = finished_run(tmp_path / "run")
    M.claim_out_dir(tmp_path / "run", resume=True)
    assert {name: (tmp_path / "run" / name).read_bytes() for name in before} == before
    with pytest.raises(M.OutDirError, match="RESUME = True, but .* holds no ckpt.pt"):
        M.claim_out_dir(tmp_path / "empty", resume=True)


def test_overwrite_removes_the_run_that_was_there(tmp_path, capsys):
    finished_run(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")  # not a run's file: kept
    M.claim_out_dir(tmp_path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "train.lock"]
    assert "OVERWRITE = True: removed ckpt.pt, metrics.json" in capsys.readouterr().out


def test_a_file_is_no_out_dir(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(M.OutDirError, match="is a file: give a folder"):
        M.claim_out_dir(tmp_path / "file")


@pytest.mark.skipif(M.fcntl is None, reason="no fcntl (Windows): OUT_DIR is not locked there")
def test_a_folder_another_process_trains_into_is_refused_naming_it(tmp_path):
    holder = hold_out_dir(tmp_path, seconds=120)
    try:
        with pytest.raises(M.OutDirError) as refused:
            M.claim_out_dir(tmp_path, run_name="the second run")
        assert f"is in use by process {holder.pid} (the first run, since " in str(refused.value)
    finally:
        holder.kill()
        holder.wait()
    # killed, it could not remove its lock file: the operating system's lock went with it
    assert (tmp_path / "train.lock").exists()
    M.claim_out_dir(tmp_path, run_name="the second run")
    assert "(the second run, since" in (tmp_path / "train.lock").read_text()
