#!/usr/bin/env bash
# Set up the mmcompress development/runtime stack in .venv/ (idempotent).
#
# Installs the combination measured to work on CPU with torch 2.13 (docs/installation.md
# explains every pin). The compiled mmcv wheel is cached outside the repo, keyed by the
# Python and torch versions, so a second set-up reuses it and takes about a minute.
#
# Usage: bash tools/setup_env.sh            (VENV=path overrides .venv)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
CACHE="${MMCOMPRESS_CACHE:-$HOME/.cache/mmcompress}"
TORCH_VERSION=2.13.0
TORCHVISION_VERSION=0.28.0
MMCV_VERSION=2.1.0
# pinned: the formatter's output changes between ruff releases (tests/test_style.py)
RUFF_VERSION=0.17.5

step() { printf '\n[setup] %s\n' "$*"; }
fail() { printf '\n[setup] FAILED: %s\n' "$*" >&2; exit 1; }
trap 'fail "command on line $LINENO exited with status $? (see the output above)"' ERR

step "Debian package dataset-fashion-mnist (real classification data)"
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && \
   [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq || fail "apt-get update failed"
    $SUDO apt-get install -y -qq dataset-fashion-mnist || fail "apt-get install dataset-fashion-mnist failed"
  else
    echo "[setup] warning: apt-get not found; install Fashion-MNIST IDX files and set MMCOMPRESS_FASHION_MNIST" >&2
  fi
else
  echo "already installed"
fi

step "virtual environment $VENV"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" || fail "python3 -m venv failed (install python3-venv)"
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --disable-pip-version-check -q)

step "torch $TORCH_VERSION (CPU)"
if "$PY" -c "import torch" >/dev/null 2>&1; then
  echo "keeping torch $("$PY" -c 'import torch; print(torch.__version__)')"
else
  "${PIP[@]}" "torch==$TORCH_VERSION" || fail "torch==$TORCH_VERSION could not be installed"
fi
TORCH_INSTALLED="$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')"
PYVER="$("$PY" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')"

# Constraints keep every later install from pulling another torch (and GBs of CUDA).
CONSTRAINTS="$CACHE/constraints-py$PYVER-torch$TORCH_INSTALLED.txt"
mkdir -p "$CACHE"
cat > "$CONSTRAINTS" <<CONS
torch==$TORCH_INSTALLED
numpy<2
setuptools<82
mmcv==$MMCV_VERSION
CONS
PIPC=("${PIP[@]}" -c "$CONSTRAINTS")

step "build tools and pure-Python base (setuptools<82, numpy<2, mmengine 0.10.7, ruff $RUFF_VERSION)"
"${PIPC[@]}" "setuptools<82" wheel ninja packaging "numpy<2" "mmengine==0.10.7" \
  addict yapf pyyaml termcolor rich opencv-python-headless pillow matplotlib scipy \
  pytest pytest-timeout "pytest-xdist==3.8.0" "ruff==$RUFF_VERSION"

step "mmcv $MMCV_VERSION with compiled ops"
if "$PY" -c "import mmcv, mmcv.ops, sys; sys.exit(mmcv.__version__ != '$MMCV_VERSION')" >/dev/null 2>&1; then
  echo "already installed"
else
  WHEELDIR="$CACHE/wheels/py$PYVER-torch$TORCH_INSTALLED"
  mkdir -p "$WHEELDIR"
  WHEEL="$(ls "$WHEELDIR"/mmcv-$MMCV_VERSION-*.whl 2>/dev/null | head -n1 || true)"
  if [ -z "$WHEEL" ]; then
    echo "building mmcv $MMCV_VERSION from source (8-20 min on 2 cores); cached in $WHEELDIR"
    MMCV_WITH_OPS=1 MAX_JOBS="$(nproc)" FORCE_CUDA=0 \
      "$PY" -m pip wheel --no-build-isolation --no-deps -w "$WHEELDIR" "mmcv==$MMCV_VERSION" \
      || fail "building mmcv $MMCV_VERSION failed"
    WHEEL="$(ls "$WHEELDIR"/mmcv-$MMCV_VERSION-*.whl | head -n1)"
  else
    echo "reusing cached wheel $WHEEL"
  fi
  "${PIPC[@]}" "$WHEEL"
fi

step "torchvision $TORCHVISION_VERSION (no deps: keeps the CPU torch)"
"${PIPC[@]}" --no-deps "torchvision==$TORCHVISION_VERSION"

step "OpenMMLab downstream packages"
"${PIPC[@]}" "mmdet==3.3.0" "mmsegmentation==1.2.2" "mmpretrain==1.2.0" ftfy regex
"${PIPC[@]}" --no-deps "mmpose==1.3.2"
"${PIPC[@]}" json-tricks munkres xtcocotools

step "export and real-data packages"
"${PIPC[@]}" onnx onnxruntime scikit-learn scikit-image
"${PIPC[@]}" --no-deps "foolbox==3.3.4"

step "mmcompress (editable)"
"${PIPC[@]}" --no-deps -e "$ROOT"

step "fused quantizer kernels (C++, optional: fused=True falls back to eager without them)"
"$PY" -c "import sys; from mmcompress.quant.kernels import load_kernels; sys.exit(load_kernels() is None)" \
  || echo "[setup] warning: the fused quantizer kernels could not be built (needs a C++ compiler and ninja)" >&2

step "check"
"$PY" - <<'PYCHECK'
import mmcompress  # noqa: F401  (applies the compatibility fixes)
import mmcv.ops, mmdet, mmseg, mmpretrain, mmpose, torchvision, onnxruntime  # noqa
import torch
print(f'torch {torch.__version__}, mmcv {mmcv.__version__}, mmdet {mmdet.__version__}, '
      f'mmseg {mmseg.__version__}, mmpretrain {mmpretrain.__version__}, mmpose {mmpose.__version__}')
PYCHECK
echo "[setup] done: $VENV"
