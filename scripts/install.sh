#!/bin/sh
# Install llava-video-mcp into .venv with the PyTorch build that fits this machine, then the project itself.
#
#   scripts/install.sh          the server
#   scripts/install.sh test     the server and what the tests need
#
# pip's default PyTorch wheel on Linux is the CUDA build (several GB of CUDA packages): right on a machine with an
# NVIDIA GPU, wasted on one without. So on Linux without `nvidia-smi`, PyTorch's CPU build is installed first
# (about 200 MB; the whole install then takes about 1.5 GB of disk, 2 GB with the test extra, plus 1.7 GB for the
# model on first use); on a Mac, PyPI's wheel is already the one with Metal (mps) support. A torch already in .venv
# is kept as it is. PyTorch's index is given one short try: when it cannot be reached, PyPI's torch is installed
# instead, with a warning.
#
#   TORCH_INDEX=pypi scripts/install.sh      never use PyTorch's own index (for a mirror that proxies PyPI only;
#                                            on Linux, PyPI has only the CUDA build: a few GB more)
#   TORCH_INDEX=URL scripts/install.sh       take the CPU build from this index instead (a mirror of PyTorch's)
set -eu
cd "$(dirname "$0")/.."
extras="${1:-}"
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
index="${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    if [ "$(uname -s)" = "Linux" ] && ! command -v nvidia-smi >/dev/null 2>&1; then
        if [ "$index" = "pypi" ]; then
            echo "No NVIDIA GPU found, and TORCH_INDEX=pypi: PyPI's torch for Linux is the CUDA build (a few GB)." >&2
        else
            echo "No NVIDIA GPU found: installing PyTorch's CPU build from $index." >&2
            .venv/bin/pip install --retries 1 --timeout 20 torch --index-url "$index" \
                || echo "Could not install torch from $index: taking PyPI's (on Linux, the CUDA build)." >&2
        fi
    fi
fi
if [ -n "$extras" ]; then
    .venv/bin/pip install -e ".[$extras]"
else
    .venv/bin/pip install -e .
fi
command="$PWD/.venv/bin/llava-video-mcp"
cat >&2 <<DONE

Installed. Try it without the model download: $command selftest
Add it to a client:
  Claude Code:    claude mcp add llava-video -- "$command"
  Claude Desktop: {"mcpServers": {"llava-video": {"command": "$command"}}}
DONE
