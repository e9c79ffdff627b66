"""Bad input to every node of the pack, through the real server (issue 10, item 8).

For each node /object_info lists in an 'AID' category, a valid prompt is built around it (its
sockets fed by producer nodes, widgets at their defaults) and run; then every input gets the
bad values of its declared type (tests/aid_harness/fuzz.py): out-of-range and non-numeric
numbers, NaN and inf, empty, 1 MB, NUL-byte and path-escaping strings, 5000-frame lists,
options that do not exist, corrupt and pickled model files, raw JSON and wrong-type links on
sockets. Each must come back as ComfyUI's validation error on that node and input, or as the
pack's named error "<node>: input '<input>': ... Fix: ...", or succeed where the value can be
legal; never as a raw exception. The server must stay up and run the valid prompt again, and
nothing may be written outside the base folder's output/ and temp/ folders.

Then a cancel in the middle of a chunked AID Sampler run: the host must give the next run the
same frames as an uninterrupted one.

AID_FUZZ_NODES="AIDSchedule AIDSampler" limits the first test to some nodes while working on them;
the refused-input report is also written to AID_FUZZ_REPORT (default: the test's temp folder).
"""
from __future__ import annotations

import copy
import os
import pickle
import time
import uuid
from pathlib import Path

import pytest
import torch

from aid_harness import host, models
from aid_harness.fuzz import NAMED_ERROR, PLANTED, BadValue, PromptBuilder, bad_values, input_kind, pack_nodes
from aid_harness.runner import ServerRunner

pytestmark = [pytest.mark.server, pytest.mark.slow]

TAG = f"aid-fuzz-{uuid.uuid4().hex[:8]}"
ALLOWED_WRITES = ("output", "temp", "user", "comfyui-server.log")
# Extra links for specific nodes: mismatched batch sizes (the schedule says 3 frames, the images are 5).
MISMATCHED_BATCH = 5


def plant_bad_model_files(base: Path) -> None:
    """Corrupt, empty, pickled and non-safetensors files in the model folders the pack reads."""
    garbage = os.urandom(4096)
    for folder in ("ipadapter", "clip_scoring", "checkpoints"):
        target = base / "models" / folder
        target.mkdir(parents=True, exist_ok=True)
        (target / f"{PLANTED}corrupt.safetensors").write_bytes(b"\xff" * 8 + garbage)  # header length 2^64-1
        (target / f"{PLANTED}empty.safetensors").write_bytes(b"")
    ipadapter = base / "models" / "ipadapter"
    (ipadapter / f"{PLANTED}garbage.ckpt").write_bytes(garbage)
    (ipadapter / f"{PLANTED}list.bin").write_bytes(pickle.dumps([1, 2, 3]))  # plain data, not an adapter
    (ipadapter / f"{PLANTED}malicious.bin").symlink_to(models.ensure_malicious_bin())
    broken = base / "models" / "clip_scoring" / f"{PLANTED}broken-folder"
    broken.mkdir(exist_ok=True)
    (broken / "config.json").write_text("{ not json")


def tree(root: Path) -> dict:
    """path -> (size, mtime) of every file and folder under root (links not followed)."""
    entries = {}
    for folder, subfolders, files in os.walk(root):
        for name in subfolders + files:
            path = Path(folder) / name
            stat = path.lstat()
            entries[str(path.relative_to(root))] = (stat.st_size, stat.st_mtime_ns if path.is_file() else 0)
    return entries


