"""Cost of editing a real image: the inversion, and the hold of endpoint A, against a plain AID sequence.

Setting: F = 7 frames, full SD1.5 architecture with random weights, 10 steps of euler, edit cfg 7,
interpolation for the first half of the schedule, random pictures at 128 px. Measured side by side:
- "aid": AID Sampler from prompt A to prompt B (no image), the baseline;
- "aid + hold": the same sequence editing the picture (AID Sampler's inversion input), i.e. what the
  hold adds at edit time;
- "photo morph": AID Sampler from picture A to picture B, both endpoints held (inversion and
  inversion_b), each conditioned on its picture's prompt;
- "7 plain images": one KSampler batch of 7 images of prompt A (no AID), what the morph's frames
  would cost as independent images;
- "inversion": AID Invert Image at cfg 1 with refine_steps 0 and 2 (each refinement costs one more
  model call per step).
The inversions the held runs replay are recorded first, each in its own process, and saved to files
the measured processes load (so no inversion work or memory is inside their measurement).
Time and memory are measured as in benchmarks/aid_cost.py: each run in its own process under
torch.inference_mode (as ComfyUI's executor runs nodes), peak resident memory above what the
process held just before (VmHWM reset via /proc/self/clear_refs).

The inversion runs also print how far plain re-generation from the inverted noise (prompt A only, no
hold) lands from the picture, at cfg 1 and 7, against the held run; with random weights these say
how much the hold matters, not how good a real model's inversion is.

Run: .venv/bin/python benchmarks/editing_cost.py [--size 128] [--repeats 1] (quick check: --model tiny --size 64
--steps 2)
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

FRAMES, STEPS, CFG, SEED, END_PERCENT = 7, 10, 7.0, 1, 0.5
METHODS = ("aid", "aid + hold", "photo morph", "7 plain images", "inversion", "inversion refine 2")
PROMPTS = {"a": "a photo of a cabin by a lake", "b": "a photo of a lighthouse on a rocky coast"}
EDIT_PROMPT = "a cabin by a lake in winter"


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _relative_error(a, b) -> float:
    return float((a - b).abs().max()) / max(float(b.abs().max()), 1e-6)


def _drift(nodes, model, inversion, source, negative, latent, steps: int) -> dict:
    """Relative error of re-generating prompt A from the inverted noise without and with the hold, at cfg 1 and 7."""
    import torch

    from aid_pack.samplers.editing.inversion import held_model

    empty = {"samples": torch.zeros_like(latent)}
    result = {}
    for cfg in (1.0, CFG):
        for hold in (False, True):
            regenerated = nodes.common_ksampler(held_model(model, inversion, "benchmark", hold_endpoint=hold), SEED,
                                                steps, cfg, "euler", "normal", source, negative, empty)[0]["samples"]
            result[f"cfg {cfg:g} {'held' if hold else 'plain'}"] = _relative_error(regenerated, latent)
    return result


def _picture(size: int, which: str):
    import torch

    return torch.rand(1, size, size, 3, generator=torch.Generator().manual_seed(0 if which == "a" else 1))


def record(size: int, which: str, model_size: str, steps: int, path: str) -> dict:
    """Invert picture `which` ("a" or "b") under its prompt and save the AID_INVERSION to `path` (own process)."""
    import torch

    from aid_harness.sd15_session import boot_with_sd15

    _, model, _, vae, encode = boot_with_sd15(model_size)
    from aid_pack.nodes.editing import AIDInvertImage

    with torch.inference_mode():
        inversion = AIDInvertImage().invert(model, encode(PROMPTS[which]), encode("blurry"), steps, 1.0, "normal",
                                            1.0, 0, image=_picture(size, which), vae=vae)[0]
    # Plain fields, not the object: each process loads the pack under another module name (its own base folder).
    torch.save({"sigmas": inversion.sigmas, "latents": inversion.latents,
                "fingerprint": dataclasses.asdict(inversion.fingerprint),
                "settings": dataclasses.asdict(inversion.settings), "image_size": inversion.image_size}, path)
    return {"recorded": which, "path": path}


def load_inversion(path: str):
    """The AID_INVERSION `record` saved to `path` (in this process's pack)."""
    import torch

    from aid_pack.samplers.editing.fingerprint import ModelFingerprint
    from aid_pack.samplers.editing.inversion import Inversion, InversionSettings

    fields = torch.load(path)
    return Inversion(sigmas=fields["sigmas"], latents=fields["latents"],
                     fingerprint=ModelFingerprint(**fields["fingerprint"]),
                     settings=InversionSettings(**fields["settings"]), image_size=tuple(fields["image_size"]))


def worker(size: int, method: str, model_size: str, steps: int = STEPS, inversions: dict | None = None) -> dict:
    """Load the model, warm up, run one measured step of the method; return seconds and peak extra MiB.

    `inversions` maps "a" / "b" to files saved by `record` (the held methods load them before the clock).
    Runs under torch.inference_mode, as ComfyUI's executor runs nodes."""
    import torch

    with torch.inference_mode():
        return _worker(size, method, model_size, steps, inversions)


def _worker(size: int, method: str, model_size: str, steps: int, inversions: dict | None) -> dict:
    import torch

    from aid_harness.sd15_session import boot_with_sd15

    nodes, model, _, vae, encode = boot_with_sd15(model_size)
    from aid_pack.nodes.editing import AIDInvertImage
    from aid_pack.nodes.sampler import AIDSampler
    from aid_pack.samplers.sequence.schedule import InterpolationSchedule, linear_coefficients

    source, source_b, target, negative = (encode(PROMPTS["a"]), encode(PROMPTS["b"]), encode(EDIT_PROMPT),
                                          encode("blurry"))
    schedule = InterpolationSchedule(linear_coefficients(FRAMES), "linear")
    nodes.common_ksampler(model, SEED, 1, CFG, "euler", "normal", source, negative,
                          {"samples": torch.zeros(1, 4, 8, 8)})  # warm-up: loads and initialises everything

    def invert(refine_steps):
        return AIDInvertImage().invert(model, source, negative, steps, 1.0, "normal", 1.0, refine_steps,
                                       image=_picture(size, "a"), vae=vae)

    held = {"aid + hold": ("a",), "photo morph": ("a", "b")}.get(method, ())
    if any(which not in (inversions or {}) for which in held):
        raise RuntimeError(f"{method} needs the recorded inversions (--inversion-a/--inversion-b).")
    inversion = load_inversion(inversions["a"]) if held else None
    inversion_b = load_inversion(inversions["b"]) if "b" in held else None

    def run():
        if method.startswith("inversion"):
            return invert(2 if method.endswith("2") else 0)
        if method == "7 plain images":
            return nodes.common_ksampler(model, SEED, steps, CFG, "euler", "normal", source, negative,
                                         {"samples": torch.zeros(FRAMES, 4, size // 8, size // 8)})
        return AIDSampler().sample(model, source, source_b if inversion_b is not None else target, negative, schedule,
                                   size, size, SEED, steps, CFG, "euler", "normal", "fused outer", "self and cross",
                                   0.0, END_PERCENT, 0, inversion=inversion, inversion_b=inversion_b)

    before = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark (Linux >= 4.0)
    started = time.perf_counter()
    output = run()
    seconds = time.perf_counter() - started
    peak = _status_kib("VmHWM")
    result = {"method": method, "seconds": seconds, "peak_extra_mib": max(peak - before, 0) / 1024}
    if method.startswith("inversion"):
        result["drift"] = _drift(nodes, model, output[0], source, negative, output[1]["samples"], steps)
    return result


def measure(size: int, method: str, model_size: str, steps: int, inversions: dict | None = None) -> dict:
    """Run one method in its own process (or, for method "record a"/"record b", record an inversion)."""
    files = [arg for which, path in sorted((inversions or {}).items()) for arg in (f"--inversion-{which}", path)]
    done = subprocess.run([sys.executable, __file__, "--worker", str(size), method, "--model", model_size,
                           "--steps", str(steps), *files],
                          capture_output=True, text=True)
    if done.returncode != 0:
        killed = " (killed: out of memory?)" if done.returncode < 0 else ""
        raise RuntimeError(f"{method} at {size}px failed with exit status {done.returncode}{killed}:\n"
                           f"{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _ratio_line(name: str, results: dict, against: str) -> str:
    r, base = results[name], results[against]
    return (f"  {name} / {against}: time {r['seconds'] / base['seconds']:.3f}, peak memory "
            f"{r['peak_extra_mib'] / max(base['peak_extra_mib'], 1e-9):.3f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=1, help="runs per method; the fastest time counts")
    parser.add_argument("--model", choices=("full", "tiny"), default="full",
                        help="SD1.5 architecture: full (the benchmark) or the tiny test model (a quick check)")
    parser.add_argument("--steps", type=int, default=STEPS, help="sampling steps (fewer for a quick check)")
    parser.add_argument("--worker", nargs=2, metavar=("SIZE", "METHOD"), help=argparse.SUPPRESS)
    parser.add_argument("--inversion-a", help=argparse.SUPPRESS)
    parser.add_argument("--inversion-b", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.worker:
        size, method = int(options.worker[0]), options.worker[1]
        files = {which: path for which, path in (("a", options.inversion_a), ("b", options.inversion_b)) if path}
        if method.startswith("record "):
            print(json.dumps(record(size, method.split()[1], options.model, options.steps, files[method.split()[1]])))
        else:
            print(json.dumps(worker(size, method, options.model, options.steps, files)))
        return 0
    import torch

    print(f"Editing cost benchmark: F={FRAMES}, {options.model} SD1.5 architecture (random weights), {options.size} px, "
          f"{options.steps} steps euler, edit cfg {CFG}, inversion cfg 1; torch {torch.__version__}, {os.cpu_count()} CPU "
          "threads, ComfyUI --cpu.")
    results = {}
    folder = tempfile.mkdtemp(prefix="aid-editing-cost-")
    inversions = {which: str(Path(folder) / f"inversion_{which}.pt") for which in ("a", "b")}
    try:
        for which in inversions:  # each inversion in its own process, before any measured run
            measure(options.size, f"record {which}", options.model, options.steps, {which: inversions[which]})
        for _ in range(options.repeats):
            for method in METHODS:  # interleaved, so drifting machine load hits every method alike
                result = measure(options.size, method, options.model, options.steps, inversions)
                best = results.get(method)
                if best is None or result["seconds"] < best["seconds"]:
                    results[method] = dict(result, peak_extra_mib=max(result["peak_extra_mib"],
                                                                      best["peak_extra_mib"] if best else 0.0))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    base = results["aid"]
    print(f"{'method':<19} {'seconds':>8} {'time x':>7} {'peak MiB':>9} {'memory x':>9}")
    for method in METHODS:
        r = results[method]
        print(f"{method:<19} {r['seconds']:8.1f} {r['seconds'] / base['seconds']:7.3f} {r['peak_extra_mib']:9.0f} "
              f"{r['peak_extra_mib'] / max(base['peak_extra_mib'], 1e-9):9.3f}")
    print("the photo morph against the same frames as plain images and against the one-photo edit:")
    print(_ratio_line("photo morph", results, "7 plain images"))
    print(_ratio_line("photo morph", results, "aid + hold"))
    print("re-generation of the picture from the inverted noise (prompt A, relative error of the latent):")
    for method in [m for m in METHODS if m.startswith("inversion")]:
        drift = results[method]["drift"]
        print(f"  {method:<19} " + ", ".join(f"{name}: {value:.3g}" for name, value in drift.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
