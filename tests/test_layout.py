"""The shape of the code: one-way imports with no circle, small modules, a light command line."""

import ast
import subprocess
import sys

import pytest

from tests.helpers import ROOT

PACKAGES = ("transforms", "models", "pipelines")
JOBS = ("pipelines.preprocess", "pipelines.infer", "pipelines.evaluate", "pipelines.job", "pipelines.cli")


def _modules() -> dict[str, ast.Module]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            found[name] = ast.parse(path.read_text())
    return found


def _imports(tree: ast.Module, top_level_only: bool) -> set[str]:
    """The project modules a module imports (``from a import b`` counts ``a.b`` when that is a module)."""
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {n for n in names if n.split(".")[0] in PACKAGES}


MODULES = _modules()


def _project(names: set[str]) -> set[str]:
    return {n for n in names if n in MODULES}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_flow_one_way(name):
    imported = _imports(MODULES[name], top_level_only=False)
    layer = PACKAGES.index(name.split(".")[0])
    upward = sorted(n for n in imported if PACKAGES.index(n.split(".")[0]) > layer)
    assert not upward, f"{name} imports {upward}: transforms <- models <- pipelines only"
    if name.startswith("pipelines.inputs"):
        jobs = sorted(n for n in imported if n.startswith(JOBS))
        assert not jobs, f"{name} (the shared input side) imports the jobs {jobs}"


def test_no_import_circle():
    graph = {name: _project(_imports(tree, top_level_only=True)) - {name} for name, tree in MODULES.items()}
    done, path, circles = set(), [], []

    def visit(name):
        if name in path:
            circles.append(" -> ".join([*path[path.index(name) :], name]))
            return
        if name in done:
            return
        path.append(name)
        for other in sorted(graph[name]):
            visit(other)
        path.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)
    assert circles == []


def test_modules_are_small_and_the_pipelines_top_level_is_short():
    sizes = {
        p.relative_to(ROOT).as_posix(): len(p.read_text().splitlines())
        for pkg in PACKAGES
        for p in (ROOT / pkg).rglob("*.py")
    }
    assert {path: n for path, n in sizes.items() if n > 500} == {}
    top = [p.name for p in (ROOT / "pipelines").glob("*.py") if p.name != "__init__.py"]
    assert len(top) <= 10, top


def test_no_default_is_written_in_a_help_string():
    hand_written = [
        f"{p.relative_to(ROOT)}:{i}"
        for pkg in PACKAGES
        for p in (ROOT / pkg).rglob("*.py")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if "[default:" in line
    ]
    assert hand_written == []


@pytest.mark.parametrize("module", ["pipelines.cli", "models.kinds"])
def test_the_command_line_and_the_kinds_import_no_heavy_library(module):
    heavy = ("tensorflow", "keras", "apache_beam", "PIL")
    code = f"import sys, {module}; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.strip() == "[]"


def test_every_format_name_has_a_reader():
    from pipelines import config
    from pipelines.inputs.formats import READERS

    assert set(READERS) == {*config.FORMATS, config.BUILTIN_MNIST}
