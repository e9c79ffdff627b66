"""`make templates`: (re)write the example workflows in example_workflows/ and their thumbnails.

    python tests/aid_harness/templates.py                  every registered workflow
    python tests/aid_harness/templates.py aid_text_interpolation [...]   only these
    python tests/aid_harness/templates.py --json-only      the JSON files, no thumbnails
    python tests/aid_harness/templates.py --ckpt model.safetensors   thumbnails rendered with real weights

Each JSON file is built from its description in example_workflows.py (with the model note). Each
thumbnail (`<name>.jpg`, what ComfyUI's template browser shows) is a diagram drawn from the
workflow's own parameters (tools/thumbnails.py: the frames from A to B with their prompts and the
schedule curve, the keyframe timeline, the region layout, photo -> edit), clearly a diagram, not a
render. With --ckpt (make templates CKPT=...) the workflows that load a checkpoint run on it instead
and the thumbnail shows four of their frames, first to last, in a 2 x 2 grid (a workflow that saves
one image fills the card with it); --render does the same with the random-weight stand-ins. Every
thumbnail's JPEG comment records the hash of the workflow's prompt, so tests/test_workflows.py can
tell a stale one. A workflow that needs other packs (example_workflows.PEER_PACKS:
ComfyUI-Distributed) is written from the node definitions of a master and a worker server
(aid_harness/distributed.py), and rendered there.
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

from aid_harness import host  # noqa: E402
from aid_harness.example_workflows import (PEER_PACKS, WORKFLOWS, WORKFLOWS_DIR, prepare_stand_ins,  # noqa: E402
                                           shrink, use_stand_ins, write_workflows)
from aid_harness.workflow_format import ui_to_api  # noqa: E402

sys.path.insert(0, str(host.REPO / "tools"))
from thumbnails import diagram  # noqa: E402

# The run behind a thumbnail: small enough for a CPU, the clip played once from A to B.
THUMBNAIL_SIZES = {"width": 128, "height": 128, "steps": 4}
REAL_SIZES = {"width": 512, "height": 512, "steps": 20}  # --ckpt: a real checkpoint at its own size
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


def single_image_card(path: Path):
    """The whole card from one saved image (workflows that make one image, not a sequence)."""
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB").resize((TILE * GRID, TILE * GRID), Image.Resampling.BICUBIC)


def make_diagram(name: str, object_info: dict) -> Path:
    """Draw the shipped workflow `name`'s diagram into `<stem>.jpg` beside it; returns its path."""
    workflow = json.loads((WORKFLOWS_DIR / name).read_text())
    prompt = ui_to_api(workflow, object_info)
    title = Path(name).stem.replace("_", " ")
    path = (WORKFLOWS_DIR / name).with_suffix(".jpg")
    diagram(prompt, title).save(path, "JPEG", quality=JPEG_QUALITY, optimize=True,
                                comment=f"{COMMENT_PREFIX}{prompt_digest(workflow, object_info)} (diagram)")
    return path


