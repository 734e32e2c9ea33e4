"""Draw the figures of learning_guide.md that need no trained model, with the project's own code.

    python docs/make_figures.py                  # writes docs/img/*.png (under a minute on a CPU)
    python docs/make_figures.py --out /tmp/figs  # somewhere else

Every figure comes from the functions the model and the samplers use: the schedule `alpha` and
its derivative `alpha_prime`, `mask_tokens`, the BPE tokenizer and `sample`. Where a sampler is
involved, the network is a tiny untrained one: how many positions a step reveals, and how often
the lazy sampler calls the network, do not depend on the weights.

Two figures come from real runs without needing their checkpoints: `loss_curves.png`, the
validation bits per byte of every committed run in results/*.json against the tokens it had
seen, MDLM beside its autoregressive twin; and `cost_of_a_blank.png`, the c(t) that
train_model.ipynb measured at the end of the quick run on the default corpus. Left out on
purpose: samples and quality against steps, which need a trained checkpoint and come from
sampling.ipynb.
"""

import json
import math
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no window
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # so it runs from any folder

from bpe_tokenizer import BPETokenizer  # noqa: E402
from mdlm_model import ModelConfig, Transformer, alpha, alpha_prime, mask_tokens  # noqa: E402
from mdlm_sampling import sample  # noqa: E402
from tools import cli  # noqa: E402
from tools.make_results import kind as run_kind  # noqa: E402
from tools.make_results import mode_defaults, recipe  # noqa: E402

SENTENCE = "Before we proceed any further, hear me speak."  # the first lines of Tiny Shakespeare
TOKENIZER_TEXT = ROOT / "tests" / "data" / "tiny.txt"  # a 200 kB slice, shipped with the repo
MASKED_GREY, CLEAN_BLUE = "#c8ccd4", "#dbe7ff"


def cosine_alpha(t):
    """The cosine schedule of exercise 4, drawn for comparison; the project uses alpha."""
    return torch.cos(math.pi * t / 2)


def cosine_alpha_prime(t):
    return -math.pi / 2 * torch.sin(math.pi * t / 2)


def tiny_model(seq_len: int) -> Transformer:
    """An untrained network without time conditioning: the figures need no trained weights."""
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=8,
        mask_id=7,
        seq_len=seq_len,
        n_layer=1,
        n_head=1,
        d_model=16,
        time_conditioning=False,
    )
    return Transformer(config).eval()


def forward_process(path: Path) -> None:
    """One sentence masked at five times, with the same random numbers at every t."""
    tok = BPETokenizer.train(TOKENIZER_TEXT.read_text(encoding="utf-8"), vocab_size=1024)
    ids = torch.tensor(tok.encode(SENTENCE))  # (L,)
    pieces = [tok.decode([i]).replace(" ", "\u2423") for i in ids.tolist()]  # show spaces as ␣
    times = [0.0, 0.25, 0.5, 0.75, 1.0]
    fig, ax = plt.subplots(figsize=(11, 3.2))
    for row, t in enumerate(times):
        # Re-seeding draws the same uniforms u for every t, so a token masked at t stays masked
        # at every later t: one path of the absorbing process (masked when u < 1 - alpha_t).
        generator = torch.Generator().manual_seed(1)
        _, is_masked = mask_tokens(ids[None], torch.tensor([t]), tok.mask_id, generator)
        x, y = 0.0, len(times) - 1 - row
        for piece, masked in zip(pieces, is_masked[0].tolist(), strict=True):
            width = 0.25 + 0.17 * len(piece)
            colour = MASKED_GREY if masked else CLEAN_BLUE
            ax.add_patch(plt.Rectangle((x, y + 0.1), width - 0.06, 0.8, color=colour))
            if not masked:
                ax.text(x + width / 2, y + 0.5, piece, ha="center", va="center", family="monospace")
            x += width
        ax.text(-0.2, y + 0.5, f"t = {t:.2f}", ha="right", va="center")
    ax.set(
        xlim=(-1.6, x + 0.1),
        ylim=(0, len(times)),
        title=r"$z_t \sim q(z_t \mid x)$ with $\alpha_t = 1 - t$",
    )
    ax.axis("off")
    save(fig, path)


def schedule(path: Path) -> None:
    """alpha_t and the expected masked fraction 1 - alpha_t, linear and cosine."""
    t = torch.linspace(0, 1, 501)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(t, alpha(t), color="C0", label=r"$\alpha_t = 1 - t$ (the project)")
    ax.plot(t, 1 - alpha(t), color="C1", label=r"$1 - \alpha_t$: expected masked fraction")
    ax.plot(
        t, cosine_alpha(t), "--", color="C0", alpha=0.6, label=r"$\cos(\pi t / 2)$ (exercise 4)"
    )
    ax.plot(t, 1 - cosine_alpha(t), "--", color="C1", alpha=0.6)
    ax.set(xlabel="t  (0: clean text, 1: all mask)", ylabel="probability", xlim=(0, 1))
    ax.legend(loc="center left", fontsize=8)
    save(fig, path)


