"""The model, the forward process, the loss and checkpoints of train_model.ipynb (mdlm_model.py)."""

import math
from dataclasses import asdict, replace

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import mdlm_model as M
from bpe_tokenizer import BPETokenizer

V, MASK = 50, 49


def tiny_config(**changes) -> M.ModelConfig:
    config = M.ModelConfig(vocab_size=V, mask_id=MASK, seq_len=16, n_layer=2, n_head=2, d_model=32)
    return replace(config, **changes)


def active_model(**changes) -> M.Transformer:
    """A model whose adaLN gates are not zero, so every block does something."""
    torch.manual_seed(0)
    model = M.Transformer(tiny_config(**changes))
    for name, param in model.named_parameters():
        if "modulation" in name:
            torch.nn.init.normal_(param, std=0.1)
    return model.eval()


@pytest.fixture(scope="module")
def tokenizer() -> BPETokenizer:
    return BPETokenizer.train("the cat sat on the mat. " * 20, vocab_size=262)


@pytest.mark.parametrize("time_conditioning", [True, False])
@pytest.mark.parametrize("causal", [True, False])
def test_forward_shapes_and_mask_never_predicted(time_conditioning, causal):
    model = active_model(time_conditioning=time_conditioning, causal=causal)
    idx = torch.randint(V, (3, 16))
    logits = model(idx, torch.rand(3))
    assert logits.shape == (3, 16, V)
    probs = logits.softmax(-1)
    assert torch.all(probs[..., MASK] == 0)  # SUBS: zero masking probability
    assert torch.allclose(probs.sum(-1), torch.ones(3, 16))


def test_too_long_sequence_and_missing_time_are_clear_errors():
    model = active_model()
    with pytest.raises(ValueError, match="built for 16"):
        model(torch.zeros(1, 17, dtype=torch.long), torch.rand(1))
    with pytest.raises(ValueError, match="pass t"):
        model(torch.zeros(1, 4, dtype=torch.long))


def test_attention_is_bidirectional():
    model = active_model()
    idx, t = torch.randint(MASK, (1, 16)), torch.tensor([0.5])
    changed = idx.clone()
    changed[0, -1] = (changed[0, -1] + 1) % MASK
    assert not torch.allclose(model(idx, t)[0, 0], model(changed, t)[0, 0])


def test_causal_twin_never_looks_right():
    model = active_model(causal=True, time_conditioning=False)
    idx = torch.randint(MASK, (1, 16))
    changed = idx.clone()
    changed[0, 10:] = (changed[0, 10:] + 1) % MASK
    before, after = model(idx), model(changed)
    assert torch.allclose(before[0, :10], after[0, :10], atol=1e-6)
    assert not torch.allclose(before[0, 10:], after[0, 10:])


def test_the_twin_is_the_same_network_with_a_causal_mask():
    # one config builds both: the AR twin is the MDLM's class with causal=True and no t
    config = tiny_config()
    mdlm = M.Transformer(config)
    twin = M.Transformer(replace(config, causal=True, time_conditioning=False))
    twin_shapes = {name: p.shape for name, p in twin.named_parameters()}
    mdlm_shapes = {name: p.shape for name, p in mdlm.named_parameters()}
    extra = set(mdlm_shapes) - set(twin_shapes)  # only the time conditioning is the MDLM's own
    assert all("modulation" in name or name.startswith("time_mlp") for name in extra), extra
    assert all(mdlm_shapes[name] == shape for name, shape in twin_shapes.items())
    # the same weights with the mask lifted, in one layer (in deeper ones the last position
    # reads earlier positions' outputs, which the mask changed): the last position, which a
    # causal model lets see the whole sequence, gets the same logits; the first does not
    twin, unconditioned = (
        M.Transformer(replace(config, n_layer=1, causal=causal, time_conditioning=False)).eval()
        for causal in (True, False)
    )
    unconditioned.load_state_dict(twin.state_dict())  # strict: same names, same shapes
    idx = torch.randint(MASK, (1, 16))
    assert torch.allclose(twin(idx)[0, -1], unconditioned(idx)[0, -1], atol=1e-5)
    assert not torch.allclose(twin(idx)[0, 0], unconditioned(idx)[0, 0], atol=1e-5)


def test_time_conditioning_switch():
    idx = torch.randint(MASK, (2, 16))
    conditioned = active_model()
    assert not torch.allclose(
        conditioned(idx, torch.tensor([0.1, 0.1])), conditioned(idx, torch.tensor([0.9, 0.9]))
    )
    plain = active_model(time_conditioning=False)
    assert torch.equal(plain(idx, torch.tensor([0.1, 0.1])), plain(idx, torch.tensor([0.9, 0.9])))


