"""Generated from train_model.ipynb: edit the notebook, not this file.

Re-run the notebook, or `python tools/nbexport.py train_model.ipynb`, to regenerate it;
tests/test_nbexport.py fails when this file and the notebook disagree.
"""

import atexit
import json
import math
import os
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from bpe_tokenizer import DEFAULT_SPECIAL_TOKENS, BPETokenizer

try:
    import fcntl  # the lock on OUT_DIR (section 1)
except ImportError:  # Windows has no fcntl: there OUT_DIR is not locked
    fcntl = None

SOURCE_SHA256 = None  # the version of this code: set when mdlm_model.py is written (section 6)


# The run modes: smoke (CI, seconds), first (a first real run: three minutes of training on a
# laptop's CPU), quick (a CPU, about twenty minutes), full (a GPU). Every size a notebook
# parameter leaves at None comes from here.
# fmt: off
RUN_MODES = {
    "smoke": dict(vocab_size=384, seq_len=64, n_layer=2, n_head=2, d_model=64, batch_size=8,
                  grad_accum=1, max_steps=40, learning_rate=3e-3, eval_every=20,
                  max_chars=200_000, eval_windows=16, eval_times=4, final_windows=16,
                  order_windows=4, final_times=4),
    "first": dict(vocab_size=1024, seq_len=64, n_layer=2, n_head=4, d_model=128, batch_size=32,
                  grad_accum=1, max_steps=3000, learning_rate=2e-3, eval_every=300,
                  max_chars=None, eval_windows=32, eval_times=4, final_windows=256,
                  order_windows=16, final_times=16),
    "quick": dict(vocab_size=3072, seq_len=128, n_layer=4, n_head=4, d_model=128, batch_size=16,
                  grad_accum=1, max_steps=3304, learning_rate=1e-3, eval_every=250,
                  max_chars=None, eval_windows=64, eval_times=8, final_windows=512,
                  order_windows=64, final_times=32),
    "full": dict(vocab_size=8192, seq_len=256, n_layer=8, n_head=8, d_model=512, batch_size=128,
                 grad_accum=1, max_steps=20_000, learning_rate=6e-4, eval_every=1000,
                 max_chars=None, eval_windows=512, eval_times=8, final_windows=512,
                 order_windows=64, final_times=32),
}
# fmt: on


SWITCH_KNOBS = ("RESUME", "OVERWRITE", "TIME_CONDITIONING", "CONSTANT_CONDITIONING", "COMPILE")
TEXT_KNOBS = ("RUN_MODE", "DATA", "OUT_DIR", "DEVICE", "PRECISION", "OBJECTIVE", "TEXT_ERRORS")
# The knobs a run mode fills in, each with the least that works: BPE starts from the 256 bytes
# and its special tokens; in a window of one token there is nothing to predict from.
SIZE_KNOBS = {
    "VOCAB_SIZE": 256 + len(DEFAULT_SPECIAL_TOKENS),
    "SEQ_LEN": 2,
    "N_LAYER": 1,
    "N_HEAD": 1,
    "D_MODEL": 1,
    "BATCH_SIZE": 1,
    "GRAD_ACCUM": 1,
    "MAX_STEPS": 1,
    "EVAL_EVERY": 1,
    "MAX_CHARS": 1,
}


def resolve_settings(knobs: dict) -> tuple[str, dict]:
    """(run mode, S) from the knobs of the parameters cell, after checking every one of them.

    knobs: the knobs by name, {"RUN_MODE": "auto", "MAX_STEPS": None, ...} (the notebook passes
    its globals()). S holds the run mode's sizes, each replaced by its knob where that is set,
    and ema_decay. A bad knob raises ValueError naming it and the fix.
    """

    def refuse(name, rule):
        raise ValueError(f"{name} = {knobs[name]!r}: {rule}")

    def is_number(value, whole=False):  # True and False are ints to Python, not to a learner
        return isinstance(value, int if whole else (int, float)) and not isinstance(value, bool)

    for name in SWITCH_KNOBS:
        if not isinstance(knobs[name], bool):  # "false" would count as True
            refuse(name, "must be True or False")
    for name in TEXT_KNOBS:
        if not isinstance(knobs[name], str):
            refuse(name, "must be a string, in quotes")
    if knobs["RUN_MODE"] not in ("auto", *RUN_MODES):
        refuse("RUN_MODE", f"must be 'auto' or one of {list(RUN_MODES)}")
    if knobs["OBJECTIVE"] not in ("mdlm", "ar"):
        refuse("OBJECTIVE", "must be 'mdlm' (masked diffusion) or 'ar' (the autoregressive twin)")
    if knobs["TEXT_ERRORS"] not in ("strict", "replace"):
        refuse("TEXT_ERRORS", "must be 'strict' (stop on bytes that are not UTF-8) or 'replace'")
    if not knobs["DATA"]:
        refuse("DATA", "must name a corpus ('gutenberg', 'shakespeare') or a .txt file or folder")
    both = knobs["TIME_CONDITIONING"] and knobs["CONSTANT_CONDITIONING"]
    if both and knobs["OBJECTIVE"] == "mdlm":  # the twin never sees t: TIME_CONDITIONING is moot
        refuse("CONSTANT_CONDITIONING", "feeds the blocks a constant instead of t: set "
               "TIME_CONDITIONING = False")  # fmt: skip
    if knobs["RESUME"] and knobs["OVERWRITE"]:
        refuse("OVERWRITE", "replaces the run in OUT_DIR that RESUME = True would continue: "
               "set one of them to False")  # fmt: skip
    if not is_number(knobs["SEED"], whole=True) or not -(2**63) <= knobs["SEED"] < 2**64:
        refuse("SEED", "must be a whole number that torch.manual_seed takes, 0 to 2**64 - 1")
    if not is_number(knobs["EMA_DECAY"]) or not 0 <= knobs["EMA_DECAY"] < 1:  # nan fails too
        refuse("EMA_DECAY", "must be a number in [0, 1): 0 is off, 0.995 averages ~200 steps")
    stop_after = knobs["STOP_AFTER"]
    if stop_after is not None and (not is_number(stop_after, whole=True) or stop_after < 1):
        refuse("STOP_AFTER", "must be None (train to MAX_STEPS) or a number of steps, 1 or more")
    rate = knobs["LEARNING_RATE"]
    if rate is not None and (not is_number(rate) or not 0 < rate < math.inf):
        refuse("LEARNING_RATE", "must be None (the run mode's) or a positive number, e.g. 1e-3")
    for name, least in SIZE_KNOBS.items():
        value = knobs[name]
        if value is not None and (not is_number(value, whole=True) or value < least):
            refuse(name, f"must be None (the run mode's) or a whole number, {least} or more")

    mode = knobs["RUN_MODE"]
    if mode == "auto":
        mode = "full" if torch.cuda.is_available() else "quick"
    S = dict(RUN_MODES[mode], ema_decay=knobs["EMA_DECAY"])
    for name in [*SIZE_KNOBS, "LEARNING_RATE"]:  # the run mode's value, unless the knob is set
        if knobs[name] is not None:
            S[name.lower()] = knobs[name]
    shape = ", ".join(  # the values and where each came from: a knob, or the run mode
        f"{name} = {S[name.lower()]}" + ("" if knobs[name] is not None else f" ({mode} mode's)")
        for name in ("D_MODEL", "N_HEAD")
    )
    if S["d_model"] % S["n_head"]:
        raise ValueError(f"{shape}: the heads split D_MODEL evenly, so N_HEAD must divide it")
    if S["d_model"] // S["n_head"] % 2:
        raise ValueError(
            f"{shape}: D_MODEL / N_HEAD = {S['d_model'] // S['n_head']} channels per head, but "
            "RoPE turns them in pairs: choose N_HEAD and D_MODEL for an even number"
        )
    return mode, S


