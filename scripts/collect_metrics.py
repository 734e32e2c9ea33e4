"""Copy a run's metrics.json into results/, naming the machine it ran on.

    python scripts/collect_metrics.py checkpoints/<run>/metrics.json results/<run>.json

metrics.json records the device, precision and thread count but not which CPU or GPU it was;
the results table (make_results.py) shows the "machine" key this adds, for example
"AMD EPYC 7B13, 2 cores, float32, 2 threads". An existing "machine" key is kept.
"""

import json
import os
import platform
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
    parts.append(str(metrics.get("dtype", "?")))
    if metrics.get("threads") and not device.startswith(("cuda", "mps")):
        parts.append(f"{metrics['threads']} thread{'' if metrics['threads'] == 1 else 's'}")
    return ", ".join(parts)


def main(argv=None) -> int:
    source, target = (Path(arg) for arg in (argv or sys.argv[1:]))
    metrics = json.loads(source.read_text(encoding="utf-8"))
    metrics.setdefault("machine", describe(metrics))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
    print(f"{target}: {metrics['machine']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
