"""Provision the ComfyUI host and the test models into the current venv (called by setup.sh).

Prints what it set up; installs requirements only when they changed since the last run.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aid_harness import host  # noqa: E402

TEST_REQUIREMENTS = ["pytest", "requests", "hypothesis"]


def install_requirements(root: Path) -> None:
    """pip install the host's requirements (without torch), the pack's and the tests' when they changed."""
    pack_requirements = [line.split("#", 1)[0].strip() for line in (host.REPO / "requirements.txt").read_text()
                         .splitlines()]
    lines = host.host_requirements(root) + [r for r in pack_requirements if r] + TEST_REQUIREMENTS
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    stamp = Path(sys.prefix) / "aid-requirements.sha256"
    if stamp.exists() and stamp.read_text() == digest:
        print(f"[aid] requirements already installed ({len(lines)} lines, stamp {stamp})", flush=True)
        return
    print(f"[aid] installing {len(lines)} requirements: ComfyUI's (without torch, torchvision, torchaudio), "
          f"the pack's and the tests' (pytest, hypothesis)", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-q", *lines], check=True)
    stamp.write_text(digest)


def main() -> int:
    root, how = host.find_comfyui()
    if how.startswith("pinned"):
        host.provision_pinned_comfyui(root)
    print(f"[aid] ComfyUI host: {root} (version {host.comfyui_version(root)}, chosen as {how})", flush=True)
    install_requirements(root)
    env = dict(os.environ, AID_COMFYUI_DIR=str(root))
    subprocess.run([sys.executable, str(Path(__file__).with_name("models.py"))], check=True, env=env)
    print(f"[aid] ready: python {sys.executable}, cache {host.cache_dir()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