RUN_FILES = ("ckpt.pt", "metrics.json", "c_of_t.png")  # what a run leaves in its OUT_DIR
held_locks = {}  # OUT_DIR (resolved) -> the RunLock this process holds on it


class OutDirError(RuntimeError):
    """OUT_DIR is in use by another run, or holds a run that this one would replace."""


class RunLock:
    """OUT_DIR/train.lock while this process trains there: a line naming it, under an OS lock.

    flock dies with its process, so a crash or a kill leaves no stale lock: the file may stay
    behind, and the next run takes it over. Left out: Windows, which has no flock (and which
    this project has not run on); there OUT_DIR is not locked.
    """

    def __init__(self, out_dir, holder: str):
        self.path = Path(out_dir) / "train.lock"
        while True:
            self.file = open(self.path, "a+", encoding="utf-8")  # "a+" never empties another's
            if fcntl is None:
                break
            try:
                fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.file.seek(0)
                other = self.file.read().strip() or "another process"
                self.file.close()
                raise OutDirError(
                    f"{out_dir} is in use by {other}: wait for that run to end, or give this "
                    "one another OUT_DIR (a Jupyter kernel holds it until its run has finished "
                    "or the kernel restarts)"
                ) from None
            # subtle: a run that ended just now may have removed the file we opened: open again
            opened = os.fstat(self.file.fileno()).st_ino
            if self.path.exists() and self.path.stat().st_ino == opened:
                break
            self.file.close()
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"{holder}\n")
        self.file.flush()
        atexit.register(self.release)  # a run that stops on an error leaves no lock file either

    def release(self) -> None:
        """Remove the file, then drop the lock (so a run that opens it in between is refused)."""
        if not self.file.closed:
            self.path.unlink(missing_ok=True)
            self.file.close()


def claim_out_dir(out_dir, *, resume=False, overwrite=False, run_name="") -> RunLock:
    """Lock OUT_DIR for this run; refuse to replace the run it holds unless asked to.

    Refused: OUT_DIR locked by another process; a checkpoint or metrics.json already there,
    unless resume (RESUME) continues it or overwrite (OVERWRITE) replaces it, its files
    deleted now so that OUT_DIR never mixes two runs; resume with no checkpoint to resume.
    A process trains one run at a time: claiming a folder releases any other it held.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutDirError(f"OUT_DIR {out_dir} is a file: give a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    key = out_dir.resolve()
    for other in [path for path in held_locks if path != key]:
        held_locks.pop(other).release()
    if key not in held_locks:  # else this process holds it: a Jupyter cell run again
        since = time.strftime("%Y-%m-%d %H:%M:%S")
        held_locks[key] = RunLock(out_dir, f"process {os.getpid()} ({run_name}, since {since})")
    found = [name for name in RUN_FILES if (out_dir / name).exists()]
    problem = None
    if resume and not (out_dir / "ckpt.pt").exists():
        problem = f"RESUME = True, but {out_dir} holds no ckpt.pt to continue: set RESUME = False"
    elif found and not resume and not overwrite:
        problem = (
            f"{out_dir} already holds a run ({describe_run(out_dir, found)}): set RESUME = True "
            "to continue it, OUT_DIR to another folder, or OVERWRITE = True to replace it"
        )
    if problem:
        held_locks.pop(key).release()
        raise OutDirError(problem)
    if found and overwrite:
        for name in found:
            (out_dir / name).unlink()
        print(f"OVERWRITE = True: removed {', '.join(found)} of the run in {out_dir}")
    return held_locks[key]


def describe_run(out_dir, found) -> str:
    """What OUT_DIR holds: "mdlm_smoke_tiny, seed 1337, 40 of 40 steps; ckpt.pt, metrics.json"."""
    try:
        metrics = json.loads((Path(out_dir) / "metrics.json").read_text())
        run = f"{metrics['run']}, seed {metrics['seed']}, "
        run += f"{metrics['steps']} of {metrics['settings']['max_steps']} steps; "
    except (OSError, ValueError, KeyError, TypeError):  # no metrics.json, or not ours
        run = ""
    return run + ", ".join(found)


def pick_device(name: str = "auto", knob: str = "DEVICE") -> torch.device:
    """cuda, then mps (Apple Silicon), then cpu for "auto"; else the device named, if it is here.

    A typo ("gpu") or a device this machine lacks is refused now, naming `knob` (the setting
    that chose it: "--device" for a script), not by an assertion inside torch much later.
    """
    if name == "auto":
        return auto_device()
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):  # torch.device("gpu"): a long list of every device type
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"{knob} {name!r} is not a device: use 'auto', 'cpu', 'cuda' or 'mps'")
    if device.type == "cuda" and not torch.cuda.is_available():
        built = "" if torch.version.cuda else " (this torch was built without CUDA)"
        raise ValueError(f"{knob} {name!r}, but torch finds no CUDA GPU{built}: use 'auto'")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        last = torch.cuda.device_count() - 1
        raise ValueError(f"{knob} {name!r}, but this machine's GPUs are cuda:0 to cuda:{last}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{knob} {name!r}, but there is no Apple GPU (MPS) here: use 'auto'")
    return device


def auto_device() -> torch.device:
    """cuda, then mps (Apple Silicon), then cpu: the best device this machine has."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


