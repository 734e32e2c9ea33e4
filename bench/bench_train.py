"""Training throughput of the MDLM (or its AR twin): tokens per second and, on a known GPU, MFU.

    python bench/bench_train.py                        # nanoGPT's Tiny Shakespeare size, on CPU
    python bench/bench_train.py --vocab 8192 --n-layer 8 --d-model 512 --batch 128 --compile

It times full optimizer steps (forward, backward, gradient clipping, AdamW) on random tokens
with the model and loss of mdlm_model.py, after warm-up steps that are not counted, and prints
the median.
Model FLOPs per token follow the PaLM appendix: 6 x (parameters in matrix multiplies) for the
weights plus 12 x n_layer x L x D for attention scores, forward and backward together.
MFU is printed only where the peak is known (the dense bf16 peak of the datasheet: H100/H200
989 TFLOP/s, A100 312, RTX 4090 165); CPUs have no line. --json writes the figures to a file.
"""

import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import mdlm_model as M  # noqa: E402
from tools import cli  # noqa: E402

PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "RTX 4090": 165e12}


def flops_per_token(model: M.Transformer) -> float:
    config = model.config
    matmul_params = sum(p.numel() for n, p in model.named_parameters() if p.dim() == 2)
    # the tied output layer is one more V x D multiply (its weight was counted once, as input)
    matmul_params += config.vocab_size * config.d_model
    attention = 12 * config.n_layer * config.seq_len * config.d_model
    return 6 * matmul_params + attention


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_FLOPS.items() if key in name), None)


def model_config(objective: str, *, vocab_size: int, time_conditioning: bool = True, **shape):
    """The ModelConfig train_model.ipynb builds for an objective: the AR twin is causal and
    never sees t; shape is seq_len, n_layer, n_head, d_model. The mask is the last id."""
    return M.ModelConfig(
        vocab_size=vocab_size,
        mask_id=vocab_size - 1,
        time_conditioning=time_conditioning and objective == "mdlm",
        causal=objective == "ar",
        **shape,
    )


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that the clock measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    elif device.type == "mps":
        torch.mps.synchronize()


def measure(
    config: M.ModelConfig,
    *,
    batch: int,
    device: torch.device,
    compile_model: bool = False,
    steps: int = 5,
    warmup: int = 2,
    profile: int = 0,
) -> dict:
    """Time `steps` optimizer steps after `warmup` untimed ones; return the figures as a dict.

    profile > 0 runs one more step under torch.profiler and keeps the table of the `profile`
    operations that took the most time on the device (on the CPU, without a GPU).
    """
    dtype = M.pick_precision(device)
    model = M.Transformer(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    scaler = M.make_scaler(device, dtype)
    step_model, not_compiled = model, None
    if compile_model:  # only where torch.compile runs (not on MPS or Windows)
        step_model, not_compiled = M.compile_if_possible(model, device)
    compile_model = compile_model and not_compiled is None
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(config.vocab_size - 1, (1_000_000,))

    def one_step():
        x0 = M.get_batch(ids, batch, config.seq_len, generator).to(device)
        with M.autocast(device, dtype):
            loss = M.loss_on_batch(step_model, x0, generator)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # as train_model.ipynb's loop
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        synchronize(device)

    seconds, first_step = [], None
    for step in range(warmup + steps):
        started = time.perf_counter()
        one_step()
        if step == 0:  # with torch.compile, this includes the compilation
            first_step = time.perf_counter() - started
        if step >= warmup:
            seconds.append(time.perf_counter() - started)
    table = profile_step(one_step, device, profile) if profile else None

    median = statistics.median(seconds)
    flops = flops_per_token(model)
    tokens_per_s = batch * config.seq_len / median
    peak = peak_flops(device)
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "dtype": str(dtype),
        "compile": compile_model,
        "threads": torch.get_num_threads(),
        "config": config,
        "batch": batch,
        "first_step_seconds": first_step,
        "params": model.num_params(),
        "flops_per_token": flops,
        "step_seconds": seconds,
        "median_step_seconds": median,
        "tokens_per_second": tokens_per_s,
        "achieved_flops": tokens_per_s * flops,
        "peak_flops": peak,
        "mfu": tokens_per_s * flops / peak if peak else None,
        "profile": table,
    }


def profile_step(one_step, device: torch.device, rows: int) -> str:
    """torch.profiler's table of one step: the operations that took the most time, slowest
    first (on the GPU: its kernels' own time, to see attention, matmuls, the optimizer)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as profiler:
        one_step()
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return profiler.key_averages().table(sort_by=key, row_limit=rows)


def main(argv=None) -> None:
    whole = cli.whole_number
    parser = cli.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vocab", type=whole(2), default=66, help="65 characters + the mask")
    parser.add_argument("--seq-len", type=whole(2), default=256)
    parser.add_argument("--n-layer", type=whole(1), default=6)
    parser.add_argument("--n-head", type=whole(1), default=6)
    parser.add_argument("--d-model", type=whole(1), default=384)
    parser.add_argument("--batch", type=whole(1), default=64)
    parser.add_argument("--objective", choices=["mdlm", "ar"], default="mdlm")
    parser.add_argument("--no-time-conditioning", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=whole(1), default=5, help="timed steps")
    parser.add_argument("--warmup", type=whole(0), default=2, help="untimed steps first")
    parser.add_argument("--json", default="", help="also write the figures to this file")
    parser.add_argument("--profile", type=whole(0), default=0, help="profile one step: top N ops")
    args = parser.parse_args(argv)
    if args.json:
        cli.writable(args.json, "--json")  # now, not after the measurements

    with cli.refusing(ValueError):  # a shape ModelConfig refuses, a device this machine lacks
        config = model_config(
            args.objective, vocab_size=args.vocab, time_conditioning=not args.no_time_conditioning,
            seq_len=args.seq_len, n_layer=args.n_layer, n_head=args.n_head, d_model=args.d_model,
        )  # fmt: skip
        device = M.pick_device(args.device, knob="--device")
    figures = measure(
        config,
        batch=args.batch,
        device=device,
        compile_model=args.compile,
        steps=args.steps,
        warmup=args.warmup,
        profile=args.profile,
    )
    step_ms = ", ".join(f"{seconds * 1000:.0f}" for seconds in figures["step_seconds"])
    megaflops = figures["flops_per_token"] / 1e6
    print(f"device {device} ({figures['threads']} threads), {figures['dtype']}, ", end="")
    print(f"compile {args.compile}")
    print(f"config {config}")
    print(f"{figures['params'] / 1e6:.2f}M parameters, {megaflops:.1f} MFLOP/token")
    median_ms = figures["median_step_seconds"] * 1000
    print(f"median step {median_ms:.0f} ms over {args.steps} steps (all: {step_ms})")
    gigaflops = figures["achieved_flops"] / 1e9
    print(f"{figures['tokens_per_second']:,.0f} tokens/s, {gigaflops:.1f} GFLOP/s achieved")
    if figures["mfu"] is not None:
        print(f"MFU {figures['mfu']:.1%} of {figures['peak_flops'] / 1e12:.0f} TFLOP/s bf16 peak")
    if figures["profile"]:
        print(figures["profile"])
    if args.json:
        saved = {**figures, "config": vars(config), "objective": args.objective}
        Path(args.json).write_text(json.dumps(saved, indent=1))


if __name__ == "__main__":
    main()
