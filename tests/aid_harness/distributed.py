"""A ComfyUI-Distributed master and worker on loopback: two real ComfyUI servers with this pack loaded.

Each server gets its own base directory with this pack, its own copy of the unmodified
ComfyUI-Distributed snapshot (the pack writes its config file next to its code, and the snapshot
folder may be read-only) and the test-only probe nodes (tests/aid_harness/probe_nodes). The worker
shares the master's models/ and input/ folders, so models linked for the master are the worker's too
(as when every machine holds the same files). The master's config lists the worker, as its UI would
save it; workflows are queued through the master's `POST /distributed/queue`, which prunes the prompt,
dispatches it to the worker and queues the master's part.

    with DistributedPair(comfyui_root, folder) as pair:
        result = pair.run(prompt, {"extra_pnginfo": {"workflow": workflow}})

Both servers are always stopped on exit, also when one of them fails to start.
"""
from __future__ import annotations

import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import host
from .runner import RunResult, ServerRunner

PEER = "ComfyUI-Distributed"
WORKER_ID = "loopback-worker"
PROBE_NODES = Path(__file__).resolve().parent / "probe_nodes"
ROWS_FILE = "aid_unet_rows.txt"  # written by AID Test UNet Rows (probe_nodes)


def distributed_snapshot() -> Path | None:
    """The unmodified ComfyUI-Distributed snapshot, or None when this machine has none."""
    folder = host.peers_dir() / PEER
    return folder if (folder / "__init__.py").is_file() else None


def make_participant_base(base: Path, models_from: Path | None = None) -> Path:
    """A base directory with this pack, a fresh copy of ComfyUI-Distributed and the probe nodes.

    `models_from`: another participant's base whose models/ and input/ this one uses as its own.
    """
    snapshot = distributed_snapshot()
    if snapshot is None:
        raise RuntimeError(f"no {PEER} snapshot in {host.peers_dir()}")
    host.make_base_directory(base)
    copy = base / "custom_nodes" / PEER
    if not copy.exists():
        shutil.copytree(snapshot, copy, ignore=shutil.ignore_patterns("gpu_config.json", "__pycache__", "tests"))
    probes = base / "custom_nodes" / "aid_test_probe_nodes"
    if not probes.exists():
        probes.symlink_to(PROBE_NODES, target_is_directory=True)
    if models_from is not None:
        for name in ("models", "input"):
            shutil.rmtree(base / name)
            (base / name).symlink_to(models_from / name, target_is_directory=True)
    return base


def write_master_config(master_base: Path, worker_port: int) -> Path:
    """The master's ComfyUI-Distributed config: one enabled worker on 127.0.0.1:worker_port."""
    path = master_base / "custom_nodes" / PEER / "gpu_config.json"
    config = {
        "master": {"host": "127.0.0.1"},
        "workers": [{"id": WORKER_ID, "name": "Loopback worker", "host": "127.0.0.1", "port": worker_port,
                     "enabled": True, "type": "local"}],
        "settings": {"auto_launch_workers": False, "master_delegate_only": False},
    }
    path.write_text(json.dumps(config, indent=2))
    return path


