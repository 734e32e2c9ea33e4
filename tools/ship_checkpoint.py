"""Make the small checkpoint that ships with the repository, from a training checkpoint.

    python tools/ship_checkpoint.py checkpoints/mdlm_quick6400_gutenberg/ckpt.pt
    python tools/ship_checkpoint.py checkpoints/ar_quick6400_gutenberg/ckpt.pt \
        --out checkpoints/shipped/ar_twin/ckpt.pt

Keeps what sampling needs (config, weights, tokenizer, metrics, code version) and drops what
only resuming needs (optimizer, scaler, random state). Weights are stored in fp16, which halves
the file; `load_model` turns them back into fp32. A shipped checkpoint samples exactly like the
original up to fp16 rounding of the weights, but it cannot be resumed.

    git show HEAD:mdlm_model.py > /tmp/old_model.py
    python tools/ship_checkpoint.py checkpoints/shipped/ckpt.pt --restamp \
        --old-code /tmp/old_model.py

--restamp is for a change to the model's code that does not change what it computes (a comment,
a new helper): it records the current code version in a shipped checkpoint, so that loading it
stops warning, but only after checking that the old code (the one that made the checkpoint)
and the current code give the very same logits from its weights.
"""

import importlib.util
import os
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import mdlm_model as M  # noqa: E402
from tools import cli  # noqa: E402


def save(checkpoint: dict, target: Path) -> int:
    """torch.save to a temporary file, then rename: never a half-written checkpoint."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(".tmp")
    torch.save(checkpoint, temporary)
    os.replace(temporary, target)
    return target.stat().st_size


def ship(source: Path, target: Path) -> int:
    checkpoint = M.load_checkpoint(source)
    checkpoint["model"] = {k: v.half() for k, v in checkpoint["model"].items()}
    for key in ("optimizer", "scaler"):
        checkpoint[key] = None
    checkpoint["rng"] = {"generators": [], "torch": []}
    checkpoint["metrics"]["shipped_from"] = str(source)
    return save(checkpoint, target)


def same_logits(old_model, new_model, seed=0) -> bool:
    """Whether two networks give identical logits on random inputs at several times."""
    config = new_model.config
    generator = torch.Generator().manual_seed(seed)
    idx = torch.randint(config.vocab_size, (8, config.seq_len), generator=generator)  # (8, L)
    idx[::2, ::3] = config.mask_id  # masks, as an MDLM sees them
    t = torch.rand(8, generator=generator)
    with torch.no_grad():
        if config.causal:
            return torch.equal(old_model(idx), new_model(idx))
        return torch.equal(old_model(idx, t), new_model(idx, t))


def restamp(path: Path, old_code: Path) -> str:
    """Record the current code version in the checkpoint at `path`, if `old_code` (a copy of the
    mdlm_model.py that made it) and the current code give it the same logits. Returns the old
    version; raises CheckpointError, and writes nothing, when they differ."""
    with warnings.catch_warnings():  # that it was made by other code is the point here
        warnings.simplefilter("ignore")
        checkpoint = M.load_checkpoint(path)
    spec = importlib.util.spec_from_file_location("old_mdlm_model", old_code)
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)
    if old.SOURCE_SHA256 != checkpoint["code_sha256"]:
        raise M.CheckpointError(
            f"{old_code} is not the code that made {path} (its version is "
            f"{old.SOURCE_SHA256[:12]}, the checkpoint's {checkpoint['code_sha256'][:12]})"
        )
    old_model, new_model = old.build_model(checkpoint).eval(), M.build_model(checkpoint).eval()
    if not same_logits(old_model, new_model):
        raise M.CheckpointError(
            f"the current code computes other logits from {path} than the code that made it: "
            "train it again instead"
        )
    checkpoint["metrics"]["restamped_from"] = checkpoint["code_sha256"]
    checkpoint["code_sha256"] = M.SOURCE_SHA256
    save(checkpoint, path)
    return old.SOURCE_SHA256


def main(argv=None) -> int:
    parser = cli.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("--out", type=Path, default=Path("checkpoints/shipped/ckpt.pt"))
    parser.add_argument("--restamp", action="store_true", help="update source in place")
    parser.add_argument("--old-code", type=Path, help="with --restamp: the code that made it")
    args = parser.parse_args(argv)
    if args.restamp:
        if not args.old_code:
            parser.error("--restamp needs --old-code, the mdlm_model.py that made the checkpoint")
        if not args.old_code.is_file():
            cli.refuse(f"--old-code {args.old_code}: no such file")
        with cli.refusing(M.CheckpointError):
            before = restamp(args.source, args.old_code)
        print(f"{args.source}: same logits; code version {before[:12]} -> {M.SOURCE_SHA256[:12]}")
    else:
        cli.folder(args.out.parent, "--out's folder")
        cli.writable(args.out, "--out")
        with cli.refusing(M.CheckpointError):
            size = ship(args.source, args.out)
        print(f"wrote {args.out}: {size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
