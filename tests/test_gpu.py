"""The CUDA paths, run for real where a GPU exists: `python -m pytest -m gpu` (skipped elsewhere).

Training through the notebook in bf16 and in fp16 with the gradient scaler, both compiled; a
compiled run's checkpoint on the CPU; resume on the GPU; every sampler, the twin's KV cache and
the judge on the GPU. tools/gpu_run.py runs these on a GPU machine.

GPU_TESTS_DEVICE=cpu runs them on the CPU instead (CPU autocast has bf16 and fp16 too), to check
this file where there is no GPU, and GPU_TESTS_COMPILE=0 without compiling (much quicker on a
CPU); `tools/gpu_run.py --dry-run --tests-on-cpu` sets both.
"""

import json
import os

import pytest
import torch
from conftest import SMOKE_DATA, run_notebook

import mdlm_model as M
import mdlm_sampling
from mdlm_sampling import (
    METHODS,
    ar_sample,
    causal_forward,
    generative_perplexity,
    make_fixed,
    sample,
)

DEVICE = torch.device(os.environ.get("GPU_TESTS_DEVICE", "cuda"))  # the GPU under test
COMPILE = os.environ.get("GPU_TESTS_COMPILE", "1") != "0"  # 0: quicker, for --dry-run
pytestmark = [pytest.mark.slow] + ([pytest.mark.gpu] if DEVICE.type == "cuda" else [])
BF16 = DEVICE.type != "cuda" or torch.cuda.is_bf16_supported()


def smoke_training(out_dir, **parameters):
    """One compiled smoke run of train_model.ipynb on the GPU; returns its metrics."""
    common = dict(
        RUN_MODE="smoke", DATA=SMOKE_DATA, OUT_DIR=out_dir, DEVICE=DEVICE, COMPILE=COMPILE
    )
    run_notebook("train_model.ipynb", out_dir / "notebook", **{**common, **parameters})
    return json.loads((out_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def bf16_run(tmp_path_factory):
    if not BF16:
        pytest.skip("this GPU has no bf16")
    out_dir = tmp_path_factory.mktemp("bf16")
    return out_dir, smoke_training(out_dir, PRECISION="bf16")


def test_compiled_bf16_training(bf16_run):
    _, metrics = bf16_run
    assert metrics["device"].startswith(DEVICE.type) and metrics["dtype"] == "bfloat16"
    history = metrics["history"]
    assert all(map(torch.isfinite, torch.tensor(history["train_loss"])))
    assert metrics["val_bpb"] < history["train_loss"][0] / 0.6931 / metrics["bytes_per_token"]


def test_compiled_fp16_training_uses_the_scaler(tmp_path):
    metrics = smoke_training(tmp_path, PRECISION="fp16")
    assert metrics["dtype"] == "float16"
    assert all(map(torch.isfinite, torch.tensor(metrics["history"]["train_loss"])))
    scaler = M.load_checkpoint(tmp_path / "ckpt.pt")["scaler"]
    assert scaler and scaler["scale"] > 0  # a live GradScaler's state, saved for resume


def test_a_compiled_cuda_checkpoint_loads_on_the_cpu(bf16_run):
    out_dir, _ = bf16_run
    checkpoint = torch.load(out_dir / "ckpt.pt", map_location="cpu", weights_only=True)
    assert not [key for key in checkpoint["model"] if key.startswith("_orig_mod.")]
    assert all(tensor.device.type == "cpu" for tensor in checkpoint["model"].values())
    model, tokenizer, _ = M.load_model(out_dir / "ckpt.pt", "cpu")
    idx = torch.full((1, 8), tokenizer.mask_id)
    assert model(idx, torch.ones(1)).isfinite().any()


def test_resume_on_the_gpu(tmp_path):
    """The random states are CPU tensors: a resumed GPU run must not move them to the GPU."""
    common = dict(PRECISION="bf16" if BF16 else "fp16", COMPILE=False)
    smoke_training(tmp_path, STOP_AFTER=20, **common)
    resumed = smoke_training(tmp_path, RESUME=True, **common)
    assert resumed["steps"] == 40 and len(resumed["history"]["train_loss"]) == 40


@pytest.fixture(scope="module")
def models_on_device(bf16_run):
    out_dir, _ = bf16_run
    model, tokenizer, _ = M.load_model(out_dir / "ckpt.pt", DEVICE)
    torch.manual_seed(0)
    twin_config = M.ModelConfig(
        **{**vars(model.config), "causal": True, "time_conditioning": False}
    )
    twin = M.Transformer(twin_config).to(DEVICE).eval()
    return model, twin, tokenizer


@pytest.mark.parametrize("method", METHODS)
def test_every_sampler_on_cuda_leaves_no_mask(models_on_device, method):
    model, _, tokenizer = models_on_device
    for knobs in [{}, {"fixed": make_fixed(tokenizer, 32, prefix="The")}, {"length": 80}]:
        result = sample(model, num_samples=3, steps=16, method=method, **knobs)
        assert result.tokens.device.type == "cpu" and not (result.tokens == tokenizer.mask_id).any()
        assert all(isinstance(tokenizer.decode(row.tolist()), str) for row in result.tokens)


def cached_and_full(twin, idx, prompt_length=5):
    """The twin's logits from one forward pass, and from the KV cache one token at a time."""
    cache = []
    with torch.no_grad():
        full = twin(idx, fp32_logits=True)  # (B, L, V)
        pieces = [causal_forward(twin, idx[:, :prompt_length], cache, start=0)]
        for position in range(prompt_length, idx.size(1)):
            pieces.append(causal_forward(twin, idx[:, position : position + 1], cache, position))
    return torch.cat(pieces, dim=1), full


def test_the_kv_cache_on_cuda_matches_the_uncached_twin(models_on_device, monkeypatch):
    _, twin, _ = models_on_device
    idx = torch.randint(twin.config.mask_id, (2, twin.config.seq_len), device=DEVICE)
    incremental, full = cached_and_full(twin, idx)  # fp32 (matmuls without TF32 by default)
    finite = full.isfinite()
    assert incremental.dtype == torch.float32
    assert torch.allclose(incremental[finite], full[finite], atol=1e-4)
    with torch.autocast(DEVICE.type, dtype=torch.bfloat16):  # bf16 kernels round differently
        incremental, full = cached_and_full(twin, idx)
    difference = (incremental[finite] - full[finite]).abs().max()
    assert difference < 0.05 * full[finite].std()
    # whole samples: the same tokens with and without the cache, in fp32
    monkeypatch.setattr(mdlm_sampling, "pick_precision", lambda device: torch.float32)
    for knobs in ({"temperature": 0.0}, {"top_p": 0.9, "seed": 3}):
        cached, plain = (
            ar_sample(twin, num_samples=2, length=64, start_id=1, use_cache=use_cache, **knobs)
            for use_cache in (True, False)
        )
        assert torch.equal(cached.tokens, plain.tokens)


def test_the_judge_on_cuda_matches_the_cpu(models_on_device):
    _, twin, tokenizer = models_on_device
    tokens = torch.randint(tokenizer.mask_id, (4, 32))
    on_cuda = generative_perplexity(twin, tokens)
    on_cpu = generative_perplexity(twin.to("cpu"), tokens)
    twin.to(DEVICE)
    assert on_cuda == pytest.approx(on_cpu, rel=1e-4)
