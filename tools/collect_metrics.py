"""Copy a run's metrics.json into results/, naming the machine it ran on.

    python tools/collect_metrics.py checkpoints/<run>/metrics.json results/<run>.json \
        [--notebook runs/<run>.ipynb]

metrics.json records the device, precision and thread count but not which CPU or GPU it was;
the results table (make_results.py) shows the "machine" key this adds, for example
"AMD EPYC 7B13, 2 cores, float32, 2 threads". An existing "machine" key is kept.

With --notebook, the samples that the executed train_model.ipynb printed in its last section
("--- sample 0", "--- sample 1", ...) are kept too, under "samples", so every run in results/
has its text beside its numbers.
"""

import argparse
import json
import os
import platform
import re
import sys
from pathlib import Path


def processor_name() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe(metrics: dict) -> str:
    """'AMD EPYC 7B13, 2 cores, float32, 2 threads' or 'cuda (NVIDIA H100 ...), bfloat16'."""
    device = metrics.get("device", "?")
    if device.startswith("cuda") and metrics.get("device_name"):
        parts = [f"{device} ({metrics['device_name']})"]
    elif device.startswith("cuda") or device.startswith("mps"):
        parts = [device]
    else:
        parts = [processor_name(), f"{os.cpu_count()} cores"]
    if metrics.get("dtype"):  # a training run records it; sampling_metrics.json does not
        parts.append(str(metrics["dtype"]))
    if metrics.get("threads") and not device.startswith(("cuda", "mps")):
        parts.append(f"{metrics['threads']} thread{'' if metrics['threads'] == 1 else 's'}")
    return ", ".join(parts)


SAMPLE = re.compile(r"^--- sample (\d+)\n", flags=re.MULTILINE)


def printed_samples(notebook_path: Path) -> list[str]:
    """The texts train_model.ipynb printed as '--- sample i' blocks, in order."""
    notebook = json.loads(notebook_path.read_text(encoding="utf-8"))
    for cell in notebook["cells"]:
        streams = [o for o in cell.get("outputs", []) if o.get("name") == "stdout"]
        text = "".join("".join(o["text"]) for o in streams)  # a kernel may split its output
        parts = SAMPLE.split(text)  # [before, '0', text 0, '1', text 1, ...]
        if len(parts) > 1:
            return [part.removesuffix("\n\n") for part in parts[2::2]]  # print's own newline
    raise SystemExit(f"{notebook_path}: no '--- sample' output; was it executed to the end?")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("source", type=Path, help="the run's metrics.json")
    parser.add_argument("target", type=Path, help="results/<run>.json")
    parser.add_argument("--notebook", type=Path, help="the executed notebook, for its samples")
    args = parser.parse_args(argv)
    metrics = json.loads(args.source.read_text(encoding="utf-8"))
    metrics.setdefault("machine", describe(metrics))
    if args.notebook:
        metrics["samples"] = printed_samples(args.notebook)
    args.target.parent.mkdir(parents=True, exist_ok=True)
    args.target.write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
    print(f"{args.target}: {metrics['machine']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