def test_constant_conditioning_is_the_same_network_fed_t_equal_zero():
    """The control for time conditioning: the same blocks, parameters and initialisation as the
    time-conditioned network, but its adaLN always sees the features of t = 0."""
    fed_t = active_model()
    constant = active_model(time_conditioning=False, constant_conditioning=True)
    assert constant.config.adaln and not constant.config.time_conditioning
    for (name, a), (same_name, b) in zip(fed_t.state_dict().items(), constant.state_dict().items()):
        assert name == same_name and torch.equal(a, b)  # the seed gives both the same weights
    idx = torch.randint(MASK, (3, 16))
    assert torch.allclose(constant(idx), fed_t(idx, torch.zeros(3)), atol=1e-6)
    assert torch.equal(constant(idx, torch.tensor([0.1, 0.5, 0.9])), constant(idx))  # t ignored
    torch.manual_seed(0)
    fresh_fed_t = M.Transformer(tiny_config())
    torch.manual_seed(0)
    fresh_constant = M.Transformer(tiny_config(time_conditioning=False, constant_conditioning=True))
    for a, b in zip(fresh_fed_t.parameters(), fresh_constant.parameters()):
        assert torch.equal(a, b)  # the same initialisation, gates at zero included
    with pytest.raises(ValueError, match="exclude each other"):
        tiny_config(constant_conditioning=True)  # time_conditioning is True by default


def test_the_average_of_the_weights_by_hand():
    """decay 0.5, weights 0 then 1 then 3: 0.5 (0.5 * 0 + 0.5 * 1) + 0.5 * 3 = 1.75."""
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    ema = M.EMA(model, decay=0.5)
    for value in (1.0, 3.0):
        torch.nn.init.constant_(model.weight, value)
        ema.update(model)
    assert ema.shadow["weight"].item() == 1.75
    with pytest.raises(RuntimeError, match="failed"), ema.swapped_into(model):
        assert model.weight.item() == 1.75
        raise RuntimeError("failed")  # the trained weight comes back even when the block fails
    assert model.weight.item() == 3.0
    restored = M.EMA(model, decay=0.9)
    restored.load_state_dict(ema.state_dict())
    assert restored.decay == 0.5 and restored.shadow["weight"].item() == 1.75


def test_adaln_zero_blocks_start_as_identity():
    """With zero gates at initialisation, a block returns its input unchanged."""
    config = tiny_config()
    block = M.Block(config)
    x, cond = torch.randn(2, 16, 32), torch.randn(2, 32)
    cos, sin = M.rope_tables(16, 16)
    assert torch.equal(block(x, cond, cos, sin), x)


def test_rmsnorm_matches_formula():
    norm = M.RMSNorm(8)
    torch.nn.init.normal_(norm.weight)
    x = torch.randn(4, 3, 8)
    expected = x / torch.sqrt((x**2).mean(-1, keepdim=True) + 1e-6) * norm.weight
    assert torch.allclose(norm(x), expected, atol=1e-6)


def test_swiglu_matches_formula():
    mlp = M.SwiGLU(12)
    x = torch.randn(5, 12)
    silu = lambda z: z * torch.sigmoid(z)
    expected = (silu(x @ mlp.w1.weight.T) * (x @ mlp.w3.weight.T)) @ mlp.w2.weight.T
    assert torch.allclose(mlp(x), expected, atol=1e-6)
    assert mlp.w1.out_features == 64  # 8/3 * 12 = 32, rounded up to a multiple of 64


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 40), st.integers(0, 40), st.integers(1, 20))
def test_rope_scores_depend_only_on_relative_position(q_pos, k_pos, shift):
    cos, sin = M.rope_tables(64, 8)
    generator = torch.Generator().manual_seed(q_pos * 100 + k_pos)
    q, k = (
        torch.randn(1, 1, 1, 8, generator=generator),
        torch.randn(1, 1, 1, 8, generator=generator),
    )

    def score(a, b):
        rotated_q = M.apply_rope(q, cos[a : a + 1], sin[a : a + 1])
        rotated_k = M.apply_rope(k, cos[b : b + 1], sin[b : b + 1])
        return (rotated_q * rotated_k).sum()

    assert torch.allclose(score(q_pos, k_pos), score(q_pos + shift, k_pos + shift), atol=1e-4)