PRECISIONS = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def pick_precision(device: torch.device, name: str = "auto") -> torch.dtype:
    """The autocast dtype: bf16 where the hardware has it, fp16 on older GPUs, fp32 on CPU.

    fp16 keeps 10 mantissa bits but only a narrow exponent range, so small gradients underflow to
    zero: fp16 training needs a gradient scaler (`make_scaler`). bf16 has fp32's range and needs
    none. CPU autocast to bf16 exists but is slower than fp32 on most CPUs, so the CPU gets fp32.
    A Mac gets bf16 from macOS 14 on and fp32 before: not fp16, whose gradient scaler failed on
    MPS in torch 2.5 (it made float64). name "bf16", "fp16" or "fp32" asks for one, e.g. to try
    fp16 and its scaler on a bf16 GPU.
    """
    device = torch.device(device)
    if name not in ("auto", *PRECISIONS):
        raise ValueError(f"PRECISION must be auto or one of {list(PRECISIONS)}, not {name!r}")
    has_bf16 = True
    if device.type == "cuda":
        has_bf16 = torch.cuda.is_bf16_supported()
    elif device.type == "mps":  # not run by this project: there is no Mac here
        has_bf16 = torch.backends.mps.is_macos_or_newer(14, 0)
        has_bf16 = has_bf16 and torch.amp.is_autocast_available("mps")  # from torch 2.5
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if has_bf16 else torch.float16
        if device.type == "mps":
            return torch.bfloat16 if has_bf16 else torch.float32
        return torch.float32
    if name == "bf16" and not has_bf16:
        raise ValueError(f"this {device.type} device has no bf16: use PRECISION='fp16' or 'auto'")
    return PRECISIONS[name]


def autocast(device: torch.device, dtype: torch.dtype):
    """Mixed precision for the forward pass; in fp32, no autocast at all."""
    if dtype == torch.float32:
        return nullcontext()  # also on devices autocast does not know
    return torch.autocast(torch.device(device).type, dtype=dtype)


def make_scaler(device: torch.device, dtype: torch.dtype) -> torch.amp.GradScaler:
    """A gradient scaler that is active only for fp16 (it multiplies the loss before backward
    so small gradients survive, and divides them again before the optimizer step)."""
    return torch.amp.GradScaler(torch.device(device).type, enabled=dtype == torch.float16)


DEVICES_WITHOUT_FLOAT64 = {"mps"}  # Apple's Metal GPUs have no 64-bit floats at all


def float64_device(device) -> torch.device:
    """Where float64 work happens: on `device` itself, or on the CPU if `device` has no float64.

    The samplers draw tokens from float64 probabilities (sampling.ipynb, section 3). On MPS even
    creating a float64 tensor fails ("Cannot convert a MPS Tensor to float64 dtype"), so on a Mac
    the network runs on the GPU and the draws on the CPU; elsewhere both stay on one device.
    """
    device = torch.device(device)
    return torch.device("cpu") if device.type in DEVICES_WITHOUT_FLOAT64 else device


def to_float64(x: torch.Tensor) -> torch.Tensor:
    """x as float64 on float64_device(x.device): the one way this project makes float64 from a
    tensor that may live on the model's device."""
    return x.to(float64_device(x.device), torch.float64)


def compile_if_possible(model: nn.Module, device: torch.device):
    """(torch.compile(model), None), or (model, why not) where this project does not compile.

    torch.compile needs Triton on a CUDA GPU, or a C++ compiler on the CPU. Its Apple Silicon
    (MPS) and Windows support is experimental and this project has run neither, so there the
    model runs uncompiled: slower, with the same results.
    """
    if torch.device(device).type == "mps":
        return model, "torch.compile is skipped on MPS (Apple Silicon): the model runs eagerly"
    if sys.platform == "win32":
        return model, "torch.compile is skipped on Windows: the model runs eagerly"
    return torch.compile(model), None


def start_processes(device: torch.device) -> tuple[int, int, torch.device]:
    """(rank, world_size, device) of this process: rank 0 of 1 on `device`, unless torchrun
    started it.

    torchrun starts one process per GPU and tells each its RANK (0 to N - 1, over all machines),
    its LOCAL_RANK (on this machine) and the WORLD_SIZE N. Each process takes the GPU of its
    LOCAL_RANK and joins the others: NCCL between CUDA GPUs, gloo on the CPU. Only rank 0 prints;
    the others' print() goes nowhere (their warnings and errors still show).
    """
    if "RANK" not in os.environ:  # this notebook, or python train.py
        return 0, 1, device
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise RuntimeError(
            f"torchrun trains on CUDA GPUs (NCCL) or on the CPU (gloo), not on {device.type}: "
            "set DEVICE='cpu', or train in one process (python train.py or this notebook)"
        )
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend)
    if rank > 0:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115  only rank 0 prints
    print(f"rank 0 of {dist.get_world_size()} processes ({backend})")
    return rank, dist.get_world_size(), device


@contextmanager
def main_process_first():
    """Rank 0 runs the `with` block first while the other ranks wait; then they run it, and find
    on disk what rank 0 made there (a tokenizer, token shards). Without torchrun: the block.

    Subtle: the others wait in a barrier, which times out after 30 minutes with gloo (10 with
    NCCL): a corpus that takes longer to encode should be encoded first, in one process.
    """
    first = not dist.is_initialized() or dist.get_rank() == 0
    if not first:
        dist.barrier()  # wait until rank 0 is through the block
    yield
    if first and dist.is_initialized():
        dist.barrier()  # let the others in


def unwrapped(model: nn.Module) -> nn.Module:
    """The network inside DDP's wrapper (.module) and torch.compile's (._orig_mod). Their
    state_dict keys start with "module." and "_orig_mod."; the network's own do not."""
    while isinstance(model, DDP) or hasattr(model, "_orig_mod"):
        model = model.module if isinstance(model, DDP) else model._orig_mod
    return model


def get_batch(ids: torch.Tensor, batch_size: int, seq_len: int, generator: torch.Generator):
    """`batch_size` random windows of `seq_len` tokens from a 1-D stream of ids (a tensor, or
    the TokenStream of a split's shards), on the CPU."""
    if len(ids) < seq_len:
        raise ValueError(
            f"the text has {len(ids)} tokens but one training sequence needs seq_len = {seq_len}: "
            "use a longer text, or lower SEQ_LEN"
        )
    starts = torch.randint(len(ids) - seq_len + 1, (batch_size,), generator=generator)  # (B,)
    return torch.stack([ids[s : s + seq_len] for s in starts.tolist()])  # (B, L) long


def alpha(t: torch.Tensor) -> torch.Tensor:
    """The linear schedule alpha_t = 1 - t: the probability that a token is still clean at t."""
    return 1 - t


def alpha_prime(t: torch.Tensor) -> torch.Tensor:
    """d alpha_t / dt for the linear schedule. Change both functions together."""
    return -torch.ones_like(t)


def sample_times(batch_size: int, generator: torch.Generator, eps: float = 1e-3) -> torch.Tensor:
    """Stratified times: one uniform offset u, then t_i = (u + i / B) mod 1 for i = 0, ..., B - 1.

    Every batch covers [0, 1) evenly instead of clumping, which lowers the variance of the loss
    estimate at no cost. t is kept above eps because the loss weight 1/t blows up at 0.
    """
    u = torch.rand((), generator=generator)
    t = (u + torch.arange(batch_size) / batch_size) % 1  # (B,) evenly spread over [0, 1)
    return eps + (1 - eps) * t  # (B,) in [eps, 1)


