"""`make demo`: run one of the example workflows headless on a real ComfyUI server and say where its outputs went.

By default every model the workflow names gets its random-weight stand-in (built once, cached), and
size and steps are lowered so a CPU finishes quickly; the demo says what it changed. The frames are
noise-like patterns, not pictures: the point is that everything runs. --ckpt runs a real checkpoint at
the workflow's own settings (for the workflows that need only a checkpoint).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aid_harness import host  # noqa: E402
from aid_harness.example_workflows import (MODEL_FILES, WORKFLOWS, WORKFLOWS_DIR, images_named,  # noqa: E402
                                           models_named, prepare_stand_ins, shrink, use_stand_ins)
from aid_harness.runner import ServerRunner  # noqa: E402
from aid_harness.workflow_format import VIRTUAL_NODE_TYPES, WorkflowFormatError, ui_to_api  # noqa: E402

DEFAULT_WORKFLOW = "aid_text_interpolation"
# With random weights a bigger size or more steps shows nothing more; these keep a CPU run short.
RANDOM_WEIGHT_SIZES = {"width": 128, "height": 128, "steps": 8}
VIDEO_SUFFIXES = (".mp4", ".webm", ".gif", ".webp")


def say(text: str) -> None:
    print(f"[aid demo] {text}", flush=True)


def shown(path: Path) -> str:
    """A path relative to the working folder when it is inside it (shorter to read), else absolute."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def find_workflow(text: str) -> Path | None:
    """An existing file, or a registered example named by stem, file name or old workflows/ path."""
    path = Path(text).expanduser()
    if path.is_file():
        return path.resolve()
    name = path.name if path.name.endswith(".json") else path.name + ".json"
    return WORKFLOWS_DIR / name if name in WORKFLOWS else None


def describe_video(path: Path) -> str:
    """'13 frames, 8 fps, 128x128' read back from the file (proof that it plays), or '' if unreadable."""
    try:
        import av

        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            frames = sum(1 for _ in container.decode(stream))
            return f"{frames} frames, {float(stream.average_rate):g} fps, {stream.width}x{stream.height}"
    except Exception:  # noqa: BLE001  a format PyAV cannot read back (animated webp): just list the file
        return ""


def error_line(error) -> str:
    """ComfyUI's failure as one line: the node and the message (the full text is in the server log)."""
    if isinstance(error, dict):
        if error.get("exception_message"):
            return f"{error.get('node_type', 'a node')}: {error['exception_message'].strip().splitlines()[-1]}"
        node_errors = error.get("node_errors") or {}
        for info in node_errors.values():
            for item in info.get("errors", []):
                return f"{info.get('class_type', 'a node')}: {item.get('message')} ({item.get('details', '')})"
        if isinstance(error.get("error"), dict):
            return str(error["error"].get("message", error["error"]))
    return str(error)[:300]


