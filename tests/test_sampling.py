"""Tests of mdlm_sampling.py, the samplers generated from sampling.ipynb.

A tiny randomly initialised network is enough: every property here (no mask left, carry-over,
the posterior's reveal rate, the cache's exactness, greedy = argmax, the order of the knobs,
seeds, given tokens kept) holds whatever the weights. Only the notebook test needs a checkpoint.
"""

import json
import math
import os
import statistics
from collections import Counter

import conftest
import pytest
import torch
import torch.nn.functional as F
from conftest import notebook_function, run_notebook
from hypothesis import given, settings
from hypothesis import strategies as st

from bpe_tokenizer import BPETokenizer
from mdlm_model import (
    CheckpointError,
    ModelConfig,
    alpha,
    save_checkpoint,
)
from mdlm_sampling import (
    METHODS,
    ar_sample,
    causal_forward,
    checkpoints_newest_first,
    decode_with_masks,
    distinct_n,
    fill_the_blank,
    generative_perplexity,
    infill_recovery,
    load_judge,
    make_fixed,
    middle_span,
    newest_checkpoint,
    ngram_entropy,
    ngram_sample,
    prefix_recovery,
    sample,
    sample_quality,
    sequence_nll,
    span_recovery,
    token_distribution,
    windows,
)

V, MASK = 24, 23  # a tiny vocabulary whose last id is the mask
L = 16  # the tiny model's seq_len


def tiny_model(seq_len=L, **kwargs):
    return conftest.tiny_model(V, seq_len, **kwargs)


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


@settings(max_examples=30, deadline=None)
@given(
    time_conditioning=st.booleans(),
    num_samples=st.integers(1, 3),
    steps=st.integers(1, 400),
    given_text=st.booleans(),
    start_time=st.sampled_from([1.0, 0.5]),
    seed=st.integers(0, 10**6),
)
def test_lazy_sampler_gives_the_ancestral_samples(
    time_conditioning, num_samples, steps, given_text, start_time, seed
):
    """The lazy sampler draws each step's coins before it calls the network, and calls it only
    when a coin reveals something, at that step's t: the plain ancestral sampler's samples from
    the same seed, for a time-conditioned model too, with or without given text."""
    model = tiny_model(seq_len=32, time_conditioning=time_conditioning)
    fixed = torch.full((32,), MASK)
    if given_text:
        fixed[:5], fixed[-3:] = torch.arange(5), torch.arange(3)  # a prefix and a suffix
    runs = [
        sample(
            model,
            num_samples=num_samples,
            steps=steps,
            method=method,
            fixed=fixed,
            start_time=start_time,
            seed=seed,
            record_trace=True,
        )
        for method in ("ancestral", "lazy")
    ]
    plain, lazy = runs
    assert torch.equal(plain.tokens, lazy.tokens)
    # the calls it made are exactly the steps in which some position of the batch was revealed
    changed = [
        bool((masked(before) & ~masked(after)).any()) for before, after in step_pairs(lazy.trace)
    ]
    assert (
        lazy.nfe
        == sum(changed)
        <= plain.nfe
        == sum(masked(b).any() for b, _ in step_pairs(plain.trace))
    )


