"""What ships: requirements that match the imports, pyproject.toml as ComfyUI reads it, the Comfy Registry zip."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from aid_harness import host

REPO = host.REPO
# Imported by the pack but provided by the ComfyUI host itself: its own modules and torch.
# aiohttp: the web framework of ComfyUI's own server (its requirements.txt), for the editor's preview routes.
HOST_MODULES = {"torch", "torchvision", "comfy", "comfy_api", "comfy_execution", "folder_paths", "latent_preview",
                "node_helpers", "nodes", "server", "execution", "aiohttp"}
# Optional: imported only inside a try, documented in the README, never installed by the pack.
OPTIONAL_MODULES = {"lpips"}
# Import name -> distribution name where they differ.
DISTRIBUTIONS = {"PIL": "pillow"}


def registry_zip_files() -> list[str]:
    """The files `comfy node publish` zips: git-tracked files minus .comfyignore patterns, plus `includes`.

    Mirrors comfy-cli's file_utils.zip_files (pathspec's gitwildmatch on repository-relative paths).
    """
    import tomllib
    import warnings

    import pathspec

    tracked = subprocess.run(["git", "-C", str(REPO), "ls-files"], capture_output=True, text=True, check=True)
    ignore_file = REPO / ".comfyignore"
    patterns = [line.strip() for line in ignore_file.read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")] if ignore_file.exists() else []
    with warnings.catch_warnings():  # comfy-cli still uses the 'gitwildmatch' name that pathspec 1.x deprecates
        warnings.simplefilter("ignore", DeprecationWarning)
        spec = pathspec.PathSpec.from_lines("gitwildmatch", patterns)
        ignored = {path for path in tracked.stdout.splitlines() if spec.match_file(path)}
    includes = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["comfy"].get("includes", [])
    forced = [include.strip("/") for include in includes]
    files = []
    for path in tracked.stdout.splitlines():
        keep = any(path == f or path.startswith(f + "/") for f in forced) or path not in ignored
        if keep and (REPO / path).exists():
            files.append(path)
    return files


def shipped_python_files() -> list[Path]:
    return [REPO / p for p in registry_zip_files() if p.endswith(".py")]


def third_party_imports(files) -> set[str]:
    """Top-level names of every module the files import that is neither stdlib nor the pack's own."""
    names = set()
    for file in files:
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "__future__"}


def requirement_names(lines) -> list[str]:
    names = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0].lower())
    return names


def test_requirements_list_exactly_what_the_pack_imports():
    imported = third_party_imports(shipped_python_files()) - HOST_MODULES - OPTIONAL_MODULES
    listed = requirement_names((REPO / "requirements.txt").read_text().splitlines())
    assert sorted(listed) == sorted({DISTRIBUTIONS.get(name, name).lower() for name in imported})
    assert len(listed) == len(set(listed))
    assert not {"torch", "torchvision", "torchaudio"} & set(listed), "the host owns torch"


def test_pyproject_dependencies_are_the_requirements():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert requirement_names(project["dependencies"]) == requirement_names(
        (REPO / "requirements.txt").read_text().splitlines())


def test_pyproject_as_comfyui_reads_it(comfy):
    """ComfyUI's own parser (comfy_config) sees a complete registry entry."""
    from comfy_config import config_parser
    from packaging.specifiers import SpecifierSet

    config = config_parser.extract_node_configuration(str(REPO))
    project, comfy_tool = config.project, config.tool_comfy
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]{0,99}", project.name) and "comfyui" not in project.name.lower()
    assert re.fullmatch(r"\d+\.\d+\.\d+", project.version)
    assert project.description and project.urls.repository.startswith("https://")
    assert (REPO / project.license.file).is_file()
    assert comfy_tool.publisher_id and comfy_tool.display_name
    assert comfy_tool.icon == "" or re.match(r"https://\S+\.(png|jpg|jpeg|svg|gif)$", comfy_tool.icon)
    required = SpecifierSet(project.supported_comfyui_version)
    assert host.comfyui_version(comfy["root"]) in required, "the host the tests run on must satisfy the range"
    assert "0.3.59" not in required, "0.3.59's attention functions refuse transformer_options (patch.py passes it)"
    assert all(Path(REPO / include).exists() for include in comfy_tool.includes)


def test_registry_zip_holds_the_pack_and_no_tests():
    files = registry_zip_files()
    assert not [f for f in files if f.split("/")[0] in ("tests", "benchmarks", ".ci")]
    for needed in ("__init__.py", "nodes/__init__.py", "pyproject.toml", "requirements.txt", "LICENSE", "README.md",
                   "web/js/aid_regions.js", "web/docs/AIDSchedule.md"):
        assert needed in files
    templates = [f for f in files if f.startswith("example_workflows/")]
    assert any(f.endswith(".json") for f in templates) and any(f.endswith(".jpg") for f in templates)


def test_shipped_code_imports_nothing_from_the_tests():
    imported = third_party_imports(shipped_python_files())
    assert not {"aid_harness", "tests", "pytest"} & imported


@pytest.mark.parametrize("path", ["tests/conftest.py", "benchmarks/aid_cost.py", ".ci/run"])
def test_development_files_are_tracked_but_not_shipped(path):
    assert (REPO / path).exists() and path not in registry_zip_files()