def mask_tokens(x0: torch.Tensor, t: torch.Tensor, mask_id: int, generator: torch.Generator):
    """Draw z_t ~ q(z_t | x0): each token independently becomes mask_id with prob. 1 - alpha_t.

    x0 (B, L) long, t (B,) -> z_t (B, L) long and is_masked (B, L) bool, on x0's device. The
    uniforms come from a CPU generator so a resumed run draws exactly the same masks.
    """
    u = torch.rand(x0.shape, generator=generator).to(x0.device)  # (B, L) uniform
    is_masked = u < (1 - alpha(t.to(x0.device)))[:, None]  # (B, L) bool
    return torch.where(is_masked, mask_id, x0), is_masked


def masked_nll(logits, x0, is_masked):
    """(B,) each sequence's negative log-likelihood, in nats, summed over its masked positions.

    logits (B, L, V), x0 (B, L) the clean tokens, is_masked (B, L). Visible positions add
    nothing: the reverse process carries them over (SUBS), so their term is log 1 = 0 whatever
    the network outputs there.
    """
    B, L, V = logits.shape
    nll = F.cross_entropy(logits.float().reshape(-1, V), x0.reshape(-1), reduction="none")
    return (nll.view(B, L) * is_masked).sum(dim=1)  # (B,)


def mdlm_loss(logits, x0, is_masked, t):
    """The continuous-time NELBO in nats per token, averaged over the batch.

    logits (B, L, V) are the denoiser's outputs on z_t, x0 (B, L) the clean tokens, is_masked
    (B, L) where z_t is the mask, t (B,).
    """
    weight = -alpha_prime(t) / (1 - alpha(t))  # (B,) = 1/t for the linear schedule
    L = x0.size(1)
    return (weight * masked_nll(logits, x0, is_masked)).mean() / L  # by L, never by the masks


def ar_loss(logits, x0):
    """The autoregressive twin's loss: position l predicts token l + 1 (GPT's cross-entropy)."""
    V = logits.size(-1)
    return F.cross_entropy(logits[:, :-1].float().reshape(-1, V), x0[:, 1:].reshape(-1))