@pytest.mark.parametrize("steps, length", [(1024, 128), (1000, 64), (64, 64)])
def test_lazy_sampler_calls_the_network_as_often_as_the_formula_says(steps, length):
    """Each position is revealed in a step drawn uniformly from the T steps, independently of
    the others, so the number of steps that reveal something in one sequence of L positions is
    T (1 - (1 - 1/T)^L) on average: about 120 at T = 1,024 and L = 128, where the plain sampler
    makes 1,024 calls. The mean over 40 seeds is within four standard errors of it."""
    model = tiny_model(seq_len=length)
    calls = [sample(model, steps=steps, method="lazy", seed=k).nfe for k in range(40)]
    expected = steps * (1 - (1 - 1 / steps) ** length)
    mean, error = statistics.fmean(calls), statistics.stdev(calls) / math.sqrt(len(calls))
    assert abs(mean - expected) < 4 * error + 0.5, (mean, error, expected)
    assert max(calls) <= min(steps, length)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(method="nope"), "method must be one of"),
        (dict(steps=0), "steps must be"),
        (dict(temperature=-1.0), "temperature"),
        (dict(temperature=float("nan")), "temperature must be >= 0"),
        (dict(top_k=0), "top_k"),
        (dict(top_k=2.5), "top_k must be None or a whole number"),
        (dict(top_k=float("nan")), "top_k must be None or a whole number"),
        (dict(top_p=float("nan")), "top_p"),
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
    rows = torch.tensor([[1, 1, 2, 2], [1, 2, 3, 4]])
    nll = torch.tensor([1.0, 3.0], dtype=torch.float64)  # a judge's mean NLL of each row
    quality = sample_quality(rows, judge=lambda samples: nll)
    assert quality["generative_perplexity"] == pytest.approx(math.exp(2.0))  # exp of the mean
    low, high = quality["generative_perplexity_interval"]  # resampling the two rows: e^1 to e^3
    assert math.e <= low < math.exp(2.0) < high <= math.exp(3.0)
    assert sample_quality(rows)["generative_perplexity"] is None
    same = sample_quality(torch.tensor([[5, 6, 7]] * 8))  # identical rows: nothing to resample
    assert same["distinct_2_interval"] == [same["distinct_2"]] * 2


def save_tiny(path, tokenizer, causal=False, age=0, time_conditioning=False):
    """A real checkpoint of a tiny model at path, modified `age` seconds before 1e9."""
    model = tiny_model(causal=causal, time_conditioning=time_conditioning)
    save_checkpoint(path, model=model, tokenizer=tokenizer)
    os.utime(path, (1e9 - age, 1e9 - age))
    return path


def test_newest_checkpoint_finds_the_newest_of_each_kind(tmp_path, tokenizer):
    with pytest.raises(CheckpointError, match="run train_model.ipynb first"):
        newest_checkpoint(tmp_path)
    other = BPETokenizer.train("other text entirely. " * 20, vocab_size=256 + 3 + 4)
    corrupt = tmp_path / "corrupt" / "ckpt.pt"  # the newest file of all, but unreadable
    corrupt.parent.mkdir()
    corrupt.write_bytes(b"not a checkpoint")
    twin_other = save_tiny(tmp_path / "twin_other/ckpt.pt", other, causal=True, age=1)
    twin = save_tiny(tmp_path / "runs/twin/ckpt.pt", tokenizer, causal=True, age=2)
    mdlm = save_tiny(tmp_path / "b/c/ckpt.pt", tokenizer, age=3)
    save_tiny(tmp_path / "a/ckpt.pt", tokenizer, age=4)  # an older MDLM
    assert newest_checkpoint(tmp_path) == mdlm  # the twins and the corrupt file are newer
    assert newest_checkpoint(tmp_path, causal=True) == twin_other
    assert checkpoints_newest_first(tmp_path, causal=True) == [twin_other, twin]
    assert checkpoints_newest_first(tmp_path, causal=True, tokenizer=tokenizer) == [twin]
    assert checkpoints_newest_first(tmp_path / "a", causal=True) == []
    conditioned = save_tiny(tmp_path / "tc/ckpt.pt", tokenizer, age=0, time_conditioning=True)
    assert newest_checkpoint(tmp_path) == conditioned
    # section 7 looks for an MDLM without time conditioning when the model has it
    unconditioned = checkpoints_newest_first(tmp_path, tokenizer=tokenizer, time_conditioning=False)
    assert unconditioned == [mdlm, tmp_path / "a/ckpt.pt"]
    assert checkpoints_newest_first(tmp_path, time_conditioning=True) == [conditioned]


