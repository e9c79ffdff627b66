#!/usr/bin/env bash
# Set up what the tests (--for test, the default) or the demo (--for demo) need, on a fresh machine
# or again (a second run reuses what the first built): a Python 3.11 venv with torch 2.14.1 /
# torchvision 0.29.1, the ComfyUI host (COMFYUI_PATH, the enclosing ComfyUI, or pinned 0.3.75), its
# and the pack's requirements; for the tests also their tools and the cached random-weight models.
#
# torch: 2.14.1 with torchvision 0.29.1 is the pair installable here that ComfyUI 0.3.75 starts
# with. It is a CUDA build even on a CPU machine (measured with du: 5.2 GiB of the 6.1 GiB venv,
# 3.1 GiB of it nvidia-* libraries and 0.9 GiB triton). The only CPU build on offer, torch
# 2.13.0+cpu, would make the venv 1.7 GiB (4.4 GiB less), but no torchvision loads beside it
# (PyPI's 0.28.0 links libtorch_cuda.so: "operator torchvision::nms does not exist"), and ComfyUI
# imports torchvision at start-up (comfy/sd.py -> comfy/ldm/cascade/stage_c_coder.py), so
# main.py exits. Where pip can reach a CPU build of this pair, that is the one to install.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON="${PYTHON:-python3.11}"
VENV="${AID_VENV:-.venv}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "[aid] creating a Python 3.11 venv in $VENV"
  "$PYTHON" -m venv "$VENV"
fi
if ! "$VENV/bin/python" - <<'PY' 2>/dev/null
import sys, torch, torchvision
ok = torch.__version__.split("+")[0] == "2.14.1" and torchvision.__version__.split("+")[0] == "0.29.1"
sys.exit(0 if ok else 1)
PY
then
  echo "[aid] installing torch 2.14.1 and torchvision 0.29.1 into $VENV (5.2 GiB with its CUDA libraries, first run only)"
  "$VENV/bin/python" -m pip install --disable-pip-version-check -qq torch==2.14.1 torchvision==0.29.1
fi
"$VENV/bin/python" tests/aid_harness/provision.py "$@"
