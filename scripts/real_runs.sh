#!/usr/bin/env bash
# The project's real runs (issue 8), with the parameters that made the committed results.
# Usage: bash scripts/real_runs.sh [QUEUE]
#   QUEUE = gutenberg, shakespeare, longer (Tiny Shakespeare), longer_gutenberg or all
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
    python scripts/collect_metrics.py "checkpoints/$name/metrics.json" "results/$name.json" \
        --notebook "runs/$name.ipynb"
}
corpus() {  # corpus FILE: MDLM, its AR twin, MDLM without time conditioning
    local data="$SHARED/$1.txt"
    train "mdlm_quick_$1" -p DATA "$data"
    train "ar_quick_$1" -p DATA "$data" -p OBJECTIVE ar
    train "mdlm_notc_quick_$1" -p DATA "$data" -p TIME_CONDITIONING False
}
longer() {  # longer CORPUS STEPS: the quick MDLM and its twin for more steps than quick mode
    local objective name
    for objective in mdlm ar; do  # about 5 minutes per 1,000 steps each
        name=${objective}_quick$2_$1
        train "$name" -p DATA "$SHARED/$1.txt" -p OBJECTIVE $objective \
            -p MAX_STEPS "$2" -p EVAL_EVERY $(($2 / 16)) -p OUT_DIR "checkpoints/$name"
    done
}
case "${1:-all}" in
    gutenberg) corpus gutenberg_prose ;;
    shakespeare) corpus tinyshakespeare ;;
    longer) longer tinyshakespeare 4800 ;;
    longer_gutenberg) longer gutenberg_prose 6400 ;;
    all) corpus gutenberg_prose && corpus tinyshakespeare && longer tinyshakespeare 4800 &&
        longer gutenberg_prose 6400 ;;
    *) echo "usage: bash scripts/real_runs.sh [gutenberg|shakespeare|longer|longer_gutenberg|all]" >&2
        exit 2 ;;
esac
