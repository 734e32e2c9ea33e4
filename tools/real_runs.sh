#!/usr/bin/env bash
# The project's real runs, with the parameters that made the committed results.
# Usage: bash tools/real_runs.sh [QUEUE]
#   QUEUE = gutenberg, gutenberg_seeds, third_seed, conditioning, gated_twin, shakespeare,
#   longer (Tiny Shakespeare), longer_gutenberg, all; or former: the runs named *_b32 in results/, made with quick mode's
#   first defaults (32 windows a step, 1,600 steps, peak learning rate 1.5e-3, 2,048 tokens), and
#   an MDLM without time conditioning on Tiny Shakespeare at those settings, which no committed
#   run has; or v2048: the runs named *_v2048, made with the defaults before the vocabulary grew
#   to 3,072 tokens (2,048 tokens, 3,650 steps of 16 windows at a peak learning rate of 1e-3),
#   and two runs of plain blocks no committed run has (the second seed, Tiny Shakespeare)
# Runs one after another, each with all CPU threads (two runs side by side on a 2-core machine
# slow each other down about six-fold). The corpora are read from local copies in $SHARED
# (default ../shared/data; this machine is offline): SHARED=/path/to/texts bash ... elsewhere.
# The default corpus is the folder of its 23 books: the last tenth of each book is held out.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
SHARED=${SHARED:-../shared/data}
mkdir -p runs results
FORMER=""  # _b32 or _v2048 for the runs with quick mode's former defaults, which EXTRA sets
EXTRA=()
train() {  # train NAME [papermill parameters...]: writes checkpoints/NAME
    local name=$1; shift
    # OVERWRITE: a queue run again makes its runs again, over the last time's (their figures
    # are in results/ already); without it train_model.ipynb refuses a folder that holds a run
    python -m papermill train_model.ipynb "runs/$name.ipynb" -p RUN_MODE quick "$@" \
        "${EXTRA[@]}" -p OUT_DIR "checkpoints/$name" -p OVERWRITE True
    python tools/collect_metrics.py "checkpoints/$name/metrics.json" "results/$name.json" \
        --notebook "runs/$name.ipynb"
}
corpus() {  # corpus DATA NAME [SEED]: MDLM, its AR twin, MDLM without time conditioning
    local data=$1 name=$2$FORMER seed=${3:-1337} suffix=""
    [ "$seed" != 1337 ] && suffix=_seed$seed
    train "mdlm_quick_$name$suffix" -p DATA "$data" -p SEED "$seed"
    train "ar_quick_$name$suffix" -p DATA "$data" -p OBJECTIVE ar -p SEED "$seed"
    train "mdlm_notc_quick_$name$suffix" -p DATA "$data" -p TIME_CONDITIONING False -p SEED "$seed"
}
constant() {  # constant DATA NAME: the control of time conditioning (the guide's 5.1), 2 seeds
    local seed suffix
    for seed in 1337 1338; do
        suffix=""
        [ "$seed" != 1337 ] && suffix=_seed$seed
        train "mdlm_const_quick_$2$FORMER$suffix" -p DATA "$1" -p TIME_CONDITIONING False \
            -p CONSTANT_CONDITIONING True -p SEED "$seed"
    done
}
gated_twin() {  # gated_twin DATA NAME SEEDS...: the twin on the MDLM's gated blocks, fed a constant
    local data=$1 name=$2 seed suffix
    shift 2
    for seed in "$@"; do
        suffix=""
        [ "$seed" != 1337 ] && suffix=_seed$seed
        train "ar_const_quick_$name$suffix" -p DATA "$data" -p OBJECTIVE ar \
            -p CONSTANT_CONDITIONING True -p SEED "$seed"
    done
}
third_seed() {  # third_seed DATA NAME: the MDLM's three variants and the plain twin, seed 1339
    local data=$1 name=$2
    corpus "$data" "$name" 1339
    train "mdlm_const_quick_${name}_seed1339" -p DATA "$data" -p TIME_CONDITIONING False \
        -p CONSTANT_CONDITIONING True -p SEED 1339
}
longer() {  # longer DATA NAME STEPS: the quick MDLM and its twin for more steps than quick mode
    local objective run
    for objective in mdlm ar; do  # about 6 minutes per 1,000 steps each on 2 cores
        run=${objective}_quick$3_$2
        train "$run" -p DATA "$1" -p OBJECTIVE $objective \
            -p MAX_STEPS "$3" -p EVAL_EVERY $(($3 / 16)) -p OUT_DIR "checkpoints/$run"
    done
}
case "${1:-all}" in
    gutenberg) corpus "$SHARED/gutenberg" gutenberg ;;
    gutenberg_seeds) corpus "$SHARED/gutenberg" gutenberg 1338 ;;
    conditioning) constant "$SHARED/gutenberg" gutenberg ;;
    third_seed) third_seed "$SHARED/gutenberg" gutenberg ;;
    gated_twin) gated_twin "$SHARED/gutenberg" gutenberg 1337 1338 1339 &&
        gated_twin "$SHARED/tinyshakespeare.txt" tinyshakespeare 1337 ;;
    shakespeare) corpus "$SHARED/tinyshakespeare.txt" tinyshakespeare ;;
    longer) longer "$SHARED/tinyshakespeare.txt" tinyshakespeare 4800 ;;
    longer_gutenberg) longer "$SHARED/gutenberg" gutenberg 6400 ;;
    former) FORMER=_b32
        EXTRA=(-p BATCH_SIZE 32 -p MAX_STEPS 1600 -p LEARNING_RATE 0.0015 -p EVAL_EVERY 100
            -p VOCAB_SIZE 2048)
        corpus "$SHARED/gutenberg" gutenberg && corpus "$SHARED/gutenberg" gutenberg 1338 &&
        constant "$SHARED/gutenberg" gutenberg &&
        corpus "$SHARED/tinyshakespeare.txt" tinyshakespeare ;;
    v2048) FORMER=_v2048
        EXTRA=(-p VOCAB_SIZE 2048 -p MAX_STEPS 3650)
        corpus "$SHARED/gutenberg" gutenberg && corpus "$SHARED/gutenberg" gutenberg 1338 &&
        corpus "$SHARED/tinyshakespeare.txt" tinyshakespeare ;;
    all) corpus "$SHARED/gutenberg" gutenberg && corpus "$SHARED/gutenberg" gutenberg 1338 &&
        constant "$SHARED/gutenberg" gutenberg &&
        corpus "$SHARED/tinyshakespeare.txt" tinyshakespeare &&
        longer "$SHARED/tinyshakespeare.txt" tinyshakespeare 4800 &&
        longer "$SHARED/gutenberg" gutenberg 6400 ;;
    *) echo "usage: bash tools/real_runs.sh" \
        "[gutenberg|gutenberg_seeds|third_seed|conditioning|gated_twin|shakespeare|longer|" \
        "longer_gutenberg|all|former|v2048]" \
        >&2
        exit 2 ;;
esac