class DistributedPair:
    """A master and a worker server (ServerRunner each) wired as ComfyUI-Distributed users wire them."""

    def __init__(self, comfyui_root: Path, folder: Path, startup_timeout: float = 300):
        folder = Path(folder)
        master_base = make_participant_base(folder / "master")
        worker_base = make_participant_base(folder / "worker", models_from=master_base)
        self.master = ServerRunner(comfyui_root, master_base, startup_timeout=startup_timeout)
        self.worker = ServerRunner(comfyui_root, worker_base, startup_timeout=startup_timeout)
        write_master_config(master_base, self.worker.port)

    def __enter__(self) -> "DistributedPair":
        try:
            with ThreadPoolExecutor(2) as pool:  # both boot at once; start-up is most of a short test
                for started in [pool.submit(server.start) for server in (self.master, self.worker)]:
                    started.result()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self) -> None:
        """Stop both servers (each is terminated, then killed if it does not exit)."""
        for server in (self.worker, self.master):
            server.stop()

    @property
    def servers(self) -> tuple[ServerRunner, ServerRunner]:
        return self.master, self.worker

    def object_info(self) -> dict:
        """The master's /object_info: this pack's nodes, ComfyUI-Distributed's and the probes."""
        return self.master.get("/object_info")

    def queue(self, prompt: dict, workflow: dict | None = None) -> dict:
        """POST /distributed/queue on the master with the worker enabled; returns its answer."""
        body = {"prompt": prompt, "workflow": workflow or {}, "client_id": "aid-tests", "delegate_master": False,
                "enabled_worker_ids": [WORKER_ID]}
        status, answer = self.master.post("/distributed/queue", body)
        if status != 200:
            raise RuntimeError(f"/distributed/queue answered {status}: {answer}\n{self.master.log()[-3000:]}")
        return answer

    def run(self, prompt: dict, extra_data: dict | None = None, timeout: float = 1800) -> RunResult:
        """Queue `prompt` through the master's distributed queue and wait until master and worker are idle.

        Returns the master's result (its outputs are the gathered ones); raises when the worker was not
        reached, since the run would then not be distributed at all.
        """
        workflow = (extra_data or {}).get("extra_pnginfo", {}).get("workflow")
        answer = self.queue(prompt, workflow)
        if answer.get("worker_count") != 1:
            raise RuntimeError(f"the worker did not get the prompt: {answer}\n{self.master.log()[-3000:]}")
        result = self.master.wait(answer["prompt_id"], timeout)
        self.wait_until_idle(self.worker)
        return result

    @staticmethod
    def wait_until_idle(server: ServerRunner, timeout: float = 300) -> None:
        """Wait until a server has nothing running or pending (the worker finishes after sending its images)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            queue = server.get("/queue")
            if not queue.get("queue_running") and not queue.get("queue_pending"):
                return
            time.sleep(0.5)
        raise TimeoutError(f"{server.url} still busy after {timeout}s")


def unet_rows(server: ServerRunner) -> list[int]:
    """The batch of every UNet call this server made so far through AID Test UNet Rows."""
    path = server.base / "output" / ROWS_FILE
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def insert_probes(prompt: dict, saved_name: str | None = None) -> dict:
    """Count the UNet rows of every model a checkpoint loader gives, and save the collector's gathered
    images exactly (as `<saved_name>.pt` in the master's output) when `saved_name` is set. In place."""
    next_id = max(int(node_id) for node_id in prompt if str(node_id).isdigit()) + 1
    for node_id, node in list(prompt.items()):
        if node["class_type"] == "CheckpointLoaderSimple":
            counter = str(next_id)
            next_id += 1
            prompt[counter] = {"class_type": "AIDTestUnetRows", "inputs": {"model": [node_id, 0]}}
            for other_id, other in prompt.items():
                for key, value in other["inputs"].items():
                    if other_id != counter and value == [node_id, 0]:
                        other["inputs"][key] = [counter, 0]
    if saved_name:
        for node_id, node in list(prompt.items()):
            if node["class_type"] == "DistributedCollector":
                prompt[str(next_id)] = {"class_type": "AIDTestSaveTensor",
                                        "inputs": {"images": [node_id, 0], "name": saved_name}}
                next_id += 1
    return prompt


def example_prompt(pair: DistributedPair, object_info: dict, frames: int, share_count: int, saved_name: str,
                   checkpoint: Path | None = None, size: int = 64, steps: int = 2) -> tuple[dict, dict]:
    """The shipped aid_distributed workflow and its API prompt at a test size: `frames` frames split in
    `share_count` shares, the UNet rows counted and the gathered images saved as `<saved_name>.pt`.

    `checkpoint`: a checkpoint file to sample with (linked into the servers' models), else the random
    stand-in of the one the workflow names."""
    from .example_workflows import WORKFLOWS_DIR, prepare_stand_ins, use_stand_ins
    from .workflow_format import ui_to_api

    workflow = json.loads((WORKFLOWS_DIR / "aid_distributed.json").read_text())
    prompt = ui_to_api(workflow, object_info)
    if checkpoint is None:
        use_stand_ins(prompt, prepare_stand_ins(workflow, pair.master.base))
    else:
        host.make_base_directory(pair.master.base, {"checkpoints": [Path(checkpoint)]})
    for node in prompt.values():
        inputs = node["inputs"]
        if node["class_type"] == "CheckpointLoaderSimple" and checkpoint is not None:
            inputs["ckpt_name"] = Path(checkpoint).name
        elif node["class_type"] == "AIDSchedule":
            inputs["frames"] = frames
        elif node["class_type"] == "AIDSampler":
            inputs.update(width=size, height=size, steps=steps)
        elif node["class_type"] == "AIDSequenceShare":
            inputs["share_count"] = share_count
    return workflow, insert_probes(prompt, saved_name)


def rows_per_step(calls: list[int], steps: int) -> int:
    """Rows a server sampled from its UNet calls: every row runs cond and uncond once per step (in one call or two)."""
    if sum(calls) % (2 * steps):
        raise ValueError(f"UNet calls {calls} are not cond and uncond rows of {steps} steps")
    return sum(calls) // (2 * steps)


def rows_of_run(pair: DistributedPair, run, steps: int) -> tuple[list[int], object]:
    """([UNet rows per step of the master, of the worker] during `run()`, what run() returned)."""
    before = [len(unet_rows(server)) for server in pair.servers]
    result = run()
    return [rows_per_step(unet_rows(server)[start:], steps) for server, start in zip(pair.servers, before)], result
