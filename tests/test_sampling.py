"""Tests of mdlm_sampling.py, the samplers generated from sampling.ipynb.

A tiny randomly initialised network is enough: every property here (no mask left, carry-over,
the posterior's reveal rate, the cache's exactness, greedy = argmax, the order of the knobs,
seeds, given tokens kept) holds whatever the weights. Only the notebook test needs a checkpoint.
"""

import json
import math
import os

import pytest
import torch
from conftest import run_notebook
from hypothesis import given, settings
from hypothesis import strategies as st

from bpe_tokenizer import BPETokenizer
from mdlm_model import CheckpointError, ModelConfig, Transformer, alpha
from mdlm_sampling import (
    METHODS,
    decode_with_masks,
    distinct_n,
    make_fixed,
    newest_checkpoint,
    ngram_entropy,
    sample,
    sample_quality,
    token_distribution,
    windows,
)

V, MASK = 24, 23  # a tiny vocabulary whose last id is the mask
L = 16  # the tiny model's seq_len


def tiny_model(seq_len=L, time_conditioning=False, causal=False):
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=V,
        mask_id=MASK,
        seq_len=seq_len,
        n_layer=1,
        n_head=2,
        d_model=32,
        time_conditioning=time_conditioning,
        causal=causal,
    )
    return Transformer(config).eval()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors gain nothing from threads, and on a busy 2-core machine threads that wait
    for each other make these tests ten times slower. Restored afterwards for other files."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def masked(frame):
    return frame.tokens == MASK  # (B, L) bool


def step_pairs(trace):
    """(state before, state after) for every step of a trace."""
    return list(zip(trace, trace[1:]))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("steps", [1, 7, 100])
def test_no_mask_is_left(model, method, steps):
    result = sample(model, num_samples=3, steps=steps, method=method)
    assert result.tokens.shape == (3, L)
    assert not (result.tokens == MASK).any()
    assert 1 <= result.nfe <= steps


@pytest.mark.parametrize("method", METHODS)
def test_carry_over(model, method):
    """A revealed token never changes, its confidence is set once, and NaN exactly while masked."""
    trace = sample(model, num_samples=4, steps=10, method=method, record_trace=True).trace
    assert masked(trace[0]).all() and not masked(trace[-1]).any()
    for before, after in step_pairs(trace):
        revealed = ~masked(before)
        assert torch.equal(after.tokens[revealed], before.tokens[revealed])
        assert torch.equal(after.confidence[revealed], before.confidence[revealed])
        assert torch.equal(after.confidence.isnan(), masked(after))


@pytest.mark.parametrize("steps", [4, 10])
def test_ancestral_reveal_rate_matches_posterior(model, steps):
    """Each mask is revealed with probability (alpha_s - alpha_t) / (1 - alpha_t), binomially."""
    trace = sample(model, num_samples=400, steps=steps, record_trace=True).trace
    assert len(trace) == steps + 1
    for before, after in step_pairs(trace):
        t, s = torch.tensor(before.t), torch.tensor(after.t)
        p = ((alpha(s) - alpha(t)) / (1 - alpha(t))).item()
        n = masked(before).sum().item()
        revealed = (masked(before) & ~masked(after)).sum().item()
        assert abs(revealed - n * p) <= 4 * math.sqrt(n * p * (1 - p)) + 1e-9, (t, s, n, revealed)


@pytest.mark.parametrize("remask", [0.0, 0.3])
def test_confidence_sampler_follows_the_schedule(model, remask):
    """After the step to s exactly round(L (1 - alpha_s)) positions are masked, in every row."""
    trace = sample(
        model, num_samples=3, steps=6, method="confidence", remask=remask, record_trace=True
    ).trace
    for frame in trace:
        expected = round(L * (1 - alpha(torch.tensor(frame.t, dtype=torch.float64)).item()))
        assert masked(frame).sum(dim=1).tolist() == [expected] * 3


def test_remask_corrector_masks_earlier_tokens_again(model):
    trace = sample(model, steps=8, method="confidence", remask=0.5, record_trace=True).trace
    masked_again = [
        (~masked(before) & masked(after)).sum().item() for before, after in step_pairs(trace)
    ]
    assert sum(masked_again) > 0 and masked_again[-1] == 0  # never at the last step
    assert not masked(trace[-1]).any()


@pytest.mark.parametrize("num_samples, steps", [(1, 1000), (3, 300)])
def test_cached_sampler_is_exact_and_cheap(num_samples, steps):
    """The same samples as plain ancestral sampling, from far fewer network calls: with one
    sequence of 64 positions and 1000 steps, at most one call per position."""
    model = tiny_model(seq_len=64)
    plain = sample(model, num_samples=num_samples, steps=steps, method="ancestral", seed=3)
    cached = sample(model, num_samples=num_samples, steps=steps, method="cached", seed=3)
    assert torch.equal(plain.tokens, cached.tokens)
    assert cached.nfe < plain.nfe
    if num_samples == 1:
        assert cached.nfe <= 64


