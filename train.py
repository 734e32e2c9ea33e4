"""Generated from train_model.ipynb: edit the notebook, not this file.

The notebook's #| train cells as a script, which trains on one device or, under
torchrun, on several GPUs with DistributedDataParallel:

    python train.py --RUN_MODE=smoke --DATA=shakespeare
    torchrun --standalone --nproc_per_node=4 train.py --RUN_MODE=full --GRAD_ACCUM=4

--NAME=value sets a parameter of the parameters cell, as papermill's -p NAME value does.
What the #| export cells define comes from mdlm_model.py. Save the notebook and run
`python tools/nbexport.py train_model.ipynb` to regenerate this file;
tests/test_nbexport.py fails when this file and the notebook disagree.
"""

import os
import sys

import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from bpe_tokenizer import BPETokenizer
from mdlm_model import (
    EMA,
    CheckpointError,
    LivePlot,
    ModelConfig,
    Transformer,
    autocast,
    check_finite,
    check_resumable,
    claim_out_dir,
    compile_if_possible,
    end_processes,
    estimate_loss,
    evaluation_windows,
    final_figures,
    get_batch,
    last_step,
    learning_rate,
    load_checkpoint,
    loss_on_batch,
    main_process_first,
    make_scaler,
    mask_tokens,
    masked_nll,
    mean_over_processes,
    micro_batch_generators,
    no_sync_unless,
    out_of_memory_advice,
    pick_device,
    pick_precision,
    random_states,
    resolve_settings,
    restore_random_states,
    save_checkpoint,
    start_processes,
)
from tools.nbexport import command_line_parameters

RUN_MODE = "auto"  # "smoke", "first", "quick", "full"; "auto": full on a CUDA GPU, else quick
DATA = "gutenberg"  # a corpus name ("gutenberg", "shakespeare") or a .txt file or folder of .txt
OUT_DIR = ""  # checkpoint and metrics.json go here; "" is checkpoints/<objective>_<mode>_<data>
DEVICE = "auto"  # "auto" tries cuda, then mps, then cpu
PRECISION = "auto"  # autocast dtype: "auto" (bf16 where supported), "bf16", "fp16" or "fp32"
SEED = 1337
RESUME = False  # continue from OUT_DIR/ckpt.pt exactly where it stopped
OVERWRITE = False  # replace the run in OUT_DIR; without it (or RESUME) that is refused
OBJECTIVE = "mdlm"  # "mdlm" (masked diffusion) or "ar" (the autoregressive twin, same backbone)
TIME_CONDITIONING = True  # feed t to the network (adaLN); the MDLM paper found it unnecessary
CONSTANT_CONDITIONING = False  # the gated adaLN blocks fed a constant, not t (MDLM or twin)
COMPILE = False  # torch.compile the model: faster long GPU runs, slow first step
EMA_DECAY = 0.0  # > 0 keeps an average of the weights (section 6); off: it cost quick mode
STOP_AFTER = None  # stop early after this many steps, as if interrupted; then RESUME
# The sizes below default to the run mode's values (None); set a number to override one.
VOCAB_SIZE = None
SEQ_LEN = None
N_LAYER = None
N_HEAD = None
D_MODEL = None
BATCH_SIZE = None
GRAD_ACCUM = None
MAX_STEPS = None
LEARNING_RATE = None
EVAL_EVERY = None
MAX_CHARS = None  # train on only the first MAX_CHARS characters of the corpus
TEXT_ERRORS = "strict"  # "replace" reads a file that is not UTF-8, bad bytes becoming U+FFFD

# train.py only: --NAME=value on the command line replaces the value above
PARAMETERS = [
    "RUN_MODE",
    "DATA",
    "OUT_DIR",
    "DEVICE",
    "PRECISION",
    "SEED",
    "RESUME",
    "OVERWRITE",
    "OBJECTIVE",
    "TIME_CONDITIONING",
    "CONSTANT_CONDITIONING",
    "COMPILE",
    "EMA_DECAY",
    "STOP_AFTER",
    "VOCAB_SIZE",
    "SEQ_LEN",
    "N_LAYER",
    "N_HEAD",
    "D_MODEL",
    "BATCH_SIZE",
    "GRAD_ACCUM",
    "MAX_STEPS",
    "LEARNING_RATE",
    "EVAL_EVERY",
    "MAX_CHARS",
    "TEXT_ERRORS",
]
defaults = {name: globals()[name] for name in PARAMETERS}
globals().update(command_line_parameters(sys.argv[1:], defaults))


import json
import math
import time
from pathlib import Path

import torch