@dataclass
class ModelConfig:
    """Everything needed to rebuild the network; it is saved in every checkpoint."""

    vocab_size: int  # V, special tokens included
    mask_id: int  # the absorbing state m; the network never predicts it (SUBS)
    seq_len: int = 256  # L, the longest sequence (it sizes the RoPE tables)
    n_layer: int = 6
    n_head: int = 6
    d_model: int = 384
    time_conditioning: bool = True  # adaLN on t; False makes the network ignore t
    constant_conditioning: bool = False  # the same adaLN blocks, fed a constant instead of t
    causal: bool = False  # True for the autoregressive twin: attention looks left only
    dropout: float = 0.0
    rope_base: float = 10_000.0

    def __post_init__(self):
        if self.d_model % self.n_head or self.d_model // self.n_head % 2:
            raise ValueError(
                f"d_model = {self.d_model}, n_head = {self.n_head}: each head gets d_model / "
                "n_head channels, which RoPE turns in pairs: that must be a whole, even number"
            )
        if self.time_conditioning and self.constant_conditioning:
            raise ValueError(
                "time_conditioning and constant_conditioning exclude each other: the adaLN "
                "blocks are fed either t or a constant. Set one of them to False"
            )

    @property
    def adaln(self) -> bool:
        """adaLN-Zero blocks (fed t, or a constant), rather than plain pre-norm blocks."""
        return self.time_conditioning or self.constant_conditioning


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight.

    F.rms_norm computes exactly this formula (checked below) in one fused kernel, in fp32
    internally; written out with pow, mean and rsqrt it is four passes over memory.
    """

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return F.rms_norm(x, (x.size(-1),), self.weight, self.eps)


def rope_tables(seq_len: int, head_dim: int, base: float = 10_000.0):
    """cos and sin of the angle l * theta_i for every position l and channel pair i."""
    theta = base ** (-torch.arange(0, head_dim, 2).float() / head_dim)  # (hd/2,)
    angles = torch.arange(seq_len).float()[:, None] * theta[None, :]  # (L, hd/2)
    return angles.cos(), angles.sin()


def apply_rope(x, cos, sin):
    """Rotate channel pairs (x_i, x_{i + hd/2}) by their angle. x (B, nh, L, hd), cos/sin (L, hd/2).

    The pairs are the two halves of the head (GPT-NeoX's layout), not neighbours: the same
    rotation, laid out so that both halves are contiguous slices.
    """
    x1, x2 = x.float().chunk(2, dim=-1)  # 2 x (B, nh, L, hd/2)
    rotated = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)  # (B, nh, L, hd)
    return rotated.type_as(x)


class SwiGLU(nn.Module):
    """W2(silu(x W1) * x W3): a gated MLP with hidden width 8/3 D, rounded up to 64."""

    def __init__(self, dim: int):
        super().__init__()
        hidden = 64 * math.ceil(8 * dim / 3 / 64)
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class SelfAttention(nn.Module):
    """Multi-head attention over the whole sequence (bidirectional), or causal for the AR twin."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_head, self.causal, self.dropout = config.n_head, config.causal, config.dropout
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=False)
        self.proj = nn.Linear(config.d_model, config.d_model, bias=False)

    def forward(self, x, cos, sin):
        B, L, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=2)  # 3 x (B, L, D)
        q, k, v = (y.view(B, L, self.n_head, D // self.n_head).transpose(1, 2) for y in (q, k, v))
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)  # (B, nh, L, hd)
        y = F.scaled_dot_product_attention(  # flash or memory-efficient kernels where available
            q, k, v, is_causal=self.causal, dropout_p=self.dropout if self.training else 0.0
        )  # (B, nh, L, hd)
        return self.proj(y.transpose(1, 2).reshape(B, L, D))


def timestep_embedding(t, dim: int, max_period: float = 10_000.0):
    """Sinusoidal features of t in [0, 1], scaled by 1000 as DDPM scales its step numbers.

    t (B,) -> (B, dim): cos and sin of 1000 t at frequencies from 1 down to 1 / max_period.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    angles = 1000 * t.float()[:, None] * freqs[None, :]  # (B, dim/2)
    return torch.cat([angles.cos(), angles.sin()], dim=-1)  # (B, dim)


def modulate(x, shift, scale):
    """x * (1 + scale) + shift, as one fused multiply-add (addcmul(a, b, c) = a + b * c).

    x (B, L, D); shift and scale (B, 1, D) broadcast over positions. The block below updates
    its residual with addcmul the same way: x + gate * f(...). Fewer passes over memory matter
    on a CPU.
    """
    return torch.addcmul(shift, x, 1 + scale)


class Block(nn.Module):
    """Communication (attention) then computation (MLP), each modulated by t when conditioned."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.norm1, self.norm2 = RMSNorm(config.d_model), RMSNorm(config.d_model)
        self.attn, self.mlp = SelfAttention(config), SwiGLU(config.d_model)
        self.modulation = None
        if config.adaln:  # adaLN-Zero: shift, scale, gate for both sub-layers
            self.modulation = nn.Linear(config.d_model, 6 * config.d_model)
            nn.init.zeros_(self.modulation.weight)
            nn.init.zeros_(self.modulation.bias)

    def forward(self, x, cond, cos, sin):
        if self.modulation is None:  # a plain pre-norm transformer block
            x = x + self.attn(self.norm1(x), cos, sin)
            return x + self.mlp(self.norm2(x))
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(cond)[:, None].chunk(6, -1)
        x = torch.addcmul(x, gate1, self.attn(modulate(self.norm1(x), shift1, scale1), cos, sin))
        return torch.addcmul(x, gate2, self.mlp(modulate(self.norm2(x), shift2, scale2)))


class Transformer(nn.Module):
    """The denoiser x_theta(z_t, t) for MDLM; with config.causal, the autoregressive twin."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        D = config.d_model
        self.embed = nn.Embedding(config.vocab_size, D)
        self.time_mlp = None
        if config.adaln:
            self.time_mlp = nn.Sequential(nn.Linear(256, D), nn.SiLU(), nn.Linear(D, D))
        if config.constant_conditioning:  # the features of t = 0 stand in for every t
            features = timestep_embedding(torch.zeros(1), 256)  # (1, 256)
            self.register_buffer("constant_features", features, persistent=False)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.norm_out = RMSNorm(D)
        self.out_modulation = None
        if config.adaln:  # shift and scale before the output layer, zero-initialised
            self.out_modulation = nn.Linear(D, 2 * D)
        cos, sin = rope_tables(config.seq_len, D // config.n_head, config.rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)  # rebuilt, never saved
        self.register_buffer("rope_sin", sin, persistent=False)
        # the mask's id as a tensor that moves with the model: torch.tensor(..., device=...) in
        # forward would copy it from the CPU to the GPU on every call
        self.register_buffer("mask_column", torch.tensor([config.mask_id]), persistent=False)
        self._init_weights()

    def _init_weights(self):
        """GPT-2's recipe: N(0, 0.02), residual outputs scaled by 1/sqrt(2 n_layer); adaLN at 0."""
        for name, param in self.named_parameters():
            if "modulation" in name or name.endswith(".bias") or param.dim() < 2:
                if "modulation" in name:
                    nn.init.zeros_(param)
                continue
            std = 0.02
            if name.endswith(("attn.proj.weight", "mlp.w2.weight")):
                std = 0.02 / math.sqrt(2 * self.config.n_layer)
            nn.init.normal_(param, mean=0.0, std=std)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx, t=None, *, fp32_logits=False):
        """idx (B, L) token ids (z_t, with mask_id where masked), t (B,) -> logits (B, L, V).

        fp32_logits=True computes the last layer in fp32 even under bf16 or fp16 autocast. The
        samplers ask for it: they draw from these logits, and bf16 would first round each one
        to 8 significant bits (a logit near 10 to a multiple of 1/16).
        """
        B, L = idx.shape
        if L > self.config.seq_len:
            raise ValueError(
                f"sequence of {L} tokens, but this model was built for {self.config.seq_len}"
            )
        x = self.embed(idx)  # (B, L, D)
        cond = self.condition(t)  # (B, D), (1, D) or None
        cos, sin = self.rope_cos[:L], self.rope_sin[:L]  # (L, hd/2)
        for block in self.blocks:
            x = block(x, cond, cos, sin)  # (B, L, D)
        return self.output_layer(x, cond, fp32_logits)

    def condition(self, t=None):
        """What the adaLN layers are fed: the embedding of t (B,) -> (B, D); for the gated blocks
        without t, the embedding of the constant (1, D); None for plain blocks."""
        if self.config.time_conditioning:
            if t is None:
                raise ValueError("this model is time-conditioned: pass t, shape (B,)")
            return F.silu(self.time_mlp(timestep_embedding(t, 256)))  # (B, D)
        if self.config.constant_conditioning:  # the same MLP, whatever t is
            return F.silu(self.time_mlp(self.constant_features))  # (1, D), broadcast over B
        return None

    def output_layer(self, x, cond=None, fp32_logits=False):
        """The last norm (modulated by t when conditioned), the tied projection to V logits, and
        the mask's logit at -inf. x (B, L, D), cond (B, D) or None -> logits (B, L, V)."""
        if fp32_logits and torch.amp.is_autocast_available(x.device.type):
            with torch.autocast(x.device.type, enabled=False):  # fp32 inputs: fp32 throughout
                return self.output_layer(x.float(), None if cond is None else cond.float())
        x = self.norm_out(x)
        if cond is not None:
            shift, scale = self.out_modulation(cond)[:, None].chunk(2, dim=-1)  # 2 x (B, 1, D)
            x = modulate(x, shift, scale)
        logits = F.linear(x, self.embed.weight)  # (B, L, V): the output layer is the embedding
        return logits.index_fill(-1, self.mask_column, float("-inf"))  # SUBS: never the mask


CHECKPOINT_FORMAT = "mdlm-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, foreign, or does not fit the current run."""


def save_checkpoint(
    path,
    *,
    model,
    tokenizer,
    step=0,
    optimizer=None,
    scaler=None,
    rng=None,
    metrics=None,
    settings=None,
    corpus_sha256="",
    ema=None,
):
    """Write everything needed to sample from or resume a run, atomically.

    rng: random_states(generators), the states of every process's generators (section 6).
    """
    model = unwrapped(model)  # not DDP's or torch.compile's wrapper: keys without prefixes
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "code_sha256": SOURCE_SHA256,  # which version of this notebook's code made it
        "model_config": asdict(model.config),
        "model": model.state_dict(),
        "ema": ema.state_dict() if ema else None,  # the average of the weights (section 6)
        "tokenizer": tokenizer.to_json(),
        "step": step,
        "optimizer": optimizer.state_dict() if optimizer else None,
        "scaler": scaler.state_dict() if scaler else None,
        "rng": rng or {"generators": [], "torch": [torch.get_rng_state()]},
        "metrics": metrics or {},
        "settings": settings or {},
        "corpus_sha256": corpus_sha256,
    }
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, suffix=".tmp")
    os.close(handle)
    try:
        torch.save(checkpoint, temporary)
        os.replace(temporary, path)  # atomic: readers see the old file or the new, never half
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def load_checkpoint(path, map_location="cpu") -> dict:
    """Read a checkpoint written by save_checkpoint, with clear errors for anything else."""
    if not os.path.exists(path):
        raise CheckpointError(
            f"no checkpoint at {path}. Train one with train_model.ipynb (RUN_MODE='smoke' takes "
            "a minute), or pass the path of an existing ckpt.pt"
        )
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({error}); it may be "
            "truncated or not a PyTorch file: train again or pick another"
        ) from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} was not written by train_model.ipynb's save_checkpoint")
    if checkpoint.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {checkpoint.get('version')}, "
            f"this code reads version {CHECKPOINT_VERSION}"
        )
    if checkpoint.get("code_sha256") != SOURCE_SHA256:
        warnings.warn(
            f"{path} was made by another version of the model code (the #| export "
            "cells of train_model.ipynb differ); loading it anyway",
            stacklevel=2,
        )
    return checkpoint


