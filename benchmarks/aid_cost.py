"""Cost of an AID sequence against plain sampling of the same batch, now and before a change, side by side.

Setting: F = 7 frames, full SD1.5 architecture with random weights, 10 steps of euler, cfg 7.5,
interpolation active for the first half of the schedule, at 128, 256 and 512 px. At 512 px (a
64 x 64 latent) a step takes minutes on a 2-core CPU, so that size runs 1 step, which is
interpolated: its row is the cost of an interpolated step, the worst case. "plain" is the core
KSampler on the same 7-row batch and conditioning; "aid" is AID Sampler (fused outer) with fused
attention by joined key sets (concat, the default) and by log-sum-exp merging (lse).

Before and after: one worker process per version of the pack, this working tree ("now") and each
revision named with --before (default BEFORE: the last commit before issue 23's one attention core;
`--before` with no revision measures the working tree alone). A revision is exported with git
archive into a temporary folder. Each worker boots ComfyUI with its version of the pack, loads the
model once and runs under torch.inference_mode, as ComfyUI's executor does. The runs go round robin
over the workers and methods, `--repeats` rounds, so a drifting machine load hits every column alike;
the median of the rounds counts. Memory is the process's peak resident memory during a run above what
it held just before (freed memory handed back with malloc_trim, then Linux VmHWM reset through
/proc/self/clear_refs), i.e. the working memory of sampling, model weights excluded.

A second table measures one self-attention layer alone at SD1.5's largest level of a 512 px
image (4096 tokens, 8 heads of 40) for the interior rows of a 14-frame sequence (12 rows):
concat through ComfyUI's attention against lse as it was (scores of every row for 1024
queries at a time), lse chunked with a byte budget, and lse through torch's fused kernel; each
in its own process.

Targets: time x <= 1.05 and memory x <= 1.05 at 128 and 256 px, and "now" no slower than before.
Run: `make benchmark` (or .venv/bin/python benchmarks/aid_cost.py --sizes 128 --repeats 1).
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

FRAMES, STEPS, CFG, SEED, END_PERCENT = 7, 10, 7.5, 1, 0.5
STEPS_BY_SIZE = {512: 1}  # one (interpolated) step where a step takes minutes on a shared 2-core CPU
METHODS = ("plain", "aid-concat", "aid-lse")
BEFORE = "76ce62b"  # the last commit before issue 23 put both patches on one attention core
RESULT = "AID-RESULT "  # marks a worker's answer among whatever else the host prints
LAYER_ROWS, LAYER_TOKENS, LAYER_HEADS, LAYER_DIM_HEAD = 12, 4096, 8, 40
LAYER_METHODS = ("concat", "lse-previous", "lse-chunked", "lse-fused")


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _reset_peak() -> int:
    """Hand freed memory back to the system, reset the peak-RSS mark (Linux >= 4.0); the resident KiB now."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: the peak may then hide memory an earlier run left cached
    before = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    return before


def _measured(run) -> tuple[dict, object]:
    """({seconds, peak extra MiB}, result) of one call of run()."""
    before = _reset_peak()
    started = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "peak_extra_mib": max(_status_kib("VmHWM") - before, 0) / 1024}, result


# ------------------------------------------------------------------------------------------ whole sequences


