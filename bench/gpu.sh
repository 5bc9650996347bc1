#!/usr/bin/env bash
# The GPU checks, as one prepared run for a lent machine (one NVIDIA GPU, torch and transformers installed, no
# network). Each step has its own time limit, so an overrun costs that step alone; together at most 590 s.
#
#   1. python -m pytest -m gpu              the CUDA path: bf16 on auto, 32 frames and a follow-up, a long video
#                                           watched in full, speech heard in batches of 8
#   2. bench/speech.py --device cuda        an hour of audio through full-size whisper-large-v3-turbo (random
#      --minutes 60 --only-ours             weights), batches of 8 in float16: seconds_per_audio_hour, measured whole
#   3. bench/model.py --device cuda         the 0.5b model, 8 frames, 32 new tokens: first call and follow-up,
#      --configs auto compiled              vision s/frame, TTFT, decode tokens/s, eager beside --compile-decode
#   4. bench/long.py --device cuda          the 60-minute video watched in full: map step per window, reduce step
#      --skip-decode
#
# The results this run wrote (bench/results/*-cuda.json), summary.txt and logs.tgz come back under $OUT. Prepare
# the wheels here first (bench/gpu-wheels.sh), then call the device tool's run with carry [".whl"] and the command
# `bash bench/gpu.sh`.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu-out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH="/tmp/site:$PWD"
else
    export PYTHONPATH="$PWD"
fi
LOGS=$(mktemp -d)
{
    date -u +%FT%TZ
    nvidia-smi -L
    python3 -c 'import torch, transformers; print(torch.__version__, transformers.__version__)'
} >"$OUT/summary.txt" 2>&1

step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    local started=$SECONDS
    timeout "$limit" "$@" >"$LOGS/$name.log" 2>&1
    echo "$name: exit $? in $((SECONDS - started)) s" | tee -a "$OUT/summary.txt"
}

step gpu-tests 180 python3 -m pytest -m gpu -q -p no:cacheprovider
step speech 160 python3 bench/speech.py --weights random --device cuda --minutes 60 --only-ours --skip-first-call
step model 150 python3 bench/model.py --device cuda --configs auto compiled
step long 100 python3 bench/long.py --device cuda --skip-decode
# Only the results this run wrote (the committed ones stay behind); at most 8 files come back.
find bench/results -name '*-cuda.json' -newer "$OUT/summary.txt" -exec cp {} "$OUT/" \;
tar -czf "$OUT/logs.tgz" -C "$LOGS" .
tail -n 3 "$LOGS"/*.log
