"""One sequence on a ComfyUI-Distributed master and worker (issue 15): two real servers on loopback.

Both servers load this pack, the unmodified ComfyUI-Distributed snapshot (../shared/peers) and the
test-only probe nodes (aid_harness/probe_nodes). The shipped example workflow is queued through the
master's `POST /distributed/queue` as ComfyUI-Distributed's own UI queues it: Distributed Value gives
each server its share, each server samples it, Distributed Collector gathers the frames on the master
(the worker's frames come back as 8-bit PNGs) and the video is made there. The gathered frames must
equal a single-server run of the same sequence, and each server must have sampled only its share.
The in-process equivalent (every share count, chunked runs) is tests/test_split_sampling.py.
"""
import json

import pytest
import torch
from PIL import Image

from aid_harness import host
from aid_harness.compare import close
from aid_harness.distributed import DistributedPair, distributed_snapshot, example_prompt, rows_of_run
from aid_harness.example_workflows import MODEL_FILES, PEER_PACKS, WORKFLOWS_DIR, build_workflow, models_named
from aid_harness.templates import GRID, TILE, prompt_digest, thumbnail_digest
from aid_harness.workflow_format import check_api_prompt, ui_to_api

pytestmark = [pytest.mark.slow, pytest.mark.server]

NAME = "aid_distributed.json"
FRAMES, STEPS, SIZE = 7, 2, 64
PNG_STEP = 1 / 255  # the collector sends a worker's frames as uint8(255 * x): up to one step below


@pytest.fixture(scope="module")
def pair(comfy, tmp_path_factory):
    if distributed_snapshot() is None:
        pytest.skip(f"the ComfyUI-Distributed snapshot is not in {host.peers_dir()}")
    with DistributedPair(comfy["root"], tmp_path_factory.mktemp("distributed")) as started:
        yield started


@pytest.fixture(scope="module")
def object_info(pair):
    return pair.object_info()


@pytest.fixture(scope="module")
def tiny_checkpoint():
    from aid_harness import models

    return models.ensure_sd15_checkpoint("tiny")


def shipped() -> dict:
    return json.loads((WORKFLOWS_DIR / NAME).read_text())


def test_the_workflow_needs_comfyui_distributed_and_runs_only_on_servers_with_it():
    assert PEER_PACKS[NAME] == ("ComfyUI-Distributed",)
    types = {node["type"] for node in shipped()["nodes"]}
    assert {"DistributedValue", "DistributedCollector", "AIDSequenceShare", "AIDFramesToVideo"} <= types


def test_workflow_file_matches_its_description_and_its_thumbnail_is_fresh(object_info):
    workflow = shipped()
    assert workflow == json.loads(json.dumps(build_workflow(NAME, object_info)))
    thumbnail = WORKFLOWS_DIR / "aid_distributed.jpg"
    with Image.open(thumbnail) as image:
        assert image.format == "JPEG" and image.size == (TILE * GRID, TILE * GRID)
    assert thumbnail.stat().st_size < 64 * 1024
    assert thumbnail_digest(thumbnail) == prompt_digest(workflow, object_info), \
        "aid_distributed.jpg is stale: run `make templates WORKFLOW=aid_distributed`"
    assert all(model in MODEL_FILES for model in models_named(workflow))
    assert check_api_prompt(ui_to_api(workflow, object_info), object_info) == []


def test_wiring_is_the_one_comfyui_distributed_users_use(object_info):
    """Distributed Value -> share_index, VAE Decode -> Distributed Collector -> the video node (on the master)."""
    prompt = ui_to_api(shipped(), object_info)
    by_class = {node["class_type"]: (node_id, node) for node_id, node in prompt.items()}
    value_id, value = by_class["DistributedValue"]
    assert value["inputs"]["default_value"] == "0"
    assert json.loads(value["inputs"]["worker_values"]) == {"_type": "INT", "1": "1"}
    share_id, share = by_class["AIDSequenceShare"]
    assert share["inputs"]["share_index"] == [value_id, 0] and share["inputs"]["share_count"] == 2
    sampler_id, sampler = by_class["AIDSampler"]
    assert sampler["inputs"]["share"] == [share_id, 0]
    decode_id, decode = by_class["VAEDecode"]
    assert decode["inputs"]["samples"] == [sampler_id, 0]
    collector_id, collector = by_class["DistributedCollector"]
    assert collector["inputs"]["images"] == [decode_id, 0]
    assert by_class["AIDFramesToVideo"][1]["inputs"]["images"] == [collector_id, 0]


def test_gathered_frames_equal_a_single_server_run_and_each_server_samples_only_its_share(pair, object_info,
                                                                                          tiny_checkpoint):
    master, worker = pair.servers
    workflow, split = example_prompt(pair, object_info, FRAMES, 2, "gathered", tiny_checkpoint, SIZE, STEPS)
    split_rows, distributed = rows_of_run(pair, lambda: pair.run(split, {"extra_pnginfo": {"workflow": workflow}}),
                                          STEPS)
    distributed.raise_for_error()
    assert any(f.suffix == ".mp4" for f in distributed.output_files(master.base)), "the master makes the video"
    _, whole = example_prompt(pair, object_info, FRAMES, 1, "single", tiny_checkpoint, SIZE, STEPS)
    single_rows, single_run = rows_of_run(pair, lambda: master.run(whole), STEPS)
    single_run.raise_for_error()

    gathered = torch.load(master.base / "output" / "gathered.pt")
    single = torch.load(master.base / "output" / "single.pt")
    assert gathered.shape == single.shape and single.shape[0] == FRAMES
    # 5 interior frames: the master keeps A and 3 of them, the worker 2 and B; each also samples both endpoints.
    master_frames = 4
    assert split_rows == [3 + 2, 2 + 2] and single_rows == [FRAMES, 0]
    assert close(gathered[:master_frames], single[:master_frames]), "the master's frames are its own, unrounded"
    below = single[master_frames:] - gathered[master_frames:]
    assert below.min() >= -1e-3 and below.max() <= PNG_STEP + 1e-3, \
        f"the worker's frames differ by more than the collector's 8-bit rounding: {below.min()}..{below.max()}"
    print(f"\n[distributed] {FRAMES} frames: master sampled {split_rows[0]} rows, worker {split_rows[1]}, "
          f"one server {single_rows[0]}")