def test_cached_sampler_refuses_a_time_conditioned_model():
    with pytest.raises(ValueError, match="time-conditioned"):
        sample(tiny_model(time_conditioning=True), method="cached")
    sample(tiny_model(time_conditioning=True), steps=4, method="ancestral")  # that one is fine


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(method="nope"), "method must be one of"),
        (dict(steps=0), "steps must be"),
        (dict(temperature=-1.0), "temperature"),
        (dict(top_k=0), "top_k"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=1.5), "top_p"),
        (dict(remask=0.5), "remask"),
        (dict(method="confidence", remask=1.0), "remask"),
        (dict(length=8, fixed=torch.full((L,), MASK)), "length"),
        (dict(fixed=torch.full((2, L), MASK), num_samples=3), "num_samples"),
        (dict(length=3 * L, block_length=L), "block_length"),
    ],
)
def test_bad_arguments_are_refused(model, arguments, message):
    with pytest.raises(ValueError, match=message):
        sample(model, **arguments)


def test_refuses_the_autoregressive_twin():
    with pytest.raises(ValueError, match="autoregressive"):
        sample(tiny_model(causal=True))


@pytest.mark.parametrize("method", ["ancestral", "confidence"])
def test_temperature_zero_is_greedy(model, method):
    """Every revealed token is the argmax of the model's output at the step that revealed it."""
    trace = sample(model, num_samples=2, steps=5, method=method, temperature=0.0, record_trace=True)
    for before, after in step_pairs(trace.trace):
        with torch.no_grad():
            logits = model(before.tokens, torch.full((2,), before.t))  # (2, L, V)
        revealed = masked(before) & ~masked(after)
        assert torch.equal(after.tokens[revealed], logits.argmax(-1)[revealed])
        best = logits.double().softmax(-1).max(-1).values  # (2, L) the argmax's probability
        assert torch.allclose(after.confidence[revealed].double(), best[revealed], atol=1e-6)


P = torch.tensor([0.5, 0.3, 0.2])
ROOT_5, ROOT_3 = math.sqrt(0.5), math.sqrt(0.3)


@pytest.mark.parametrize(
    "temperature, expected",
    [
        (1.0, [0.625, 0.375, 0.0]),  # nucleus {0.5, 0.3}: 0.5 alone is below 0.6
        (0.5, [1.0, 0.0, 0.0]),  # tempered [0.658, 0.237, 0.105]: 0.658 alone reaches 0.6
        (2.0, [ROOT_5 / (ROOT_5 + ROOT_3), ROOT_3 / (ROOT_5 + ROOT_3), 0.0]),  # p ** (1/2)
    ],
)
def test_top_p_is_applied_after_temperature(temperature, expected):
    """Worked by hand; top-p before temperature would give [0.735, 0.265, 0] at 0.5."""
    got = token_distribution(P.log(), temperature=temperature, top_p=0.6)
    assert torch.allclose(got, torch.tensor(expected, dtype=torch.float64))


def test_top_k_keeps_the_k_largest():
    got = token_distribution(torch.tensor([3.0, 2.0, 1.0, 0.0]), top_k=2)
    e = math.e
    assert torch.allclose(got, torch.tensor([e / (e + 1), 1 / (e + 1), 0, 0], dtype=torch.float64))


def test_sampling_is_float64(model, monkeypatch):
    """float32 rounds a tail probability of exp(-125) to 0; the sampler draws from float64."""
    logits = torch.tensor([0.0, -25.0])  # at temperature 0.2: a gap of 125 nats
    assert (logits / 0.2).softmax(-1)[1].item() == 0.0  # the trap
    tail = token_distribution(logits, temperature=0.2)[1].item()
    assert tail == pytest.approx(math.exp(-125), rel=1e-9)

    dtypes = []
    multinomial = torch.multinomial

    def spy(probs, *args, **kwargs):
        dtypes.append(probs.dtype)
        return multinomial(probs, *args, **kwargs)

    monkeypatch.setattr(torch, "multinomial", spy)
    sample(model, steps=4, method="confidence", top_p=0.9)
    assert dtypes and set(dtypes) == {torch.float64}


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_sample(model, method):
    first, again, other = (
        sample(model, num_samples=2, method=method, steps=8, seed=s) for s in (0, 0, 1)
    )
    assert torch.equal(first.tokens, again.tokens)
    assert not torch.equal(first.tokens, other.tokens)


