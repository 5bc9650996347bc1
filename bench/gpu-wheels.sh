#!/usr/bin/env bash
# Downloads, into .whl/ (git-ignored), the wheels the GPU machine lacks: its image has torch, transformers,
# accelerate, numpy and pytest, but not mcp, av, yt-dlp, pydantic, openai, ctranslate2 or faster-whisper. Python 3.12, x86-64 manylinux, no
# dependency resolution there (nothing can be fetched on it): every needed wheel is downloaded here, about 50 MB.
# Then run bench/gpu.sh there, carrying .whl (see bench/gpu.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d .whl \
    "mcp>=2.3,<3" "av>=14.0" "yt-dlp>=2025.1.1" "pydantic>=2.7,<3" "openai>=1.55" "pytest-timeout>=2.3" \
    "ctranslate2>=4.5" "faster-whisper>=1.1" "scenedetect>=0.6.4"
du -sh .whl