def test_rope_is_a_rotation():
    cos, sin = M.rope_tables(10, 8)
    x = torch.randn(2, 2, 10, 8)
    rotated = M.apply_rope(x, cos, sin)
    assert torch.allclose(rotated.norm(dim=-1), x.norm(dim=-1), atol=1e-5)
    assert torch.allclose(rotated[:, :, 0], x[:, :, 0])  # position 0: angle 0


@pytest.mark.parametrize("t_value", [0.1, 0.3, 0.5, 0.9, 1.0])
def test_masked_fraction_matches_one_minus_alpha(t_value):
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randint(MASK, (200, 100))
    z_t, is_masked = M.mask_tokens(x0, torch.full((200,), t_value), MASK, generator)
    n = is_masked.numel()
    expected = 1 - M.alpha(torch.tensor(t_value)).item()
    assert abs(is_masked.float().mean().item() - expected) < 4 * math.sqrt(0.25 / n) + 1e-9
    assert torch.equal(z_t[is_masked], torch.full_like(z_t[is_masked], MASK))
    assert torch.equal(z_t[~is_masked], x0[~is_masked])  # unmasked tokens are untouched


def test_antithetic_times_cover_the_interval_evenly():
    t = M.sample_times(10, torch.Generator().manual_seed(3))
    gaps = torch.diff(torch.sort(t).values)
    assert torch.allclose(gaps, torch.full_like(gaps, (1 - 1e-3) / 10), atol=1e-6)
    assert t.min() >= 1e-3 and t.max() < 1


def test_uniform_prediction_nelbo_is_ln_v_minus_one():
    """A model with no knowledge: NELBO = ln(V - 1) exactly (expectation over masks)."""
    x0 = torch.randint(MASK, (64, 16))
    t = M.sample_times(64, torch.Generator().manual_seed(1))
    logits = torch.zeros(64, 16, V)
    logits[..., MASK] = float("-inf")
    expected_masks = (1 - M.alpha(t))[:, None].expand(x0.shape)
    assert M.mdlm_loss(logits, x0, expected_masks, t).item() == pytest.approx(
        math.log(V - 1), rel=1e-6
    )


def test_loss_by_hand():
    """One sequence of 4 tokens at t = 0.5 with 2 masked: (1/t) * (sum of masked CE) / L."""
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25, 0.0]] * 4]))  # V = 4, mask id 3
    x0 = torch.tensor([[0, 1, 2, 0]])
    is_masked = torch.tensor([[True, False, True, False]])
    expected = (1 / 0.5) * (-math.log(0.5) - math.log(0.25)) / 4
    assert M.mdlm_loss(logits, x0, is_masked, torch.tensor([0.5])).item() == pytest.approx(expected)


def test_loss_has_no_gradient_through_unmasked_positions():
    logits = torch.randn(2, 16, V, requires_grad=True)
    x0 = torch.randint(MASK, (2, 16))
    is_masked = torch.rand(2, 16) < 0.5
    M.mdlm_loss(logits, x0, is_masked, torch.tensor([0.5, 0.5])).backward()
    assert torch.all(logits.grad[~is_masked] == 0)
    assert torch.all(logits.grad[is_masked].abs().sum(-1) > 0)


def test_ar_loss_is_next_token_cross_entropy():
    logits, x0 = torch.randn(2, 5, V), torch.randint(MASK, (2, 5))
    expected = F.cross_entropy(logits[:, :4].reshape(-1, V), x0[:, 1:].reshape(-1))
    assert torch.allclose(M.ar_loss(logits, x0), expected)


def test_get_batch_windows_and_short_text_error():
    ids = torch.arange(100)
    batch = M.get_batch(ids, 8, 10, torch.Generator().manual_seed(0))
    assert batch.shape == (8, 10)
    assert torch.all(torch.diff(batch, dim=1) == 1)  # contiguous windows of the stream
    with pytest.raises(ValueError, match="lower SEQ_LEN"):
        M.get_batch(torch.arange(5), 2, 10, torch.Generator())


@pytest.mark.parametrize("step,expected", [(0, 0.1), (9, 1.0), (10, 1.0), (55, 0.55), (100, 0.1)])
def test_learning_rate_schedule(step, expected):
    # warmup 10 steps to 1.0, cosine from step 10 to 100 down to 0.1; halfway (55) is 0.55.
    assert M.learning_rate(step, 100, 1.0, 10) == pytest.approx(expected)


