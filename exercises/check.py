"""Check the exercises of learning_guide.md §9: `python exercises/check.py 4`, or `all`.

Each check runs the project's code as it is now, your edits included (the notebooks regenerate
mdlm_model.py and mdlm_sampling.py), on a small fixed case, and prints PASS or FAIL with the
number it measured and the target, or "not attempted yet" when the exercise asks for something
that is not there yet: new code in exercises/solutions.py, a run of your own, or a checkpoint.
On the unmodified project every check passes or is not attempted yet; CI runs them all.

The exercises that need a trained model use the newest suitable checkpoint under checkpoints/
(the shipped one counts) and its held-out text, when that text is on this machine.
"""

import inspect
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import mdlm_model as M  # noqa: E402
import mdlm_sampling as S  # noqa: E402
from exercises import solutions  # noqa: E402
from tools import cli  # noqa: E402
from tools.make_results import RECIPE  # noqa: E402

PASS, FAIL, LATER = "PASS", "FAIL", "not attempted yet"
F32, F64 = torch.float32, torch.float64  # on the CPU: every check here runs there


@dataclass
class Outcome:
    status: str  # PASS, FAIL or LATER
    what: str  # the measured number against the target, or what is missing


def judged(passed: bool, what: str) -> Outcome:
    return Outcome(PASS if passed else FAIL, what)


def combine(outcomes: list[Outcome]) -> Outcome:
    """One outcome for several checks: FAIL if one fails, else LATER if one waits, else PASS."""
    for status in (FAIL, LATER, PASS):
        if any(o.status == status for o in outcomes):
            return Outcome(status, "; ".join(o.what for o in outcomes))
    raise ValueError("no outcomes")


def mean_and_error(values) -> tuple[float, float]:
    """The mean of a list of numbers and its standard error, std / sqrt(n)."""
    values = torch.tensor(values, dtype=F64)  # on the CPU
    return values.mean().item(), values.std().item() / math.sqrt(len(values))


def tiny_model(vocab_size=384, seq_len=64, time_conditioning=True, n_layer=2):
    torch.manual_seed(0)
    config = M.ModelConfig(
        vocab_size=vocab_size,
        mask_id=vocab_size - 1,
        seq_len=seq_len,
        n_layer=n_layer,
        n_head=2,
        d_model=64,
        time_conditioning=time_conditioning,
    )
    return M.Transformer(config).eval()


def uniform_hand_check(vocab_size=384, batch=1024, length=64):
    """The hand check of train_model.ipynb §4: uniform predictions, expected masks."""
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randint(vocab_size - 1, (batch, length), generator=generator)
    t = M.sample_times(batch, generator)
    logits = torch.zeros(batch, length, vocab_size)
    logits[..., vocab_size - 1] = -math.inf
    expected_masks = (1 - M.alpha(t))[:, None].expand(x0.shape)
    value = M.mdlm_loss(logits, x0, expected_masks, t).item()
    return value, math.log(vocab_size - 1)


def is_linear() -> bool:
    return abs(M.alpha(torch.tensor(0.25)).item() - 0.75) < 1e-6


def trained_mdlm(time_conditioning=None, need_text=True):
    """(model, tokenizer, checkpoint, held-out ids or None, path) of the newest MDLM, or None."""
    found = S.checkpoints_newest_first(ROOT / "checkpoints", time_conditioning=time_conditioning)
    for path in found:
        model, tokenizer, checkpoint = M.load_model(path)
        split = S.held_out_split(checkpoint)
        if split is not None or not need_text:
            ids = torch.tensor(tokenizer.encode(split.val)) if split else None
            return model, tokenizer, checkpoint, ids, path
    return None


# ------------------------------------------------------------------------------------------


