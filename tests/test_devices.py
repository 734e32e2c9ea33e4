"""Every device a learner has: a GPU without float64 (Apple's MPS), precision and compile choices.

This machine has no Mac, so the tests build a stand-in: tensors that report the device "meta"
but hold their values on the CPU, and a dispatch mode that runs every operation on those values
and refuses what MPS refuses. A float64 tensor on the stand-in device is a TypeError, as
`x.double()` on MPS is; an operation that mixes it with a CPU tensor (other than a 0-dim scalar)
is a RuntimeError, as on any GPU. `float64_device` is told that "meta" has no float64, so the
samplers must do their float64 work on the CPU. A new float64 line on the model's device in the
samplers makes these tests fail; `test_float64_is_made_through_the_helper_everywhere` covers the
notebooks' own cells, which run only inside Jupyter.
"""

import json
import re
from pathlib import Path

import conftest
import pytest
import torch
import torch.nn as nn
from conftest import ROOT, notebook_function
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

import mdlm_model
import mdlm_sampling
from bpe_tokenizer import BPETokenizer
from mdlm_model import float64_device, pick_precision
from mdlm_sampling import (
    ar_sample,
    infill_recovery,
    make_fixed,
    sample,
    sequence_nll,
)

STAND_IN = torch.device("meta")  # the device without float64; its tensors keep CPU values
V, MASK, L = 262, 261, 16  # a byte-level BPE of 3 merges: 256 bytes, 3 merges, 3 specials


class OnStandIn(torch.Tensor):
    """A tensor that says it lives on the stand-in device; its values are a CPU tensor."""

    @staticmethod
    def __new__(cls, values):
        return torch.Tensor._make_wrapper_subclass(
            cls,
            values.shape,
            strides=values.stride(),
            storage_offset=values.storage_offset(),
            dtype=values.dtype,
            device=STAND_IN,
            requires_grad=values.requires_grad,
        )

    def __init__(self, values):
        self.values = values

    def __repr__(self):
        return f"OnStandIn({self.values!r})"

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        raise AssertionError(f"{func} ran outside NoFloat64Device: use the `stand_in` fixture")


def is_stand_in(device) -> bool:
    return device is not None and torch.device(device) == STAND_IN


class NoFloat64Device(TorchDispatchMode):
    """Runs operations on OnStandIn tensors with their CPU values, as a GPU without float64 would.

    An operation is "on the device" when a tensor argument is OnStandIn or it is asked to create
    its result there (device="meta"). Such an operation may not make float64, and may not take
    a CPU tensor other than a 0-dim scalar; `.to("cpu")` brings a result back to the CPU.
    """

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        on_device, cpu_tensors = False, []

        def unwrap(x):
            nonlocal on_device
            if isinstance(x, OnStandIn):
                on_device = True
                return x.values
            if isinstance(x, torch.Tensor) and x.dim() > 0:
                cpu_tensors.append(x)
            return x

        args, kwargs = tree_map(unwrap, (args, kwargs))
        copy = func is torch.ops.aten._to_copy.default
        if is_stand_in(kwargs.get("device")):
            on_device, kwargs["device"] = True, torch.device("cpu")
        elif copy and kwargs.get("device") is not None:
            on_device = False  # .to("cpu"): the result is an ordinary CPU tensor
        if on_device and cpu_tensors and not copy:
            raise RuntimeError(f"{func}: expected all tensors on one device, got cpu and mps")
        result = func(*args, **kwargs)
        if not on_device:
            return result

        def wrap(x):
            if not isinstance(x, torch.Tensor):
                return x
            if x.dtype == torch.float64:
                raise TypeError(f"{func}: Cannot convert a MPS Tensor to float64 dtype")
            return OnStandIn(x)

        return tree_map(wrap, result)