def loss_weight(path: Path) -> None:
    """The weight -alpha'_t / (1 - alpha_t) of a masked token's cross-entropy in the NELBO."""
    t = torch.logspace(-3, 0, 400)  # from sample_times' eps = 1e-3 up to 1
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(
        t, -alpha_prime(t) / (1 - alpha(t)), label=r"linear: $-\alpha'_t / (1 - \alpha_t) = 1/t$"
    )
    cosine = -cosine_alpha_prime(t) / (1 - cosine_alpha(t))
    ax.plot(t, cosine, "--", label="cosine (exercise 4)")
    ax.plot(t, t / t, ":", color="gray", label="'uniform' weight 1")
    ax.set(xscale="log", yscale="log", xlabel="t", ylabel="weight of a masked token's loss")
    ax.legend(fontsize=8)
    save(fig, path)


def reveal_probability(path: Path, steps: int = 8) -> None:
    """Per step of ancestral sampling: the chance a mask is revealed, and what is left masked."""
    model = tiny_model(seq_len=256)
    trace = sample(model, num_samples=64, steps=steps, record_trace=True, seed=0).trace
    is_masked = [frame.tokens == model.config.mask_id for frame in trace]  # trace: CPU tensors
    masked = [m.double().mean().item() for m in is_masked]  # on the CPU
    i = torch.arange(steps, 0, -1, dtype=torch.float64)  # on the CPU: t = i/T to s = (i-1)/T
    t, s = i / steps, (i - 1) / steps
    reveal = (alpha(s) - alpha(t)) / (1 - alpha(t))  # (T,) = (t - s)/t = 1/i
    measured = [1 - after / before for before, after in zip(masked, masked[1:])]
    number = torch.arange(1, steps + 1)
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.bar(
        number,
        reveal,
        color=CLEAN_BLUE,
        label=r"reveal probability $(\alpha_s - \alpha_t) / (1 - \alpha_t)$",
    )
    ax.plot(number, measured, "o", color="C0", label="revealed by sample(), 16,384 masks")
    ax.plot(
        number, 1 - alpha(s), "-", color="C1", label=r"$1 - \alpha_s$: still masked after the step"
    )
    ax.plot(number, masked[1:], "s", color="C1", mfc="none", label="still masked, measured")
    labels = [f"{a:.3g}\n{b:.3g}" for a, b in zip(t.tolist(), s.tolist())]
    ax.set_xticks(number, labels, fontsize=7)
    ax.set(
        xlabel=f"step from t (top) to s (bottom), {steps} steps", ylabel="probability / fraction"
    )
    ax.legend(fontsize=7, loc="upper center")
    save(fig, path)


def lazy_calls(path: Path, seq_len: int = 256) -> None:
    """Network calls of the lazy sampler for one sequence, against the number of steps."""
    model = tiny_model(seq_len)
    steps = [4, 16, 64, 256, 1024, 4096]
    calls = [sample(model, steps=T, method="lazy", seed=0).nfe for T in steps]
    grid = torch.logspace(0, math.log10(8192), 200, dtype=torch.float64)  # on the CPU
    expected = grid * (1 - (1 - 1 / grid) ** seq_len)  # steps that reveal at least one position
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(grid, grid, ":", color="gray", label="plain ancestral: one call per step")
    ax.plot(grid, expected, color="C1", label=r"lazy, expected: $T\,(1 - (1 - 1/T)^L)$")
    ax.plot(steps, calls, "o", color="C0", label="lazy, measured with sample()")
    ax.axhline(seq_len, color="C3", lw=0.8, ls="--", label=f"L = {seq_len} positions")
    ax.set(xscale="log", yscale="log", xlabel="steps T", ylabel="network calls (NFE)")
    ax.legend(fontsize=8)
    save(fig, path)