def exercise_1() -> Outcome:
    value, target = uniform_hand_check()
    tolerance = 1e-5 if is_linear() else 2e-3 * target  # another schedule: exercise 4's margin
    checks = [
        judged(
            abs(value - target) <= tolerance, f"hand check {value:.6f} vs ln(V - 1) = {target:.6f}"
        )
    ]
    model, generator = tiny_model(), torch.Generator().manual_seed(1)
    x0 = torch.randint(383, (64, 64), generator=generator)
    grid = []
    with torch.no_grad():
        for t_value in [(k + 0.5) / 8 for k in range(8)]:
            t = torch.full((64,), t_value)
            z_t, is_masked = M.mask_tokens(x0, t, 383, generator)
            grid.append(M.mdlm_loss(model(z_t, t), x0, is_masked, t).item())
    initial = sum(grid) / len(grid)
    checks.append(
        judged(
            abs(initial / target - 1) < 0.02,
            f"initial loss {initial:.3f}, within 2% of {target:.3f}",
        )
    )
    runs = [
        p
        for p in (ROOT / "checkpoints").glob("*/metrics.json")
        if "smoke" in json.loads(p.read_text()).get("mode", "")
    ]
    checks.append(
        Outcome(PASS, "a smoke run's metrics.json is there")
        if runs
        else Outcome(LATER, "no smoke run's metrics.json under checkpoints/ yet: run the command")
    )
    return combine(checks)


def exercise_2() -> Outcome:
    found = trained_mdlm()
    if found is None:
        return Outcome(LATER, "no trained MDLM whose held-out text is on this machine")
    model, _, checkpoint, ids, path = found
    windows = M.evaluation_windows(ids, model.config.seq_len, 64)
    generator = torch.Generator().manual_seed(0)
    nelbo, pooled_nll, pooled_count = [], 0.0, 0
    with torch.no_grad():
        for t_value in [(k + 0.5) / 8 for k in range(8)]:
            t = torch.full((len(windows),), t_value)
            z_t, is_masked = M.mask_tokens(windows, t, model.config.mask_id, generator)
            logits = model(z_t, t)
            nelbo.append(M.mdlm_loss(logits, windows, is_masked, t).item())
            pooled_nll += F.cross_entropy(
                logits[is_masked], windows[is_masked], reduction="sum"
            ).item()
            pooled_count += int(is_masked.sum())
    nelbo, pooled = sum(nelbo) / len(nelbo), pooled_nll / pooled_count
    to_bpb = 1 / math.log(2) / checkpoint["metrics"]["bytes_per_token"]
    live = checkpoint["metrics"]["val_bpb"]
    return combine(
        [
            judged(
                pooled > nelbo, f"pooled masked mean {pooled:.3f} > NELBO {nelbo:.3f} nats/token"
            ),
            judged(
                abs(nelbo * to_bpb - live) < 0.04,
                f"NELBO {nelbo * to_bpb:.3f} bits/byte vs the run's {live:.3f} (within 0.04, "
                f"three times the estimate's noise) on {path.parent.name}",
            ),
        ]
    )


def exercise_3() -> Outcome:
    found = trained_mdlm(time_conditioning=False, need_text=False)
    if found is None:
        return Outcome(LATER, "no MDLM trained with TIME_CONDITIONING=False under checkpoints/")
    model, _, _, _, path = found
    plain, lazy = (S.sample(model, steps=300, method=m, seed=0) for m in ("ancestral", "lazy"))
    same = torch.equal(plain.tokens, lazy.tokens)
    return judged(
        same and lazy.nfe <= model.config.seq_len,
        f"{path.parent.name}: same samples {same}, {lazy.nfe} calls instead of {plain.nfe} "
        f"(at most seq_len = {model.config.seq_len})",
    )


def exercise_4() -> Outcome:
    if is_linear():
        return Outcome(LATER, "alpha(0.25) = 0.75: the schedule is still linear")
    ends = [M.alpha(torch.tensor(t)).item() for t in (0.0, 1.0)]
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)  # on the CPU
    step = 1e-5
    numeric = (M.alpha(t + step) - M.alpha(t - step)) / (2 * step)
    slope_error = (M.alpha_prime(t) - numeric).abs().max().item()
    value, target = uniform_hand_check()
    return combine(
        [
            judged(
                abs(ends[0] - 1) < 1e-6 and abs(ends[1]) < 1e-6,
                f"alpha(0), alpha(1) = {ends[0]:.4f}, {ends[1]:.4f}: 1 and 0",
            ),
            judged(
                slope_error < 1e-4,
                f"alpha_prime against alpha's slope: largest difference {slope_error:.1e}",
            ),
            judged(
                abs(value / target - 1) < 2e-3,
                f"hand check {value:.5f}, within 0.2% of ln(V - 1) = {target:.5f}",
            ),
        ]
    )