def test_check_finite_and_out_of_memory_messages(tmp_path):
    M.check_finite(1.5, 3, tmp_path / "ckpt.pt")
    with pytest.raises(FloatingPointError, match="Lower LEARNING_RATE"):
        M.check_finite(float("nan"), 3, tmp_path / "ckpt.pt")
    with pytest.raises(RuntimeError, match="lower BATCH_SIZE"):
        with M.out_of_memory_advice():
            raise torch.OutOfMemoryError("CUDA out of memory")


def save(path, model, tokenizer, **extra):
    M.save_checkpoint(path, model=model, tokenizer=tokenizer, **extra)


def test_checkpoint_round_trip(tmp_path, tokenizer):
    model = active_model()
    optimizer = torch.optim.AdamW(model.parameters())
    generators = M.micro_batch_generators(7, grad_accum=2)
    rng = M.random_states(generators)
    save(tmp_path / "ckpt.pt", model, tokenizer, step=5, optimizer=optimizer, rng=rng)
    loaded, loaded_tokenizer, checkpoint = M.load_model(tmp_path / "ckpt.pt")
    assert checkpoint["step"] == 5 and checkpoint["model_config"] == asdict(model.config)
    idx = torch.randint(MASK, (2, 16))
    assert torch.equal(
        loaded(idx, torch.rand(2, generator=torch.Generator().manual_seed(0))),
        model(idx, torch.rand(2, generator=torch.Generator().manual_seed(0))),
    )
    assert loaded_tokenizer.to_json() == tokenizer.to_json()
    restored = M.micro_batch_generators(0, grad_accum=2)
    M.restore_random_states(checkpoint["rng"], restored)
    for before, after in zip(generators, restored, strict=True):
        assert torch.equal(torch.rand(3, generator=after), torch.rand(3, generator=before))


def test_micro_batch_generators_worked_out_by_hand():
    def first_draw(generators):
        return [torch.rand(1, generator=g).item() for g in generators]

    seeded = first_draw([torch.Generator().manual_seed(seed) for seed in (1337, 11337)])
    assert first_draw(M.micro_batch_generators(1337, 2)) == seeded  # the docstring's example
    halves = [M.micro_batch_generators(1337, 2, rank, world_size=2) for rank in (0, 1)]
    assert [first_draw(h) for h in halves] == [seeded[:1], seeded[1:]]
    with pytest.raises(ValueError, match="multiple of 2"):
        M.micro_batch_generators(1337, 3, world_size=2)


def test_a_checkpoint_from_before_ddp_resumes(tmp_path):
    generator = torch.Generator().manual_seed(3)
    older = {"generator": generator.get_state(), "torch": torch.get_rng_state()}
    (restored,) = M.micro_batch_generators(0, 1)
    M.restore_random_states(older, [restored])
    assert torch.equal(torch.rand(3, generator=restored), torch.rand(3, generator=generator))
    with pytest.raises(M.CheckpointError, match="GRAD_ACCUM it was trained with"):
        M.restore_random_states(older, M.micro_batch_generators(0, 2))


def test_in_one_process_the_ddp_helpers_change_nothing(monkeypatch):
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert M.start_processes(torch.device("cpu")) == (0, 1, torch.device("cpu"))
    with M.main_process_first():
        ran = True
    assert ran and M.mean_over_processes(2.5, "cpu") == 2.5
    model = active_model()
    assert isinstance(M.no_sync_unless(False, model), type(M.nullcontext()))
    assert M.end_processes(0) is None


def test_ddp_and_compiled_models_are_saved_without_their_prefixes(tmp_path, tokenizer):
    import torch.distributed as dist

    model = active_model()
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        wrapped = M.DDP(torch.compile(model))  # as train.py wraps them, with COMPILE = True
        assert M.unwrapped(wrapped) is model
        assert all(k.startswith("module._orig_mod.") for k in wrapped.state_dict())
        save(tmp_path / "ckpt.pt", wrapped, tokenizer)  # never called: nothing is compiled
        x0 = torch.randint(MASK, (2, 16))  # the loss reads the config through the wrapper
        assert M.loss_on_batch(M.DDP(model), x0, torch.Generator()) > 0
    finally:
        dist.destroy_process_group()
    saved = torch.load(tmp_path / "ckpt.pt", weights_only=True)["model"]
    assert saved.keys() == model.state_dict().keys()


