#!/usr/bin/env bash
# Set up everything the tests and the demo need, on a fresh machine or again (a second run
# reuses what the first built): a Python 3.11 venv with torch 2.14.1 / torchvision 0.29.1,
# the ComfyUI host (COMFYUI_PATH, the enclosing ComfyUI, or pinned 0.3.75), its and the
# pack's requirements, and the cached random-weight models.
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
  echo "[aid] installing torch==2.14.1 torchvision==0.29.1 into $VENV"
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q torch==2.14.1 torchvision==0.29.1
fi
"$VENV/bin/python" tests/aid_harness/provision.py "$@"