mode, S = resolve_settings(globals())  # every knob above, checked: a bad one stops here
data_name = Path(DATA).stem if DATA.endswith(".txt") or "/" in DATA else DATA
if OBJECTIVE == "ar":  # the twin never sees t: plain blocks, or the gated ones fed a constant
    variant = "_const" if CONSTANT_CONDITIONING else ""
else:  # t fed (adaLN), or ignored: by the gated blocks fed a constant, or by plain blocks
    variant = "" if TIME_CONDITIONING else "_const" if CONSTANT_CONDITIONING else "_notc"
run_name = (
    f"{OBJECTIVE}{variant}_{mode}_{data_name}"
    + (f"_seed{SEED}" if SEED != 1337 else "")  # another seed: another run of the same settings
)
out_dir = Path(OUT_DIR or f"checkpoints/{run_name}")
run_lock = None  # under torchrun (train.py), process 0 alone claims OUT_DIR and writes to it
if os.environ.get("RANK", "0") == "0":
    run_lock = claim_out_dir(out_dir, resume=RESUME, overwrite=OVERWRITE, run_name=run_name)
print(f"mode {mode}, objective {OBJECTIVE}, data {DATA}, writing to {out_dir}")
print(S)


device = pick_device(DEVICE)
rank, world_size, device = start_processes(device)  # DDP: here rank 0 of 1 (section 6)
dtype = pick_precision(device, PRECISION)
torch.manual_seed(SEED)
print(f"device {device}, precision {dtype}")


from corpus import join_documents, load_documents, split_documents, text_sha256, truncate_documents

documents = load_documents(DATA, errors=TEXT_ERRORS)  # [(file name, text), ...]
if S["max_chars"]:
    documents = truncate_documents(documents, S["max_chars"])
text = join_documents(documents)  # the whole corpus as one text, for its sha256
split = split_documents(documents)
train_text, val_text = split.train, split.val
print(f"{len(text):,} characters: {len(train_text):,} for training, {len(val_text):,} held out")
print(split.describe())
print(train_text[10_000:10_300])


tokenizer_path = (
    Path("data/tokenizers") / f"bpe_{text_sha256(train_text)[:16]}_{S['vocab_size']}.json"
)
with main_process_first():  # DDP: rank 0 trains it, the other ranks then load it
    if tokenizer_path.exists():
        tok = BPETokenizer.load(tokenizer_path)
        print(f"loaded {tokenizer_path}")
    else:
        started = time.perf_counter()
        tok = BPETokenizer.train(train_text, S["vocab_size"])
        tokenizer_path.parent.mkdir(parents=True, exist_ok=True)
        tok.save(tokenizer_path)
        print(f"trained in {time.perf_counter() - started:.1f} s, saved {tokenizer_path}")
V = tok.vocab_size
print(f"vocabulary V = {V}, mask_id = {tok.mask_id}")

sentence = "The little girl looked up at the enormous door."
ids = tok.encode(sentence)
print(f"{len(sentence.encode())} bytes -> {len(ids)} tokens:", [tok.decode([i]) for i in ids])


from shards import encode_shards, load_tokens, shard_name

shard_folder = Path("data/shards") / shard_name(documents, tok)
with main_process_first():  # DDP: rank 0 encodes, the other ranks then find the files
    encode_shards(documents, tok, shard_folder)  # once; an interrupted run resumes
train_ids = load_tokens(shard_folder, "train", tok)  # (N_train,) ids, memory-mapped
val_ids = load_tokens(shard_folder, "val", tok)  # (N_val,)
val_bytes = len(val_text.encode("utf-8"))
bytes_per_token = val_bytes / len(val_ids)
if len(val_ids) < S["seq_len"]:  # else the final figures would fail after all the training
    raise ValueError(
        f"the held-out text is {len(val_ids)} tokens, less than one window of SEQ_LEN = "
        f"{S['seq_len']}: use a longer text (MAX_CHARS, DATA), or lower SEQ_LEN"
    )
print(f"train {len(train_ids):,} tokens, val {len(val_ids):,} tokens, in {shard_folder}")
print(f"compression: {bytes_per_token:.2f} bytes per token on held-out text")


counts = val_ids.bincount(minlength=V).double()  # on the CPU, as val_ids
p = counts[counts > 0] / counts.sum()
unigram_bits_per_token = -(p * p.log2()).sum().item()
unigram_bpb = unigram_bits_per_token / bytes_per_token
print(f"unigram entropy: {unigram_bits_per_token:.3f} bits/token = {unigram_bpb:.3f} bits/byte")