TRAINED_BY = (*RECIPE, "max_steps")  # the settings that decide what a run learns


def trained_alike(a: dict, b: dict) -> bool:
    return all(a["settings"].get(key) == b["settings"].get(key) for key in TRAINED_BY)


def exercise_5() -> Outcome:
    mine = ROOT / "checkpoints" / "mdlm_quick_tinyshakespeare" / "metrics.json"
    committed = ROOT / "results" / "mdlm_quick_tinyshakespeare.json"
    if not mine.exists():
        return Outcome(LATER, f"no run of your own at {mine.relative_to(ROOT)}")
    if not committed.exists():
        return Outcome(LATER, f"no committed run at {committed.relative_to(ROOT)} to compare with")
    mine, committed = (json.loads(p.read_text()) for p in (mine, committed))
    if "final" not in mine or "final" not in committed:
        return Outcome(LATER, "a finished run has final figures; this one has none")
    if not trained_alike(mine, committed):
        differ = [
            key for key in TRAINED_BY if mine["settings"].get(key) != committed["settings"].get(key)
        ]
        return Outcome(FAIL, f"your run's {', '.join(differ)} differ from the committed run's: "
                       "train with quick mode's defaults")  # fmt: skip
    (a, error_a), (b, error_b) = mine["final"]["nelbo"], committed["final"]["nelbo"]
    spread = seed_spread(ROOT / "results", committed)
    tolerance = max(3 * math.hypot(error_a, error_b), spread)
    return judged(
        abs(a - b) <= tolerance,
        f"yours {a:.3f} ± {error_a:.3f} against {b:.3f} ± {error_b:.3f}: within {tolerance:.3f} "
        f"(the widest spread between committed seeds of one setting: {spread:.3f})",
    )


def seed_spread(results: Path, like: dict) -> float:
    """The widest range of final figures between seeds of one committed setting, over the
    time-conditioned MDLM runs trained like `like` (on any corpus): how far another seed, or
    the same seed on another machine, may land. 0 when no setting has two seeds."""
    groups = {}
    for path in results.glob("*.json"):
        run = json.loads(path.read_text())
        if run.get("objective") == "mdlm" and run.get("time_conditioning") and "final" in run:
            if trained_alike(run, like):
                groups.setdefault(run["data"], []).append(run["final"]["nelbo"][0])
    return max((max(v) - min(v) for v in groups.values() if len(v) > 1), default=0.0)


def exercise_6() -> Outcome:
    if "weighting" not in inspect.signature(M.mdlm_loss).parameters:
        return Outcome(LATER, "mdlm_loss has no `weighting` argument yet")
    K, L = 1000, 4  # the example of the guide's §4.8: c(t) = 1 + 2t nats per masked token
    t = (torch.arange(K) + 0.5) / K
    x0 = torch.zeros(K, L, dtype=torch.long)
    logits = torch.zeros(K, L, 3)
    logits[..., 1] = torch.log(torch.expm1(1 + 2 * t))[:, None]
    logits[..., 2] = -math.inf
    masks = (1 - M.alpha(t))[:, None].expand(K, L)
    nelbo = M.mdlm_loss(logits, x0, masks, t).item()
    uniform = M.mdlm_loss(logits, x0, masks, t, weighting="uniform").item()
    return combine(
        [
            judged(abs(nelbo - 2) < 1e-3, f"default weighting {nelbo:.4f}: the NELBO, 2"),
            judged(abs(uniform - 7 / 6) < 1e-3, f'weighting="uniform" {uniform:.4f}: 7/6 by hand'),
        ]
    )