def loss_curves(path: Path, results: Path = ROOT / "results") -> None:
    """Validation bits per byte against tokens seen, every run in results/, a panel per corpus.

    MDLM's figure is an upper bound (the NELBO), the AR twin's an exact NLL: the true gap
    between the models is at most the gap between the curves. The grey line is the unigram
    baseline. Runs scored on the old split (no "held_out" in their metrics) get panels of their
    own. Runs with other training settings than their mode's defaults are left to
    settings_tried.png.
    """
    runs = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(results.glob("*.json"))]
    defaults = mode_defaults()
    runs = [r for r in runs if "history" in r and r["history"].get("val_bpb")]
    runs = [r for r in runs if "settings" not in r or not recipe(r, defaults)]

    def panel(run):  # a run from before the last tenth of every file was held out gets its own
        return Path(run["data"]).stem + ("" if "held_out" in run else ", old split")

    corpora = sorted({panel(r) for r in runs})
    if not corpora:
        print(f"skipped {path.name}: no run metrics in {results}")
        return
    fig, axes = plt.subplots(1, len(corpora), figsize=(5.6 * len(corpora), 5.2), squeeze=False)
    styles = {
        "mdlm": ("C0", "-"),
        "mdlm_notc": ("C0", ":"),
        "mdlm_const": ("C2", "-."),
        "ar": ("C3", "--"),
        "ar_const": ("C5", "--"),
    }
    other_seed = {"mdlm": "C1", "mdlm_notc": "C1", "mdlm_const": "C8", "ar": "C4", "ar_const": "C6"}
    labels = {
        "mdlm": "MDLM, fed t (bound)",
        "mdlm_notc": "MDLM, plain blocks",
        "mdlm_const": "MDLM, gated, fed a constant",
        "ar": "AR twin, plain blocks (exact)",
        "ar_const": "AR twin, gated blocks (exact)",
    }
    for ax, corpus in zip(axes[0], corpora):
        for run in (r for r in runs if panel(r) == corpus):
            history, settings = run["history"], run["settings"]
            tokens_per_step = settings["batch_size"] * settings["grad_accum"] * settings["seq_len"]
            tokens = [step * tokens_per_step / 1e6 for step in history["val_step"]]
            kind = run_kind(run)
            colour, line = styles[kind]
            twins = [r for r in runs if panel(r) == corpus and run_kind(r) == kind]
            label = labels[kind]
            if len({r["steps"] for r in twins}) > 1:  # runs of one kind: tell them apart
                label += f", {run['steps']:,} steps"
                line = line if run["steps"] == min(r["steps"] for r in twins) else "-."
            if len({r.get("seed", 1337) for r in twins}) > 1:
                label += f", seed {run.get('seed', 1337)}"
                colour = colour if run.get("seed", 1337) == 1337 else other_seed[kind]
            label += f": {run['val_bpb']:.3f}"
            ax.plot(tokens, history["val_bpb"], line, color=colour, marker=".", label=label)
        unigram = runs[[panel(r) for r in runs].index(corpus)]["unigram_bpb"]
        ax.axhline(unigram, color="grey", lw=1, label=f"unigram baseline: {unigram:.3f}")
        ax.set(title=corpus, xlabel="training tokens seen (millions)", ylabel="val bits per byte")
        ax.grid(alpha=0.3)
        # below the panel: inside, a legend of up to ten curves hides some of them
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
    save(fig, path)