def test_load_judge_wants_a_twin_with_the_same_tokenizer(tmp_path, tokenizer):
    twin = save_tiny(tmp_path / "twin.pt", tokenizer, causal=True)
    assert load_judge(twin, tokenizer).config.causal
    with pytest.raises(CheckpointError, match="autoregressive twin"):
        load_judge(save_tiny(tmp_path / "mdlm.pt", tokenizer), tokenizer)
    other = BPETokenizer.train("other text entirely. " * 20, vocab_size=256 + 3 + 4)
    with pytest.raises(CheckpointError, match="another tokenizer"):
        load_judge(twin, other)


# ---- the autoregressive twin: KV cache, sampler, judge, infilling ----


@pytest.fixture(scope="module", params=["plain", "gated"])
def twin(request):
    """A tiny random twin with two blocks, so that the cache must keep each block's own keys:
    with plain blocks, and with the gated adaLN blocks fed a constant (CONSTANT_CONDITIONING).

    Its weights are scaled up until its distributions are peaked: at GPT-2's initial scale they
    are nearly uniform, and a sampler that fed it slightly wrong logits would still draw the
    same tokens. The gated twin's modulation starts at zero (every gate shut), so it is drawn
    at random too: otherwise the cache would never meet a shift, a scale or a gate.
    """
    gated = request.param == "gated"
    model = tiny_model(causal=True, n_layer=2, constant_conditioning=gated)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if "modulation" in name:
                weight.copy_(torch.randn_like(weight) * 0.3)
            elif weight.dim() == 2 and "time_mlp" not in name:
                weight.mul_(20)
    return model


def random_tokens(num_rows, length, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, MASK, (num_rows, length), generator=generator)  # never the mask


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(1, L - 1), unique=True, max_size=4))
def test_kv_cache_gives_the_full_forward_pass(twin, cuts):
    """Any split of the text into calls (a prefill, then chunks of any length) gives the logits
    of one ordinary forward pass: the shifted causal mask and RoPE at the right positions."""
    tokens = random_tokens(2, L)  # (2, L)
    bounds = [0, *sorted(cuts), L]
    cache = []
    with torch.no_grad():
        full = twin(tokens)  # (2, L, V)
        pieces = [
            causal_forward(twin, tokens[:, a:b], cache, a) for a, b in zip(bounds, bounds[1:])
        ]
    assert len(cache) == 2 and cache[1][0].shape == (2, 2, L, 16)  # (B, nh, L, hd) per block
    assert torch.allclose(torch.cat(pieces, dim=1), full, atol=1e-5)


@pytest.mark.parametrize(
    "knobs",
    [dict(temperature=0.0), dict(temperature=1.0), dict(top_p=0.9), dict(top_k=5, temperature=0.7)],
    ids=["greedy", "temperature 1", "top-p", "top-k"],
)
def test_cached_ar_sampler_equals_the_uncached_one(twin, knobs):
    prompt = random_tokens(3, 4, seed=1)  # (3, 4): a different prompt in each row
    cached, plain = (
        ar_sample(twin, num_samples=3, length=L, prompt=prompt, seed=5, use_cache=c, **knobs)
        for c in (True, False)
    )
    assert torch.equal(cached.tokens, plain.tokens)
    assert cached.tokens.shape == (3, L) and torch.equal(cached.tokens[:, :4], prompt)
    assert cached.nfe == plain.nfe == L - 4


def test_greedy_ar_sampling_is_the_argmax_of_the_full_forward_pass(twin):
    """Worked without the sampler: append the argmax of the last position, L - 3 times."""
    tokens = torch.tensor([[3, 1, 4]])
    for _ in range(L - 3):
        with torch.no_grad():
            best = twin(tokens)[:, -1].argmax(-1)  # (1,)
        tokens = torch.cat([tokens, best[:, None]], dim=1)
    assert torch.equal(ar_sample(twin, length=L, prompt=[3, 1, 4], temperature=0.0).tokens, tokens)


