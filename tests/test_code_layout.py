"""The code layout the docs describe: imports run downward only (nodes -> samplers -> the rest), every
samplers/ feature stands on samplers/sequence/ alone, and no pack module takes part in an import circle."""
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
FEATURES = sorted(p.name for p in (host.REPO / "samplers").iterdir() if (p / "__init__.py").exists())


def module_name(path) -> tuple[str, ...]:
    """A pack file's module path: samplers/regions/run.py -> ("samplers", "regions", "run")."""
    parts = path.relative_to(host.REPO).with_suffix("").parts
    return parts[:-1] if parts[-1] == "__init__" else parts


def pack_imports(path, text=None) -> set[tuple[str, ...]]:
    """The pack modules a file imports relatively, as module paths (`from ..samplers.sequence import x`
    in nodes/a.py -> ("samplers", "sequence", "x") when x is a module there, else ("samplers", "sequence"))."""
    tree = ast.parse(path.read_text() if text is None else text, str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path)[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - (node.level - 1)] + tuple((node.module or "").split(".") if node.module else ())
            for alias in node.names:
                candidate = base + (alias.name,)
                is_module = (host.REPO.joinpath(*candidate).with_suffix(".py").exists()
                             or (host.REPO.joinpath(*candidate) / "__init__.py").exists())
                found.add(candidate if is_module else base)
    return {name for name in found if name}


def pack_files(package):
    return sorted((host.REPO / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_run_downward_only(package):
    wrong = {f"{path.relative_to(host.REPO)} imports {'.'.join(name)}" for path in pack_files(package)
             for name in pack_imports(path) if name[0] not in ALLOWED[package]}
    assert wrong == set()


def test_samplers_has_one_sub_package_per_feature_and_no_loose_modules():
    assert set(FEATURES) >= {"sequence", "keyframes", "smooth", "editing", "regions"}
    assert [p.name for p in (host.REPO / "samplers").glob("*.py")] == ["__init__.py"]


@pytest.mark.parametrize("feature", FEATURES)
def test_a_feature_imports_only_itself_the_sequence_core_and_the_floors_below(feature):
    allowed = {feature, "sequence"} if feature != "sequence" else {"sequence"}
    wrong = {f"{path.relative_to(host.REPO)} imports {'.'.join(name)}"
             for path in pack_files(f"samplers/{feature}") for name in pack_imports(path)
             if name[0] == "samplers" and (len(name) < 2 or name[1] not in allowed)}
    assert wrong == set()


def test_no_pack_module_is_in_an_import_circle():
    """Module-level and function-local imports alike: a function-local import only hides a circle."""
    graph = {}
    for package in ALLOWED:
        for path in pack_files(package):
            graph[module_name(path)] = {name for name in pack_imports(path) if name != module_name(path)}
    graph = {name: {t for t in targets if t in graph} for name, targets in graph.items()}
    # A package's __init__ is imported before its modules run, so a module's import of its own
    # package (`from . import x`) is no edge of a circle.
    graph = {name: {t for t in targets if t != name[:len(t)]} for name, targets in graph.items()}
    circles, state = [], {}

    def visit(node, trail):
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                circles.append(" -> ".join(".".join(n) for n in trail[trail.index(target):] + [target]))
            elif target not in state:
                visit(target, trail + [target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert circles == []


def node_classes_imported_across_nodes(files) -> set[str]:
    """'nodes/x.py imports Y from .z' for every node class (a class with INPUT_TYPES) one nodes module takes
    from another."""
    classes = {}
    for path in files:
        tree = ast.parse(path.read_text())
        classes[path.stem] = {node.name for node in tree.body if isinstance(node, ast.ClassDef)
                              and any(isinstance(item, ast.FunctionDef) and item.name == "INPUT_TYPES"
                                      for item in node.body)}
    found = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module in classes:
                found |= {f"nodes/{path.name} imports {alias.name} from .{node.module}" for alias in node.names
                          if alias.name in classes[node.module]}
    return found


def test_no_node_module_imports_another_node_class():
    """Shared widgets live in nodes/widgets.py (AID Smooth Sampler and AID Keyframe Sampler borrowed AID
    Sampler's through AIDSampler.INPUT_TYPES())."""
    assert node_classes_imported_across_nodes(pack_files("nodes")) == set()


def test_the_layout_checks_see_a_wrong_arrow():
    """The checks above can fail: a function-local import of another feature is seen, as a module path."""
    regions = host.REPO / "samplers" / "regions" / "run.py"
    names = pack_imports(regions, "def f():\n    from ..keyframes.plan import Keyframes\n"
                                  "from ...attention import regions\n")
    assert names == {("samplers", "keyframes", "plan"), ("attention", "regions")}


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
