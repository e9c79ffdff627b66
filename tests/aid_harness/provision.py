"""Provision the ComfyUI host, requirements and (for the tests) the random models into the current venv.

Called by setup.sh: `--for test` (default) installs the test tools and builds the cached models the
test suite needs; `--for demo` installs only what ComfyUI and the pack need (the demo builds the
stand-ins of the models its workflow names itself). Installs requirements only when some are new.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aid_harness import host  # noqa: E402

# ComfyUI's server imports requests (app/frontend_management.py) but its requirements.txt omits it.
HOST_EXTRAS = ["requests"]
# pathspec: the Comfy Registry's own matcher, for the registry-zip test (tests/test_distribution.py);
# hypothesis: the property tests (tests/test_properties.py and others); playwright: the browser tests
# (tests/test_frontend.py) drive the system's chromium with it (never `playwright install`: no browser download).
TEST_REQUIREMENTS = ["pytest", "pathspec", "hypothesis", "playwright"]


def requirement_lines(purpose: str) -> list[str]:
    """ComfyUI's requirements without torch, the pack's, and for the tests their tools."""
    root, _ = host.find_comfyui()
    pack = [line.split("#", 1)[0].strip() for line in (host.REPO / "requirements.txt").read_text().splitlines()]
    return (host.host_requirements(root) + HOST_EXTRAS + [r for r in pack if r]
            + (TEST_REQUIREMENTS if purpose == "test" else []))


def install_requirements(lines: list[str]) -> None:
    """pip install `lines` unless every one was installed into this venv before (stamp file)."""
    stamp = Path(sys.prefix) / "aid-requirements.txt"
    done = set(stamp.read_text().splitlines()) if stamp.exists() else set()
    if set(lines) <= done:
        print(f"[aid] requirements already installed ({len(lines)})", flush=True)
        return
    print(f"[aid] installing {len(lines)} requirements: ComfyUI's (without torch), the pack's"
          + (" and the test tools" if "pytest" in lines else ""), flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-qq", *lines], check=True)
    stamp.write_text("\n".join(sorted(done | set(lines))) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--for", dest="purpose", choices=("test", "demo"), default="test")
    options = parser.parse_args(argv)
    root, how = host.find_comfyui()
    if how.startswith("pinned"):
        host.provision_pinned_comfyui(root)
    print(f"[aid] ComfyUI {host.comfyui_version(root)} at {root} ({how})", flush=True)
    install_requirements(requirement_lines(options.purpose))
    if options.purpose == "test":
        env = dict(os.environ, AID_COMFYUI_DIR=str(root))
        subprocess.run([sys.executable, str(Path(__file__).with_name("models.py"))], check=True, env=env)
        print(f"[aid] ready: python {sys.executable}, cache {host.cache_dir()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
