"""The code layout the README describes: imports run downward only (nodes -> samplers -> the rest)."""
import ast

import pytest

from aid_harness import host

# Each package may import the pack modules listed for it (errors.py, at the top, is for everyone).
ALLOWED = {
    "nodes": {"nodes", "samplers", "attention", "scoring", "video", "errors"},
    "samplers": {"samplers", "attention", "scoring", "video", "errors"},
    "attention": {"attention", "errors"},
    "scoring": {"scoring", "errors"},
    "video": {"video", "errors"},
}


def pack_imports(path) -> set[str]:
    """Top-level pack folders or modules a file imports relatively (`from ..samplers import x` -> samplers)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level:
            if node.level == 1:
                found.add(path.parent.name if path.parent != host.REPO else (node.module or "").split(".")[0])
            else:
                found.add((node.module or "").split(".")[0] or node.names[0].name)
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_run_downward_only(package):
    wrong = {f"{path.name} imports {name}" for path in (host.REPO / package).glob("*.py")
             for name in pack_imports(path) - ALLOWED[package]}
    assert wrong == set()


@pytest.mark.slow
def test_the_suite_runs_in_a_clone_whose_folder_name_is_no_python_identifier(tmp_path):
    """`git clone ... aid-attention-interpolation && make test`: pytest must not import the pack's
    __init__.py under the folder's name (it did, and every test errored at setup)."""
    import os
    import shutil
    import subprocess
    import sys

    clone = tmp_path / host.PACK_FOLDER_NAME
    shutil.copytree(host.REPO, clone, ignore=shutil.ignore_patterns(".git", ".venv", ".cache", "demo-output",
                                                                     "__pycache__", "example_workflows"))
    env = dict(os.environ, AID_CACHE_DIR=str(host.cache_dir()))
    done = subprocess.run([sys.executable, "-m", "pytest", "tests/test_messages.py", "-q", "-p", "no:cacheprovider"],
                          cwd=clone, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and " passed" in done.stdout, done.stdout[-3000:] + done.stderr[-2000:]