def test_compiled_prefix_is_stripped(tmp_path, tokenizer):
    model = active_model()
    checkpoint_path = tmp_path / "ckpt.pt"
    save(checkpoint_path, model, tokenizer)
    checkpoint = torch.load(checkpoint_path, weights_only=True)
    checkpoint["model"] = {f"_orig_mod.{k}": v for k, v in checkpoint["model"].items()}
    torch.save(checkpoint, checkpoint_path)
    loaded, _, _ = M.load_model(checkpoint_path)
    assert all(not k.startswith("_orig_mod.") for k in loaded.state_dict())


def test_a_failed_save_keeps_the_last_good_checkpoint(tmp_path, tokenizer, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save(path, active_model(), tokenizer, step=1)
    good = path.read_bytes()

    def crash(obj, file):
        with open(file, "wb") as handle:
            handle.write(b"half a checkpoint")
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save(path, active_model(), tokenizer, step=2)
    assert path.read_bytes() == good
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


@pytest.mark.parametrize(
    "content,message",
    [
        (None, "no checkpoint at"),
        (b"not a checkpoint", "not a readable checkpoint"),
        ({"weights": 1}, "not written by train_model.ipynb"),
    ],
)
def test_bad_checkpoints_give_clear_errors(tmp_path, content, message):
    path = tmp_path / "ckpt.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(M.CheckpointError, match=message):
        M.load_model(path)


def test_checkpoint_from_other_code_warns(tmp_path, tokenizer):
    path = tmp_path / "ckpt.pt"
    save(path, active_model(), tokenizer)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["code_sha256"] = "0" * 64
    torch.save(checkpoint, path)
    with pytest.warns(UserWarning, match="another version of the model code"):
        M.load_model(path)


def test_resume_refuses_another_config_or_tokenizer(tmp_path, tokenizer):
    path = tmp_path / "ckpt.pt"
    model = active_model()
    save(path, model, tokenizer)
    checkpoint = M.load_checkpoint(path)
    M.check_resumable(checkpoint, model.config, tokenizer)  # the same run: fine
    with pytest.raises(M.CheckpointError, match="d_model"):
        M.check_resumable(checkpoint, replace(model.config, d_model=64), tokenizer)
    other = BPETokenizer.train("a completely different text. " * 20, vocab_size=262)
    with pytest.raises(M.CheckpointError, match="another tokenizer"):
        M.check_resumable(checkpoint, model.config, other)


def test_resume_refuses_another_conditioning_and_accepts_an_older_checkpoint(tmp_path, tokenizer):
    path = tmp_path / "ckpt.pt"
    model = active_model(time_conditioning=False, constant_conditioning=True)
    save(path, model, tokenizer)
    checkpoint = M.load_checkpoint(path)
    assert checkpoint["model_config"]["constant_conditioning"] is True  # the variant is recorded
    reloaded, _, _ = M.load_model(path)
    assert reloaded.config == model.config
    with pytest.raises(M.CheckpointError, match="constant_conditioning"):
        M.check_resumable(checkpoint, replace(model.config, constant_conditioning=False), tokenizer)
    older = tmp_path / "older.pt"  # a plain model, saved before the field existed
    save(older, active_model(time_conditioning=False), tokenizer)
    checkpoint = torch.load(older, weights_only=True)
    del checkpoint["model_config"]["constant_conditioning"]
    torch.save(checkpoint, older)
    reloaded, _, checkpoint = M.load_model(older)  # a missing field takes its default
    assert not reloaded.config.adaln
    M.check_resumable(checkpoint, reloaded.config, tokenizer)


def test_weights_that_do_not_fit_the_config(tmp_path, tokenizer):
    path = tmp_path / "ckpt.pt"
    save(path, active_model(), tokenizer)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["model_config"]["d_model"] = 64
    torch.save(checkpoint, path)
    with pytest.raises(M.CheckpointError, match="do not fit"):
        M.load_model(path)


def test_estimate_loss_is_deterministic_and_exact_for_uniform_model():
    model = active_model()
    ids = torch.randint(MASK, (400,))
    first = M.estimate_loss(model, ids, seq_len=16, num_windows=10, num_times=4)
    assert first == M.estimate_loss(model, ids, seq_len=16, num_windows=10, num_times=4)
    with torch.no_grad():  # a model whose output is all zeros predicts uniformly
        for param in model.parameters():
            param.zero_()
    uniform = M.estimate_loss(model, ids, seq_len=16, num_windows=25, num_times=4)
    assert uniform == pytest.approx(math.log(V - 1), rel=0.15)  # masks are sampled: not exact
