"""The final figures of a run: windows, bytes, mean +- standard error, and exact likelihoods.

The exact likelihood along an order is checked against a brute-force product of conditionals,
and it must be a distribution: on a 3-token vocabulary its probabilities of all 27 texts of
length 3 add up to 1. The NELBO estimate is checked against its value for uniform predictions,
and against the average over random orders, which it equals for a model that ignores t.
"""

import itertools
import math

import pytest
import torch
from conftest import tiny_model
from hypothesis import given
from hypothesis import strategies as st

import mdlm_model as M
from bpe_tokenizer import BPETokenizer


def test_bits_per_byte_and_its_standard_error_by_hand():
    # nats [2, 4] over bytes [1, 1]: R = 3 nats/byte, residuals -1 and 1, se = sqrt(2/2)/1 = 1
    value, error = M.bits_per_byte(torch.tensor([2.0, 4.0]), torch.tensor([1, 1]))
    assert value == pytest.approx(3 / math.log(2)) and error == pytest.approx(1 / math.log(2))
    # nats [3, 3] over bytes [1, 2]: R = 2, residuals 1 and -1, mean bytes 1.5 -> se = 1/1.5
    value, error = M.bits_per_byte(torch.tensor([3.0, 3.0]), torch.tensor([1, 2]))
    assert value == pytest.approx(2 / math.log(2)) and error == pytest.approx(2 / 3 / math.log(2))
    assert math.isnan(M.bits_per_byte(torch.tensor([1.0]), torch.tensor([1]))[1])  # one window


@given(st.lists(st.floats(0.1, 10), min_size=2, max_size=30), st.floats(0.5, 4))
def test_the_standard_error_shrinks_like_one_over_root_w(nats, bytes_each):
    """The same windows four times over: the same ratio, a standard error about half as large."""
    nats, num_bytes = torch.tensor(nats), torch.full((len(nats),), bytes_each)
    once, four_times = (M.bits_per_byte(nats.repeat(k), num_bytes.repeat(k)) for k in (1, 4))
    assert four_times[0] == pytest.approx(once[0])
    W = len(nats)
    expected = once[1] * math.sqrt((W - 1) / (4 * W - 1))  # the same spread, W(W-1) -> 4W(4W-1)
    assert four_times[1] == pytest.approx(expected, rel=1e-6, abs=1e-12)


@pytest.mark.parametrize(
    "length, num_windows, starts",
    [(10, None, [0, 3, 6]), (10, 2, [0, 6]), (10, 1, [0]), (10, 7, [0, 3, 6]), (3, None, [0])],
)
def test_evaluation_windows_by_hand(length, num_windows, starts):
    windows = M.evaluation_windows(torch.arange(length), 3, num_windows)
    assert windows[:, 0].tolist() == starts and (windows[:, 1:] - windows[:, :-1] == 1).all()


def test_token_bytes_counts_the_bytes_of_each_token():
    tokenizer = BPETokenizer([])  # no merges: one token per byte
    ids = torch.tensor([tokenizer.encode("héllo"), tokenizer.encode("hello!")])  # (2, 6)
    assert M.token_bytes(ids, tokenizer).tolist() == [6, 6]  # é is 2 bytes in UTF-8
    tokenizer = BPETokenizer.train("héllo héllo héllo", vocab_size=262)  # merges: é, él, ...
    ids = torch.tensor(tokenizer.encode("héllo héllo"))[None]  # (1, n), n < 12
    assert ids.size(1) < 13 and M.token_bytes(ids, tokenizer).tolist() == [6 + 1 + 6]


def brute_force_nll(model, x, order):
    """-log p(x) along `order`, one sequence, one position at a time, written out plainly."""
    L, mask_id = len(x), model.config.mask_id
    z, total = torch.full((1, L), mask_id), 0.0
    for k, position in enumerate(order):
        t = torch.tensor([(L - k) / L])  # the fraction of positions still masked
        with torch.no_grad():
            probabilities = model(z, t)[0, position].double().softmax(-1)  # on the CPU
        total -= math.log(probabilities[x[position]].item())
        z[0, position] = x[position]
    return total


@pytest.mark.parametrize("time_conditioning", [True, False])
def test_the_likelihood_along_an_order_is_the_product_of_its_conditionals(time_conditioning):
    model = tiny_model(vocab_size=9, seq_len=6, time_conditioning=time_conditioning, n_layer=2)
    windows = torch.randint(8, (5, 6), generator=torch.Generator().manual_seed(1))
    left_to_right = M.order_nll_per_window(model, windows, batch_size=2)
    in_random_order = M.order_nll_per_window(model, windows, order="random", seed=3)
    generator = torch.Generator().manual_seed(3)  # the permutations order="random" draws
    orders = [torch.randperm(6, generator=generator).tolist() for _ in windows]
    for w, x in enumerate(windows.tolist()):
        assert left_to_right[w].item() == pytest.approx(brute_force_nll(model, x, range(6)), 1e-5)
        assert in_random_order[w].item() == pytest.approx(
            brute_force_nll(model, x, orders[w]), 1e-5
        )


def test_the_likelihood_along_an_order_is_a_distribution():
    """Three real tokens (and the mask), texts of length 3: the 27 probabilities sum to 1."""
    model = tiny_model(vocab_size=4, seq_len=3, time_conditioning=True)
    texts = torch.tensor(list(itertools.product(range(3), repeat=3)))  # (27, 3)
    nll = M.order_nll_per_window(model, texts)
    assert torch.exp(-nll.double()).sum().item() == pytest.approx(1.0, abs=1e-5)


