"""`make demo` as a user meets it: what it prints, what it builds, and a clear line when asked for nothing."""
import re
import subprocess
import sys

import av
import pytest

from aid_harness import host

DEMO = host.REPO / "tests" / "aid_harness" / "demo.py"


def run_demo(*args, timeout=900):
    return subprocess.run([sys.executable, str(DEMO), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=host.REPO)


def test_a_workflow_that_does_not_exist_gets_one_line_and_builds_nothing(tmp_path):
    done = run_demo("--workflow", "aid_text_interpolatoin", "--output", str(tmp_path / "out"), timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert "no workflow 'aid_text_interpolatoin'" in line and "aid_text_interpolation" in line
    assert not (tmp_path / "out").exists()


def test_ckpt_that_is_no_file_gets_one_line(tmp_path):
    done = run_demo("--ckpt", str(tmp_path / "missing.safetensors"), "--output", str(tmp_path / "out"), timeout=120)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "is not a file" in done.stderr


@pytest.mark.slow
@pytest.mark.server
def test_demo_prints_what_it_changed_the_log_and_a_playable_video(tmp_path):
    out = tmp_path / "demo-output"
    done = run_demo("--workflow", "workflows/aid_text_interpolation.json", "--output", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    text = done.stdout
    assert "aid-random-sd15-tiny" in text and "random-weight stand-ins" in text
    assert re.search(r"width 512 -> 128, height 512 -> 128, steps 25 -> 8 \(", text), text
    assert f"its log: {out / 'comfyui-server.log'}" in text and (out / "comfyui-server.log").stat().st_size > 0
    (video_line,) = [line for line in text.splitlines() if line.strip().startswith("video")]
    video = video_line.split()[1]
    with av.open(video) as container:
        assert sum(1 for _ in container.decode(video=0)) == 16  # 7 frames, ping-pong without repeated ends, 2+2 held
    assert "preview image" in text and "temporary" in text
    # Only the stand-in this workflow names: no other model folders in the demo's base directory.
    assert sorted(p.name for p in (out / "models").iterdir() if any(p.iterdir())) == ["checkpoints"]