config = ModelConfig(
    vocab_size=V,
    mask_id=tok.mask_id,
    seq_len=S["seq_len"],
    n_layer=S["n_layer"],
    n_head=S["n_head"],
    d_model=S["d_model"],
    time_conditioning=TIME_CONDITIONING and OBJECTIVE == "mdlm",  # the AR twin never sees t
    constant_conditioning=CONSTANT_CONDITIONING,  # the gated blocks without t (MDLM or twin)
    causal=OBJECTIVE == "ar",
)
model = Transformer(config).to(device)
print(config)
print(f"{model.num_params() / 1e6:.2f}M parameters")


import matplotlib.pyplot as plt
from tqdm.auto import tqdm

torch.manual_seed(SEED)  # the same initial weights in every process
# DDP: this process's share of the micro-batches, each with its own generator
generators = micro_batch_generators(SEED, S["grad_accum"], rank, world_size)
model = Transformer(config).to(device)
decay = [p for p in model.parameters() if p.dim() >= 2]
no_decay = [p for p in model.parameters() if p.dim() < 2]
optimizer = torch.optim.AdamW(
    [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
    lr=S["learning_rate"],
    betas=(0.9, 0.95),
    # one kernel for every weight, on CUDA only: on MPS (not run here) fused AdamW ignored the
    # gradient scaler's overflow flag until a 2026 fix (pytorch PR 186360)
    fused=device.type == "cuda",
)
scaler = make_scaler(device, dtype)
ema = EMA(model, S["ema_decay"]) if S["ema_decay"] else None
train_model, not_compiled = compile_if_possible(model, device) if COMPILE else (model, None)
if not_compiled:
    print(not_compiled)
if dist.is_initialized():  # DDP: under torchrun, backward averages the gradients of all ranks
    device_ids = [device.index] if device.type == "cuda" else None
    train_model = DDP(train_model, device_ids=device_ids)
ckpt_path = out_dir / "ckpt.pt"
corpus_sha = text_sha256(text)
tokens_per_step = S["batch_size"] * S["grad_accum"] * S["seq_len"]  # all processes together
history = {"step": [], "train_loss": [], "val_step": [], "val_nats_per_token": [], "val_bpb": []}
start_step, wall_before = 0, 0.0

if RESUME:
    checkpoint = load_checkpoint(ckpt_path)  # on the CPU: the random states must stay there
    check_resumable(checkpoint, config, tok)
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scaler.load_state_dict(checkpoint["scaler"])
    if ema:
        if not checkpoint.get("ema"):
            raise CheckpointError(f"{ckpt_path} has no average of the weights: set EMA_DECAY = 0")
        ema.load_state_dict(checkpoint["ema"])
    restore_random_states(checkpoint["rng"], generators, rank, world_size)  # DDP: this rank's
    start_step = checkpoint["step"]
    history = checkpoint["metrics"]["history"]
    wall_before = checkpoint["metrics"]["wall_s"]
    print(f"resumed from {ckpt_path} at step {start_step}")


def evaluate():
    nats = estimate_loss(
        model,
        val_ids,
        seq_len=S["seq_len"],
        num_windows=S["eval_windows"],
        num_times=S["eval_times"],
        device=device,
        dtype=dtype,
    )
    return nats, nats / math.log(2) / bytes_per_token  # nats/token, bits/byte


def plot(history):
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(
        history["step"],
        [x / math.log(2) / bytes_per_token for x in history["train_loss"]],
        alpha=0.4,
        label="train (one batch)",
    )
    ax.plot(history["val_step"], history["val_bpb"], "o-", label="held-out NELBO")
    ax.axhline(unigram_bpb, color="gray", ls="--", label="unigram baseline")
    ax.set(
        xlabel="step", ylabel="bits per byte (upper bound for MDLM)", title=f"{OBJECTIVE} on {DATA}"
    )
    ax.legend()
    plt.close(fig)
    return fig


def metrics_now(step, wall_s):
    return {
        "run": run_name,
        "seed": SEED,
        "objective": OBJECTIVE,
        "data": DATA,
        "mode": mode,
        "time_conditioning": config.time_conditioning,
        "constant_conditioning": config.constant_conditioning,
        "processes": world_size,
        "val_bpb": history["val_bpb"][-1] if history["val_bpb"] else None,
        "val_nats_per_token": history["val_nats_per_token"][-1] if history["val_bpb"] else None,
        "unigram_bpb": unigram_bpb,
        "bytes_per_token": bytes_per_token,
        "steps": step,
        "tokens_seen": step * tokens_per_step,
        "train_tokens_per_s": (step - start_step)
        * tokens_per_step
        / max(wall_s - wall_before, 1e-9),
        "params": model.num_params(),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "dtype": str(dtype).removeprefix("torch."),
        "wall_s": wall_s,
        "held_out": {  # split_documents: the last tenth of every file
            "files": len(split.held_out),
            "files_contributing": sum(1 for _, chars in split.held_out if chars),
            "characters": sum(chars for _, chars in split.held_out),
            "tokens": len(val_ids),
        },
        "settings": S,
        "history": history,
    }


stop = last_step(start_step, S["max_steps"], STOP_AFTER)  # at least one step, or refused
warmup = max(1, min(200, S["max_steps"] // 20))
rng = random_states(generators)  # DDP: every rank's random states, for a checkpoint
live_plot = LivePlot(out_dir / "training.png")
if rank == 0:  # DDP: rank 0 alone draws, evaluates and saves
    live_plot.show(plot(history))
started = time.perf_counter()
model.train()
steps = range(start_step, stop)
for step in tqdm(steps, initial=start_step, total=stop, desc="training", disable=rank > 0):
    for group in optimizer.param_groups:
        group["lr"] = learning_rate(step, S["max_steps"], S["learning_rate"], warmup)
    loss_sum = 0.0
    with out_of_memory_advice():
        for micro_step, generator in enumerate(generators):  # DDP: this rank's share
            x0 = get_batch(train_ids, S["batch_size"], S["seq_len"], generator).to(device)
            last = micro_step == len(generators) - 1
            with no_sync_unless(last, train_model):  # DDP: average gradients on the last
                with autocast(device, dtype):
                    loss = loss_on_batch(train_model, x0, generator) / len(generators)
                scaler.scale(loss).backward()
            loss_sum += loss.item()
    loss_sum = mean_over_processes(loss_sum, device)  # DDP: the loss of the whole batch
    check_finite(loss_sum, step, ckpt_path)
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    if ema:
        ema.update(model)
    history["step"].append(step + 1)
    history["train_loss"].append(loss_sum)

    if (step + 1) % S["eval_every"] == 0 or step + 1 == stop:
        rng = random_states(generators)  # DDP: every rank's, gathered
        if rank > 0:  # DDP: rank 0 alone evaluates, saves and draws
            continue
        nats, bpb = evaluate()
        history["val_step"].append(step + 1)
        history["val_nats_per_token"].append(nats)
        history["val_bpb"].append(bpb)
        wall_s = wall_before + time.perf_counter() - started
        save_checkpoint(
            ckpt_path,
            model=model,
            tokenizer=tok,
            step=step + 1,
            optimizer=optimizer,
            scaler=scaler,
            rng=rng,
            metrics=metrics_now(step + 1, wall_s),
            settings=S,
            corpus_sha256=corpus_sha,
            ema=ema,
        )
        live_plot.show(plot(history))
end_processes(rank)  # DDP: training is over; the other processes leave here

metrics = metrics_now(stop, wall_before + time.perf_counter() - started)
(out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
print(
    f"step {stop}: held-out {metrics['val_nats_per_token']:.4f} nats/token = "
    f"{metrics['val_bpb']:.4f} bits/byte (unigram baseline {unigram_bpb:.4f}, "
    f"ratio {metrics['val_bpb'] / unigram_bpb:.3f})"
)
print(
    f"{metrics['train_tokens_per_s']:,.0f} training tokens/s on {device}, {metrics['wall_s']:.0f} s"
)


final = None
if stop == S["max_steps"]:  # a finished run gets the careful figures; an interrupted one waits
    started_final = time.perf_counter()
    final = final_figures(
        model,
        tok,
        val_ids,
        seq_len=S["seq_len"],
        num_windows=S["final_windows"],
        order_windows=S["order_windows"],
        num_times=S["final_times"],
        ema=ema,
        device=device,
        dtype=dtype,
    )
    final["seconds"] = time.perf_counter() - started_final
    metrics["final"] = final
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    save_checkpoint(
        ckpt_path,
        model=model,
        tokenizer=tok,
        step=stop,
        optimizer=optimizer,
        scaler=scaler,
        rng=rng,
        metrics=metrics,
        settings=S,
        corpus_sha256=corpus_sha,
        ema=ema,
    )
    name = "NELBO, an upper bound" if OBJECTIVE == "mdlm" else "exact loss"
    key = "nelbo" if OBJECTIVE == "mdlm" else "nll"
    print(
        f"final figures on {final['windows']} held-out windows ({final['tokens']:,} tokens, "
        f"{final['bytes']:,} bytes), {final['seconds']:.0f} s:"
    )
    print(f"  {name:<40} {final[key][0]:.4f} ± {final[key][1]:.4f} bits/byte")
    if ema:
        averaged, gain = final["ema"][key], final["ema"]["ema - trained"]
        print(f"  {'the same, average of the weights':<40} {averaged[0]:.4f} ± {averaged[1]:.4f}")
        print(f"  {'average minus trained, paired':<40} {gain[0]:+.4f} ± {gain[1]:.4f} bits/byte")
    if OBJECTIVE == "mdlm":
        print(f"on {final['order_windows']} of them, revealing one token per network call:")
        for label, figure in [
            ("NELBO of these windows", "nelbo, order windows"),
            ("exact likelihood, left to right", "left-to-right"),
            ("exact likelihood, one random order", "random"),
            ("left to right minus NELBO, paired", "left-to-right - nelbo"),
            ("random order minus NELBO, paired", "random - nelbo"),
        ]:
            print(f"  {label:<40} {final[figure][0]:.4f} ± {final[figure][1]:.4f} bits/byte")


import numpy as np

c_of_t = None
if OBJECTIVE == "mdlm" and final is not None:  # a finished MDLM run
    windows = evaluation_windows(val_ids, S["seq_len"], S["eval_windows"]).to(device)  # (W, L)
    times = sorted({(k + 0.5) / 32 for k in range(32)} | {(k + 0.5) / 8 for k in range(8)})
    generator_c = torch.Generator().manual_seed(0)
    cost = {}  # t -> c(t), nats per masked token
    with torch.no_grad():
        for t_value in times:
            t = torch.full((len(windows),), t_value, device=device)
            z_t, is_masked = mask_tokens(windows, t, tok.mask_id, generator_c)
            with autocast(device, dtype):
                logits = model(z_t, t, fp32_logits=True)  # (64, L, V)
            cost[t_value] = (masked_nll(logits, windows, is_masked).sum() / is_masked.sum()).item()
    grid_32 = [(k + 0.5) / 32 for k in range(32)]
    c_of_t = {"t": grid_32, "c": [cost[t_value] for t_value in grid_32]}
    nats_to_bpb = 1 / math.log(2) / bytes_per_token
    bound_32 = sum(c_of_t["c"]) / 32  # the midpoint rule: the integral of c over [0, 1]
    bound_8 = sum(cost[(k + 0.5) / 8] for k in range(8)) / 8

    def c_at(t_value):  # linear between the measured points, flat beyond them
        return float(np.interp(t_value, grid_32, c_of_t["c"]))

    rising = sum(b > a for a, b in zip(c_of_t["c"], c_of_t["c"][1:]))
    first, last = c_of_t["c"][0], c_of_t["c"][-1]
    print(
        f"c(t) rises in {rising} of 31 steps between neighbouring times: {first:.2f} nats at "
        f"t = {grid_32[0]:.3f}, {last:.2f} at t = {grid_32[-1]:.3f}"
    )
    print(f"bound, midpoint rule at 32 times: {bound_32 * nats_to_bpb:.4f} bits/byte")
    side = "above" if bound_8 > bound_32 else "below"
    print(
        f"bound, midpoint rule at 8 times:  {bound_8 * nats_to_bpb:.4f} bits/byte "
        f"({side} by {abs(bound_8 - bound_32) * nats_to_bpb:.4f})"
    )
    discrete = {
        T: sum(c_at(i / T) for i in range(1, T + 1)) / T for T in [4 * 2**k for k in range(9)]
    }
    for T, value in discrete.items():
        print(f"  L_T with T = {T:4d} steps: {value * nats_to_bpb:.4f} bits/byte")
    print("L_T >= L_infinity for every T:", all(value >= bound_32 for value in discrete.values()))
    pooled = sum(2 * t_value * c for t_value, c in zip(grid_32, c_of_t["c"])) / 32
    print(
        f"pooled masked mean {pooled * nats_to_bpb:.4f} >= bound {bound_32 * nats_to_bpb:.4f}:",
        pooled >= bound_32,
    )
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(grid_32, [c * nats_to_bpb for c in c_of_t["c"]], "o-", ms=3)
    ax.axhline(bound_32 * nats_to_bpb, color="gray", ls="--", label="its mean: the bound")
    ax.set(
        xlabel="t (fraction masked)",
        ylabel="c(t), bits per byte of a masked token",
        title="the cost of a blank against the masking rate",
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "c_of_t.png", dpi=100)
    plt.show()
    metrics["c_of_t"] = c_of_t
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
if run_lock:  # the run has written everything: OUT_DIR is free for the next one
    run_lock.release()