@settings(max_examples=30, deadline=None)
@given(
    pattern=st.lists(st.booleans(), min_size=L, max_size=L),
    tokens=st.lists(st.integers(0, MASK - 1), min_size=L, max_size=L),
    method=st.sampled_from(METHODS),
    steps=st.integers(1, 12),
    remask=st.sampled_from([0.0, 0.3]),
)
def test_given_tokens_come_back_unchanged(model, pattern, tokens, method, steps, remask):
    given_positions = torch.tensor(pattern)
    fixed = torch.where(given_positions, torch.tensor(tokens), MASK)  # (L,)
    remask = remask if method == "confidence" else 0.0
    result = sample(model, num_samples=2, steps=steps, method=method, fixed=fixed, remask=remask)
    assert torch.equal(result.tokens[:, given_positions], fixed[given_positions].expand(2, -1))
    assert not (result.tokens == MASK).any()


def test_windows_by_hand():
    assert windows(10, 4, 2) == [(0, 4), (2, 6), (4, 8), (6, 10)]
    assert windows(40, 16, 6) == [(0, 16), (6, 22), (12, 28), (18, 34), (24, 40)]
    assert windows(16, 16, 8) == [(0, 16)]
    assert windows(5, 16, 8) == [(0, 5)]


def test_block_decoding_conditions_each_block_on_the_text_before(model):
    calls = []
    hook = model.register_forward_pre_hook(lambda module, args: calls.append(args[0].clone()))
    try:
        fixed = torch.full((40,), MASK)
        fixed[:3] = torch.tensor([1, 2, 3])  # a prompt
        result = sample(model, fixed=fixed, steps=4, block_length=6, record_trace=True)
    finally:
        hook.remove()
    final = result.tokens  # (1, 40)
    assert torch.equal(final[0, :3], fixed[:3]) and not (final == MASK).any()
    assert all(x.shape == (1, L) for x in calls)
    assert len(result.trace) == 1 + 4 * len(windows(40, L, 6))  # a Frame per step, always
    for start, end in windows(40, L, 6)[1:]:  # the first call of each later window sees ...
        context = final[:, start : end - 6]  # ... the 10 tokens before its block, unmasked
        assert any(torch.equal(x[:, :10], context) and (x[:, 10:] == MASK).all() for x in calls)


@pytest.fixture(scope="module")
def tokenizer():
    return BPETokenizer.train("hello world, hello there. " * 20, vocab_size=256 + 3 + 6)


def test_make_fixed_and_decode_with_masks(tokenizer):
    head, tail = tokenizer.encode("hello"), tokenizer.encode(" world")
    fixed = make_fixed(tokenizer, 12, prefix="hello", suffix=" world")
    num_masks = 12 - len(head) - len(tail)
    assert fixed.tolist() == head + [tokenizer.mask_id] * num_masks + tail
    assert decode_with_masks(tokenizer, fixed) == "hello" + "░" * num_masks + " world"
    e_acute = list("é".encode())  # two byte tokens: decoded together, not as two halves
    assert decode_with_masks(tokenizer, e_acute + [tokenizer.mask_id]) == "é░"
    with pytest.raises(ValueError, match="more than length"):
        make_fixed(tokenizer, 2, prefix="hello", suffix=" world")


def test_metrics_by_hand():
    tokens = torch.tensor([[1, 1, 2, 2]])
    assert ngram_entropy(tokens, 1) == pytest.approx(1.0)  # two tokens, half each
    assert ngram_entropy(tokens, 2) == pytest.approx(math.log2(3))  # (1,1) (1,2) (2,2)
    assert distinct_n(tokens, 1) == 0.5 and distinct_n(tokens, 2) == 1.0
    assert distinct_n(torch.tensor([[1, 2], [1, 2]]), 2) == 0.5  # n-grams never cross rows
    quality = sample_quality(tokens, judge=lambda samples: 42.0)
    assert quality["generative_perplexity"] == 42.0
    assert sample_quality(tokens)["generative_perplexity"] is None


def test_newest_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="run train_model.ipynb first"):
        newest_checkpoint(tmp_path)
    for age, folder in enumerate(["b/c", "a", "d"]):  # b/c is the newest, d the oldest
        path = tmp_path / folder / "ckpt.pt"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"")
        os.utime(path, (1e9 - age, 1e9 - age))
    assert newest_checkpoint(tmp_path) == tmp_path / "b/c" / "ckpt.pt"


@pytest.mark.slow
def test_notebook_runs_in_smoke_mode(smoke_checkpoint, tmp_path):
    out_dir = tmp_path / "out"
    run_notebook(
        "sampling.ipynb", tmp_path, RUN_MODE="smoke", CHECKPOINT=smoke_checkpoint, OUT_DIR=out_dir
    )
    figures = json.loads((out_dir / "sampling_figures.json").read_text())
    assert figures["masks_left"] == 0
    assert (out_dir / "denoising.gif").stat().st_size > 0
