"""Cost of spatial-temporal attention control against plain sampling of the same image (issue 11's targets).

Setting: one image, full SD1.5 architecture with random weights, euler, cfg 7, two regions (left and right
half; constant weight 0.5 with the convex mix, the paper code's 5 / N = 2.5 with the official one), at
256 px by default. Methods, side by side in one run:
- plain: the core KSampler with the full prompt;
- fixed: Apply Spatial-Temporal Attention + KSampler (the spatial control alone, convex mix); target <= 1.15x;
- official: the same with mix official (g_c + w (l - g_u)); expected about the cost of fixed;
- search: Spatial-Temporal Sampler, method search (rounds x candidates as rows of one batch);
- gradient: Spatial-Temporal Sampler, method gradient (passes with gradients, then the final weights).
The optimisers decode and score with the pack's random test CLIP (2 layers, 64 wide): the cost of a real
CLIP scorer (ViT-B/32 in the paper) comes on top, a small part next to the sampling.

Every row runs in its own process (model loaded, a small warm-up, then one run), so peak memory
is not hidden by memory an earlier run left cached; memory is the process's peak resident memory during
the run above what it held just before (Linux VmHWM after resetting it), i.e. working memory, weights
excluded. Ratios are to plain. Then plain and fixed run in turn in one process (--pairs times each, the
fastest counts): on a machine shared with other jobs that ratio is the steadier one.

4 steps by default: on a shared 2-core CPU a 256 px step of the full architecture takes many seconds. The
sampling work of every method grows with the steps alike; the optimisers' decode and scoring (once per
candidate or pass) do not, so with more steps their ratios come out a little lower.

Run: .venv/bin/python benchmarks/spacetime_cost.py [--size 256 --steps 4 --iterations 3 --candidates 4]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

CFG, SEED = 7.0, 1
PROMPT = "a photo of a cat to the left of a dog"
METHODS = ("plain", "fixed", "official", "search", "gradient")


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def worker(method: str, options) -> dict:
    """Load the model, warm up, run one measured sampling; return seconds and peak extra MiB."""
    import torch

    from aid_harness import models
    from aid_harness.sd15_session import boot_with_sd15

    with torch.inference_mode():  # as ComfyUI's executor runs nodes
        nodes, model, clip, vae, encode = boot_with_sd15(options.model)
        import folder_paths

        folder_paths.add_model_folder_path("clip_scoring", str(models.ensure_clip_model().parent))
        from aid_pack.nodes.best_frame import AIDCLIPScorerLoader
        from aid_pack.nodes.region_sampler import ApplySpatialTemporalAttention, SpatialTemporalSampler
        from aid_pack.nodes.regions import SpatialTemporalRegion

        positive, negative = encode(PROMPT), encode("blurry")
        cat = SpatialTemporalRegion().add("cat", "fractions", 0.0, 0.1, 0.5, 0.8,
                                          local_prompt=encode("a photo of a cat"))["result"][0]
        regions = SpatialTemporalRegion().add("dog", "fractions", 0.5, 0.1, 0.5, 0.8,
                                              local_prompt=encode("a photo of a dog"), regions=cat)["result"][0]
        scorer = AIDCLIPScorerLoader().load(models.ensure_clip_model().name)[0]
        latent = {"samples": torch.zeros(1, 4, options.size // 8, options.size // 8)}
        nodes.common_ksampler(model, SEED, 1, CFG, "euler", "normal", positive, negative,
                              {"samples": torch.zeros(1, 4, 8, 8)})  # warm-up: loads and initialises everything

        def run():
            if method == "plain":
                return nodes.common_ksampler(model, SEED, options.steps, CFG, "euler", "normal", positive, negative,
                                             latent)
            if method in ("fixed", "official"):
                mix = "official" if method == "official" else "convex"
                patched = ApplySpatialTemporalAttention().apply(model, regions, mix=mix)[0]
                return nodes.common_ksampler(patched, SEED, options.steps, CFG, "euler", "normal", positive, negative,
                                             latent)
            return SpatialTemporalSampler().sample(model, positive, negative, regions, latent, SEED, options.steps,
                                                   CFG, "euler", "normal", method, options.iterations, 0.005,
                                                   options.candidates, vae=vae, scorer=scorer, prompt_text=PROMPT)

        before = _status_kib("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark (Linux >= 4.0)
        started = time.perf_counter()
        out = run()
        seconds = time.perf_counter() - started
        peak = _status_kib("VmHWM")
    result = {"method": method, "seconds": seconds, "peak_extra_mib": max(peak - before, 0) / 1024}
    if isinstance(out, dict) and "result" in out:  # an optimiser: how far it moved the weights from their start
        report = out["result"][2]
        result["largest_move"] = float(next(line for line in report.splitlines()
                                            if line.startswith("largest change")).split(": ")[-1])
    return result


def alternate(options) -> dict:
    """plain and fixed in turn in one process, `options.pairs` times each: the fastest time of each.

    On a machine shared with other jobs the load drifts between processes; runs taken in turn in one
    process see the same load, so their ratio is the steadier figure for the <= 1.15x target.
    """
    import torch

    from aid_harness.sd15_session import boot_with_sd15

    with torch.inference_mode():
        nodes, model, clip, vae, encode = boot_with_sd15(options.model)
        from aid_pack.nodes.region_sampler import ApplySpatialTemporalAttention
        from aid_pack.nodes.regions import SpatialTemporalRegion

        positive, negative = encode(PROMPT), encode("blurry")
        cat = SpatialTemporalRegion().add("cat", "fractions", 0.0, 0.1, 0.5, 0.8,
                                          local_prompt=encode("a photo of a cat"))["result"][0]
        regions = SpatialTemporalRegion().add("dog", "fractions", 0.5, 0.1, 0.5, 0.8,
                                              local_prompt=encode("a photo of a dog"), regions=cat)["result"][0]
        latent = {"samples": torch.zeros(1, 4, options.size // 8, options.size // 8)}
        patched = ApplySpatialTemporalAttention().apply(model, regions)[0]
        official = ApplySpatialTemporalAttention().apply(model, regions, mix="official")[0]
        for warm in (patched, official):  # warm-up of every path
            nodes.common_ksampler(warm, SEED, 1, CFG, "euler", "normal", positive, negative,
                                  {"samples": torch.zeros(1, 4, 8, 8)})
        times = {"plain": [], "fixed": [], "official": []}
        for _ in range(options.pairs):
            for method, sampled in (("plain", model), ("fixed", patched), ("official", official)):
                started = time.perf_counter()
                nodes.common_ksampler(sampled, SEED, options.steps, CFG, "euler", "normal", positive, negative,
                                      latent)
                times[method].append(time.perf_counter() - started)
    return {method: min(values) for method, values in times.items()}


def measure(method: str, options) -> dict:
    command = [sys.executable, __file__, "--worker", method, "--model", options.model, "--size", str(options.size),
               "--steps", str(options.steps), "--iterations", str(options.iterations), "--candidates",
               str(options.candidates)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{method} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=3, help="gradient passes / search rounds")
    parser.add_argument("--candidates", type=int, default=4, help="search: settings per round")
    parser.add_argument("--repeats", type=int, default=1, help="runs per method; the fastest time counts")
    parser.add_argument("--model", choices=("full", "tiny"), default="full",
                        help="SD1.5 architecture: full (the benchmark) or the tiny test model (a quick check)")
    parser.add_argument("--pairs", type=int, default=2,
                        help="plain and fixed taken in turn in one process this many times (0: skip)")
    parser.add_argument("--worker", metavar="METHOD", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.worker == "alternate":
        print(json.dumps(alternate(options)))
        return 0
    if options.worker:
        print(json.dumps(worker(options.worker, options)))
        return 0
    import torch

    print(f"Spatial-temporal cost benchmark: {options.model} SD1.5 architecture (random weights), {options.size} px, "
          f"{options.steps} steps euler, cfg {CFG}, 2 regions; search {options.iterations} rounds x "
          f"{options.candidates} candidates, gradient {options.iterations} passes + final; torch {torch.__version__}, "
          f"{os.cpu_count()} CPU threads, ComfyUI --cpu.")
    results = {}
    print(f"{'method':<9} {'seconds':>8} {'time x':>7} {'peak MiB':>9} {'memory x':>9}", flush=True)
    for method in METHODS:
        for _ in range(options.repeats):  # the fastest time and the largest peak count
            result = measure(method, options)
            best = results.get(method)
            results[method] = result if best is None else dict(
                result, seconds=min(result["seconds"], best["seconds"]),
                peak_extra_mib=max(result["peak_extra_mib"], best["peak_extra_mib"]))
        plain, r = results["plain"], results[method]
        memory = (f"{r['peak_extra_mib'] / plain['peak_extra_mib']:9.3f}" if plain["peak_extra_mib"] >= 1
                  else f"{'n/a':>9}")  # the tiny model's plain run needs under 1 MiB: no ratio to speak of
        moved = f"   largest weight change {r['largest_move']:.4f}" if "largest_move" in r else ""
        print(f"{method:<9} {r['seconds']:8.1f} {r['seconds'] / plain['seconds']:7.3f} {r['peak_extra_mib']:9.0f} "
              f"{memory}{moved}", flush=True)  # each row as soon as it is measured: the optimisers take long
    if options.pairs:
        command = [sys.executable, __file__, "--worker", "alternate", "--model", options.model, "--size",
                   str(options.size), "--steps", str(options.steps), "--pairs", str(options.pairs)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"alternate failed:\n{done.stderr[-3000:]}")
        turns = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"in turn in one process ({options.pairs} each, fastest): plain {turns['plain']:.1f} s, fixed "
              f"{turns['fixed']:.1f} s, official {turns['official']:.1f} s; fixed time x "
              f"{turns['fixed'] / turns['plain']:.3f}, official time x {turns['official'] / turns['plain']:.3f}",
              flush=True)
    print("target: fixed time x <= 1.15")
    return 0


if __name__ == "__main__":
    sys.exit(main())
