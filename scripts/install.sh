#!/usr/bin/env bash
# Install what is missing into ./.venv: `bash scripts/install.sh` for the program,
# `bash scripts/install.sh --test` for the program and its test tools. Safe to run again.
#
# torch comes first, on its own, so that pip never resolves a loose "torch" requirement to a
# multi-GB CUDA build on a machine without a GPU:
#   - a torch that already imports in the venv is kept;
#   - else, where this machine has a CPU build of torch on disk (pip's find-links, as on the
#     CI machine), `torch==$TORCH_CPU_VERSION` takes it;
#   - else, on Linux without an NVIDIA driver, the CPU build from PyTorch's own CPU index;
#   - else, plain PyPI torch (macOS and Windows builds are CPU builds; Linux with a GPU wants CUDA).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TORCH_CPU_VERSION=${TORCH_CPU_VERSION:-2.13.0}
extras=""
[ "${1:-}" = "--test" ] && extras="[test]"

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
PY=.venv/bin/python
PIP="$PY -m pip --disable-pip-version-check"

if ! $PY -c "import torch" >/dev/null 2>&1; then
    find_links=$($PIP config get global.find-links 2>/dev/null || true)
    if [ -n "$find_links" ] && ls "$find_links"/torch-"$TORCH_CPU_VERSION"+cpu-*.whl >/dev/null 2>&1; then
        $PIP install -q "torch==$TORCH_CPU_VERSION"
    elif [ "$(uname -s)" = "Linux" ] && ! command -v nvidia-smi >/dev/null 2>&1; then
        $PIP install -q torch --index-url https://download.pytorch.org/whl/cpu
    else
        $PIP install -q torch
    fi
fi

# Everything else; torch is already satisfied, so nothing pulls another build of it.
if ! $PY -c "import functional_fit, parity" >/dev/null 2>&1 || [ -n "$extras" ] \
    || [ pyproject.toml -nt .venv/.installed ]; then
    $PIP install -q -e ".$extras"
    touch .venv/.installed
fi