def exercise_7() -> Outcome:
    model, T = tiny_model(time_conditioning=False), 200
    L = model.config.seq_len
    mean, error = mean_and_error(
        [float(S.sample(model, steps=T, method="lazy", seed=k).nfe) for k in range(24)]
    )
    formula = T * (1 - (1 - 1 / T) ** L)
    return judged(
        abs(mean - formula) < 3 * error + 0.5,
        f"lazy NFE {mean:.1f} ± {error:.1f} at T = {T}, L = {L}; "
        f"T(1 - (1 - 1/T)^L) = {formula:.1f}",
    )


class FixedLogits(torch.nn.Module):
    """A stand-in network with the same probabilities at every position: a head of 1,024 tokens
    that holds 80% of the probability and falls off like 1/rank (Zipf's law, as words do), then
    a flat tail of 7,167 rare tokens, 0.003% each, 20% together. Once the reveal probability 1/i
    of step i has scaled them down, float32 Gumbel noise cannot reach the tail tokens for i above
    about 250 (section 7 of the guide: a log-probability more than 16.6 + g below the best)."""

    def __init__(self, vocab_size=8192, seq_len=64, head=1024, tail_mass=0.2):
        super().__init__()
        self.config = M.ModelConfig(vocab_size=vocab_size, mask_id=vocab_size - 1, seq_len=seq_len)
        zipf = 1 / torch.arange(1, head + 1, dtype=F64)  # (head,)
        tail = torch.full((vocab_size - 1 - head,), tail_mass / (vocab_size - 1 - head), dtype=F64)
        probabilities = torch.cat([(1 - tail_mass) * zipf / zipf.sum(), tail])
        logits = torch.cat([probabilities.log(), torch.tensor([-math.inf])]).float()  # the mask
        self.register_buffer("logits", logits)  # (V,)

    def forward(self, z, t=None, fp32_logits=False):
        return self.logits.expand(*z.shape, -1)


def exercise_8(seeds=4, steps=1024, tail=1024) -> Outcome:
    """Sample 4 x 64 positions of FixedLogits in `steps` steps with gumbel_step in float32 and in
    float64, from the same seeds. Float32 noise cannot reach the tail, so the float32 samples
    must take fewer tokens of rank above `tail` (20% of the probability) than the float64 ones,
    by more than two standard errors over the seeds. Their unigram entropy is printed beside it;
    at 256 samples over 8,191 tokens it moves too little from seed to seed to judge by. The
    effect lives in the tail, so this takes a few minutes: each step draws over 8,192
    outcomes."""
    model, mask_id, gaps, entropy_gaps = FixedLogits(), FixedLogits().config.mask_id, [], []
    try:
        for seed in range(seeds):
            share, entropy = {}, {}
            for dtype in (F32, F64):
                generator = torch.Generator().manual_seed(seed)
                z = torch.full((4, 64), mask_id)
                for i in range(steps, 0, -1):
                    masked = z == mask_id  # only these matter: pass them as one row
                    if masked.any():
                        row = z[masked][None]  # (1, n)
                        new = solutions.gumbel_step(
                            model(row), row, i / steps, (i - 1) / steps, mask_id=mask_id,
                            dtype=dtype, generator=generator,
                        )  # fmt: skip
                        z[masked] = new[0]
                share[dtype] = (z >= tail).float().mean().item()  # ids from `tail` on: the tail
                entropy[dtype] = S.ngram_entropy(z)
            gaps.append(share[F64] - share[F32])
            entropy_gaps.append(entropy[F64] - entropy[F32])
    except NotImplementedError:
        return Outcome(LATER, "exercises/solutions.py: gumbel_step is not written yet")

    (mean, error), (entropy_mean, entropy_error) = (
        mean_and_error(gaps),
        mean_and_error(entropy_gaps),
    )
    return judged(
        mean > 2 * error,
        f"share of tokens beyond rank {tail}, float64 minus float32 at {steps} steps: "
        f"{mean:+.3f} ± {error:.3f} over {len(gaps)} seeds (target: above 2 standard errors); "
        f"unigram entropy, float64 minus float32: {entropy_mean:+.3f} ± {entropy_error:.3f} bits",
    )


