#!/bin/sh
# Install llava-video-mcp into .venv with the PyTorch build that fits this machine, then the project itself.
#
#   scripts/install.sh          the server
#   scripts/install.sh test     the server and what the tests need
#
# pip's default PyTorch wheel on Linux is the CUDA build (several GB of CUDA packages): right on a machine with an
# NVIDIA GPU, wasted on one without. So on Linux without `nvidia-smi`, PyTorch's CPU build is installed first
# (about 200 MB); on a Mac, PyPI's wheel is already the one with Metal (mps) support. A torch already in .venv is
# kept as it is.
#
#   TORCH_INDEX=pypi scripts/install.sh      never use PyTorch's own index (for a mirror that proxies PyPI only)
#   TORCH_INDEX=URL scripts/install.sh       take the CPU build from this index instead (a mirror of PyTorch's)
set -eu
cd "$(dirname "$0")/.."
extras="${1:-}"
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
index="${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
if [ "$index" != "pypi" ] && ! .venv/bin/python -c "import torch" 2>/dev/null; then
    if [ "$(uname -s)" = "Linux" ] && ! command -v nvidia-smi >/dev/null 2>&1; then
        echo "No NVIDIA GPU found: installing PyTorch's CPU build from $index." >&2
        .venv/bin/pip install torch --index-url "$index"
    fi
fi
if [ -n "$extras" ]; then
    .venv/bin/pip install -e ".[$extras]"
else
    .venv/bin/pip install -e .
fi