@pytest.fixture(scope="module")
def fuzz_server(comfy, sd15_tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    base = root / "base"
    layer_dims = [x["inner_dim"] for x in models.unet_cross_attention_layers(sd15_tiny[0].model.diffusion_model)]
    files = {"checkpoints": [models.ensure_sd15_checkpoint("tiny")],
             "clip_vision": [models.ensure_clip_vision_vit_h()],
             "ipadapter": [models.ensure_ipadapter("sd15", layers=layer_dims)],
             "clip_scoring": [models.ensure_clip_model()]}
    host.make_base_directory(base, files)
    plant_bad_model_files(base)
    good = {"ckpt_name": files["checkpoints"][0].name, "clip_name": files["clip_vision"][0].name,
            "ipadapter_file": files["ipadapter"][0].name, "model_name": files["clip_scoring"][0].name}
    with ServerRunner(comfy["root"], base) as server:
        yield {"server": server, "root": root, "base": base, "good": good, "object_info": server.get("/object_info")}


def outcome_problem(result, node_id: str, input_name: str, bad, object_info, fuzzed_class: str) -> str | None:
    """None when the result is acceptable for a bad value, else what is wrong with it."""
    if result.success:
        return None if not bad.must_fail else "accepted"
    error = result.error or {}
    if "node_errors" in error:  # refused by ComfyUI's validation (HTTP 400)
        node_errors = error.get("node_errors") or {}
        if getattr(bad, "host_refuses", False):
            return None
        if node_id not in node_errors:
            return f"validation error not on the node: {str(error)[:300]}"
        names = {e.get("extra_info", {}).get("input_name") for e in node_errors[node_id]["errors"]}
        details = " ".join(str(e.get("details", "")) for e in node_errors[node_id]["errors"])
        return None if input_name in names or input_name in details else f"validation names {names}: {details[:200]}"
    message = str(error.get("exception_message", ""))
    failed_class = error.get("node_type", "")
    match = NAMED_ERROR.match(message.strip())
    display = object_info.get(failed_class, {}).get("display_name", failed_class)
    if match is not None and match["node"] == object_info[fuzzed_class]["display_name"]:
        failed_class = fuzzed_class  # raised where its output is used (Apply AID's patch inside a KSampler)
    elif match is None or match["node"] != display:
        return f"{error.get('exception_type')} from {failed_class}: {message[:300]}"
    declared = {**object_info[failed_class]["input"].get("required", {}),
                **object_info[failed_class]["input"].get("optional", {})}
    if match["input"] not in declared:
        return f"names input '{match['input']}', which {failed_class} does not have: {message[:200]}"
    if failed_class == fuzzed_class and input_name and match["input"] != input_name:
        return f"blames '{match['input']}' for a bad '{input_name}': {message[:200]}"
    return None


def valid_prompt(server, object_info: dict, good_files: dict, class_type: str) -> tuple[dict, str]:
    """A prompt that runs `class_type` successfully: required inputs, plus the optional sockets its errors ask for."""
    optional: set = set()
    declared_optional = object_info[class_type]["input"].get("optional", {})
    while True:
        builder = PromptBuilder(object_info, good_files)
        node_id = builder.node(class_type, optional=optional)
        prompt = builder.with_sink(node_id)
        result = server.run(prompt, poll_interval=0.05)
        if result.success:
            return prompt, node_id
        match = NAMED_ERROR.match(str((result.error or {}).get("exception_message", "")).strip())
        wanted = match["input"] if match else None
        assert wanted in declared_optional and wanted not in optional, result.raise_for_error()
        optional.add(wanted)


def choice_that_reads(input_name: str, declared: dict) -> dict:
    """{combo: option} for a combo with an option named like the input (AID Schedule reads 'custom' only then)."""
    for name, spec in {**declared.get("required", {}), **declared.get("optional", {})}.items():
        if input_kind(spec) == "COMBO" and input_name in (spec[0] if isinstance(spec[0], list) else []):
            return {name: input_name}
    return {}


def other_type_links(prompt: dict, object_info: dict, exclude: str, wanted: str) -> list:
    """Up to two links to outputs in the prompt whose type is not `wanted` (wrong-type sockets)."""
    links = []
    for node_id, node in prompt.items():
        if node_id == exclude:
            continue
        for index, kind in enumerate(object_info[node["class_type"]].get("output", [])):
            if kind != wanted and kind != "*" and all(label != kind for _, label in links):
                links.append(([node_id, index], kind))
    return links[:2]


def test_every_node_refuses_bad_input_by_name_and_the_server_stays_up(fuzz_server):
    server, object_info, root = fuzz_server["server"], fuzz_server["object_info"], fuzz_server["root"]
    nodes = pack_nodes(object_info)
    assert len(nodes) >= 10, nodes
    before = tree(root)
    problems, tried, seconds, slowest = [], 0, {}, []
    for class_type in [n for n in nodes if n in os.environ.get("AID_FUZZ_NODES", n)]:
        started = time.monotonic()
        valid, node_id = valid_prompt(server, object_info, fuzz_server["good"], class_type)
        declared = object_info[class_type]["input"]
        for name, spec in {**declared.get("required", {}), **declared.get("optional", {})}.items():
            links = other_type_links(valid, object_info, node_id, input_kind(spec))
            for bad in bad_values(name, spec, links, TAG):
                prompt = copy.deepcopy(valid)
                prompt[node_id]["inputs"][name] = bad.value
                prompt[node_id]["inputs"].update(choice_that_reads(name, declared))
                t0 = time.monotonic()
                result = server.run(prompt, poll_interval=0.05)
                slowest.append((time.monotonic() - t0, f"{class_type}.{name} <- {bad.label}"))
                tried += 1
                problem = outcome_problem(result, node_id, name, bad, object_info, class_type)
                if problem:
                    problems.append(f"{class_type}.{name} <- {bad.label}: {problem}")
                assert server.process.poll() is None, f"the server died on {class_type}.{name} <- {bad.label}"
        for prompt, name, label, must_fail in special_cases(class_type, valid, node_id, object_info):
            result = server.run(prompt, poll_interval=0.05)
            tried += 1
            problem = outcome_problem(result, node_id, name, BadValue(None, label, must_fail), object_info,
                                      class_type)
            if problem:
                problems.append(f"{class_type}.{name} <- {label}: {problem}")
        server.run(valid, poll_interval=0.05).raise_for_error()  # the host still answers a valid prompt
        seconds[class_type] = time.monotonic() - started
    print("seconds per node:", {name: round(s, 1) for name, s in seconds.items()}, f"({tried} bad prompts)")
    print("slowest:", sorted(slowest, reverse=True)[:8])
    # what the host wrote is taken before the report is written beside it
    changed = {path for path, entry in tree(root).items() if before.get(path) != entry}
    changed |= set(before) - set(tree(root))
    report = Path(os.environ.get("AID_FUZZ_REPORT", root / "fuzz-report.txt"))
    report.write_text("\n".join(problems) + "\n")
    assert not problems, f"{len(problems)} of {tried} bad inputs were not refused by name:\n" + "\n".join(problems)

    outside = sorted(p for p in changed if not p.startswith(tuple(f"base/{a}" for a in ALLOWED_WRITES)))
    assert outside == [], f"written outside output/ and temp/: {outside[:20]}"
    assert not Path(f"/tmp/{TAG}-absolute").exists()


def special_cases(class_type: str, valid: dict, node_id: str, object_info: dict):
    """Bad combinations no single input shows: batch and image sizes that do not match.

    Yields (prompt, input to blame, label, must_fail).
    """
    inputs = object_info[class_type]["input"]
    declared = {**inputs.get("required", {}), **inputs.get("optional", {})}
    images = [n for n, spec in declared.items() if input_kind(spec) == "IMAGE"]
    schedules = [n for n, spec in declared.items() if input_kind(spec) == "AID_SCHEDULE"]

    def variant():
        prompt = copy.deepcopy(valid)
        return prompt, PromptBuilder(object_info, {}, prompt)

    def image(builder, width, height, batch):
        return [builder.node("EmptyImage", {"width": width, "height": height, "batch_size": batch, "color": 0}), 0]

    def three_frames(builder):
        return [builder.node("AIDSchedule", {"frames": 3, "curve": "linear", "alpha": 1.0, "beta": 1.0}), 0]

    if images and schedules:  # 5 images against a 3-frame schedule
        prompt, builder = variant()
        prompt[node_id]["inputs"][images[0]] = image(builder, 64, 64, MISMATCHED_BATCH)
        prompt[node_id]["inputs"][schedules[0]] = three_frames(builder)
        yield prompt, schedules[0], f"{MISMATCHED_BATCH} frames for a 3-frame schedule", True
    if len(images) >= 2:  # images of different sizes and batch sizes: fine, or refused by name
        prompt, builder = variant()
        prompt[node_id]["inputs"][images[0]] = image(builder, 64, 64, 1)
        prompt[node_id]["inputs"][images[1]] = image(builder, 48, 80, 2)
        yield prompt, "", "images of different sizes", False
    if schedules and "MODEL" in object_info[class_type].get("output", []):  # a patched model, a 5-frame batch
        prompt, builder = variant()
        prompt[node_id]["inputs"][schedules[0]] = three_frames(builder)
        model = [node_id, object_info[class_type]["output"].index("MODEL")]
        latent = [builder.node("EmptyLatentImage", {"width": 64, "height": 64, "batch_size": MISMATCHED_BATCH}), 0]
        sampled = builder.node("KSampler", {"model": model, "latent_image": latent, "steps": 1})
        builder.node("PreviewAny", {"source": [sampled, 0]})
        yield prompt, schedules[0], f"a {MISMATCHED_BATCH}-frame batch for a 3-frame schedule", True


def test_cancel_in_the_middle_of_a_sequence_leaves_the_host_usable(fuzz_server):
    from safetensors.torch import load_file

    server, base, object_info = fuzz_server["server"], fuzz_server["base"], fuzz_server["object_info"]
    steps = 4

    def prompt(prefix: str) -> tuple[dict, str]:
        builder = PromptBuilder(object_info, fuzz_server["good"])
        schedule = builder.node("AIDSchedule", {"frames": 5, "curve": "linear", "alpha": 1.0, "beta": 1.0})
        sampler = builder.node("AIDSampler", {"schedule": [schedule, 0], "steps": steps, "max_frames_per_batch": 3,
                                              "seed": 11})
        builder.node("SaveLatent", {"samples": [sampler, 0], "filename_prefix": prefix})
        return builder.prompt, sampler

    def frames(result) -> torch.Tensor:
        (path,) = result.output_files(base, key="latents")
        return load_file(str(path))["latent_tensor"]

    reference_prompt, _ = prompt("cancel/reference")
    reference = frames(server.run(reference_prompt, poll_interval=0.05).raise_for_error())
    status, _ = server.post("/free", {"free_memory": True})  # drop cached node outputs, keep loaded models
    assert status == 200
    time.sleep(2)

    cancelled_prompt, sampler_id = prompt("cancel/after")
    log_start = len(server.log())
    status, answer = server.post("/prompt", {"prompt": cancelled_prompt, "client_id": "aid-tests"})
    assert status == 200, answer
    prompt_id = answer["prompt_id"]
    deadline = time.monotonic() + 300
    while server.log()[log_start:].count(f" 0/{steps} [") < 2:  # the second of 3 chunks has started
        assert time.monotonic() < deadline, server.log()[-3000:]
        time.sleep(0.02)
    server.post("/interrupt", {"prompt_id": prompt_id})
    interrupted = server.wait(prompt_id)
    assert not interrupted.success
    kinds = {event: data for event, data in interrupted.messages}
    assert "execution_interrupted" in kinds and kinds["execution_interrupted"]["node_type"] == "AIDSampler"
    assert not interrupted.output_files(base, key="latents"), "nothing half-done is saved"

    rerun = server.run(cancelled_prompt, poll_interval=0.05).raise_for_error()
    cached = {event: data for event, data in rerun.messages}.get("execution_cached", {}).get("nodes", [])
    assert sampler_id not in cached, "the rerun must sample again, not reuse a cached result"
    assert torch.equal(frames(rerun), reference)
