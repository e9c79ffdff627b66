"""`make templates`: (re)write the example workflows in example_workflows/ and their thumbnails.

    python tests/aid_harness/templates.py                  every registered workflow
    python tests/aid_harness/templates.py aid_text_interpolation [...]   only these
    python tests/aid_harness/templates.py --json-only      the JSON files, no runs

Each JSON file is built from its description in example_workflows.py (with the model note). Each
thumbnail (`<name>.jpg`, what ComfyUI's template browser shows) comes from a real run of that
workflow on the ComfyUI host, in this process, with the random-weight stand-ins of its models at
a small size: four frames of the sequence, first to last, in a 2 x 2 grid. Its JPEG comment
records the hash of the workflow's prompt, so tests/test_workflows.py can tell a stale thumbnail.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

if __name__ == "__main__":  # run as a script: tests/ on sys.path, this folder off it (its names shadow ComfyUI's)
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aid_harness.example_workflows import (WORKFLOWS, WORKFLOWS_DIR, prepare_stand_ins, shrink,  # noqa: E402
                                           use_stand_ins, write_workflows)
from aid_harness.workflow_format import ui_to_api  # noqa: E402

# The run behind a thumbnail: small enough for a CPU, the clip played once from A to B.
THUMBNAIL_SIZES = {"width": 128, "height": 128, "steps": 4}
CLIP_AS_SEQUENCE = {"loop": "forward", "hold_first": 0, "hold_last": 0, "reverse": False}
TILE, GRID = 160, 2  # a 320 x 320 card, as the template browser shows them
JPEG_QUALITY = 82
COMMENT_PREFIX = "aid-thumbnail prompt-sha256="


def prompt_digest(workflow: dict, object_info: dict) -> str:
    """sha256 of the API prompt the workflow runs as (layout and notes do not count)."""
    return hashlib.sha256(json.dumps(ui_to_api(workflow, object_info), sort_keys=True).encode()).hexdigest()


def thumbnail_digest(path: Path) -> str | None:
    """The prompt hash recorded in a thumbnail made by make_thumbnail, or None."""
    from PIL import Image

    with Image.open(path) as image:
        comment = image.info.get("comment", b"")
    comment = comment.decode() if isinstance(comment, bytes) else str(comment)
    return comment[len(COMMENT_PREFIX):].split()[0] if comment.startswith(COMMENT_PREFIX) else None


def decode_clip(path: Path) -> list:
    """Every frame of a clip the video node saved, as PIL images."""
    from PIL import Image, ImageSequence

    if path.suffix in (".mp4", ".webm"):
        import av

        with av.open(str(path)) as container:
            return [frame.to_image() for frame in container.decode(video=0)]
    with Image.open(path) as image:
        return [frame.convert("RGB") for frame in ImageSequence.Iterator(image)]


def grid(frames: list):
    """GRID x GRID tiles of evenly spaced frames, the first and the last included."""
    from PIL import Image

    count = GRID * GRID
    picks = [round(i * (len(frames) - 1) / (count - 1)) for i in range(count)]
    card = Image.new("RGB", (TILE * GRID, TILE * GRID))
    for position, index in enumerate(picks):
        tile = frames[index].resize((TILE, TILE), Image.Resampling.BICUBIC)
        card.paste(tile, ((position % GRID) * TILE, (position // GRID) * TILE))
    return card


def make_thumbnail(name: str, runner, base: Path, object_info: dict) -> Path:
    """Run the shipped workflow `name` with stand-ins and write `<stem>.jpg` beside it; returns its path."""
    workflow = json.loads((WORKFLOWS_DIR / name).read_text())
    prompt = ui_to_api(workflow, object_info)
    digest = prompt_digest(workflow, object_info)
    use_stand_ins(prompt, prepare_stand_ins(workflow, base))
    shrink(prompt, THUMBNAIL_SIZES)
    for node in prompt.values():
        if node["class_type"] == "AIDFramesToVideo":
            node["inputs"].update(CLIP_AS_SEQUENCE)
    result = runner.run(prompt, {"extra_pnginfo": {"workflow": workflow}}).raise_for_error()
    clips = [f for f in result.output_files(base) if f.suffix in (".mp4", ".webm", ".gif", ".webp")]
    if not clips:
        raise RuntimeError(f"{name} saved no clip (AID Frames to Video); a thumbnail needs its frames.")
    path = (WORKFLOWS_DIR / name).with_suffix(".jpg")
    grid(decode_clip(clips[-1])).save(path, "JPEG", quality=JPEG_QUALITY, optimize=True,
                                      comment=f"{COMMENT_PREFIX}{digest} (random-weight stand-ins, "
                                              f"{THUMBNAIL_SIZES['width']} px, {THUMBNAIL_SIZES['steps']} steps)")
    return path


def workflow_file_name(text: str) -> str:
    """'aid_text_interpolation', its .json name or a path to it -> the registered file name."""
    name = Path(text).name
    name = name if name.endswith(".json") else name + ".json"
    if name not in WORKFLOWS:
        raise SystemExit(f"[aid templates] no example workflow '{text}'; registered: "
                         f"{', '.join(sorted(Path(n).stem for n in WORKFLOWS))}")
    return name


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="workflows to (re)make (default: every registered one)")
    parser.add_argument("--json-only", action="store_true", help="write the JSON files only, no runs")
    options = parser.parse_args(argv)
    names = [workflow_file_name(n) for n in options.names] or list(WORKFLOWS)

    from aid_harness import host
    from aid_harness.runner import InProcessRunner
    from aid_harness.workflow_format import object_info_from_loaded_nodes

    root, how = host.find_comfyui()
    if how.startswith("pinned"):
        host.provision_pinned_comfyui(root)
    base = host.make_base_directory(Path(tempfile.mkdtemp(prefix="aid-templates-")))
    try:
        booted = host.boot_in_process(root, base)
        object_info = object_info_from_loaded_nodes()
        for path in write_workflows(object_info, names=names):
            print(f"[aid templates] wrote {path.relative_to(host.REPO)}", flush=True)
        if options.json_only:
            return 0
        runner = InProcessRunner(booted)
        for name in names:
            path = make_thumbnail(name, runner, base, object_info)
            print(f"[aid templates] wrote {path.relative_to(host.REPO)} ({path.stat().st_size // 1024} KB) from a "
                  f"run of {name} with random-weight stand-ins", flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