def report_outputs(result, base: Path) -> None:
    """Saved files first (with what the video holds), then the temporary previews, counted."""
    saved, previews = [], []
    for node_output in result.outputs.values():
        for key in ("images", "gifs", "videos", "files"):
            for item in node_output.get(key, []):
                if isinstance(item, dict) and "filename" in item:
                    path = base / item.get("type", "output") / item.get("subfolder", "") / item["filename"]
                    (previews if item.get("type") == "temp" else saved).append(path)
    say("outputs:")
    for path in saved:
        what = "video" if path.suffix in VIDEO_SUFFIXES else path.suffix.lstrip(".")
        details = describe_video(path) if what == "video" else ""
        print(f"  {what:<6} {shown(path)}" + (f"  ({details})" if details else ""), flush=True)
    if previews:
        folders = sorted({shown(p.parent) for p in previews})
        say(f"{len(previews)} preview image{'s' if len(previews) != 1 else ''} (plots the nodes show in the editor) "
            f"in {', '.join(folders)}: temporary, ComfyUI empties that folder when it next starts")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workflow", default=DEFAULT_WORKFLOW,
                        help=f"an example ({', '.join(sorted(Path(n).stem for n in WORKFLOWS))}) or a workflow file")
    parser.add_argument("--ckpt", default=os.environ.get("CKPT"), help="a real checkpoint file (default: random)")
    parser.add_argument("--output", default=str(host.REPO / "demo-output"), help="ComfyUI base directory to use")
    options = parser.parse_args(argv)

    workflow_path = find_workflow(options.workflow)
    if workflow_path is None:
        print(f"[aid demo] no workflow '{options.workflow}': use one of "
              f"{', '.join(sorted(Path(n).stem for n in WORKFLOWS))}, or a path to a workflow .json file",
              file=sys.stderr)
        return 2
    try:
        workflow = json.loads(workflow_path.read_text())
        workflow["nodes"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        print(f"[aid demo] {shown(workflow_path)} is not a UI-format ComfyUI workflow ({error})", file=sys.stderr)
        return 2
    named = models_named(workflow)
    checkpoint = None
    if options.ckpt:
        checkpoint = Path(options.ckpt).expanduser().resolve()
        if not checkpoint.is_file():
            print(f"[aid demo] CKPT={options.ckpt} is not a file", file=sys.stderr)
            return 2
        others = [n for n in named if MODEL_FILES[n].folder != "checkpoints"]
        if others:
            print(f"[aid demo] CKPT runs the workflows that need only a checkpoint; {workflow_path.stem} also needs "
                  f"{', '.join(others)}: open it in ComfyUI instead (its note says where to get them)", file=sys.stderr)
            return 2

    root, how = host.find_comfyui()
    base = Path(options.output).resolve()
    host.make_base_directory(base)
    say(f"workflow: {shown(workflow_path)}")
    if checkpoint is not None:
        host.make_base_directory(base, {"checkpoints": [checkpoint]})
        stand_ins = {name: checkpoint.name for name in named}
        say(f"checkpoint: {checkpoint} (yours), at the workflow's own settings")
    else:
        from aid_harness import models

        models._bootstrap_comfy()  # the stand-in builders read ComfyUI's model definitions
        first = len(models.BUILD_LOG)
        stand_ins = prepare_stand_ins(workflow, base)
        say("models: random-weight stand-ins (the frames show noise-like patterns, not pictures; "
            "CKPT=/path/to/model.safetensors for real images)")
        records = {record["path"].name: record for record in models.BUILD_LOG[first:] if record["path"]}
        for name in named:
            record = records[stand_ins[name]]
            state = f"built in {record['seconds']:.0f} s" if record["built"] else "cached"
            print(f"  {name} -> {record['path'].name} ({state}, {record['bytes'] / 1e6:.0f} MB)", flush=True)
        images = images_named(workflow)
        if images:
            say(f"images: {', '.join(images)} are random 96x96 pictures written to {shown(base / 'input')}")
    try:
        return run_on_server(root, base, workflow, workflow_path, stand_ins, checkpoint)
    except RuntimeError as error:  # the server did not start or stopped; its log says why
        log = base / "comfyui-server.log"
        lines = [line for line in (log.read_text(errors="replace") if log.exists() else "").splitlines() if line.strip()]
        cause = f" The log ends: {lines[-1].strip()}" if lines else ""
        print(f"[aid demo] {str(error).splitlines()[0].rstrip(':')}.{cause} Full log: {shown(log)}", file=sys.stderr)
        return 1


def run_on_server(root: Path, base: Path, workflow: dict, workflow_path: Path, stand_ins: dict, checkpoint) -> int:
    """Start ComfyUI on loopback, queue the workflow, wait for it and report what it saved."""
    with ServerRunner(root, base) as server:
        say(f"ComfyUI {host.comfyui_version(root)} on {server.url}; its log: {shown(server.log_path)}")
        object_info = server.get("/object_info")
        missing = sorted({n["type"] for n in workflow["nodes"]} - set(object_info) - VIRTUAL_NODE_TYPES)
        if missing:
            print(f"[aid demo] this ComfyUI lacks the nodes {', '.join(missing)}; see {shown(server.log_path)}",
                  file=sys.stderr)
            return 1
        try:
            prompt = ui_to_api(workflow, object_info)
        except WorkflowFormatError as error:
            print(f"[aid demo] cannot read {workflow_path.name}: {error}", file=sys.stderr)
            return 1
        use_stand_ins(prompt, stand_ins)
        if checkpoint is None:
            changes = shrink(prompt, RANDOM_WEIGHT_SIZES)
            if changes:
                say("changed for a quick CPU run: " + ", ".join(f"{k} {old} -> {new}" for k, old, new in changes)
                    + " (random weights show nothing more at full size; CKPT=... keeps the workflow's settings)")
        say(f"running {workflow_path.stem} ...")
        started = time.monotonic()
        result = server.run(prompt, {"extra_pnginfo": {"workflow": workflow}})
        if not result.success:
            print(f"[aid demo] the workflow failed: {error_line(result.error)}; details in {shown(server.log_path)}",
                  file=sys.stderr)
            return 1
        say(f"finished in {time.monotonic() - started:.1f} s")
        report_outputs(result, base)
    return 0


if __name__ == "__main__":
    sys.exit(main())