def build_model(checkpoint: dict, device="cpu") -> "Transformer":
    """Rebuild the network from a checkpoint's own config and load its weights."""
    known = {f.name for f in fields(ModelConfig)}
    config = ModelConfig(**{k: v for k, v in checkpoint["model_config"].items() if k in known})
    model = Transformer(config)
    state = {k.removeprefix("_orig_mod."): v for k, v in checkpoint["model"].items()}
    try:
        model.load_state_dict({k: v.float() for k, v in state.items()})
    except RuntimeError as error:
        raise CheckpointError(f"the weights do not fit ModelConfig {config}: {error}") from error
    return model.to(device)


def load_model(path, device="cpu"):
    """(model in eval mode, tokenizer, checkpoint dict) from a checkpoint file."""
    checkpoint = load_checkpoint(path)
    tokenizer = BPETokenizer.from_json(checkpoint["tokenizer"])
    return build_model(checkpoint, device).eval(), tokenizer, checkpoint


def check_resumable(checkpoint: dict, config: ModelConfig, tokenizer) -> None:
    """Refuse to resume into a different model or tokenizer, naming what differs."""
    known = {f.name for f in fields(ModelConfig)}  # an older checkpoint lacks newer fields:
    saved = {k: v for k, v in checkpoint["model_config"].items() if k in known}
    saved = asdict(ModelConfig(**saved))  # they take their defaults, as in build_model
    differ = {k: (saved[k], v) for k, v in asdict(config).items() if saved[k] != v}
    if differ:
        raise CheckpointError(
            f"the checkpoint's model differs from this run's: {differ} "
            "(checkpoint, now). Use the same settings, or a new OUT_DIR"
        )
    if checkpoint["tokenizer"] != tokenizer.to_json():
        raise CheckpointError(
            "the checkpoint was trained with another tokenizer (other text or "
            "VOCAB_SIZE): use the same DATA and VOCAB_SIZE, or a new OUT_DIR"
        )


