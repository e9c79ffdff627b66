"""Share of the work per server when a sequence is split across a ComfyUI-Distributed master and worker.

Starts a master and one worker ComfyUI server on loopback (tests/aid_harness/distributed.py: this
pack, the unmodified ComfyUI-Distributed snapshot and a UNet row counter on each), queues the
example workflow example_workflows/aid_distributed.json through the master's `POST /distributed/queue`
and counts the UNet rows each server sampled, next to a run of the whole sequence on the master
alone. Both servers share this machine's CPU cores, so their times say nothing about GPUs; the rows
are the work: the largest share's rows against the single run's give the speed-up on two equal
GPUs (the sampling part; loading, VAE decode and sending the frames back come on top).

Run: .venv/bin/python benchmarks/distributed_share.py [--frames 7 24 48] [--steps 1]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[7, 24, 48], help="sequence lengths to split")
    parser.add_argument("--steps", type=int, default=1, help="denoising steps (rows are reported per step)")
    options = parser.parse_args(argv)

    from aid_harness import host, models
    from aid_harness.distributed import DistributedPair, distributed_snapshot, example_prompt, rows_of_run

    if distributed_snapshot() is None:
        print(f"no ComfyUI-Distributed snapshot in {host.peers_dir()}", file=sys.stderr)
        return 1
    root, how = host.find_comfyui()
    if how.startswith("pinned"):
        host.provision_pinned_comfyui(root)
    with tempfile.TemporaryDirectory(prefix="aid-distributed-bench-") as folder, \
            DistributedPair(root, Path(folder)) as pair:
        object_info = pair.object_info()
        models._bootstrap_comfy()  # the random checkpoint is built from ComfyUI's model definitions
        tiny = models.ensure_sd15_checkpoint("tiny")  # rows do not depend on size or weights
        print(f"UNet rows per step, master + 1 worker on loopback, the tiny random SD1.5 at 64 px, {options.steps} "
              "step(s) euler: AID Sequence Share with share_count 2 against one server (share_count 1)", flush=True)
        print(f"{'frames':>6} {'single':>6} {'master':>6} {'worker':>6} {'largest/single':>14} {'speed-up':>8}",
              flush=True)
        for frames in options.frames:
            workflow, split = example_prompt(pair, object_info, frames, 2, f"split_{frames}", tiny,
                                             steps=options.steps)
            split_rows, result = rows_of_run(
                pair, lambda: pair.run(split, {"extra_pnginfo": {"workflow": workflow}}), options.steps)
            result.raise_for_error()
            _, whole = example_prompt(pair, object_info, frames, 1, f"single_{frames}", tiny, steps=options.steps)
            single_rows, result = rows_of_run(pair, lambda: pair.master.run(whole), options.steps)
            result.raise_for_error()
            single = single_rows[0]
            print(f"{frames:>6} {single:>6} {split_rows[0]:>6} {split_rows[1]:>6} "
                  f"{max(split_rows) / single:>14.3f} {single / max(split_rows):>7.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