def exercise_9() -> Outcome:
    found = trained_mdlm()
    if found is None:
        return Outcome(LATER, "no trained MDLM whose held-out text is on this machine")
    model, _, checkpoint, ids, _ = found
    L = model.config.seq_len
    start, end = 3 * L // 8, 5 * L // 8  # the middle quarter of a window
    starts = range(L, len(ids) - L, max(1, (len(ids) - 2 * L) // 32))[:32]
    both_sides = torch.stack([ids[s : s + L] for s in starts])  # (32, L), the gap in the middle
    # the same gaps given only what comes before them: full windows of L that end with the gap
    before_only = torch.stack([ids[s + end - L : s + end] for s in starts])  # (32, L)
    try:
        both = solutions.conditional_bound(model, both_sides, start=start, end=end)
        before = solutions.conditional_bound(model, before_only, start=L - (end - start), end=L)
    except NotImplementedError:
        return Outcome(LATER, "exercises/solutions.py: conditional_bound is not written yet")
    gain = before - both  # (32,) paired: the same middle tokens, scored two ways
    standard_error = gain.std().item() / len(gain) ** 0.5
    unconditional = checkpoint["metrics"]["val_nats_per_token"]
    return judged(
        gain.mean().item() > 0,
        f"middle given both sides {both.mean().item():.3f}, given the beginning only "
        f"{before.mean().item():.3f} (both sides lower by {gain.mean().item():.3f} "
        f"± {standard_error:.3f}); the whole window, scattered masks: {unconditional:.3f} "
        "nats/token",
    )


def exercise_10() -> Outcome:
    found = trained_mdlm()
    if found is None:
        return Outcome(LATER, "no trained MDLM whose held-out text is on this machine")
    model, tokenizer, checkpoint, ids, path = found
    eval_times = checkpoint["settings"].get("eval_times", 8)
    coarse, fine = (
        M.estimate_loss(model, ids, seq_len=model.config.seq_len, num_windows=32, num_times=n)
        for n in (eval_times, 64)
    )
    twins = S.checkpoints_newest_first(ROOT / "checkpoints", causal=True, tokenizer=tokenizer)
    if not twins:
        return Outcome(
            LATER,
            f"the quadrature moved {abs(fine - coarse):.4f} nats/token; no AR twin to compare with",
        )
    twin = M.load_model(twins[0])[0]
    gap = coarse - M.estimate_loss(twin, ids, seq_len=twin.config.seq_len, num_windows=32)
    return judged(
        abs(fine - coarse) < 0.1 * gap,
        f"{eval_times} times to 64 moves the bound by {fine - coarse:+.4f} nats/token, "
        f"against a gap of {gap:.3f} to the twin",
    )


EXERCISES = {
    1: ("a first run", exercise_1),
    2: ("the number everyone else reports", exercise_2),
    3: ("time conditioning off", exercise_3),
    4: ("a cosine schedule", exercise_4),
    5: ("quick mode, on target", exercise_5),
    6: ("uniform weighting, done right", exercise_6),
    7: ("samplers at equal cost", exercise_7),
    8: ("float32 against float64", exercise_8),
    9: ("infilling, scored", exercise_9),
    10: ("tighter validation", exercise_10),
}


def main(argv=None) -> int:
    parser = cli.ArgumentParser(description=__doc__.split("\n\n")[0])
    choices = [*map(str, EXERCISES), "all"]
    parser.add_argument("exercise", choices=choices, help="a number from 1 to 10, or all")
    args = parser.parse_args(argv)
    numbers = list(EXERCISES) if args.exercise == "all" else [int(args.exercise)]
    torch.set_num_threads(min(2, torch.get_num_threads()))
    failed = False
    for number in numbers:
        title, check = EXERCISES[number]
        outcome = check()
        print(f"exercise {number}, {title}: {outcome.status}. {outcome.what}")
        failed |= outcome.status == FAIL
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
