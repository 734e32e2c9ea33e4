"""Generated from sampling.ipynb: edit the notebook, not this file.

Re-run the notebook, or `python tools/nbexport.py sampling.ipynb`, to regenerate it;
tests/test_nbexport.py fails when this file and the notebook disagree.
"""

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path

import torch
import torch.nn.functional as F

from corpus import (
    CORPORA,
    join_documents,
    load_documents,
    split_documents,
    text_sha256,
    truncate_documents,
)
from mdlm_model import (
    CheckpointError,
    alpha,
    apply_rope,
    autocast,
    float64_device,
    load_model,
    modulate,
    pick_precision,
    to_float64,
)


def peek_checkpoint(path) -> dict | None:
    """A checkpoint's model_config and tokenizer (JSON), without reading its weights.

    None when `path` is not a readable checkpoint: mmap=True leaves the tensors on disk.
    """
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return {"model_config": dict(saved["model_config"]), "tokenizer": saved["tokenizer"]}
    except Exception:  # not a zip file, not a dict, no config: nothing this notebook can use
        return None


def checkpoints_newest_first(
    root="checkpoints", *, causal=False, tokenizer=None, time_conditioning=None
) -> list[Path]:
    """The ckpt.pt files under `root` (searched recursively), the most recently modified first.

    causal=False keeps the MDLMs, causal=True the autoregressive twins; with a tokenizer, only
    the checkpoints trained with it; with time_conditioning True or False, only those models.
    Files that are not readable checkpoints are passed over: name one directly (CHECKPOINT,
    JUDGE) to see what is wrong with it.
    """
    found = []
    for path in Path(root).rglob("ckpt.pt"):
        peeked = peek_checkpoint(path)
        if peeked is None or bool(peeked["model_config"].get("causal")) != causal:
            continue
        conditioned = bool(peeked["model_config"].get("time_conditioning"))
        if time_conditioning is not None and conditioned != time_conditioning:
            continue
        if tokenizer is None or peeked["tokenizer"] == tokenizer.to_json():
            found.append(path)
    return sorted(found, key=lambda path: path.stat().st_mtime, reverse=True)


def newest_checkpoint(root="checkpoints", causal=False, knob="CHECKPOINT") -> Path:
    """The newest MDLM (or, with causal=True, autoregressive twin) ckpt.pt under `root`.

    knob: how the caller's user names a checkpoint instead ("--checkpoint" for a script).
    """
    found = checkpoints_newest_first(root, causal=causal)
    if not found:
        kind = "autoregressive twin (OBJECTIVE='ar')" if causal else "MDLM checkpoint"
        raise CheckpointError(
            f"no {kind} (ckpt.pt) under {Path(root).resolve()}: run train_model.ipynb first "
            f"(RUN_MODE='smoke' takes a minute), or name one with {knob}"
        )
    return found[0]


def checkpoint_choice(path, checkpoint: dict, *, named: bool, knob="CHECKPOINT") -> str:
    """One line: which checkpoint is sampled from, and how to choose another.

    Unnamed (named=False), it is the newest MDLM under checkpoints/: after any training run,
    even one stopped after 20 steps, that run's, not the shipped model. The line says which.
    """
    step, planned = checkpoint["step"], (checkpoint.get("settings") or {}).get("max_steps")
    stopped = planned is not None and planned != step  # stopped early, or given more steps
    line = f"model: {path} (step {step}" + (f" of {planned})" if stopped else ")")
    if named:
        return f"{line}, as {knob} asks"
    shipped = Path("checkpoints/shipped/ckpt.pt")
    if Path(path).resolve() == shipped.resolve():
        return f"{line}: the shipped model, the newest MDLM under checkpoints/ (choose with {knob})"
    return (
        f"{line}: the newest MDLM under checkpoints/, so taken instead of the shipped model; "
        f"choose another with {knob}, e.g. {shipped}"
    )


def load_judge(path, tokenizer, device="cpu"):
    """The autoregressive twin at `path`, in eval mode, to judge text made with `tokenizer`."""
    judge, judge_tokenizer, _ = load_model(path, device)
    if not judge.config.causal:
        raise CheckpointError(
            f"{path} is an MDLM; a judge must be an autoregressive twin (train_model.ipynb with "
            "OBJECTIVE='ar')"
        )
    if judge_tokenizer.to_json() != tokenizer.to_json():
        raise CheckpointError(
            f"{path} was trained with another tokenizer than the model it should judge, so the "
            "same token ids mean different text: train the twin on the same DATA and VOCAB_SIZE"
        )
    return judge