@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize("prompt_length, length", [(1, L), (5, 9), (7, 7)])
def test_ar_sampler_counts_its_network_calls(twin, use_cache, prompt_length, length):
    """By hand: the prefill sees the prompt, then the cached sampler feeds one token per call
    and the plain one the whole prefix: prompt 5, length 9 -> [5, 1, 1, 1] or [5, 6, 7, 8]."""
    seen = []
    hook = twin.embed.register_forward_hook(lambda module, args, out: seen.append(args[0].size(1)))
    try:
        prompt = random_tokens(1, prompt_length)[0]
        result = ar_sample(twin, length=length, prompt=prompt, use_cache=use_cache)
    finally:
        hook.remove()
    new_tokens = length - prompt_length
    if use_cache:
        expected = [prompt_length] + [1] * (new_tokens - 1) if new_tokens else []
    else:
        expected = list(range(prompt_length, length))
    assert seen == expected and result.nfe == new_tokens
    assert result.tokens.shape == (1, length)


def test_ar_sampler_starts_from_start_id(twin):
    result = ar_sample(twin, num_samples=4, length=6, start_id=7, seed=2)
    assert result.tokens.shape == (4, 6) and (result.tokens[:, 0] == 7).all()
    assert not (result.tokens == MASK).any()  # SUBS: the twin never writes the mask
    assert not torch.equal(result.tokens[0], result.tokens[1])  # the rows draw their own tokens


@pytest.mark.parametrize(
    "model_kind, arguments, message",
    [
        ("mdlm", dict(length=8, start_id=1), "this is an MDLM: use sample"),
        ("time-conditioned twin", dict(length=8, start_id=1), "time-conditioned"),
        ("twin", dict(length=8), "either prompt or start_id"),
        ("twin", dict(length=8, start_id=1, prompt=[1]), "either prompt or start_id"),
        ("twin", dict(length=L + 1, start_id=1), "seq_len"),
        ("twin", dict(length=2, prompt=[1, 2, 3]), "1 <= P <= 2"),
        ("twin", dict(length=8, prompt=torch.ones(2, 3, dtype=torch.long)), r"\(1, P\)"),
        ("twin", dict(length=8, start_id=1, temperature=-1.0), "temperature"),
        ("twin", dict(length=8, start_id=1, top_p=0.0), "top_p"),
    ],
)
def test_ar_sampler_refuses(twin, model_kind, arguments, message):
    model = {
        "mdlm": lambda: tiny_model(),
        "time-conditioned twin": lambda: tiny_model(causal=True, time_conditioning=True),
        "twin": lambda: twin,
    }[model_kind]()
    with pytest.raises(ValueError, match=message):
        ar_sample(model, **arguments)


@settings(max_examples=20, deadline=None)
@given(position=st.integers(0, L - 1), token=st.integers(0, MASK - 1))
def test_causal_attention_looks_left_only(twin, position, token):
    """Changing token `position` leaves the logits before it as they were; the bidirectional
    MDLM, the control, changes them."""
    tokens = random_tokens(1, L)
    changed = tokens.clone()
    changed[0, position] = (tokens[0, position] + 1 + token % (MASK - 1)) % MASK  # another one
    mdlm = tiny_model()
    with torch.no_grad():
        before, after = twin(tokens), twin(changed)
        mdlm_before, mdlm_after = mdlm(tokens, None), mdlm(changed, None)
    assert torch.equal(before[:, :position], after[:, :position])
    assert not torch.allclose(before[:, position], after[:, position])
    if position > 0:
        assert not torch.allclose(mdlm_before[:, :position], mdlm_after[:, :position])


@settings(max_examples=20, deadline=None)
@given(num_rows=st.integers(1, 10), length=st.integers(2, L), seed=st.integers(0, 100))
def test_generative_perplexity_is_exp_of_the_mean_nll(twin, num_rows, length, seed):
    tokens = random_tokens(num_rows, length, seed)
    with torch.no_grad():
        logits = twin(tokens)  # (B, L, V)
    per_token = F.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")
    nll = sequence_nll(twin, tokens)  # batches of 8: ten rows take two
    assert nll.shape == (num_rows,)
    assert torch.allclose(nll, per_token.mean(dim=1).double(), atol=1e-6)
    expected = math.exp(per_token.mean().item())
    assert generative_perplexity(twin, tokens) == pytest.approx(expected, rel=1e-5)


