"""Training throughput of the MDLM (or its AR twin): tokens per second and, on a known GPU, MFU.

    python bench/bench_train.py                        # nanoGPT's Tiny Shakespeare size, on CPU
    python bench/bench_train.py --vocab 8192 --n-layer 8 --d-model 512 --batch 128 --compile

It times full optimizer steps (forward, backward, AdamW) on random tokens with the model and
loss of mdlm_model.py, after warm-up steps that are not counted, and prints the median.
Model FLOPs per token follow the PaLM appendix: 6 x (parameters in matrix multiplies) for the
weights plus 12 x n_layer x L x D for attention scores, forward and backward together.
MFU is printed only where the peak is known (H100/H200/A100 bf16 dense); CPUs have no line.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import mdlm_model as M  # noqa: E402

PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vocab", type=int, default=66, help="66 = 65 characters + the mask")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--n-layer", type=int, default=6)
    parser.add_argument("--n-head", type=int, default=6)
    parser.add_argument("--d-model", type=int, default=384)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--objective", choices=["mdlm", "ar"], default="mdlm")
    parser.add_argument("--no-time-conditioning", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=5, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    args = parser.parse_args()

    device = M.pick_device(args.device)
    dtype = M.pick_precision(device)
    config = M.ModelConfig(
        vocab_size=args.vocab, mask_id=args.vocab - 1, seq_len=args.seq_len,
        n_layer=args.n_layer, n_head=args.n_head, d_model=args.d_model,
        time_conditioning=not args.no_time_conditioning, causal=args.objective == "ar",
    )  # fmt: skip
    model = M.Transformer(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    scaler = M.make_scaler(device, dtype)
    step_model = torch.compile(model) if args.compile else model
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(args.vocab - 1, (1_000_000,))

    def synchronize():
        if device.type == "cuda":
            torch.cuda.synchronize()
        elif device.type == "mps":
            torch.mps.synchronize()

    seconds = []
    for step in range(args.warmup + args.steps):
        started = time.perf_counter()
        x0 = M.get_batch(ids, args.batch, args.seq_len, generator).to(device)
        with M.autocast(device, dtype):
            loss = M.loss_on_batch(step_model, x0, generator)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        synchronize()
        if step >= args.warmup:
            seconds.append(time.perf_counter() - started)

    median = statistics.median(seconds)
    flops = flops_per_token(model)
    tokens_per_s = args.batch * args.seq_len / median
    achieved = tokens_per_s * flops
    print(f"device {device} ({torch.get_num_threads()} threads), {dtype}, compile {args.compile}")
    print(f"config {config}")
    print(f"{model.num_params() / 1e6:.2f}M parameters, {flops / 1e6:.1f} MFLOP/token")
    print(f"median step {median * 1000:.0f} ms over {args.steps} steps (all: "
          + ", ".join(f"{s * 1000:.0f}" for s in seconds) + ")")  # fmt: skip
    print(f"{tokens_per_s:,.0f} tokens/s, {achieved / 1e9:.1f} GFLOP/s achieved")
    peak = peak_flops(device)
    if peak:
        print(f"MFU {achieved / peak:.1%} of {peak / 1e12:.0f} TFLOP/s bf16 peak")


if __name__ == "__main__":
    main()
