"""`make demo`: run a shipped example workflow headless on a real ComfyUI server and say where its outputs went.

By default it uses the cached random-weight SD1.5 checkpoint (and says so: the frames are
noise-like pictures, the point is that everything runs), at a small size so a CPU finishes
quickly. --ckpt uses a real checkpoint at the workflow's own settings.
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
from aid_harness.example_workflows import prepare_test_inputs  # noqa: E402
from aid_harness.runner import ServerRunner  # noqa: E402
from aid_harness.workflow_format import ui_to_api  # noqa: E402

RANDOM_WEIGHT_SIZES = {"width": 128, "height": 128, "steps": 8}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workflow", default=str(host.REPO / "example_workflows" / "aid_text_interpolation.json"))
    parser.add_argument("--ckpt", default=os.environ.get("CKPT"), help="a real checkpoint file (default: random)")
    parser.add_argument("--output", default=str(host.REPO / "demo-output"), help="ComfyUI base directory to use")
    options = parser.parse_args(argv)

    root, how = host.find_comfyui()
    from aid_harness import models

    models._bootstrap_comfy()  # the random-model builders read ComfyUI's model definitions
    base = Path(options.output).resolve()
    if options.ckpt:
        checkpoint = Path(options.ckpt).expanduser().resolve()
        if not checkpoint.is_file():
            print(f"[aid demo] CKPT={options.ckpt} is not a file", file=sys.stderr)
            return 2
        print(f"[aid demo] checkpoint: {checkpoint} (yours)")
    else:
        checkpoint = models.ensure_sd15_checkpoint("tiny")
        print(f"[aid demo] checkpoint: {checkpoint.name} - RANDOM WEIGHTS, built for testing: the frames show "
              f"noise-like patterns, not pictures. Pass CKPT=/path/to/model.safetensors for real images.")
    host.make_base_directory(base, {"checkpoints": [checkpoint]})
    workflow_path = Path(options.workflow).resolve()
    # With random weights, other models the workflow names (CLIP vision, IP-Adapter, the CLIP scorer)
    # and its input images get random stand-ins too, exactly as in the tests.
    stand_ins = {} if options.ckpt else prepare_test_inputs(workflow_path.name, base)
    workflow = json.loads(workflow_path.read_text())
    print(f"[aid demo] ComfyUI {host.comfyui_version(root)} at {root} ({how})")
    print(f"[aid demo] starting the server on loopback with base directory {base}")
    with ServerRunner(root, base) as server:
        object_info = server.get("/object_info")
        missing = sorted({n["type"] for n in workflow["nodes"]} - set(object_info) - {"Note", "Reroute",
                                                                                       "PrimitiveNode"})
        if missing:
            print(f"[aid demo] the server lacks nodes {missing}; its log:\n{server.log()[-3000:]}", file=sys.stderr)
            return 1
        prompt = ui_to_api(workflow, object_info)
        for node in prompt.values():
            inputs = node["inputs"]
            if "ckpt_name" in inputs:
                inputs["ckpt_name"] = checkpoint.name
            for name, value in inputs.items():
                if isinstance(value, str) and value in stand_ins:
                    inputs[name] = stand_ins[value]
            if not options.ckpt:
                inputs.update({k: v for k, v in RANDOM_WEIGHT_SIZES.items() if k in inputs
                               and not isinstance(inputs[k], list)})
        started = time.monotonic()
        print(f"[aid demo] running {workflow_path.name} ...", flush=True)
        result = server.run(prompt, {"extra_pnginfo": {"workflow": workflow}})
        if not result.success:
            print(f"[aid demo] the workflow failed: {json.dumps(result.error, indent=1)[:3000]}", file=sys.stderr)
            return 1
        print(f"[aid demo] finished in {time.monotonic() - started:.1f}s; outputs:")
        for key in ("images", "gifs", "videos", "files"):
            for path in result.output_files(base, key):
                print(f"  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