class Uniform(torch.nn.Module):
    """Predicts every real token with the same probability, whatever it sees."""

    def __init__(self, vocab_size, seq_len):
        super().__init__()
        self.config = M.ModelConfig(vocab_size=vocab_size, mask_id=vocab_size - 1, seq_len=seq_len)

    def forward(self, z, t=None, fp32_logits=False):
        logits = torch.zeros(*z.shape, self.config.vocab_size)
        logits[..., self.config.mask_id] = -math.inf
        return logits


def test_the_nelbo_of_uniform_predictions_is_l_times_ln_v_minus_one():
    """E over t and masks of (1/t) x (masked count) x ln(V - 1) = L ln(V - 1): the stratified
    estimate lands within a few standard errors of it."""
    V, L = 50, 32
    windows = torch.randint(V - 1, (256, L), generator=torch.Generator().manual_seed(0))
    nelbo = M.nelbo_per_window(Uniform(V, L), windows, num_times=8)
    mean, error = nelbo.mean().item(), nelbo.std().item() / math.sqrt(len(nelbo))
    assert abs(mean - L * math.log(V - 1)) < 4 * error and error < 0.05 * mean


def test_for_a_model_that_ignores_t_the_nelbo_is_the_average_over_random_orders():
    """The bound averages the exact likelihood over all orders (the any-order view): for a
    model without time conditioning the two estimates agree within their paired error."""
    model = tiny_model(vocab_size=12, seq_len=8, time_conditioning=False, n_layer=2)
    windows = torch.randint(11, (200, 8), generator=torch.Generator().manual_seed(2))
    num_bytes = torch.full((200,), 8)
    nelbo = M.nelbo_per_window(model, windows, num_times=16)
    random_order = M.order_nll_per_window(model, windows, order="random")
    difference, error = M.bits_per_byte(random_order - nelbo, num_bytes)
    assert abs(difference) < 3 * error


def test_final_figures_of_an_mdlm_and_of_its_twin():
    tokenizer = BPETokenizer.train("the cat sat on the mat. " * 20, vocab_size=262)
    ids = torch.tensor(tokenizer.encode("the cat sat on the mat. " * 60))
    mdlm = tiny_model(vocab_size=tokenizer.vocab_size, seq_len=16, time_conditioning=True)
    figures = M.final_figures(mdlm, tokenizer, ids, seq_len=16, num_windows=12, order_windows=4)
    assert figures["windows"] == 12 and figures["order_windows"] == 4 and figures["num_times"] == 32
    for key in ("nelbo", "left-to-right", "random", "nelbo, order windows", "random - nelbo"):
        value, error = figures[key]
        assert math.isfinite(value) and error > 0
    lr, nelbo_same = figures["left-to-right"][0], figures["nelbo, order windows"][0]
    assert figures["left-to-right - nelbo"][0] == pytest.approx(lr - nelbo_same)
    twin = tiny_model(vocab_size=tokenizer.vocab_size, seq_len=16, causal=True)
    figures = M.final_figures(twin, tokenizer, ids, seq_len=16, num_windows=12, order_windows=4)
    assert set(figures) == {"windows", "tokens", "nll", "bytes"} and figures["nll"][1] > 0
    windows = M.evaluation_windows(ids, 16, 12)
    assert figures["bytes"] == M.token_bytes(windows[:, 1:], tokenizer).sum()  # L - 1 scored


@pytest.mark.parametrize("causal", [False, True])
def test_the_average_of_the_weights_is_scored_on_the_same_windows_and_masks(causal):
    """An average that has not moved holds the trained weights: its figure is the trained one
    and the paired difference exactly 0. Moved to other weights, it scores those weights, and
    the model holds its trained weights again afterwards."""
    tokenizer = BPETokenizer.train("the cat sat on the mat. " * 20, vocab_size=262)
    ids = torch.tensor(tokenizer.encode("the cat sat on the mat. " * 60))
    model = tiny_model(vocab_size=tokenizer.vocab_size, seq_len=16, causal=causal)
    key = "nll" if causal else "nelbo"
    common = dict(seq_len=16, num_windows=12, order_windows=2, num_times=4)
    ema = M.EMA(model, decay=0.9)
    figures = M.final_figures(model, tokenizer, ids, ema=ema, **common)
    assert figures["ema"]["decay"] == 0.9 and figures["ema"][key] == figures[key]
    assert figures["ema"]["ema - trained"][0] == 0.0
    other = tiny_model(vocab_size=tokenizer.vocab_size, seq_len=16, causal=causal)
    for p in other.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    ema.shadow = {name: p.detach().clone() for name, p in other.named_parameters()}
    trained = {name: p.detach().clone() for name, p in model.named_parameters()}
    figures = M.final_figures(model, tokenizer, ids, ema=ema, **common)
    assert figures["ema"][key] == M.final_figures(other, tokenizer, ids, **common)[key]
    difference = figures["ema"][key][0] - figures[key][0]
    assert figures["ema"]["ema - trained"][0] == pytest.approx(difference, abs=1e-9)
    assert all(torch.equal(p, trained[name]) for name, p in model.named_parameters())