class NewTensorsOnStandIn(torch.overrides.TorchFunctionMode):
    """torch.tensor(..., device="meta") and torch.as_tensor build their result before any
    dispatch: build it on the CPU and move it, so that the move is checked like any other."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in (torch.tensor, torch.as_tensor) and is_stand_in(kwargs.get("device")):
            kwargs.pop("device")
            return func(*args, **kwargs).to(STAND_IN)
        return func(*args, **kwargs)


@pytest.fixture
def stand_in(monkeypatch):
    """Inside the `with`: the stand-in device is live, and float64_device knows it lacks float64."""
    monkeypatch.setattr(mdlm_model, "DEVICES_WITHOUT_FLOAT64", {"mps", STAND_IN.type})
    swap = torch.__future__.get_swap_module_params_on_conversion()
    torch.__future__.set_swap_module_params_on_conversion(True)  # so that .to() takes OnStandIn
    yield StandIn()
    torch.__future__.set_swap_module_params_on_conversion(swap)


class StandIn:
    def __enter__(self):
        self.modes = [NewTensorsOnStandIn(), NoFloat64Device()]
        for mode in self.modes:
            mode.__enter__()
        return self

    def __exit__(self, *exc):
        for mode in reversed(self.modes):
            mode.__exit__(*exc)

    @staticmethod
    def move(model: nn.Module) -> nn.Module:
        """A copy of the model whose parameters and buffers live on the stand-in device."""
        copy = tiny_model(**{k: getattr(model.config, k) for k in ("time_conditioning", "causal")})
        copy.load_state_dict(model.state_dict())
        return copy._apply(lambda t: OnStandIn(t.detach()))


def tiny_model(time_conditioning=False, causal=False):
    return conftest.tiny_model(V, L, time_conditioning=time_conditioning, causal=causal, n_layer=2)


@pytest.fixture(scope="module")
def tokenizer():
    tokenizer = BPETokenizer.train("the cat sat on the mat. " * 20, vocab_size=V)
    assert tokenizer.mask_id == MASK
    return tokenizer


def test_the_stand_in_refuses_what_mps_refuses(stand_in):
    """The check itself: it must be able to fail, or the tests below prove nothing."""
    with stand_in:
        x = torch.ones(2, 3).to(STAND_IN)
        assert x.device == STAND_IN and x.sum().item() == 6  # real values behind it
        with pytest.raises(TypeError, match="float64"):
            x.double()
        with pytest.raises(TypeError, match="float64"):
            torch.rand(3, dtype=torch.float64, device=STAND_IN)
        with pytest.raises(TypeError, match="float64"):
            torch.tensor([1.0], dtype=torch.float64, device=STAND_IN)
        with pytest.raises(RuntimeError, match="one device"):
            x + torch.ones(2, 3)
        assert (x + torch.tensor(1.0)).device == STAND_IN  # a 0-dim CPU scalar is allowed
        y = x.cpu().double()  # on the CPU, float64 is fine
        assert type(y) is torch.Tensor and y.dtype == torch.float64
        assert float64_device(STAND_IN) == torch.device("cpu")


def test_a_float64_line_on_the_device_fails(stand_in, monkeypatch):
    """A sampler that converts on the model's device, as this project's did before it had
    float64_device, fails on the stand-in, as it failed on a Mac."""
    monkeypatch.setattr(mdlm_sampling, "to_float64", lambda x: x.double())
    with stand_in, pytest.raises(TypeError, match="float64"):
        sample(stand_in.move(tiny_model()), steps=4)


SAMPLER_CASES = [
    dict(method="ancestral"),
    dict(method="ancestral", temperature=0.0),
    dict(method="ancestral", top_k=5, top_p=0.9, temperature=0.7),
    dict(method="lazy", steps=40),
    dict(method="confidence"),
    dict(method="confidence", remask=0.3),
    dict(method="ancestral", length=2 * L, block_length=L // 2),
    dict(method="ancestral", record_trace=True),
]


@pytest.mark.parametrize("knobs", SAMPLER_CASES, ids=lambda k: ",".join(map(str, k.values())))
def test_every_sampler_runs_without_float64_on_the_device(stand_in, knobs):
    """Same seed, same samples as on the CPU: every random draw happens on the CPU either way."""
    model = tiny_model()
    knobs = {"steps": 8, "num_samples": 2, "seed": 3, **knobs}
    on_cpu = sample(model, **knobs)
    with stand_in:
        on_device = sample(stand_in.move(model), **knobs)
    assert type(on_device.tokens) is torch.Tensor and on_device.tokens.device.type == "cpu"
    assert not (on_device.tokens == MASK).any()
    assert torch.equal(on_device.tokens, on_cpu.tokens) and on_device.nfe == on_cpu.nfe
    for frame_device, frame_cpu in zip(on_device.trace, on_cpu.trace, strict=True):
        assert torch.equal(frame_device.tokens, frame_cpu.tokens)


def test_given_text_and_infilling_on_the_device(stand_in, tokenizer):
    model = tiny_model(time_conditioning=True)
    fixed = make_fixed(tokenizer, L, prefix="the cat", suffix="the log.")
    passages = torch.randint(MASK, (3, L), generator=torch.Generator().manual_seed(0))
    on_cpu = sample(model, fixed=fixed, steps=6), infill_recovery(model, passages, span=4, steps=4)
    with stand_in:
        moved = stand_in.move(model)
        on_device = (
            sample(moved, fixed=fixed, steps=6),
            infill_recovery(moved, passages, span=4, steps=4),
        )
    assert torch.equal(on_device[0].tokens, on_cpu[0].tokens)
    assert torch.equal(on_device[1]["tokens"], on_cpu[1]["tokens"])


@pytest.mark.parametrize("use_cache", [True, False])
def test_the_twin_samples_and_judges_on_the_device(stand_in, use_cache):
    twin = tiny_model(causal=True)
    prompt = torch.tensor([[1, 2, 3], [4, 5, 6]])
    knobs = dict(num_samples=2, length=L, prompt=prompt, top_p=0.9, seed=1, use_cache=use_cache)
    on_cpu = ar_sample(twin, **knobs)
    nll_cpu = sequence_nll(twin, on_cpu.tokens)
    with stand_in:
        moved = stand_in.move(twin)
        on_device = ar_sample(moved, **knobs)
        nll_device = sequence_nll(moved, on_device.tokens)
    assert torch.equal(on_device.tokens, on_cpu.tokens)
    assert nll_device.dtype == torch.float64 and torch.allclose(nll_device, nll_cpu)


@pytest.mark.parametrize("causal", [False, True])
def test_first_look_runs_on_the_device(stand_in, tokenizer, causal):
    """The last cell of train_model.ipynb: the README's main command ends with it, on a Mac too."""
    first_look = notebook_function("train_model.ipynb", "first_look")
    model = tiny_model(time_conditioning=not causal, causal=causal)
    on_cpu = first_look(model, tokenizer, num_samples=2, length=L, steps=6, seed=5)
    with stand_in:
        on_device = first_look(
            stand_in.move(model), tokenizer, num_samples=2, length=L, steps=6, seed=5
        )
    assert on_device == on_cpu and all(isinstance(text, str) for text in on_device)


