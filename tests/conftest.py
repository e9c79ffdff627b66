"""Boot a real ComfyUI in the test process, with this pack loaded from custom_nodes.

The host is chosen by aid_harness.host.find_comfyui (COMFYUI_PATH, the enclosing ComfyUI, or
the pinned 0.3.75). It runs on the CPU with a throw-away --base-directory whose models folder
links the cached random-weight models. After boot the pack is importable as `aid_pack`.
"""
from __future__ import annotations

import ctypes
import gc
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from aid_harness import host as host_module  # noqa: E402

_STATE = {}
REPO_ROOT = Path(__file__).resolve().parents[1]


class _RepositoryRootAsPlainFolder:
    """Collect the repository root as a plain folder, not as a test package.

    The root is the pack itself (__init__.py with relative imports). As a package, pytest imports
    that __init__.py under the name of the folder the repository is cloned into, which fails for
    names that are no Python identifier, such as aid-attention-interpolation: every test then
    errors before it runs. Registered as a plugin (not a conftest hook), so it applies to the root.
    """

    @staticmethod
    def pytest_collect_directory(path, parent):
        if Path(path).resolve() == REPO_ROOT:
            return pytest.Dir.from_parent(parent, path=Path(path))
        return None


def pytest_configure(config):
    config.pluginmanager.register(_RepositoryRootAsPlainFolder(), "aid-repository-root")
    root, how = host_module.find_comfyui()
    host_module.provision_pinned_comfyui(root) if how.startswith("pinned") else None
    base = Path(tempfile.mkdtemp(prefix="aid-comfy-base-"))
    host_module.make_base_directory(base)
    _STATE["base"] = base
    _STATE["host"] = host_module.boot_in_process(root, base)
    config.stash[_HOW] = f"ComfyUI {host_module.comfyui_version(root)} at {root} ({how}); base {base}"


_HOW = pytest.StashKey[str]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    with _inference_mode():
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    with _inference_mode():
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item):
    with _inference_mode():
        yield


def _inference_mode():
    """ComfyUI executes every node under torch.inference_mode(); tests calling nodes directly do too.

    Outside it, outputs of modules with manual-cast weights keep autograd graphs that hold
    float32 copies of the weights (5 GB per CLIP ViT-H encode on the CPU).
    """
    import torch

    return torch.inference_mode()


def pytest_report_header(config):
    return config.stash.get(_HOW, "")


def pytest_unconfigure(config):
    base = _STATE.get("base")
    if base is not None:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def comfy():
    """The booted ComfyUI: dict with root, base, nodes, execution, folder_paths, pack."""
    return _STATE["host"]


@pytest.fixture(scope="session")
def comfy_base(comfy) -> Path:
    """The --base-directory of the booted host (models/, input/, output/, temp/)."""
    return comfy["base"]


@pytest.fixture(scope="session")
def link_model(comfy_base):
    """Link a cached model file or folder into the host's models/<folder>; returns the name ComfyUI lists."""

    def link(folder: str, path: Path) -> str:
        host_module.make_base_directory(comfy_base, {folder: [Path(path)]})
        return Path(path).name

    return link


@pytest.fixture(scope="session")
def runner(comfy):
    """An in-process PromptExecutor runner for API-format prompts."""
    from aid_harness.runner import InProcessRunner

    return InProcessRunner(comfy)


@pytest.fixture(scope="session")
def sd15_tiny_name(link_model):
    """File name of the cached tiny random SD1.5 checkpoint, linked into models/checkpoints."""
    from aid_harness import models

    return link_model("checkpoints", models.ensure_sd15_checkpoint("tiny"))


@pytest.fixture(scope="session")
def sd15_tiny(comfy, sd15_tiny_name):
    """(MODEL, CLIP, VAE) of the tiny SD1.5 checkpoint, loaded by the core CheckpointLoaderSimple."""
    return tuple(comfy["nodes"].CheckpointLoaderSimple().load_checkpoint(sd15_tiny_name)[:3])


@pytest.fixture(scope="session")
def clip_scorer_name(link_model):
    """Name of the cached random transformers CLIPModel folder, linked into models/clip_scoring."""
    from aid_harness import models

    return link_model("clip_scoring", models.ensure_clip_model())


@pytest.fixture(scope="session")
def encode(comfy):
    """encode(clip, text) -> CONDITIONING through the core CLIPTextEncode."""
    return lambda clip, text: comfy["nodes"].CLIPTextEncode().encode(clip, text)[0]


@pytest.fixture(scope="session")
def prompts(sd15_tiny, encode):
    """Endpoint prompts A and B and a negative prompt, encoded by the tiny SD1.5's CLIP."""
    clip = sd15_tiny[1]
    return {"a": encode(clip, "a photo of a dog on grass"), "b": encode(clip, "a red sports car"),
            "neg": encode(clip, "blurry, low quality")}


@pytest.fixture(scope="module", autouse=True)
def release_memory_after_module(comfy):
    """Give back what a test module loaded: CI has 24 GiB for the whole suite in one process.

    ComfyUI keeps loaded models until memory runs short, and glibc keeps freed arenas; both
    would otherwise pile up module after module.
    """
    yield
    import comfy.model_management

    comfy.model_management.unload_all_models()
    comfy.model_management.cleanup_models_gc()
    gc.collect()
    comfy.model_management.soft_empty_cache()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