def held_out_split(checkpoint):
    """The training and held-out texts of the checkpoint's run (corpus.Split), or None if its
    text is not on this machine, differs from the one it was trained on, or was split by the
    rule of earlier versions (checkpoints without metrics["held_out"])."""
    source = checkpoint["metrics"].get("data", "")
    path = Path("data") if source in CORPORA else Path(source).expanduser()
    if not source or not path.exists() or "held_out" not in checkpoint["metrics"]:
        return None  # not here, or trained before the last tenth of every file was held out
    documents = load_documents(source if source in CORPORA else str(path))
    max_chars = checkpoint["settings"].get("max_chars")
    documents = truncate_documents(documents, max_chars) if max_chars else documents
    if text_sha256(join_documents(documents)) != checkpoint.get("corpus_sha256"):
        return None  # another version of the text: its held-out part may have been trained on
    return split_documents(documents)


def decode_with_masks(tokenizer, tokens, mask="░") -> str:
    """Token ids (L,) -> text with one `mask` character per masked position: "The ░░ sat"."""
    ids = tokens.tolist() if hasattr(tokens, "tolist") else list(tokens)
    pieces = []
    for is_mask, run in groupby(ids, key=lambda i: i == tokenizer.mask_id):
        run = list(run)
        pieces.append(mask * len(run) if is_mask else tokenizer.decode(run))
    return "".join(pieces)


@torch.no_grad()
def fill_the_blank(model, tokenizer, text, context=None, times=(None, 0.5, 0.9), top=5) -> dict:
    """The model's top candidates for the position of "░" in text: {t: [(token text, p), ...]}.

    The network only ever saw windows of seq_len tokens, so the sentence is asked inside one:
    context, token ids (N,) of held-out text, gives a window from its middle, and the sentence
    is written over the centre of it. Without context the sentence is asked alone, a length
    the network never trained on (its answers are then less telling).
    t None stands for the fraction actually masked, one position of the window: {1 / L: [(text,
    p), ... top of them], 0.5: [...], 0.9: [...]} with the default times.
    A trained tokenizer glues a space to the word after it (" door" is one token), so a space
    before the blank belongs to the blank: "the ░ and" asks for " door", not for "door" after a
    lone " " that the model never saw before a word.
    """
    if model.config.causal:
        raise ValueError("the autoregressive twin sees only the left of a blank: use an MDLM")
    device = next(model.parameters()).device
    before, after = text.split("░")
    glued = len(tokenizer.encode(" the")) < 1 + len(tokenizer.encode("the"))
    if glued and before.endswith(" "):
        before = before[:-1]
    before_ids = tokenizer.encode(before)
    ids = before_ids + [tokenizer.mask_id] + tokenizer.encode(after)
    position = len(before_ids)  # the blank's index
    if context is not None:  # the sentence in the middle of a held-out window of seq_len tokens
        L = model.config.seq_len
        if len(context) < L or len(ids) > L:
            raise ValueError(f"context needs >= {L} tokens and the sentence <= {L}")
        middle = len(context) // 2 - L // 2
        window = torch.as_tensor(context[middle : middle + L]).tolist()
        offset = (L - len(ids)) // 2
        window[offset : offset + len(ids)] = ids
        ids, position = window, offset + position
    z = torch.tensor(ids, device=device)[None]  # (1, L)
    candidates = {}
    for t_value in times:
        t_value = t_value or 1 / len(ids)
        logits = model(z, torch.tensor([t_value], device=device), fp32_logits=True)[0, position]
        best = to_float64(logits).softmax(-1).topk(top)  # (V,) -> the top probabilities
        pairs = zip(best.indices.tolist(), best.values.tolist())
        candidates[t_value] = [(tokenizer.decode([i]), p) for i, p in pairs]
    return candidates


def token_distribution(logits, temperature=1.0, top_k=None, top_p=None):
    """Logits (..., V) -> float64 probabilities (..., V): temperature, then top-k, then top-p.

    logits = log [0.5, 0.3, 0.2], temperature 0.5, top_p 0.6 -> [1, 0, 0]: tempered, the first
    token has 0.658 > 0.6 alone. (Top-p first would keep two tokens: [0.735, 0.265, 0].)
    """
    logits = to_float64(logits) / temperature  # float32 would round the tail to exactly 0
    if top_k is not None:
        kth_largest = logits.topk(min(top_k, logits.size(-1)), dim=-1).values[..., -1:]  # (..., 1)
        logits = logits.masked_fill(logits < kth_largest, -math.inf)
    probs = logits.softmax(dim=-1)
    if top_p is not None:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        mass_above = sorted_probs.cumsum(dim=-1) - sorted_probs  # (..., V) of the better tokens
        drop = torch.zeros_like(probs, dtype=torch.bool).scatter(-1, order, mass_above >= top_p)
        probs = probs.masked_fill(drop, 0.0)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs


def check_knobs(temperature, top_k, top_p):
    """Refuse knobs that token_distribution cannot use; every sampler calls this first."""
    for failed, message in [
        # written as "not ok", so that NaN, which fails every comparison, is refused too
        (not temperature >= 0, f"temperature must be >= 0 (0 is greedy), not {temperature}"),
        (
            top_k is not None and not (top_k >= 1 and float(top_k).is_integer()),
            f"top_k must be None or a whole number >= 1, not {top_k}",
        ),
        (top_p is not None and not 0 < top_p <= 1, f"top_p must be None or in (0, 1], not {top_p}"),
    ]:
        if failed:
            raise ValueError(message)


def draw_tokens(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    """Logits (n, V) -> a token per row (n,) long and its confidence (n,) float64.

    Temperature 0 is greedy: the argmax, which top-k and top-p would always keep anyway. The
    draw happens on float64_device(logits.device), where `generator` must live: on a Mac the
    CPU, and the tokens come back there.
    """
    logits = to_float64(logits)  # (n, V)
    if temperature == 0 or len(logits) == 0:  # subtle: no draw for no rows, on every device
        tokens = logits.argmax(dim=-1)  # (n,)
    else:
        probs = token_distribution(logits, temperature, top_k, top_p)  # (n, V)
        tokens = torch.multinomial(probs, 1, generator=generator).squeeze(-1)  # (n,)
    confidence = logits.softmax(dim=-1).gather(-1, tokens[:, None]).squeeze(-1)  # (n,)
    return tokens, confidence


def rank(scores):
    """The rank of every entry within its row, largest first: [[0.2, 0.9, 0.5]] -> [[2, 0, 1]]."""
    return scores.argsort(dim=-1, descending=True, stable=True).argsort(dim=-1)


def reveal_coins(z, t, s, *, mask_id, generator=None):
    """The ancestral step's coins: which masked positions of z (B, L) are revealed from t to s.

    Each masked position is revealed with the posterior's probability (alpha_s - alpha_t) /
    (1 - alpha_t) (section 2), whatever the network says: (B, L) bool. z and the generator
    live on the same device (float64_device of the model's), where the coins are drawn.
    """
    alpha_t, alpha_s = alpha(torch.tensor([t, s], dtype=torch.float64)).tolist()  # on the CPU
    host = float64_device(z.device)  # z's device, where the generator lives, or a Mac's CPU
    coin = torch.rand(z.shape, generator=generator, device=host, dtype=torch.float64)
    return (z == mask_id) & (coin < (alpha_s - alpha_t) / (1 - alpha_t))  # (B, L)


def denoise_step(
    z,
    logits,
    confidence,
    free,
    t,
    s,
    *,
    mask_id,
    method="ancestral",
    revealed=None,
    temperature=1.0,
    top_k=None,
    top_p=None,
    remask=0.0,
    start_time=1.0,
    generator=None,
):
    """One reverse step from time t to s < t, for every sampler. Returns (z_s, confidence).

    z (B, L) long is z_t, mask_id where masked; logits (B, L, V) are x_theta(z_t, t);
    confidence (B, L) float64 is each token's confidence when it was revealed (NaN while
    masked); free (B, L) bool marks the positions being generated (the others were given).
    method "confidence" keeps the most confident proposals (section 4); "ancestral" and
    "lazy" follow the posterior of section 2, with the coins `revealed` (B, L) from
    reveal_coins if the caller drew them already, or drawn here. start_time is the time at
    which the free positions were all masked (sample's start_time), for the confidence
    schedule. Everything but the logits lives on float64_device(logits.device), the generator
    too: the logits' device, or the CPU on a Mac.
    """
    alpha_s = alpha(torch.tensor(s, dtype=torch.float64)).item()  # on the CPU
    is_masked = z == mask_id  # (B, L)
    # 1. propose
    if method == "confidence":
        proposed = is_masked
    elif revealed is None:  # ancestral: the posterior's coin, drawn before the network is used
        proposed = reveal_coins(z, t, s, mask_id=mask_id, generator=generator)  # (B, L)
    else:
        proposed = revealed
    # 2. draw: nothing to draw when no position is proposed (and no random number is used)
    proposed_logits = logits[proposed.to(logits.device)]  # (n, V) for the n proposed positions
    tokens, token_confidence = draw_tokens(proposed_logits, temperature, top_k, top_p, generator)
    proposal = z.masked_scatter(proposed, tokens)  # (B, L) the drawn tokens in their places
    proposal_confidence = confidence.masked_scatter(proposed, token_confidence)  # (B, L)
    # 3. keep
    keep, remasked = proposed, torch.zeros_like(proposed)
    if method == "confidence":
        alpha_start = alpha(torch.tensor(start_time, dtype=torch.float64)).item()  # on the CPU
        left = (1 - alpha_s) / (1 - alpha_start)  # the share of the free positions masked at s
        masked_after = (free.sum(-1) * left).round().long()  # (B,) on the schedule
        earlier = free & ~is_masked  # (B, L) tokens this sampler revealed at earlier steps
        num_remask = torch.minimum((remask * earlier.sum(-1)).long(), masked_after)  # (B,)
        num_keep = is_masked.sum(-1) - masked_after + num_remask  # (B,)
        most_sure_first = rank(proposal_confidence.masked_fill(~proposed, -math.inf))  # (B, L)
        keep = proposed & (most_sure_first < num_keep[:, None])
        least_sure_first = rank(-confidence.masked_fill(~earlier, math.inf))  # (B, L)
        remasked = earlier & (least_sure_first < num_remask[:, None])
    # 4. carry over: only the kept proposals change; then the corrector masks its picks again
    z = torch.where(keep, proposal, z).masked_fill(remasked, mask_id)
    confidence = torch.where(keep, proposal_confidence, confidence).masked_fill(remasked, math.nan)
    return z, confidence


METHODS = ("ancestral", "lazy", "confidence")


@dataclass
class Frame:
    """The state after one step of `sample`: what sample_visual.py animates."""

    step: int  # 0 is the start, before the first step
    t: float  # the time of this state: 1 is all masked, 0 is done
    tokens: torch.Tensor  # (B, L) long, mask_id where still masked
    confidence: torch.Tensor  # (B, L) float32: x_theta(token) when revealed; NaN masked; 1 given


@dataclass
class SampleResult:
    tokens: torch.Tensor  # (B, L) long, on the CPU
    nfe: int  # network function evaluations: calls of the network, each on the whole batch
    trace: list = field(default_factory=list)  # with record_trace: the start, then a Frame per step
    seconds: float = 0.0  # wall time of the whole call


def windows(length, seq_len, block_length):
    """(start, end) of the windows that semi-autoregressive decoding fills, in order.

    windows(10, 4, 2) -> [(0, 4), (2, 6), (4, 8), (6, 10)]: each window after the first keeps
    the seq_len - block_length tokens before its new block as context.
    """
    spans = [(0, min(length, seq_len))]
    while spans[-1][1] < length:
        end = min(spans[-1][1] + block_length, length)
        spans.append((end - seq_len, end))
    return spans


@torch.no_grad()
def sample(
    model,
    *,
    num_samples=1,
    length=None,
    steps=128,
    method="ancestral",
    temperature=1.0,
    top_k=None,
    top_p=None,
    fixed=None,
    remask=0.0,
    block_length=None,
    start_time=1.0,
    seed=0,
    record_trace=False,
    device=None,
) -> SampleResult:
    """Generate num_samples sequences, from masks at t = 1 to text at t = 0, in `steps` steps.

    method: "ancestral", "lazy" (the same samples from the same seed, in fewer network calls:
        the coins are drawn first and the network is called only in a step that reveals
        something, at that step's t, so it is exact for any model) or "confidence" (remask > 0
        adds the corrector).
    fixed: (L,) or (B, L) long, a token where the text is given and mask_id where it is to be
        generated (make_fixed builds one); given tokens come back unchanged.
    length: by default fixed's length, or else the model's seq_len. Longer text is made in
        windows of seq_len tokens that slide by block_length (default seq_len // 2).
    start_time: the time of the starting state, 1 (all masked) by default; the steps go from
        it down to 0. With given text, the fraction of positions masked (for infilling, the
        gap over the length) shows a time-conditioned model a t it was trained with.
    device: where the network runs (the model is moved there); by default the model's device.
        The state and the float64 draws live on float64_device(device): the same device, or
        the CPU on a Mac (MPS has no float64). The same seed gives the same samples on the
        same device, and on a Mac the same as on the CPU.
    """
    config, mask_id = model.config, model.config.mask_id
    device = torch.device(device) if device is not None else next(model.parameters()).device
    host = float64_device(device)  # where z, the confidences and the random draws live
    if fixed is None:
        fixed = torch.full((length or config.seq_len,), mask_id)
    fixed = torch.as_tensor(fixed, dtype=torch.long).to(host)
    block_length = block_length or config.seq_len // 2
    for failed, message in [
        (
            config.causal,
            "this is an autoregressive twin (trained with OBJECTIVE='ar'); sample() needs an "
            "MDLM (the twin samples with ar_sample)",
        ),
        (method not in METHODS, f"method must be one of {METHODS}, not {method!r}"),
        (steps < 1, f"steps must be >= 1, not {steps}"),
        (not 0 < start_time <= 1, f"start_time must be in (0, 1], not {start_time}"),
        (
            remask != 0 and (method != "confidence" or not 0 < remask < 1),
            "remask must be in [0, 1) and needs method='confidence'",
        ),
        (fixed.dim() == 2 and len(fixed) != num_samples, "fixed (B, L) needs num_samples = B"),
        (length not in (None, fixed.size(-1)), f"length {length} but fixed has {fixed.size(-1)}"),
        (
            fixed.size(-1) > config.seq_len and not 0 < block_length < config.seq_len,
            f"text longer than seq_len = {config.seq_len} needs 0 < block_length < seq_len",
        ),
    ]:
        if failed:
            raise ValueError(message)
    check_knobs(temperature, top_k, top_p)

    started = time.perf_counter()
    model.to(device).eval()
    precision = pick_precision(device)
    generator = torch.Generator(host).manual_seed(seed)
    z = fixed.expand(num_samples, -1).clone()  # (B, L) long, the state z_t
    B, L = z.shape
    confidence = torch.ones(B, L, dtype=torch.float64, device=host)  # given tokens: 1
    confidence = confidence.masked_fill(z == mask_id, math.nan)
    nfe, step, trace = 0, 0, []
    if record_trace:
        trace.append(Frame(step, start_time, z.to("cpu", copy=True), confidence.float().cpu()))
    for start, end in windows(L, config.seq_len, block_length):
        z_window, confidence_window = z[:, start:end], confidence[:, start:end]  # (B, W) views
        free = z_window == mask_id  # (B, W) the positions this window generates
        for i in range(steps, 0, -1):
            t, s = start_time * i / steps, start_time * (i - 1) / steps
            masks_left = (z_window == mask_id).any()  # once all is revealed, a step changes nothing
            revealed = None
            if masks_left and method != "confidence":  # the coins do not need the network: first
                revealed = reveal_coins(z_window, t, s, mask_id=mask_id, generator=generator)
            if masks_left and (method != "lazy" or revealed.any()):
                # lazy: a step that reveals nothing changes nothing, so it needs no network call
                with autocast(device, precision):
                    times = torch.full((B,), t, device=device)  # (B,)
                    logits = model(z_window.to(device), times, fp32_logits=True)  # (B, W, V)
                nfe += 1
                z_s, confidence_s = denoise_step(
                    z_window,
                    logits,
                    confidence_window,
                    free,
                    t,
                    s,
                    mask_id=mask_id,
                    method=method,
                    revealed=revealed,
                    temperature=temperature,
                    top_k=top_k,
                    top_p=top_p,
                    remask=remask,
                    start_time=start_time,
                    generator=generator,
                )
                z_window.copy_(z_s)  # writes into z
                confidence_window.copy_(confidence_s)
            step += 1
            if record_trace:
                trace.append(Frame(step, s, z.to("cpu", copy=True), confidence.float().cpu()))
    return SampleResult(z.cpu(), nfe, trace, time.perf_counter() - started)


def make_fixed(tokenizer, length, prefix="", suffix=""):
    """A (length,) starting state for sample(fixed=...): prefix tokens, masks, suffix tokens.

    make_fixed(tok, 6, "ab", "z") -> [a, b, m, m, m, z] (as ids, m = mask_id) for a tokenizer
    in which "ab" is two tokens.
    """
    head, tail = tokenizer.encode(prefix), tokenizer.encode(suffix)
    if len(head) + len(tail) > length:
        raise ValueError(
            f"prefix and suffix are {len(head)} + {len(tail)} tokens, more than length {length}"
        )
    middle = [tokenizer.mask_id] * (length - len(head) - len(tail))
    return torch.tensor(head + middle + tail, dtype=torch.long)


def ngrams(tokens, n):
    """The n-grams within each row of tokens (B, L): [[1, 2, 3]], n=2 -> [(1, 2), (2, 3)]."""
    return [tuple(row[i : i + n]) for row in tokens.tolist() for i in range(len(row) - n + 1)]


def ngram_entropy(tokens, n=1):
    """Entropy in bits of the n-gram frequencies: [[1, 1, 2, 2]] -> 1.0 for n=1, log2(3) for n=2."""
    counts = Counter(ngrams(tokens, n)).values()
    counts = torch.tensor(list(counts), dtype=torch.float64)  # on the CPU
    p = counts / counts.sum()
    return -(p * p.log2()).sum().item()


def distinct_n(tokens, n=1):
    """Distinct n-grams divided by all n-grams: [[1, 1, 2, 2]] -> 0.5 for n=1, 1.0 for n=2."""
    grams = ngrams(tokens, n)
    return len(set(grams)) / max(1, len(grams))


def sample_quality(tokens, judge=None, resamples=1000, seed=0):
    """Repetition measures of samples (B, L); with a judge, also their generative perplexity.

    judge(tokens) -> (B,) the mean negative log-likelihood of each row under a judge; this
    notebook passes partial(sequence_nll, twin), the autoregressive twin, and the generative
    perplexity is exp of their mean. The model that wrote the samples cannot judge them.
    Each measure also gets a 95% interval, "<name>_interval": [low, high], from a bootstrap
    over the B samples (resamples draws of B rows with replacement): with 8 samples a row, a
    difference inside these intervals is not a difference.
    """
    measures = {
        "unigram_entropy": lambda rows: ngram_entropy(rows, 1),
        "bigram_entropy": lambda rows: ngram_entropy(rows, 2),
        "distinct_1": lambda rows: distinct_n(rows, 1),
        "distinct_2": lambda rows: distinct_n(rows, 2),
    }
    per_row_nll = None
    if judge is not None:  # the judge scores each row once; a resample averages its rows
        per_row_nll = judge(tokens)  # (B,) mean NLL of each row, nats
        measures["generative_perplexity"] = lambda rows: math.exp(per_row_nll[rows].mean())
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(len(tokens), (resamples, len(tokens)), generator=generator)  # (R, B)
    figures = {"generative_perplexity": None}
    for name, measure in measures.items():
        whole = torch.arange(len(tokens))
        if name == "generative_perplexity":
            value, draws = measure(whole), [measure(rows) for rows in picks]
        else:
            value, draws = measure(tokens), [measure(tokens[rows]) for rows in picks]
        draws = torch.tensor(draws, dtype=torch.float64)  # on the CPU
        ends = torch.tensor([0.025, 0.975], dtype=torch.float64)  # on the CPU, as draws
        low, high = draws.quantile(ends).tolist()
        figures[name], figures[f"{name}_interval"] = value, [low, high]
    return figures


def causal_forward(model, idx, cache, start):
    """The twin's logits (B, n, V) for tokens idx (B, n) at positions start, ..., start + n - 1.

    cache is a list with one (keys, values) pair per block, each (B, nh, start, hd), for the
    positions before `start`; the new keys and values are appended to it. Pass [] with start 0
    to begin a sequence. The same modules as Transformer.forward, in the same order; only the
    attention differs: n queries, but start + n keys and values. The last layer runs in fp32,
    as Transformer.forward(..., fp32_logits=True) does for the samplers. A twin with the gated
    adaLN blocks (CONSTANT_CONDITIONING) is fed its constant, as in Transformer.forward.
    """
    B, n = idx.shape
    D, n_head = model.config.d_model, model.config.n_head
    cos = model.rope_cos[start : start + n]  # (n, hd/2): the angles of the absolute positions
    sin = model.rope_sin[start : start + n]
    # query i sits at position start + i and may look at keys 0, ..., start + i
    key_position = torch.arange(start + n, device=idx.device)  # (S,)
    query_position = torch.arange(start, start + n, device=idx.device)  # (n,)
    allowed = key_position[None, :] <= query_position[:, None]  # (n, S) bool
    x = model.embed(idx)  # (B, n, D)
    cond = model.condition()  # (1, D) for the gated blocks, None for plain ones
    for layer, block in enumerate(model.blocks):
        attn, h1 = block.attn, block.norm1(x)  # h1 (B, n, D)
        gate1 = gate2 = None
        if block.modulation is not None:  # the gated blocks: shift, scale and gate, as in Block
            modulation = block.modulation(cond)[:, None].chunk(6, -1)  # 6 x (1, 1, D)
            shift1, scale1, gate1, shift2, scale2, gate2 = modulation
            h1 = modulate(h1, shift1, scale1)
        q, k, v = attn.qkv(h1).split(D, dim=2)  # 3 x (B, n, D)
        q, k, v = (y.view(B, n, n_head, D // n_head).transpose(1, 2) for y in (q, k, v))
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)  # (B, nh, n, hd)
        if layer < len(cache):  # the keys and values of the earlier positions never change
            k = torch.cat([cache[layer][0], k], dim=2)  # (B, nh, S, hd), S = start + n
            v = torch.cat([cache[layer][1], v], dim=2)
            cache[layer] = (k, v)
        else:
            cache.append((k, v))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)  # (B, nh, n, hd)
        out = attn.proj(y.transpose(1, 2).reshape(B, n, D))  # (B, n, D)
        x = x + out if gate1 is None else torch.addcmul(x, gate1, out)
        h2 = block.norm2(x)
        if gate2 is None:
            x = x + block.mlp(h2)
        else:
            x = torch.addcmul(x, gate2, block.mlp(modulate(h2, shift2, scale2)))
    return model.output_layer(x, cond, fp32_logits=True)  # (B, n, V): the same last layer


@torch.no_grad()
def ar_sample(
    model,
    *,
    num_samples=1,
    length,
    prompt=None,
    start_id=None,
    temperature=1.0,
    top_k=None,
    top_p=None,
    seed=0,
    use_cache=True,
    device=None,
) -> SampleResult:
    """Generate num_samples sequences of `length` tokens left to right with the causal twin.

    prompt: (P,) or (B, P) long, the tokens to continue; or start_id, a prompt of one token.
        The returned tokens (B, length) begin with it. length <= the model's seq_len.
    use_cache: the key-value cache: the prompt in one call, then one call per new token on
        that token alone. False runs the whole prefix again for every token (the reference).
    nfe = length - P either way: the call on the prompt draws the first new token.
    """
    config = model.config
    device = torch.device(device) if device is not None else next(model.parameters()).device
    for failed, message in [
        (not config.causal, "ar_sample needs the autoregressive twin; this is an MDLM: use sample"),
        (
            config.time_conditioning,
            "this causal model is time-conditioned; the autoregressive twin never is",
        ),
        ((prompt is None) == (start_id is None), "pass either prompt or start_id, not both"),
        (
            length > config.seq_len,
            f"length {length} is longer than the model's seq_len = {config.seq_len}: it has "
            "never seen a position beyond it",
        ),
    ]:
        if failed:
            raise ValueError(message)
    check_knobs(temperature, top_k, top_p)
    prompt = [start_id] if prompt is None else prompt
    tokens = torch.as_tensor(prompt, dtype=torch.long).to(device)
    tokens = tokens.expand(num_samples, -1).clone() if tokens.dim() == 1 else tokens  # (B, P)
    if len(tokens) != num_samples or not 1 <= tokens.size(1) <= length:
        raise ValueError(f"the prompt must be (P,) or ({num_samples}, P) with 1 <= P <= {length}")

    started = time.perf_counter()
    model.to(device).eval()
    precision = pick_precision(device)
    generator = torch.Generator(float64_device(device)).manual_seed(seed)  # the draws' device
    cache, nfe = [], 0
    while tokens.size(1) < length:
        with autocast(device, precision):
            if not use_cache:
                logits = model(tokens, fp32_logits=True)  # (B, n, V): the whole prefix, again
            elif not cache:  # prefill: the whole prompt in one call
                logits = causal_forward(model, tokens, cache, start=0)  # (B, P, V)
            else:  # only the newest token; the cache holds the keys and values before it
                last = tokens.size(1) - 1
                logits = causal_forward(model, tokens[:, last:], cache, start=last)  # (B, 1, V)
        nfe += 1
        next_token, _ = draw_tokens(logits[:, -1], temperature, top_k, top_p, generator)  # (B,)
        tokens = torch.cat([tokens, next_token[:, None].to(device)], dim=1)  # (B, n + 1)
    return SampleResult(tokens.cpu(), nfe, seconds=time.perf_counter() - started)


def sequence_nll(judge, tokens, batch_size=8):
    """Per sequence, the mean negative log-likelihood in nats of tokens[:, 1:] under the judge.

    tokens (B, L) long -> (B,) float64. Token i >= 1 of a row is scored given tokens 0, ..., i - 1
    of the same row; token 0 has no prefix and is not scored, so every row has L - 1 scored
    tokens. One causal forward pass per batch, in float32 (no autocast), like ar_loss.
    """
    config = judge.config
    if not config.causal:
        raise ValueError("the judge must be the autoregressive twin (a causal model)")
    if tokens.size(1) < 2 or tokens.size(1) > config.seq_len:
        raise ValueError(f"rows of {tokens.size(1)} tokens; the judge scores 2 to {config.seq_len}")
    if (tokens == config.mask_id).any():
        raise ValueError("the tokens hold masks: judge finished samples only")
    device = next(judge.parameters()).device
    judge.eval()
    nll = []
    for batch in tokens.split(batch_size):
        batch = batch.to(device)  # (b, L)
        with torch.no_grad():
            logits = judge(batch)[:, :-1].float()  # (b, L - 1, V): position i - 1 predicts i
        per_token = F.cross_entropy(logits.transpose(1, 2), batch[:, 1:], reduction="none")
        nll.append(to_float64(per_token).mean(dim=1).cpu())  # (b,)
    return torch.cat(nll)


def generative_perplexity(judge, tokens) -> float:
    """exp of the mean NLL over all scored tokens (tokens[:, 1:]) of samples (B, L).

    Every row has L - 1 scored tokens, so the mean over tokens is the mean of the row means.
    """
    return math.exp(sequence_nll(judge, tokens).mean().item())


def middle_span(length, span):
    """(start, end) of `span` positions in the middle of `length`: (10, 4) -> (3, 7)."""
    if not 1 <= span <= length - 2:
        raise ValueError(f"span must be 1 to {length - 2}: a given token on either side")
    start = (length - span) // 2
    return start, start + span


def span_recovery(predicted, truth) -> dict:
    """How much of the true span came back: predicted and truth (N, S) long.

    [[1, 2], [3, 4]] against [[1, 2], [3, 5]] -> exact_match 0.5 (rows entirely right),
    token_accuracy 0.75 (tokens right).
    """
    right = predicted == truth  # (N, S) bool
    return {
        "exact_match": to_float64(right.all(dim=1)).mean().item(),
        "token_accuracy": to_float64(right).mean().item(),
    }


def infill_recovery(
    model,
    passages,
    *,
    span,
    steps,
    method="ancestral",
    temperature=1.0,
    top_k=None,
    top_p=None,
    start_time=1.0,
    seed=0,
) -> dict:
    """Mask the middle `span` tokens of every passage (N, L), let the MDLM fill them, score them.

    All other tokens are given (sample's `fixed`), so the model sees both sides of the gap;
    start_time goes to sample() (span / L starts at the fraction masked). Returns
    span_recovery's numbers, nfe, seconds, and the filled passages (N, L) as "tokens".
    """
    passages = torch.as_tensor(passages, dtype=torch.long)  # (N, L)
    start, end = middle_span(passages.size(1), span)
    fixed = passages.clone()
    fixed[:, start:end] = model.config.mask_id
    result = sample(
        model,
        num_samples=len(passages),
        fixed=fixed,
        steps=steps,
        method=method,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        start_time=start_time,
        seed=seed,
    )
    recovered = span_recovery(result.tokens[:, start:end], passages[:, start:end])
    return {**recovered, "nfe": result.nfe, "seconds": result.seconds, "tokens": result.tokens}


def prefix_recovery(model, passages, *, span) -> dict:
    """The autoregressive reference for infill_recovery: the twin continues each passage's
    prefix greedily for `span` tokens. It sees only the text before the gap, never after."""
    passages = torch.as_tensor(passages, dtype=torch.long)  # (N, L)
    start, end = middle_span(passages.size(1), span)
    result = ar_sample(
        model, num_samples=len(passages), length=end, prompt=passages[:, :start], temperature=0.0
    )
    recovered = span_recovery(result.tokens[:, start:end], passages[:, start:end])
    return {**recovered, "nfe": result.nfe, "seconds": result.seconds, "tokens": result.tokens}


def ngram_sample(ids, n, *, num_samples, length, seed=0):
    """Samples (num_samples, length) of the count-based n-gram model of the token stream `ids`.

    Each next token is drawn with the frequency it had after the same n - 1 tokens in `ids`,
    read as a circle so that every context has a successor; the first n - 1 tokens of a sample
    are copied from a random place of `ids`. Every context met while sampling occurs in `ids`,
    so no smoothing is needed. ids [0, 1, 0, 2], n = 2: after 0 comes 1 or 2, half the time
    each; after 1 or 2 always 0.
    """
    if n < 2:
        raise ValueError(f"n must be 2 (bigram) or more, not {n}")
    ids = torch.as_tensor(ids, dtype=torch.long)  # (N,) on the CPU
    base = int(ids.max()) + 1
    generator = torch.Generator().manual_seed(seed)

    def key(windows):  # (..., n - 1) token ids -> (...,) one integer per context
        powers = base ** torch.arange(windows.size(-1))  # (n - 1,)
        return (windows * powers).sum(dim=-1)

    contexts = torch.stack([ids.roll(-j) for j in range(n - 1)], dim=-1)  # (N, n - 1)
    keys, order = key(contexts).sort()  # (N,) every context, sorted
    successors = ids.roll(-(n - 1))[order]  # (N,) the token after each, in the same order
    starts = torch.randint(len(ids), (num_samples,), generator=generator)  # (B,)
    text = contexts[starts]  # (B, n - 1)
    while text.size(1) < length:
        context = key(text[:, text.size(1) - (n - 1) :])  # (B,)
        first = torch.searchsorted(keys, context)  # (B,) where this context's successors begin
        count = torch.searchsorted(keys, context, right=True) - first  # (B,) and how many
        pick = first + (torch.rand(num_samples, generator=generator) * count).long()  # (B,)
        text = torch.cat([text, successors[pick][:, None]], dim=1)  # (B, n + ...)
    return text[:, :length]


SOURCE_SHA256 = "1362fabf7b876d57425e0d9508f856f9175fa0a70cc09381543ca18b2cf5051b"