def settings_tried(path: Path, results: Path = ROOT / "results", corpus: str = "gutenberg"):
    """The MDLM's held-out curve with each quick-mode setting tried on the default corpus,
    against the share of the run done: every setting was given the steps that take the wall
    time of the defaults' steps (bench/bench_settings.py), so the x axis is also the share of
    the same minutes. Runs stopped by hand (results/stopped/) end where they stopped."""
    defaults = mode_defaults()
    files = sorted(results.glob("*.json")) + sorted((results / "stopped").glob("*.json"))
    runs = [(p.parent.name == "stopped", json.loads(p.read_text(encoding="utf-8"))) for p in files]
    runs = [
        (stopped, r)
        for stopped, r in runs
        if r.get("objective") == "mdlm" and r.get("time_conditioning") and "held_out" in r
        and Path(r["data"]).name == corpus and r["mode"] == "quick"
        and (recipe(r, defaults) or r["settings"]["max_steps"] == defaults["quick"]["max_steps"])
    ]  # fmt: skip
    if not any(recipe(r, defaults) for _, r in runs):
        print(f"skipped {path.name}: no quick run with other settings in {results}")
        return
    fig, ax = plt.subplots(figsize=(12, 4.6))
    colours = {"": "C0"}  # a colour per setting, its seeds told apart by the line
    for _, run in runs:
        colours.setdefault(recipe(run, defaults), f"C{len(colours) % 10}")
    for stopped, run in runs:
        changes = recipe(run, defaults)
        history, steps = run["history"], run["settings"]["max_steps"]
        share = [step / steps for step in history["val_step"]]
        label = changes or "the defaults"
        other_seed = run.get("seed", 1337) != 1337
        label += f", seed {run['seed']}" if other_seed else ""
        label += ": stopped" if stopped else f": {run['val_bpb']:.3f}"
        line = "--" if stopped else "-." if other_seed else "-"
        style = dict(color=colours[changes], lw=1.5 if changes else 1)
        ax.plot(share, history["val_bpb"], line, marker=".", label=label, **style)
    for vocab, unigram in sorted(
        {(r["settings"]["vocab_size"], r["unigram_bpb"]) for _, r in runs}
    ):
        line = "-" if vocab == defaults["quick"]["vocab_size"] else ":"
        label = f"unigram baseline, {vocab:,} tokens: {unigram:.3f}"
        ax.axhline(unigram, color="grey", ls=line, lw=1, label=label)
    ax.set(
        title=f"quick mode on {corpus}: settings tried (MDLM, live estimate)",
        xlabel="share of the run (every setting: the same wall time, bench_settings.py)",
        ylabel="val bits per byte (bound)",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside: many runs
    save(fig, path)


def cost_of_a_blank(
    path: Path,
    run: Path = ROOT / "results" / "mdlm_quick_gutenberg.json",
    twin: Path = ROOT / "results" / "ar_quick_gutenberg.json",
):
    """c(t), the average cost of a masked token against the masking rate, as the run measured
    it at 32 times on held-out windows (train_model.ipynb §6). The area under it is the bound;
    beside it, the loss of the twin of the same seed, a token given everything before it."""
    metrics = json.loads(run.read_text(encoding="utf-8")) if run.exists() else {}
    if "c_of_t" not in metrics:
        print(f"skipped {path.name}: {run.name} has no c_of_t (a run from before it was measured)")
        return
    to_bpb = 1 / math.log(2) / metrics["bytes_per_token"]
    t, c = metrics["c_of_t"]["t"], [value * to_bpb for value in metrics["c_of_t"]["c"]]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.fill_between(
        t, c, color="C0", alpha=0.15, label=f"area under c: the bound, {sum(c) / len(c):.3f}"
    )
    ax.plot(t, c, "o-", ms=3, label="c(t): bits per byte of a masked token")
    if twin.exists():
        loss = json.loads(twin.read_text(encoding="utf-8"))["final"]["nll"][0]
        ax.axhline(loss, color="C3", ls="--", label=f"the twin's loss per token: {loss:.3f}")
    ax.set(xlabel="t, the fraction masked", ylabel="bits per byte", xlim=(0, 1), ylim=(0, None))
    ax.set_title(metrics["run"])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    save(fig, path)


def small_data(
    path: Path,
    mdlm: Path = ROOT / "results" / "mdlm_quick4800_tinyshakespeare.json",
    twin: Path = ROOT / "results" / "ar_quick4800_tinyshakespeare.json",
):
    """Tiny Shakespeare seen about 30 times: the held-out curves of the MDLM and its twin, and
    the twin's training loss, which keeps falling while its held-out loss climbs."""
    if not (mdlm.exists() and twin.exists()):
        print(f"skipped {path.name}: {mdlm.name} or {twin.name} is missing")
        return
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for run_path, colour, name in [(mdlm, "C0", "MDLM (bound)"), (twin, "C3", "AR twin")]:
        run = json.loads(run_path.read_text(encoding="utf-8"))
        history = run["history"]
        ax.plot(history["val_step"], history["val_bpb"], "o-", ms=3, color=colour,
                label=f"{name}, held out")  # fmt: skip
        if run["objective"] == "ar":  # its training loss, averaged over 100 steps, in bits/byte
            scale = 1 / math.log(2) / run["bytes_per_token"]
            losses, steps = history["train_loss"], history["step"]
            means = [
                statistics.fmean(losses[i : i + 100]) * scale for i in range(0, len(losses), 100)
            ]
            ax.plot(steps[50::100][: len(means)], means, ":", color=colour,
                    label=f"{name}, training windows")  # fmt: skip
        unigram = run["unigram_bpb"]
    ax.axhline(unigram, color="grey", lw=1, label=f"unigram baseline: {unigram:.3f}")
    ax.set(
        xlabel="step (16 windows of 128 tokens)",
        ylabel="bits per byte",
        title="Tiny Shakespeare, 4,800 steps",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, path)


def save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})  # no version stamp: stable files
    plt.close(fig)
    print(f"wrote {path}")


FIGURES = {  # file name -> the function that draws it
    "forward_process.png": forward_process,
    "schedule.png": schedule,
    "loss_weight.png": loss_weight,
    "reveal_probability.png": reveal_probability,
    "lazy_calls.png": lazy_calls,
    "loss_curves.png": loss_curves,
    "settings_tried.png": settings_tried,
    "small_data.png": small_data,
    "cost_of_a_blank.png": cost_of_a_blank,
}


def main(argv=None) -> None:
    parser = cli.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "img"), help="folder for the PNGs")
    args = parser.parse_args(argv)
    out = cli.folder(args.out, "--out")
    torch.set_num_threads(1)  # tiny tensors: threads only wait for each other
    for name, draw in FIGURES.items():
        draw(out / name)


if __name__ == "__main__":
    main()
