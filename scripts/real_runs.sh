#!/usr/bin/env bash
# The project's real runs (issue 8), with the parameters that made the committed results.
# Usage: bash scripts/real_runs.sh QUEUE   (QUEUE = gutenberg or shakespeare; run both at once
# on a 2-core machine, one torch thread each). DATA points at local copies (offline machine);
# leave it out to download the corpus instead.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONUNBUFFERED=1
SHARED=../shared/data
mkdir -p runs results
train() {  # train NAME [papermill parameters...]
    local name=$1; shift
    python -m papermill train_model.ipynb "runs/$name.ipynb" -p RUN_MODE quick "$@"
    cp "checkpoints/$name/metrics.json" "results/$name.json"
}
case "${1:?gutenberg or shakespeare}" in
    gutenberg)
        train mdlm_quick_gutenberg_prose -p DATA "$SHARED/gutenberg_prose.txt"
        train ar_quick_gutenberg_prose -p DATA "$SHARED/gutenberg_prose.txt" -p OBJECTIVE ar
        ;;
    shakespeare)
        train mdlm_quick_tinyshakespeare -p DATA "$SHARED/tinyshakespeare.txt"
        train ar_quick_tinyshakespeare -p DATA "$SHARED/tinyshakespeare.txt" -p OBJECTIVE ar
        train mdlm_notc_quick_tinyshakespeare -p DATA "$SHARED/tinyshakespeare.txt" \
            -p TIME_CONDITIONING False
        ;;
esac