def serve(pack: Path, model_size: str) -> None:
    """Worker: boot ComfyUI with the pack at `pack` and the model, then measure what stdin asks, one JSON line each."""
    import torch

    from aid_harness import host

    os.environ.setdefault("AID_CACHE_DIR", str(host.cache_dir()))  # the models stay where they are cached
    host.REPO = pack.resolve()  # the version of the pack ComfyUI loads as a custom node
    from aid_harness.sd15_session import boot_with_sd15

    with torch.inference_mode():
        nodes, model, _, _, encode = boot_with_sd15(model_size)
        from aid_pack.nodes.conditioning import AIDConditioning
        from aid_pack.nodes.sampler import AIDSampler
        try:
            from aid_pack.samplers.sequence.schedule import InterpolationSchedule, linear_coefficients
        except ImportError:  # a --before revision from before samplers/ had sub-packages
            from aid_pack.samplers.schedule import InterpolationSchedule, linear_coefficients

        a, b, negative = encode("a photo of a dog"), encode("a photo of a car"), encode("blurry")
        schedule = InterpolationSchedule(linear_coefficients(FRAMES), "linear")
        positive = AIDConditioning().build(a, b, schedule)[0]

        def run(size: int, method: str, steps: int):
            if method == "plain":
                latent = {"samples": torch.zeros(FRAMES, 4, size // 8, size // 8), "batch_index": [0] * FRAMES}
                return nodes.common_ksampler(model, SEED, steps, CFG, "euler", "normal", positive, negative, latent)
            return AIDSampler().sample(model, a, b, negative, schedule, size, size, SEED, steps, CFG, "euler",
                                       "normal", "fused outer", "self and cross", 0.0, END_PERCENT, 0,
                                       fusion=method.split("-", 1)[1])

        for method in METHODS:  # warm-up: loads and initialises everything both paths use
            run(64, method, 1)
        print(RESULT + json.dumps({"ready": True}), flush=True)
        for line in sys.stdin:
            request = json.loads(line)
            result, _ = _measured(lambda: run(request["size"], request["method"], request["steps"]))
            print(RESULT + json.dumps(dict(request, **result)), flush=True)


class Worker:
    """One serve() process for one version of the pack."""

    def __init__(self, label: str, pack: Path, model_size: str, log: Path):
        self.label = label
        self.log = log
        with open(log, "w") as stderr:
            self.process = subprocess.Popen([sys.executable, __file__, "--serve", str(pack), "--model", model_size],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True)
        self._answer()

    def _answer(self) -> dict:
        for line in self.process.stdout:
            if line.startswith(RESULT):
                return json.loads(line[len(RESULT):])
        raise RuntimeError(f"the worker for {self.label} stopped (exit {self.process.wait()}):\n"
                           f"{self.log.read_text()[-3000:]}")

    def measure(self, size: int, method: str) -> dict:
        request = {"size": size, "method": method, "steps": STEPS_BY_SIZE.get(size, STEPS)}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return self._answer()

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def exported(revision: str, into: Path) -> tuple[str, Path]:
    """(short commit, folder) of `revision` of this repository, exported with git archive."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", revision], check=True,
                            capture_output=True, text=True).stdout.strip()
    folder = into / commit
    folder.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return commit, folder


def sequence_table(workers: list[Worker], sizes, repeats: int) -> list[str]:
    """Every size and method on every worker, round robin; one row per size and method, a column group per worker."""
    header = f"{'size':>5} {'method':<11} {'steps':>5}" + "".join(
        f" | {worker.label + ':':<15} {'seconds':>8} {'time x':>7} {'peak MiB':>9} {'memory x':>9}"
        for worker in workers)
    print(header, flush=True)
    lines = [header]
    for size in sizes:
        runs = {(worker.label, method): [] for worker in workers for method in METHODS}
        for _ in range(repeats):
            for worker in workers:
                for method in METHODS:
                    runs[worker.label, method].append(worker.measure(size, method))
        median = {key: {field: statistics.median(run[field] for run in results)
                        for field in ("seconds", "peak_extra_mib")} for key, results in runs.items()}
        for method in METHODS:
            line = f"{size:>5} {method:<11} {STEPS_BY_SIZE.get(size, STEPS):>5}"
            for worker in workers:
                r, plain = median[worker.label, method], median[worker.label, "plain"]
                line += (f" | {'':<15} {r['seconds']:8.1f} {r['seconds'] / plain['seconds']:7.3f} "
                         f"{r['peak_extra_mib']:9.0f} {r['peak_extra_mib'] / max(plain['peak_extra_mib'], 1e-9):9.3f}")
            print(line, flush=True)
            lines.append(line)
    return lines


# ------------------------------------------------------------------------------------------ one attention layer


def previous_attention_with_lse(q, k, v, heads: int, query_chunk: int = 1024):
    """The lse attention before issue 10 (commit 92f3e12), kept verbatim to measure against.

    Holds [rows, heads, query_chunk, Lk] float32 scores and as much again in probabilities.
    """
    import torch

    rows, q_tokens, channels = q.shape
    d = channels // heads
    scale = d ** -0.5
    qh = q.reshape(rows, q_tokens, heads, d).transpose(1, 2)
    kh = k.reshape(k.shape[0], k.shape[1], heads, d).transpose(1, 2)
    vh = v.reshape(v.shape[0], v.shape[1], heads, d).transpose(1, 2)
    outs, lses = [], []
    for start in range(0, q_tokens, query_chunk):
        scores = torch.matmul(qh[:, :, start:start + query_chunk].float() * scale, kh.float().transpose(-1, -2))
        lse = torch.logsumexp(scores, dim=-1)
        probs = torch.exp(scores - lse.unsqueeze(-1))
        outs.append(torch.matmul(probs, vh.float()))
        lses.append(lse)
    out = torch.cat(outs, dim=2).transpose(1, 2).reshape(rows, q_tokens, channels).to(q.dtype)
    return out, torch.cat(lses, dim=2)


def layer_worker(method: str, tokens: int = LAYER_TOKENS) -> dict:
    """One fused-outer self-attention layer (12 interior rows x `tokens`): seconds and peak extra MiB."""
    import torch

    from aid_harness import host

    root, _ = host.find_comfyui()
    host.boot_in_process(root, host.make_base_directory(Path(tempfile.mkdtemp(prefix="aid-bench-layer-"))))
    import comfy.ldm.modules.attention as comfy_attention

    from aid_pack.attention import interpolation as core
    from aid_pack.attention.interpolation import heads_view, tokens_view
    from aid_pack.attention.lse_attention import attention_with_lse

    generator = torch.Generator().manual_seed(SEED)
    channels = LAYER_HEADS * LAYER_DIM_HEAD

    def tensor(batch):
        return heads_view(torch.randn(batch, tokens, channels, generator=generator), LAYER_HEADS)

    q, k, v = tensor(LAYER_ROWS), tensor(LAYER_ROWS), tensor(LAYER_ROWS)
    ends = tensor(1), tensor(1), tensor(1), tensor(1)
    t = torch.linspace(0, 1, LAYER_ROWS + 2)[1:-1]

    def concat(q_, k_, v_):
        out = comfy_attention.optimized_attention(tokens_view(q_), tokens_view(k_), tokens_view(v_), LAYER_HEADS)
        return heads_view(out, LAYER_HEADS)

    def previous(q_, k_, v_):
        out, lse = previous_attention_with_lse(tokens_view(q_), tokens_view(k_), tokens_view(v_), LAYER_HEADS)
        return heads_view(out, LAYER_HEADS), lse

    lse_functions = {
        "lse-previous": previous,
        "lse-chunked": lambda q_, k_, v_: attention_with_lse(q_, k_, v_, use_fused_kernel=False),
        "lse-fused": attention_with_lse,
    }

    def run():
        if method == "concat":
            return core.interpolate("fused outer", q, k, v, *ends, t, concat)
        return core.interpolate("fused outer", q, k, v, *ends, t, concat, attention_lse=lse_functions[method])

    with torch.inference_mode():
        reference = core.interpolate("fused outer", q, k, v, *ends, t, concat)
        run()  # warm-up
        result, out = _measured(run)
        error = float((out.float() - reference).abs().max())
    return dict(result, method=method, max_abs_difference=error,
                attention=comfy_attention.optimized_attention.__name__)


def _in_subprocess(*arguments: str) -> dict:
    done = subprocess.run([sys.executable, __file__, *arguments], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(arguments)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def layer_table(tokens: int = LAYER_TOKENS) -> list[str]:
    """The one-layer table: every method in its own process, ratios against concat."""
    results = {method: _in_subprocess("--layer-worker", method, "--layer-tokens", str(tokens))
               for method in LAYER_METHODS}
    concat = results["concat"]
    lines = [f"One fused-outer self-attention layer: {LAYER_ROWS} interior rows x {tokens} tokens, "
             f"{LAYER_HEADS} heads of {LAYER_DIM_HEAD} (concat through ComfyUI's {concat['attention']}):",
             f"{'method':<13} {'seconds':>8} {'time x':>7} {'peak MiB':>9} {'memory x':>9} {'max |diff|':>11}"]
    for method in LAYER_METHODS:
        r = results[method]
        lines.append(f"{method:<13} {r['seconds']:8.2f} {r['seconds'] / concat['seconds']:7.3f} "
                     f"{r['peak_extra_mib']:9.0f} {r['peak_extra_mib'] / max(concat['peak_extra_mib'], 1e-9):9.3f} "
                     f"{r['max_abs_difference']:11.2e}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--repeats", type=int, default=3, help="rounds over every version and method; the median counts")
    parser.add_argument("--before", nargs="*", default=[BEFORE], metavar="REVISION",
                        help=f"git revisions measured beside the working tree (default {BEFORE}); none: this tree alone")
    parser.add_argument("--model", choices=("full", "tiny"), default="full",
                        help="SD1.5 architecture: full (the benchmark) or the tiny test model (a quick check)")
    parser.add_argument("--no-layer", action="store_true", help="skip the one-layer table")
    parser.add_argument("--layer-tokens", type=int, default=LAYER_TOKENS, help="tokens of the one-layer table")
    parser.add_argument("--serve", metavar="PACK", help=argparse.SUPPRESS)
    parser.add_argument("--layer-worker", metavar="METHOD", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.serve:
        serve(Path(options.serve), options.model)
        return 0
    if options.layer_worker:
        print(json.dumps(layer_worker(options.layer_worker, options.layer_tokens)))
        return 0
    import torch

    print(f"AID cost benchmark: F={FRAMES}, {options.model} SD1.5 architecture (random weights), {STEPS} steps euler "
          f"({', '.join(f'{size} px: {steps}' for size, steps in STEPS_BY_SIZE.items())}), "
          f"cfg {CFG}, interpolation for the first {END_PERCENT:.0%} of the schedule; torch {torch.__version__}, "
          f"{os.cpu_count()} CPU threads, ComfyUI --cpu (its default CPU attention); load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}.", flush=True)
    if not options.no_layer:
        print("\n".join(layer_table(options.layer_tokens)), flush=True)
    print(f"Whole sequences (AID Sampler against the core KSampler on the same batch), median of {options.repeats} "
          f"round(s) taken in turn:", flush=True)
    scratch = Path(tempfile.mkdtemp(prefix="aid-bench-packs-"))
    workers = []
    try:
        for revision in options.before:
            commit, folder = exported(revision, scratch)
            workers.append(Worker(f"before {commit}", folder, options.model, scratch / f"{commit}.log"))
        workers.append(Worker("now", REPO, options.model, scratch / "now.log"))
        sequence_table(workers, options.sizes, options.repeats)
    finally:
        for worker in workers:
            worker.close()
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; targets: time x <= 1.05 and "
          f"memory x <= 1.05 at 128 and 256 px (aid-concat is the default), now no slower than before")
    return 0


if __name__ == "__main__":
    sys.exit(main())
