#!/usr/bin/env bash
# Get ready for tools/gpu_run.py on the device machine (a fresh CUDA machine with PyTorch, no
# network): fetch as wheels the packages it lacks, copy the corpus into the repository, and
# print the device call to make. Both folders are git-ignored and travel with `carry`.
# Usage: bash tools/gpu_prepare.sh [CORPUS]   (default ../shared/data/gutenberg, 23 books)
set -euo pipefail
cd "$(dirname "$0")/.."
CORPUS=${1:-../shared/data/gutenberg}
# Python 3.12 on x86-64 Linux, as on the device machine (the device tool's KINDS.md)
PLATFORMS="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64"
rm -rf .whl .gpu_data && mkdir -p .whl .gpu_data
# shellcheck disable=SC2086
python3 -m pip download --quiet --only-binary=:all: --python-version 3.12 --implementation cp \
    $PLATFORMS -d .whl papermill nbclient nbformat ipykernel ipywidgets pygame
# Already there (KINDS.md lists them): two versions of a package would stop the install.
python3 - <<'PY'
import re
from pathlib import Path

PRESENT = """attrs certifi charset-normalizer click idna packaging psutil pygments python-dateutil
pyyaml regex requests six tqdm typing-extensions urllib3""".split()
for wheel in sorted(Path(".whl").glob("*.whl")):
    name = re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()
    if name in PRESENT:
        wheel.unlink()
PY
cp -r "$CORPUS" .gpu_data/
DATA=.gpu_data/$(basename "$CORPUS")
echo "wheels: $(ls .whl | wc -l) files, $(du -sh .whl | cut -f1); corpus: $DATA, $(du -sh "$DATA" | cut -f1)"
echo "working tree that travels: $(git ls-files -z | du -cb --files0-from=- | tail -1 | cut -f1) bytes tracked"
cat <<CALL
Device call (run, timeout_s 560, carry [".whl", ".gpu_data"]):
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:\$PYTHONPATH && export PATH=/tmp/site/bin:\$PATH && python3 tools/gpu_run.py --out \$OUT --data $DATA --budget 480 2>&1 | tee \$OUT/gpu_run.log
CALL