@torch.no_grad()
def estimate_loss(
    model,
    ids,
    *,
    seq_len,
    num_windows,
    num_times=8,
    batch_size=32,
    seed=0,
    device="cpu",
    dtype=torch.float32,
):
    """Held-out loss in nats per token: the MDLM NELBO on a fixed t-grid, or the AR NLL.

    The windows are num_windows evenly spaced, non-overlapping stretches of `ids`.
    """
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    num_windows = max(1, min(num_windows, len(ids) // seq_len))
    starts = torch.linspace(0, len(ids) - seq_len, num_windows).long().tolist()
    windows = torch.stack([ids[s : s + seq_len] for s in starts])  # (W, L)
    grid = (torch.arange(num_times) + 0.5) / num_times  # (K,) midpoints of K equal bins
    total = 0.0
    for batch in windows.split(batch_size):
        x0 = batch.to(device)  # (b, L)
        if model.config.causal:
            with autocast(torch.device(device), dtype):
                total += ar_loss(model(x0), x0).item() * len(batch)
            continue
        for t_value in grid.tolist():
            t = torch.full((len(batch),), t_value, device=device)  # (b,)
            z_t, is_masked = mask_tokens(x0, t, model.config.mask_id, generator)
            with autocast(torch.device(device), dtype):
                logits = model(z_t, t)
            total += mdlm_loss(logits, x0, is_masked, t).item() * len(batch) / num_times
    model.train()
    return total / len(windows)


def loss_on_batch(model, x0, generator):
    """The training loss on clean windows x0 (B, L): mask them at stratified times for MDLM.

    `model` may be wrapped (DDP, torch.compile): the call goes through the wrapper, the config
    comes from the network inside."""
    config = unwrapped(model).config
    if config.causal:
        return ar_loss(model(x0), x0)
    t = sample_times(len(x0), generator).to(x0.device)  # (B,)
    z_t, is_masked = mask_tokens(x0, t, config.mask_id, generator)
    return mdlm_loss(model(z_t, t), x0, is_masked, t)


def learning_rate(step: int, max_steps: int, peak: float, warmup: int) -> float:
    """Linear warmup to `peak`, then cosine decay to peak / 10 at max_steps."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


@contextmanager
def out_of_memory_advice():
    """Turn an out-of-memory error into one that says which setting to lower."""
    try:
        yield
    except torch.OutOfMemoryError as error:
        raise RuntimeError(
            "the GPU ran out of memory: lower BATCH_SIZE (raise GRAD_ACCUM to keep the same "
            "effective batch), SEQ_LEN, or the model size (D_MODEL, N_LAYER)"
        ) from error


def check_finite(loss: float, step: int, last_checkpoint) -> None:
    """Stop on a NaN or infinite loss instead of training on garbage."""
    if not math.isfinite(loss):
        kept = "No checkpoint was written before it"  # the first comes with the first evaluation
        if os.path.exists(last_checkpoint):
            kept = f"The last good checkpoint is kept at {last_checkpoint}"
        raise FloatingPointError(
            f"the loss became {loss} at step {step}. {kept}. Lower LEARNING_RATE, or check the "
            "data; fp16 without a gradient scaler also does this"
        )


def last_step(start_step: int, max_steps: int, stop_after=None) -> int:
    """Where this session stops: max_steps, or stop_after if sooner; it must train a step.

    A session that would train none (a finished run resumed, or STOP_AFTER at or before the
    checkpoint's step) is refused: it would write metrics.json again with nothing new.
    """
    stop = max_steps if stop_after is None else min(max_steps, stop_after)
    if stop <= start_step:
        raise ValueError(
            f"nothing to train: the checkpoint is at step {start_step}, and this run stops at "
            f"step {stop} (MAX_STEPS = {max_steps}, STOP_AFTER = {stop_after}). Raise MAX_STEPS "
            "to train on"
        )
    return stop


class EMA:
    """An exponential moving average of a model's weights: shadow <- decay shadow + (1 - decay) w.

    update() after every optimizer step; swapped_into(model) puts the average in the model for
    the duration of a `with` block (to evaluate or sample), and the trained weights back after.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {name: p.detach().clone() for name, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for name, p in model.named_parameters():
            self.shadow[name].lerp_(p.detach(), 1 - self.decay)  # a + w (b - a)

    @contextmanager
    def swapped_into(self, model: nn.Module):
        trained = {name: p.detach().clone() for name, p in model.named_parameters()}
        copy_weights(model, self.shadow)
        try:
            yield model
        finally:
            copy_weights(model, trained)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        self.decay = state["decay"]
        for name, value in state["shadow"].items():
            self.shadow[name].copy_(value)  # onto the device the weights are on


@torch.no_grad()
def copy_weights(model: nn.Module, weights: dict) -> None:
    """Copy {name: tensor} into the model's parameters of those names, in place."""
    for name, p in model.named_parameters():
        p.copy_(weights[name])


def spread(count, total):
    """count indices evenly spread over range(total), first and last included (count <= total):
    spread(3, 10) -> [0, 4, 9] (4.5 rounds to even); spread(2, 2) -> [0, 1]; spread(1, 5) -> [0]."""
    return torch.linspace(0, total - 1, count).round().long()


def evaluation_windows(ids, seq_len, num_windows=None):
    """Non-overlapping windows of seq_len tokens, evenly spread over `ids`; all of them when
    num_windows is None or more than fit. ids (N,) -> (W, L)."""
    fit = len(ids) // seq_len  # how many windows fit end to end
    if fit == 0:
        raise ValueError(f"{len(ids)} held-out tokens cannot fill one window of {seq_len}")
    count = fit if num_windows is None else max(1, min(num_windows, fit))
    starts = spread(count, fit) * seq_len  # (W,)
    return torch.stack([ids[start : start + seq_len] for start in starts.tolist()])  # (W, L)


def token_bytes(windows, tokenizer):
    """(W,) how many UTF-8 bytes the tokens of each window stand for. windows (W, n) long."""
    lengths = torch.tensor([len(tokenizer.token_bytes(i)) for i in range(tokenizer.vocab_size)])
    return lengths[windows].sum(dim=-1)


def bits_per_byte(nats, num_bytes):
    """(total, standard error) in bits per byte of per-window nats (W,) over bytes (W,).

    The ratio R = sum(nats) / sum(bytes), and the standard error of this ratio estimator,
    sqrt(sum((n_w - R b_w)^2) / (W (W - 1))) / mean(b), both divided by ln 2. By hand: nats
    [2, 4] over bytes [1, 1] -> R = 3 nats/byte, residuals -1 and 1, se = sqrt(2 / 2) / 1 = 1
    nat/byte: 4.328 +- 1.443 bits/byte.
    """
    nats, num_bytes = nats.double(), num_bytes.double()  # on the CPU
    ratio = nats.sum() / num_bytes.sum()
    W = len(nats)
    spread = ((nats - ratio * num_bytes) ** 2).sum() / (W * (W - 1)) if W > 1 else math.nan
    error = math.sqrt(spread) / num_bytes.mean().item() if W > 1 else math.nan
    return ratio.item() / math.log(2), error / math.log(2)


@torch.no_grad()
def nelbo_per_window(
    model, windows, *, num_times=32, batch_size=64, seed=0, device="cpu", dtype=torch.float32
):
    """(W,) each window's NELBO in nats (over all its L positions), from num_times stratified
    times t_k = (k + u) / K with one uniform u per window, each with its own mask draw."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    totals = []
    for batch in windows.split(batch_size):
        x0 = batch.to(device)  # (b, L)
        offset = torch.rand(len(batch), generator=generator)  # (b,) u, one per window
        total = torch.zeros(len(batch))
        for k in range(num_times):
            t = ((k + offset) / num_times).clamp(min=1e-3).to(device)  # (b,) as in training
            z_t, is_masked = mask_tokens(x0, t, model.config.mask_id, generator)
            weight = -alpha_prime(t) / (1 - alpha(t))  # (b,) = 1/t
            with autocast(torch.device(device), dtype):
                logits = model(z_t, t, fp32_logits=True)  # (b, L, V)
            nll = masked_nll(logits, x0, is_masked)  # (b,)
            total += (weight * nll).cpu() / num_times
        totals.append(total)
    model.train()
    return torch.cat(totals)


@torch.no_grad()
def order_nll_per_window(
    model,
    windows,
    *,
    order="left-to-right",
    batch_size=64,
    seed=0,
    device="cpu",
    dtype=torch.float32,
):
    """(W,) each window's exact negative log-likelihood in nats when its tokens are revealed one
    at a time in a fixed order: the sum over k of -log x_theta(x_sigma(k) | x_sigma(<k)).

    order: "left-to-right", or "random" (one permutation per window, from `seed`). Step k sees
    the tokens sigma(1), ..., sigma(k - 1) and masks elsewhere, at the t that matches the
    fraction masked, (L - k + 1) / L; it costs L network calls per batch of windows.
    """
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    W, L = windows.shape
    if order == "left-to-right":
        orders = torch.arange(L).expand(W, L)  # (W, L)
    elif order == "random":
        orders = torch.stack([torch.randperm(L, generator=generator) for _ in range(W)])
    else:
        raise ValueError(f"order must be 'left-to-right' or 'random', not {order!r}")
    totals = []
    for batch, batch_orders in zip(windows.split(batch_size), orders.split(batch_size)):
        x0, batch_orders = batch.to(device), batch_orders.to(device)  # (b, L) each
        rows = torch.arange(len(batch), device=device)  # (b,)
        z = torch.full_like(x0, model.config.mask_id)  # (b, L): nothing revealed yet
        total = torch.zeros(len(batch), device=device)
        for k in range(L):
            t = torch.full((len(batch),), (L - k) / L, device=device)  # (b,) fraction masked
            position = batch_orders[:, k]  # (b,) the position revealed now
            with autocast(torch.device(device), dtype):
                logits = model(z, t, fp32_logits=True)[rows, position]  # (b, V)
            log_p = logits.log_softmax(dim=-1)[rows, x0[rows, position]]  # (b,)
            total -= log_p
            z[rows, position] = x0[rows, position]
        totals.append(total.cpu())
    model.train()
    return torch.cat(totals)


@torch.no_grad()
def ar_nll_per_window(model, windows, *, batch_size=64, device="cpu", dtype=torch.float32):
    """(W,) the twin's exact negative log-likelihood in nats of tokens 1, ..., L - 1 of each
    window, each given the ones before (token 0 has nothing before it and is not scored)."""
    model.eval()
    totals = []
    for batch in windows.split(batch_size):
        x0 = batch.to(device)  # (b, L)
        with autocast(torch.device(device), dtype):
            logits = model(x0, fp32_logits=True)[:, :-1]  # (b, L - 1, V)
        nll = F.cross_entropy(logits.transpose(1, 2), x0[:, 1:], reduction="none")  # (b, L - 1)
        totals.append(nll.sum(dim=1).cpu())
    model.train()
    return torch.cat(totals)


def final_figures(
    model,
    tokenizer,
    ids,
    *,
    seq_len,
    num_windows,
    order_windows,
    num_times=32,
    ema=None,
    device="cpu",
    dtype=torch.float32,
):
    """The figures a run ends with, in bits per byte, each as (value, standard error).

    On num_windows evenly spaced windows of the held-out tokens `ids`: the MDLM's NELBO, or the
    twin's exact loss. With an EMA, the same again with the averaged weights, and its
    difference from the trained weights' window by window (the same times and masks: paired).
    On order_windows of them, evenly spaced again (each costs L network calls), the MDLM's
    exact likelihood left to right and in a random order, the NELBO of the same windows, and
    each likelihood minus that NELBO, window by window: paired, the difference has a much
    smaller error than either figure. The network runs under the run's autocast dtype, its
    last layer in fp32.
    """
    on = dict(device=torch.device(device), dtype=dtype)
    windows = evaluation_windows(ids, seq_len, num_windows)  # (W, L)
    figures = {"windows": len(windows), "tokens": windows.numel()}
    key = "nll" if model.config.causal else "nelbo"
    num_bytes = token_bytes(windows[:, 1:] if model.config.causal else windows, tokenizer)  # (W,)

    def per_window():  # (W,) nats: the twin's exact loss (scored tokens only), or the NELBO
        if model.config.causal:
            return ar_nll_per_window(model, windows, **on)
        return nelbo_per_window(model, windows, num_times=num_times, **on)  # seed 0: same masks

    trained = per_window()
    figures[key] = bits_per_byte(trained, num_bytes)
    figures["bytes"] = int(num_bytes.sum())
    if ema is not None:
        with ema.swapped_into(model):
            averaged = per_window()
        figures["ema"] = {
            "decay": ema.decay,
            key: bits_per_byte(averaged, num_bytes),
            "ema - trained": bits_per_byte(averaged - trained, num_bytes),
        }
    if model.config.causal:
        return figures
    figures["num_times"] = num_times
    subset = spread(min(order_windows, len(windows)), len(windows))  # (w,) evenly spread
    figures["order_windows"] = len(subset)
    figures["nelbo, order windows"] = bits_per_byte(trained[subset], num_bytes[subset])
    for order in ("left-to-right", "random"):
        nll = order_nll_per_window(model, windows[subset], order=order, **on)  # (w,) nats
        figures[order] = bits_per_byte(nll, num_bytes[subset])
        figures[f"{order} - nelbo"] = bits_per_byte(nll - trained[subset], num_bytes[subset])
    return figures


def micro_batch_generators(seed: int, grad_accum: int, rank=0, world_size=1):
    """This process's random generators: one for each micro-batch of a step that it computes.

    A step is grad_accum micro-batches, shared out evenly: rank r computes micro-batches
    r k to r k + k - 1, with k = grad_accum / world_size. Micro-batch j draws from a generator
    seeded seed + 10,000 j, whichever process computes it; j = 0 gets the seed itself, as the
    notebook's one generator always did. seed 1337, grad_accum 2: one process gets the seeds
    [1337, 11337]; of two processes, rank 0 gets [1337] and rank 1 [11337].
    """
    if grad_accum % world_size:
        raise ValueError(
            f"GRAD_ACCUM = {grad_accum} micro-batches cannot be shared out evenly over "
            f"{world_size} processes: make it a multiple of {world_size} (and lower BATCH_SIZE "
            "to keep the batch)"
        )
    share = grad_accum // world_size
    seeds = [seed + 10_000 * j for j in range(rank * share, (rank + 1) * share)]
    return [torch.Generator().manual_seed(s) for s in seeds]


def no_sync_unless(last: bool, model: nn.Module):
    """DDP averages the gradients over all processes in every backward pass: skip that
    (model.no_sync()) on all but the last micro-step of a step, so that each process adds up its
    own micro-batches first and the processes exchange gradients once per step. Without DDP:
    nothing to skip."""
    return nullcontext() if last or not isinstance(model, DDP) else model.no_sync()


def mean_over_processes(value: float, device) -> float:
    """The mean of a number over all processes, for each of them: the loss of the whole batch."""
    if not dist.is_initialized():
        return value
    total = torch.tensor([value], dtype=torch.float64, device=float64_device(device))
    dist.all_reduce(total)  # a sum: gloo has no average
    return total.item() / dist.get_world_size()


def random_states(generators) -> dict:
    """Every random state a resumed run needs: the generators of all the processes, micro-batch
    by micro-batch, and each process's torch state. Every process calls it (it gathers the
    states of all); rank 0 saves them."""
    mine = {"generators": [g.get_state() for g in generators], "torch": [torch.get_rng_state()]}
    if not dist.is_initialized():
        return mine
    everyone = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, mine)  # rank order is micro-batch order
    return {key: [state for states in everyone for state in states[key]] for key in mine}


def restore_random_states(rng: dict, generators, rank=0, world_size=1) -> None:
    """Set this process's generators, and its torch state, from a checkpoint's rng."""
    saved = rng["generators"] if "generators" in rng else [rng["generator"]]  # before DDP
    share = len(generators)
    if len(saved) != share * world_size:
        raise CheckpointError(
            f"the checkpoint has {len(saved)} micro-batches a step, this run {share * world_size}"
            ": resume with the GRAD_ACCUM it was trained with"
        )
    for generator, state in zip(generators, saved[rank * share : (rank + 1) * share]):
        generator.set_state(state)
    states = rng["torch"] if isinstance(rng["torch"], list) else [rng["torch"]]
    # on another number of processes, rank 0's: training draws nothing from it (no dropout)
    torch.set_rng_state(states[rank] if len(states) == world_size else states[0])


def end_processes(rank: int) -> None:
    """After the last step under torchrun: wait for rank 0's last checkpoint, leave the process
    group, and end every process but rank 0, which goes on alone to the final figures. Without
    torchrun: nothing."""
    if not dist.is_initialized():
        return
    dist.barrier()
    dist.destroy_process_group()
    if rank > 0:
        sys.exit(0)


class LivePlot:
    """The training curve, drawn again after every evaluation: written to `path` (train.py's
    only view of it), and in Jupyter also shown, in place of the previous drawing."""

    def __init__(self, path):
        self.path, self.handle = path, None

    def show(self, figure) -> None:
        figure.savefig(self.path, dpi=100)
        if "ipykernel" not in sys.modules:  # a script: the file is the plot
            return
        from IPython.display import display

        if self.handle is None:
            self.handle = display(figure, display_id=True)
        else:
            self.handle.update(figure)


SOURCE_SHA256 = "88ebc790938dd654871b252afdda263904f953575274261cd9f6eba47c71a243"
