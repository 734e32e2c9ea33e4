"""Make the small checkpoint that ships with the repository, from a training checkpoint.

    python scripts/ship_checkpoint.py checkpoints/mdlm_quick6400_gutenberg_prose/ckpt.pt
    python scripts/ship_checkpoint.py checkpoints/ar_quick6400_gutenberg_prose/ckpt.pt \
        --out checkpoints/shipped/ar_twin/ckpt.pt

Keeps what sampling needs (config, weights, tokenizer, metrics, code version) and drops what
only resuming needs (optimizer, scaler, random state). Weights are stored in fp16, which halves
the file; `load_model` turns them back into fp32. A shipped checkpoint samples exactly like the
original up to fp16 rounding of the weights, but it cannot be resumed.
"""

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import mdlm_model as M  # noqa: E402


def ship(source: Path, target: Path) -> int:
    checkpoint = M.load_checkpoint(source)
    checkpoint["model"] = {k: v.half() for k, v in checkpoint["model"].items()}
    for key in ("optimizer", "scaler"):
        checkpoint[key] = None
    checkpoint["rng"] = {"generator": None, "torch": None}
    checkpoint["metrics"]["shipped_from"] = str(source)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(".tmp")
    torch.save(checkpoint, temporary)
    os.replace(temporary, target)
    return target.stat().st_size


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("--out", type=Path, default=Path("checkpoints/shipped/ckpt.pt"))
    args = parser.parse_args()
    size = ship(args.source, args.out)
    print(f"wrote {args.out}: {size / 1e6:.1f} MB")
