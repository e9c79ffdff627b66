"""Cost of editing a real image: the inversion, and the hold of endpoint A, against a plain AID sequence.

Setting: F = 7 frames, full SD1.5 architecture with random weights, 10 steps of euler, edit cfg 7,
interpolation for the first half of the schedule, a random picture at 128 px. Measured side by side:
- "aid": AID Sampler from prompt A to prompt B (no image), the baseline;
- "aid + hold": the same sequence editing the picture (AID Sampler's inversion input), i.e. what the
  hold adds at edit time (the inversion is recorded in a process of its own and loaded from a file);
- "inversion": AID Invert Image at cfg 1 with refine_steps 0 and 2 (each refinement costs one more
  model call per step).
Time and memory are measured as in benchmarks/aid_cost.py: each run in its own process under
torch.inference_mode (as ComfyUI's executor runs nodes), peak resident memory above what the process
held just before (VmHWM reset via /proc/self/clear_refs).

The inversion runs also print how far plain re-generation from the inverted noise (prompt A only, no
hold) lands from the picture, at cfg 1 and 7, against the held run; with random weights these say
how much the hold matters, not how good a real model's inversion is.

Run: .venv/bin/python benchmarks/editing_cost.py [--size 128] [--repeats 1] (quick check: --model tiny --size 64
--steps 2)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

FRAMES, STEPS, CFG, SEED, END_PERCENT = 7, 10, 7.0, 1, 0.5
METHODS = ("aid", "aid + hold", "inversion", "inversion refine 2")


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


def _save_inversion(inversion, path: str) -> None:
    """The inversion's fields as plain values (the pack's classes live under a per-run module name)."""
    import dataclasses

    import torch

    torch.save({field.name: (dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value)
                for field in dataclasses.fields(inversion) for value in [getattr(inversion, field.name)]}, path)


def _load_inversion(path: str):
    import torch

    from aid_pack.samplers.editing.fingerprint import ModelFingerprint
    from aid_pack.samplers.editing.inversion import Inversion, InversionSettings

    fields = torch.load(path)
    return Inversion(sigmas=fields["sigmas"], latents=fields["latents"],
                     fingerprint=ModelFingerprint(**fields["fingerprint"]),
                     settings=InversionSettings(**fields["settings"]), image_size=tuple(fields["image_size"]))


def worker(size: int, method: str, model_size: str, steps: int = STEPS, inversion_file: str | None = None) -> dict:
    """Load the model, warm up, run one measured step of the method; return seconds and peak extra MiB.

    Runs under torch.inference_mode, as ComfyUI's executor runs nodes. "aid + hold" loads the inversion
    another process recorded (`inversion_file`), so the inversion's own memory never sits in this
    process's baseline; with `inversion_file` and method "record", records it there and returns."""
    import torch

    with torch.inference_mode():
        return _worker(size, method, model_size, steps, inversion_file)


def _worker(size: int, method: str, model_size: str, steps: int, inversion_file: str | None) -> dict:
    import torch

    from aid_harness.sd15_session import boot_with_sd15

    nodes, model, _, vae, encode = boot_with_sd15(model_size)
    from aid_pack.nodes.editing import AIDInvertImage
    from aid_pack.nodes.sampler import AIDSampler
    from aid_pack.samplers.sequence.schedule import InterpolationSchedule, linear_coefficients

    source, target, negative = encode("a photo of a cabin by a lake"), encode("a cabin by a lake in winter"), \
        encode("blurry")
    image = torch.rand(1, size, size, 3, generator=torch.Generator().manual_seed(0))
    schedule = InterpolationSchedule(linear_coefficients(FRAMES), "linear")
    nodes.common_ksampler(model, SEED, 1, CFG, "euler", "normal", source, negative,
                          {"samples": torch.zeros(1, 4, 8, 8)})  # warm-up: loads and initialises everything

    def invert(refine_steps):
        return AIDInvertImage().invert(model, source, negative, steps, 1.0, "normal", 1.0, refine_steps, image=image,
                                       vae=vae)

    if method == "record":
        _save_inversion(invert(0)[0], inversion_file)
        return {"method": method}
    inversion = _load_inversion(inversion_file) if method == "aid + hold" else None

    def run():
        if method.startswith("inversion"):
            return invert(2 if method.endswith("2") else 0)
        return AIDSampler().sample(model, source, target, negative, schedule, size, size, SEED, steps, CFG, "euler",
                                   "normal", "fused outer", "self and cross", 0.0, END_PERCENT, 0,
                                   inversion=inversion)

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


def measure(size: int, method: str, model_size: str, steps: int) -> dict:
    if method != "aid + hold":
        return _in_subprocess(size, method, model_size, steps)
    with tempfile.TemporaryDirectory(prefix="aid-bench-inversion-") as folder:
        path = str(Path(folder) / "inversion.pt")
        _in_subprocess(size, "record", model_size, steps, path)  # in its own process, before the clock
        return _in_subprocess(size, method, model_size, steps, path)


def _in_subprocess(size: int, method: str, model_size: str, steps: int, inversion_file: str | None = None) -> dict:
    extra = ["--inversion-file", inversion_file] if inversion_file else []
    done = subprocess.run([sys.executable, __file__, "--worker", str(size), method, "--model", model_size,
                           "--steps", str(steps), *extra],
                          capture_output=True, text=True)
    if done.returncode != 0:
        killed = " (killed: out of memory?)" if done.returncode < 0 else ""
        raise RuntimeError(f"{method} at {size}px failed with exit status {done.returncode}{killed}:\n"
                           f"{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=1, help="runs per method; the fastest time counts")
    parser.add_argument("--model", choices=("full", "tiny"), default="full",
                        help="SD1.5 architecture: full (the benchmark) or the tiny test model (a quick check)")
    parser.add_argument("--steps", type=int, default=STEPS, help="sampling steps (fewer for a quick check)")
    parser.add_argument("--worker", nargs=2, metavar=("SIZE", "METHOD"), help=argparse.SUPPRESS)
    parser.add_argument("--inversion-file", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.worker:
        print(json.dumps(worker(int(options.worker[0]), options.worker[1], options.model, options.steps,
                                options.inversion_file)))
        return 0
    import torch

    print(f"Editing cost benchmark: F={FRAMES}, {options.model} SD1.5 architecture (random weights), {options.size} px, "
          f"{options.steps} steps euler, edit cfg {CFG}, inversion cfg 1; torch {torch.__version__}, {os.cpu_count()} CPU "
          "threads, ComfyUI --cpu.")
    results = {}
    for _ in range(options.repeats):
        for method in METHODS:  # interleaved, so drifting machine load hits every method alike
            result = measure(options.size, method, options.model, options.steps)
            best = results.get(method)
            if best is None or result["seconds"] < best["seconds"]:
                results[method] = dict(result, peak_extra_mib=max(result["peak_extra_mib"],
                                                                  best["peak_extra_mib"] if best else 0.0))
    base = results["aid"]
    print(f"{'method':<19} {'seconds':>8} {'time x':>7} {'peak MiB':>9} {'memory x':>9}")
    for method in METHODS:
        r = results[method]
        print(f"{method:<19} {r['seconds']:8.1f} {r['seconds'] / base['seconds']:7.3f} {r['peak_extra_mib']:9.0f} "
              f"{r['peak_extra_mib'] / max(base['peak_extra_mib'], 1e-9):9.3f}")
    print("re-generation of the picture from the inverted noise (prompt A, relative error of the latent):")
    for method in METHODS[2:]:
        drift = results[method]["drift"]
        print(f"  {method:<19} " + ", ".join(f"{name}: {value:.3g}" for name, value in drift.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