FLOAT64 = re.compile(r"\.double\(\)|torch\.float64|torch\.double\b")
THROUGH_THE_HELPER = ("to_float64(", "float64_device(", "device=host", "# on the CPU")


def project_code_lines():
    """(where, line) for every line of the project's Python: files, and notebook code cells."""
    for path in sorted(ROOT.glob("*.py")) + sorted(ROOT.glob("*/*.py")):
        if path.parent.name not in ("tests", ".git") and path.name != "nbexport.py":
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                yield f"{path.relative_to(ROOT)}:{number}", line
    for notebook in sorted(ROOT.glob("*.ipynb")):
        for index, cell in enumerate(json.loads(notebook.read_text(encoding="utf-8"))["cells"]):
            if cell["cell_type"] == "code":
                for number, line in enumerate("".join(cell["source"]).splitlines(), 1):
                    yield f"{notebook.name} cell {index} line {number}", line


def test_float64_is_made_through_the_helper_everywhere():
    """Static half of the check, for code the stand-in cannot run (notebook cells, scripts): a
    line that makes float64 must go through to_float64 / float64_device (or a tensor named
    `host`: device=host), or say "# on the CPU" because it only touches CPU tensors."""
    offending = [
        f"{where}: {line.strip()}"
        for where, line in project_code_lines()
        if FLOAT64.search(line.split("#")[0]) and not any(m in line for m in THROUGH_THE_HELPER)
    ]
    assert not offending, "float64 that may land on a GPU without it:\n" + "\n".join(offending)


# --------------------------------------------------------------------------------------------
# The last layer in fp32, precision and compile choices