def test_a_judge_that_knows_nothing_gives_the_number_of_tokens():
    """By hand: with a zero embedding every logit is 0, so each of the V - 1 = 23 tokens other
    than the mask has probability 1/23, and the perplexity is exactly 23."""
    judge = tiny_model(causal=True)
    with torch.no_grad():
        judge.embed.weight.zero_()
    assert generative_perplexity(judge, random_tokens(3, L)) == pytest.approx(V - 1)


@pytest.mark.parametrize(
    "judge_kind, tokens, message",
    [
        ("mdlm", random_tokens(1, 4), "autoregressive twin"),
        ("twin", torch.tensor([[1, MASK, 2]]), "masks"),
        ("twin", torch.tensor([[1]]), "rows of 1 tokens"),
        ("twin", random_tokens(1, L + 1), "rows of 17 tokens"),
    ],
)
def test_sequence_nll_refuses(twin, judge_kind, tokens, message):
    judge = twin if judge_kind == "twin" else tiny_model()
    with pytest.raises(ValueError, match=message):
        sequence_nll(judge, tokens)


@pytest.mark.parametrize(
    "length, span, expected", [(10, 4, (3, 7)), (16, 8, (4, 12)), (5, 3, (1, 4)), (7, 2, (2, 4))]
)
def test_middle_span_by_hand(length, span, expected):
    assert middle_span(length, span) == expected


@pytest.mark.parametrize("span", [0, 9])
def test_middle_span_needs_a_given_token_on_each_side(span):
    with pytest.raises(ValueError, match="span must be 1 to 8"):
        middle_span(10, span)


@pytest.mark.parametrize(
    "predicted, exact_match, token_accuracy",
    [
        ([[1, 2], [3, 4]], 1.0, 1.0),  # the truth itself
        ([[1, 2], [3, 5]], 0.5, 0.75),  # one row right, three tokens of four
        ([[2, 1], [4, 3]], 0.0, 0.0),  # the right tokens in the wrong places count nothing
    ],
)
def test_span_recovery_by_hand(predicted, exact_match, token_accuracy):
    got = span_recovery(torch.tensor(predicted), torch.tensor([[1, 2], [3, 4]]))
    assert got == {"exact_match": exact_match, "token_accuracy": token_accuracy}


class Oracle(torch.nn.Module):
    """An MDLM stand-in that is sure of `answer[l]` at every position l, whatever it sees."""

    def __init__(self, answer, vocab_size=V, mask_id=MASK):
        super().__init__()
        self.config = ModelConfig(
            vocab_size=vocab_size, mask_id=mask_id, seq_len=len(answer), time_conditioning=False
        )
        logits = 10 * F.one_hot(answer, vocab_size).float()  # (L, V)
        logits[:, mask_id] = -math.inf  # SUBS: never the mask
        self.register_buffer("logits", logits)
        self.unused = torch.nn.Parameter(torch.zeros(1))  # sample() asks for its device

    def forward(self, z, t=None, fp32_logits=False):
        return self.logits.expand(len(z), -1, -1)  # (B, L, V)


def test_infill_recovery_scores_what_the_model_fills_in():
    """Rows worked by hand, gap at positions 4 to 11: the oracle's answer, one token off, all
    off -> exact match 1/3, token accuracy (8 + 7 + 0) / 24."""
    answer = random_tokens(1, L, seed=3)[0]  # (L,)
    passages = answer.expand(3, -1).clone()  # (3, L)
    passages[1, 6] = (answer[6] + 1) % MASK
    passages[2, 4:12] = (answer[4:12] + 1) % MASK
    passages[:, :4] = torch.arange(4)  # given tokens the oracle disagrees with: they must stay
    result = infill_recovery(Oracle(answer), passages, span=8, steps=8, temperature=0.0)
    assert result["exact_match"] == pytest.approx(1 / 3)
    assert result["token_accuracy"] == pytest.approx(15 / 24)
    assert torch.equal(result["tokens"][:, :4], passages[:, :4])
    assert torch.equal(result["tokens"][:, 12:], passages[:, 12:])
    assert torch.equal(result["tokens"][:, 4:12], answer[4:12].expand(3, -1))
    assert 1 <= result["nfe"] <= 8


