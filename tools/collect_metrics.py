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

import json
import os
import platform
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tools import cli  # noqa: E402


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
    notebook = read_json(notebook_path, "--notebook")
    for cell in notebook.get("cells", []) if isinstance(notebook, dict) else []:
        streams = [o for o in cell.get("outputs", []) if o.get("name") == "stdout"]
        text = "".join("".join(o["text"]) for o in streams)  # a kernel may split its output
        parts = SAMPLE.split(text)  # [before, '0', text 0, '1', text 1, ...]
        if len(parts) > 1:
            return [part.removesuffix("\n\n") for part in parts[2::2]]  # print's own newline
    cli.refuse(f"{notebook_path}: no '--- sample' output; was it executed to the end?")


def read_json(path: Path, knob: str):
    """The JSON in `path`, or a refusal naming `knob` and what is wrong with the file."""
    try:
        return json.loads(cli.read_text(path, knob))
    except ValueError as error:
        cli.refuse(f"{knob} {path} is not JSON ({error})")


def main(argv=None) -> int:
    parser = cli.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("source", type=Path, help="the run's metrics.json")
    parser.add_argument("target", type=Path, help="results/<run>.json")
    parser.add_argument("--notebook", type=Path, help="the executed notebook, for its samples")
    args = parser.parse_args(argv)
    metrics = read_json(args.source, "source")
    if not isinstance(metrics, dict):
        cli.refuse(f"source {args.source} holds no metrics: a JSON object {{...}} was expected")
    metrics.setdefault("machine", describe(metrics))
    if args.notebook:
        metrics["samples"] = printed_samples(args.notebook)
    cli.folder(args.target.parent, "target's folder")
    cli.writable(args.target, "target")
    args.target.write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
    print(f"{args.target}: {metrics['machine']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