def make_thumbnail(name: str, runner, base: Path, object_info: dict, checkpoint: Path | None = None) -> Path:
    """Run the shipped workflow `name` (with stand-ins, and `checkpoint` in place of the checkpoint it
    loads) and write four of its frames into `<stem>.jpg` beside it; returns its path."""
    workflow = json.loads((WORKFLOWS_DIR / name).read_text())
    prompt = ui_to_api(workflow, object_info)
    digest = prompt_digest(workflow, object_info)
    use_stand_ins(prompt, prepare_stand_ins(workflow, base))
    if checkpoint is not None:
        host.make_base_directory(base, {"checkpoints": [checkpoint]})
        for node in prompt.values():
            if node["class_type"] == "CheckpointLoaderSimple":
                node["inputs"]["ckpt_name"] = checkpoint.name
    shrink(prompt, THUMBNAIL_SIZES if checkpoint is None else REAL_SIZES)
    for node in prompt.values():
        if node["class_type"] == "AIDFramesToVideo":
            node["inputs"].update(CLIP_AS_SEQUENCE)
    result = runner.run(prompt, {"extra_pnginfo": {"workflow": workflow}}).raise_for_error()
    files = result.output_files(base)
    clips = [f for f in files if f.suffix in (".mp4", ".webm", ".gif", ".webp")]
    images = [f for f in files if f.suffix == ".png" and "temp" not in f.relative_to(base).parts]
    if not clips and not images:
        raise RuntimeError(f"{name} saved no clip (AID Frames to Video) and no image (Save Image); a thumbnail "
                           f"needs its frames.")
    path = (WORKFLOWS_DIR / name).with_suffix(".jpg")
    card = grid(decode_clip(clips[-1])) if clips else single_image_card(images[-1])
    card.save(path, "JPEG", quality=JPEG_QUALITY, optimize=True,
                                      comment=f"{COMMENT_PREFIX}{digest} ("
                                              f"{checkpoint.name if checkpoint else 'random-weight stand-ins'})")
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
    parser.add_argument("--json-only", action="store_true", help="write the JSON files only, no thumbnails")
    parser.add_argument("--render", action="store_true", help="thumbnails from runs with the random stand-ins")
    parser.add_argument("--ckpt", type=Path, help="thumbnails from runs of the workflows that load a checkpoint, "
                                                  "on this checkpoint file (the others keep their diagrams)")
    options = parser.parse_args(argv)
    names = [workflow_file_name(n) for n in options.names] or list(WORKFLOWS)
    if options.ckpt is not None and not options.ckpt.is_file():
        raise SystemExit(f"[aid templates] CKPT={options.ckpt} is not a file")

    from aid_harness.runner import InProcessRunner
    from aid_harness.workflow_format import object_info_from_loaded_nodes

    root, how = host.find_comfyui()
    if how.startswith("pinned"):
        host.provision_pinned_comfyui(root)
    base = host.make_base_directory(Path(tempfile.mkdtemp(prefix="aid-templates-")))
    in_process = [name for name in names if name not in PEER_PACKS]
    try:
        if in_process:
            booted = host.boot_in_process(root, base)
            object_info = object_info_from_loaded_nodes()
            for path in write_workflows(object_info, names=in_process):
                print(f"[aid templates] wrote {path.relative_to(host.REPO)}", flush=True)
            runner = InProcessRunner(booted)
            for name in [] if options.json_only else in_process:
                render = options.render or (options.ckpt is not None and _loads_a_checkpoint(name))
                if render:
                    report(make_thumbnail(name, runner, base, object_info, options.ckpt), name)
                else:
                    print(f"[aid templates] drew {make_diagram(name, object_info).relative_to(host.REPO)}",
                          flush=True)
        with_peers = [name for name in names if name in PEER_PACKS]
        if with_peers:
            make_with_peers(root, base / "distributed", with_peers, options.json_only, options.render)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


def report(path: Path, name: str) -> None:
    print(f"[aid templates] wrote {path.relative_to(host.REPO)} ({path.stat().st_size // 1024} KB) from a run of "
          f"{name} with random-weight stand-ins", flush=True)


def _loads_a_checkpoint(name: str) -> bool:
    workflow = json.loads((WORKFLOWS_DIR / name).read_text())
    return any(node.get("type") == "CheckpointLoaderSimple" for node in workflow.get("nodes", []))


def make_with_peers(root: Path, folder: Path, names: list[str], json_only: bool, render: bool = False) -> None:
    """Workflows with ComfyUI-Distributed's nodes: written from, and run on, a master and a worker server."""
    from aid_harness import models
    from aid_harness.distributed import DistributedPair

    models._bootstrap_comfy()  # the stand-in builders read ComfyUI's model definitions
    with DistributedPair(root, folder) as pair:
        object_info = pair.object_info()
        for path in write_workflows(object_info, names=names):
            print(f"[aid templates] wrote {path.relative_to(host.REPO)} (node definitions from a ComfyUI with "
                  f"{', '.join(sorted({p for n in names for p in PEER_PACKS[n]}))})", flush=True)
        for name in [] if json_only else names:
            if render:
                report(make_thumbnail(name, pair, pair.master.base, object_info), name + " on a master and a worker")
            else:
                print(f"[aid templates] drew {make_diagram(name, object_info).relative_to(host.REPO)}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