def test_prefix_recovery_continues_the_prefix_greedily(twin):
    passages = random_tokens(2, L, seed=4)
    result = prefix_recovery(twin, passages, span=6)  # the gap is positions 5 to 10
    greedy = ar_sample(twin, num_samples=2, length=11, prompt=passages[:, :5], temperature=0.0)
    assert torch.equal(result["tokens"], greedy.tokens)  # it never looks past the gap
    assert result["nfe"] == 6
    recovered = span_recovery(greedy.tokens[:, 5:11], passages[:, 5:11])
    assert {k: result[k] for k in recovered} == recovered


@pytest.mark.slow
def test_notebook_runs_in_smoke_mode(smoke_checkpoint, smoke_twin, tmp_path):
    out_dir = tmp_path / "out"
    run_notebook(
        "sampling.ipynb",
        tmp_path,
        RUN_MODE="smoke",
        CHECKPOINT=smoke_checkpoint,
        JUDGE=smoke_twin,
        OUT_DIR=out_dir,
    )
    figures = json.loads((out_dir / "sampling_metrics.json").read_text())
    assert figures["masks_left"] == 0
    assert (out_dir / "denoising.gif").stat().st_size > 0
    assert figures["judge"] == str(smoke_twin)
    rows = figures["sweep"] + figures["autoregressive_reference"]
    assert [row["method"] for row in figures["autoregressive_reference"]] == ["AR t=1", "AR p=0.9"]
    assert all(math.isfinite(row["generative_perplexity"]) for row in rows)
    if figures["infill_recovery"] is not None:  # held-out text is on this machine
        spans = figures["infill_recovery"]["spans"]
        assert list(spans) == ["1", "8"]  # smoke mode's gaps (JSON keys are strings)
        for by_whom in spans.values():  # the smoke model is time-conditioned
            assert {
                "MDLM, both sides",
                "MDLM, both sides, t = gap / L",
                "AR twin, prefix only",
            } <= (by_whom.keys())
            assert all(
                0 <= row["exact_match"] <= row["token_accuracy"] <= 1 for row in by_whom.values()
            )


def test_gif_text_is_drawable():
    """sampling.ipynb draws each token with Pillow, which cannot lay out \r or \x1c: an
    untrained model emits such bytes, and the notebook once died on them."""
    from PIL import ImageFont

    drawable = notebook_function("sampling.ipynb", "drawable")
    assert drawable("a\rb\x1c\n\tc\u0085") == "a\ufffdb\ufffd c\ufffd"
    font = ImageFont.load_default()
    for code in range(0x200):
        font.getlength(drawable(chr(code)))  # raises for what Pillow refuses


def test_ngram_samples_follow_the_counts_of_the_stream():
    """ids [0, 1, 0, 2] as a circle: after 0 comes 1 or 2 (half the time each), after 1 or 2
    always 0; the trigram model knows that after (1, 0) comes 2 and after (2, 0) comes 1."""
    ids = torch.tensor([0, 1, 0, 2])
    bigram = ngram_sample(ids, 2, num_samples=400, length=9, seed=0)
    pairs = Counter(zip(bigram[:, :-1].flatten().tolist(), bigram[:, 1:].flatten().tolist()))
    assert set(pairs) == {(0, 1), (0, 2), (1, 0), (2, 0)}
    assert pairs[(0, 1)] / (pairs[(0, 1)] + pairs[(0, 2)]) == pytest.approx(0.5, abs=0.05)
    trigram = ngram_sample(ids, 3, num_samples=50, length=12, seed=1)
    for row in trigram.tolist():
        for a, b, c in zip(row, row[1:], row[2:]):
            assert (a, b, c) in {(0, 1, 0), (1, 0, 2), (0, 2, 0), (2, 0, 1)}
    with pytest.raises(ValueError, match="n must be 2"):
        ngram_sample(ids, 1, num_samples=1, length=4)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(0, 20), min_size=3, max_size=60), st.integers(2, 4), st.data())