def test_the_samplers_draw_from_fp32_logits_under_bf16(monkeypatch):
    """bf16 autocast rounds a logit to 3 significant digits; the samplers ask for fp32 ones.
    Checked on the CPU, whose autocast has bf16 too."""
    model = tiny_model(time_conditioning=True)
    idx = torch.randint(V, (2, L))
    t = torch.full((2,), 0.5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        rounded = model(idx, t)
        exact = model(idx, t, fp32_logits=True)
    assert rounded.dtype == torch.bfloat16 and exact.dtype == torch.float32
    finite = exact.isfinite()
    off_grid = exact[finite] != exact[finite].bfloat16().float()
    assert off_grid.float().mean() > 0.9  # not bf16 values stored in fp32

    seen = []
    draw_tokens = mdlm_sampling.draw_tokens

    def spy(logits, *args, **kwargs):
        seen.append(logits.dtype)
        return draw_tokens(logits, *args, **kwargs)

    monkeypatch.setattr(mdlm_sampling, "pick_precision", lambda device: torch.bfloat16)
    monkeypatch.setattr(mdlm_sampling, "draw_tokens", spy)
    sample(model, steps=4)
    ar_sample(tiny_model(causal=True), length=8, start_id=1)
    ar_sample(tiny_model(causal=True), length=8, start_id=1, use_cache=False)
    assert seen and set(seen) == {torch.float32}


@pytest.mark.parametrize(
    "name,expected",
    [("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)],
)
def test_precision_by_name(name, expected):
    assert pick_precision(torch.device("cpu"), name) == expected


def test_precision_auto_and_refusals(monkeypatch):
    assert pick_precision(torch.device("cpu")) == torch.float32
    with pytest.raises(ValueError, match="PRECISION must be"):
        pick_precision(torch.device("cpu"), "float16")
    monkeypatch.setattr(torch.amp, "is_autocast_available", lambda device_type: True)
    for has_bf16, on_cuda, on_mac in [
        (True, torch.bfloat16, torch.bfloat16),
        (False, torch.float16, torch.float32),  # a Mac before macOS 14: no fp16 scaler on MPS
    ]:
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda has=has_bf16: has)
        assert pick_precision(torch.device("cuda")) == on_cuda
        monkeypatch.setattr(torch.backends.mps, "is_macos_or_newer", lambda *_, h=has_bf16: h)
        assert pick_precision(torch.device("mps")) == on_mac
    with pytest.raises(ValueError, match="has no bf16"):
        pick_precision(torch.device("cuda"), "bf16")


def test_compile_where_it_runs(monkeypatch):
    model = tiny_model()
    compiled, reason = mdlm_model.compile_if_possible(model, torch.device("cpu"))
    assert reason is None and compiled._orig_mod is model  # compiled lazily, at the first call
    same, reason = mdlm_model.compile_if_possible(model, torch.device("mps"))
    assert same is model and "MPS" in reason
    monkeypatch.setattr(mdlm_model.sys, "platform", "win32")
    same, reason = mdlm_model.compile_if_possible(model, torch.device("cuda"))
    assert same is model and "Windows" in reason


def test_autocast_is_off_in_fp32_on_any_device():
    with mdlm_model.autocast(STAND_IN, torch.float32):  # torch.autocast does not know "meta"
        assert not torch.is_autocast_enabled("cpu")
    with mdlm_model.autocast(torch.device("cpu"), torch.bfloat16):
        assert torch.is_autocast_enabled("cpu")


def test_the_stand_in_model_matches_the_cpu_model(stand_in):
    model = tiny_model(time_conditioning=True)
    idx, t = torch.randint(MASK, (2, L)), torch.rand(2)
    with torch.no_grad():
        expected = model(idx, t)
        with stand_in:
            got = stand_in.move(model)(idx.to(STAND_IN), t.to(STAND_IN)).cpu()
    assert torch.equal(got, expected)


def test_readme_and_guide_name_the_helper():
    """The float64 rule of the guide holds on every device; the docs say how."""
    guide = (ROOT / "learning_guide.md").read_text(encoding="utf-8")
    assert "float64_device" in guide and "fp32_logits" in guide
    assert "## Where it runs" in Path(ROOT / "README.md").read_text(encoding="utf-8")
