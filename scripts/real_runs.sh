#!/usr/bin/env bash
# The project's real runs (issue 8), with the parameters that made the committed results.
# Usage: bash scripts/real_runs.sh [QUEUE]   (QUEUE = gutenberg, shakespeare, longer or all)
# Runs one after another, each with all CPU threads (two runs side by side on a 2-core machine
# slow each other down about six-fold). The corpora are read from local copies in $SHARED
# (default ../shared/data; this machine is offline): SHARED=/path/to/texts bash ... elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
SHARED=${SHARED:-../shared/data}
mkdir -p runs results
train() {  # train NAME [papermill parameters...]: the run must write checkpoints/NAME
    local name=$1; shift
    python -m papermill train_model.ipynb "runs/$name.ipynb" -p RUN_MODE quick "$@"
    python scripts/collect_metrics.py "checkpoints/$name/metrics.json" "results/$name.json"
}
corpus() {  # corpus FILE: MDLM, its AR twin, MDLM without time conditioning
    local data="$SHARED/$1.txt"
    train "mdlm_quick_$1" -p DATA "$data"
    train "ar_quick_$1" -p DATA "$data" -p OBJECTIVE ar
    train "mdlm_notc_quick_$1" -p DATA "$data" -p TIME_CONDITIONING False
}
longer() {  # the quick MDLM and its twin on Tiny Shakespeare for three times the steps
    local objective name
    for objective in mdlm ar; do  # about 25 minutes each
        name=${objective}_quick4800_tinyshakespeare
        train "$name" -p DATA "$SHARED/tinyshakespeare.txt" -p OBJECTIVE $objective \
            -p MAX_STEPS 4800 -p EVAL_EVERY 300 -p OUT_DIR "checkpoints/$name"
    done
}
case "${1:-all}" in
    gutenberg) corpus gutenberg_prose ;;
    shakespeare) corpus tinyshakespeare ;;
    longer) longer ;;
    all) corpus gutenberg_prose && corpus tinyshakespeare && longer ;;
    *) echo "usage: bash scripts/real_runs.sh [gutenberg|shakespeare|longer|all]" >&2; exit 2 ;;
esac