def test_every_ngram_of_a_sample_occurs_in_the_stream(ids, n, data):
    length = data.draw(st.integers(n, 30))
    circle = ids + ids[: n - 1]  # the stream read as a circle
    seen = {tuple(circle[i : i + n]) for i in range(len(ids))}
    for row in ngram_sample(torch.tensor(ids), n, num_samples=3, length=length).tolist():
        assert len(row) == length
        assert all(tuple(row[i : i + n]) in seen for i in range(length - n + 1))


@pytest.mark.parametrize("start_time", [1.0, 0.25])
def test_start_time_sets_the_times_the_network_sees(start_time):
    model = tiny_model(time_conditioning=True)
    seen = []
    forward = model.forward

    def spy(idx, t=None, **kwargs):
        seen.append(t[0].item())
        return forward(idx, t, **kwargs)

    model.forward = spy
    fixed = random_tokens(1, L, seed=0)[0]
    fixed[4:8] = MASK  # 4 of 16 masked: the fraction 0.25
    result = sample(model, fixed=fixed, steps=4, method="confidence", start_time=start_time)
    assert seen == pytest.approx([start_time * i / 4 for i in (4, 3, 2, 1)])
    assert not (result.tokens == MASK).any()
    with pytest.raises(ValueError, match="start_time must be in"):
        sample(model, steps=4, start_time=0.0)


def test_fill_the_blank_reads_x_theta_at_the_blank():
    """An oracle sure of answer[l] at every position: its top candidate for the blank is the
    token at that position, with the probability of a softmax of 10 over the rest."""
    tokenizer = BPETokenizer([])  # no merges: one token per byte, mask_id 258
    answer = torch.tensor([ord(c) for c in "the cat sat. "])  # 13 positions
    oracle = Oracle(answer, vocab_size=tokenizer.vocab_size, mask_id=tokenizer.mask_id)
    candidates = fill_the_blank(oracle, tokenizer, "the ░at sat. ", times=(None, 0.5), top=3)
    assert list(candidates) == [pytest.approx(1 / 13), 0.5]
    for pairs in candidates.values():
        assert pairs[0][0] == "c"  # position 4 of the answer
        assert pairs[0][1] == pytest.approx(
            math.exp(10) / (math.exp(10) + tokenizer.vocab_size - 2)
        )
        assert [p for _, p in pairs] == sorted((p for _, p in pairs), reverse=True)
    with pytest.raises(ValueError, match="use an MDLM"):
        fill_the_blank(tiny_model(causal=True), tokenizer, "a ░ b")


def test_a_space_before_the_blank_belongs_to_the_blank_when_the_tokenizer_glues_it():
    """With the merge (" ", "t") a trained tokenizer would write " the" as " t", "h", "e": the
    word keeps its space. So "a ░ b" is [a] [blank] [" "] [b], and the blank at position 1 is
    where " t" would be; a lone space before it would be a context no training text has."""
    tokenizer = BPETokenizer([(ord(" "), ord("t"))])  # id 256 is " t"; the mask comes after
    answer = torch.tensor([ord("a"), 256, ord(" "), ord("b")])
    oracle = Oracle(answer, vocab_size=tokenizer.vocab_size, mask_id=tokenizer.mask_id)
    candidates = fill_the_blank(oracle, tokenizer, "a ░ b", times=(0.5,), top=1)
    assert candidates[0.5][0][0] == " t"
