#!/bin/sh
# Install llava-video-mcp into .venv with the PyTorch build that fits this machine, then the project itself.
#
#   scripts/install.sh              the server
#   scripts/install.sh test         the server and what the tests need (also: docs, bench)
#   scripts/install.sh -v [test]    the same, showing pip's own output
#
# It prints a few lines of progress and, last, what to run next. pip's own output goes to .venv/install.log and is
# shown only with -v, or when a step fails (then its last lines, and the log's path).
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
#
# Clients start servers with their own PATH and folder, so the last step writes .venv/mcp.json: a host config whose
# command is this checkout's absolute path, ready to copy into any MCP client's configuration.
set -eu
cd "$(dirname "$0")/.."
verbose=0
if [ "${1:-}" = "-v" ]; then
    verbose=1
    shift
fi
extras="${1:-}"
here="$PWD"
log="$here/.venv/install.log"

say() { echo "install: $*" >&2; }

# Runs a step quietly: its output to the log, or, with -v, to the terminal. On failure, the log's last lines (unless
# the step may fail: --may-fail).
quietly() {
    may_fail=0
    if [ "$1" = "--may-fail" ]; then
        may_fail=1
        shift
    fi
    if [ "$verbose" = 1 ]; then
        "$@" >&2
        return
    fi
    if ! "$@" >>"$log" 2>&1; then
        [ "$may_fail" = 1 ] && return 1
        echo "install: this step failed: $*" >&2
        echo "install: its last lines (the whole output is in $log):" >&2
        tail -n 30 "$log" >&2
        return 1
    fi
}

say "making .venv ($(python3 --version 2>&1))"
python3 -m venv .venv
: >"$log"
quietly .venv/bin/python -m pip install --disable-pip-version-check --upgrade pip
pip_install() { quietly .venv/bin/python -m pip install --disable-pip-version-check "$@"; }
pip_try() { quietly --may-fail .venv/bin/python -m pip install --disable-pip-version-check "$@"; }
index="${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    if [ "$(uname -s)" = "Linux" ] && ! command -v nvidia-smi >/dev/null 2>&1; then
        if [ "$index" = "pypi" ]; then
            say "no NVIDIA GPU found, and TORCH_INDEX=pypi: PyPI's torch for Linux is the CUDA build (a few GB)"
        else
            say "no NVIDIA GPU found: installing PyTorch's CPU build from $index"
            pip_try --retries 1 --timeout 20 torch --index-url "$index" \
                || say "could not install torch from $index: taking PyPI's (on Linux, the CUDA build)"
        fi
    fi
fi
if [ -n "$extras" ]; then
    say "installing llava-video-mcp[$extras] and its dependencies (a minute or more)"
    pip_install -e ".[$extras]"
else
    say "installing llava-video-mcp and its dependencies (a minute or more)"
    pip_install -e .
fi
command="$here/.venv/bin/llava-video-mcp"
cat >.venv/mcp.json <<JSON
{
  "mcpServers": {
    "llava-video": {
      "command": "$command",
      "args": []
    }
  }
}
JSON
say "installed. A client config with this checkout's absolute path: $here/.venv/mcp.json"
say "Claude Code: claude mcp add --scope user llava-video -- $command"
echo "Next: $command selftest   (all three tools on tiny models, no download; then add it to a client)" >&2
