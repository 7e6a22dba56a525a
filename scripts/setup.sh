#!/usr/bin/env bash
# Create (or reuse) .venv in the repository root and install bertkit with what it needs.
# Without a GPU it installs the CPU build of torch (never a multi-GB CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION=${BERTKIT_TORCH_VERSION:-2.13.0}
PY=${PYTHON:-python3}

[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
VPY=.venv/bin/python
stamp=.venv/.bertkit-installed
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [[ -f $stamp && "$(cat "$stamp")" == "$want" ]] && "$VPY" -c "import bertkit, torch" 2>/dev/null; then
  exit 0
fi
# pip's own exit status counts; only the noise about missing local index folders is filtered out.
pip_q() { "$VPY" -m pip install --disable-pip-version-check -q "$@" 2> >(grep -v "is ignored" >&2); }

if ! "$VPY" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    pip_q "torch==$TORCH_VERSION"
  else
    # The CPU build by its local version label (a wheel on local disk or a configured index), else
    # PyTorch's CPU index; plain "torch" from PyPI would be a multi-GB CUDA build.
    "$VPY" -m pip install --disable-pip-version-check -q "torch==$TORCH_VERSION+cpu" 2>/dev/null \
      || pip_q "torch==$TORCH_VERSION" --index-url https://download.pytorch.org/whl/cpu \
               --extra-index-url https://pypi.org/simple
  fi
fi
"$VPY" -c "import torch" 2>/dev/null || { echo "setup: torch could not be installed" >&2; exit 1; }
pip_q -e ".[dev,onnx,serve,track,tune,chinese,docs,data,search]"
"$VPY" -c "import bertkit, torch; print('setup: bertkit', bertkit.__version__, 'torch', torch.__version__)"
echo "$want" > "$stamp"
