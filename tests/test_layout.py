"""The project's shape: no import cycles among its modules (function-level and type-only imports included),
one package as installed and as cloned, modules and functions of a readable size."""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def project_modules() -> dict[str, Path]:
    """Every module of dcube_edge and of the subpackages the pyproject maps from top-level folders."""
    packages = ["dcube_edge"] + [f"dcube_edge.{d.name}" for d in sorted(ROOT.iterdir())
                                 if (d / "__init__.py").is_file() and d.name != "dcube_edge"
                                 and importlib.util.find_spec(f"dcube_edge.{d.name}") is not None]
    mods = {}
    for pkg in packages:
        folder = Path(importlib.util.find_spec(pkg).submodule_search_locations[0])
        for f in folder.rglob("*.py"):
            parts = [pkg, *f.relative_to(folder).with_suffix("").parts]
            mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return mods


def import_graph() -> dict[str, set[str]]:
    """module → project modules it imports anywhere in its body, ``if TYPE_CHECKING:`` blocks included (a
    circle of type-only imports is still a circle a reader has to untangle). ``from pkg import mod`` counts as
    an import of ``pkg.mod``."""
    mods = project_modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        package = name if path.stem == "__init__" else name.rsplit(".", 1)[0]
        deps: set[str] = set()
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in mods]
                deps.update(subs or ([base] if base in mods else []))
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name in mods)
        graph[name] = deps - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_graph_sees_function_level_and_relative_imports():
    graph = import_graph()
    assert "dcube_edge.runtimes.dicom" in graph["dcube_edge.runtimes.reader"]  # imported inside a function
    assert "dcube_edge.loop" in graph["dcube_edge.train"]


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_wheel_holds_one_package_with_every_module(tmp_path):
    """`pip install .` installs `dcube_edge` and nothing else at the top level, and every module of the source
    tree's mapped folders lands in it (a subpackage missing from pyproject's list would be left out)."""
    import shutil
    import subprocess
    import sys
    import zipfile

    src = tmp_path / "src"  # a copy of what git would clone (and new files), so the build leaves no build/ here
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    for name in listed:
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(src),
                          "-w", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    names = zipfile.ZipFile(next(tmp_path.glob("*.whl"))).namelist()
    assert {n.split("/")[0] for n in names} == {"dcube_edge", "dcube_edge-0.1.0.dist-info"}
    packaged = {n[:-3].replace("/", ".").removesuffix(".__init__") for n in names if n.endswith(".py")}
    assert packaged == set(project_modules())


def test_a_clone_root_imports_its_own_stage_folders():
    """From a clone's root, `./dcube_edge` shadows any installed copy; its stage subpackages must then be the
    clone's folders, not an ImportError. `-S`: no site-packages, so no install can answer instead."""
    import subprocess
    import sys

    code = "import importlib.util as u; print(u.find_spec('dcube_edge.runtimes').origin)"
    res = subprocess.run([sys.executable, "-S", "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert Path(res.stdout.strip()) == ROOT / "runtimes" / "__init__.py"


MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 80


def test_modules_and_functions_stay_readable():
    """No module over 400 lines, no function over 80: past that a file holds several concerns."""
    long_modules, long_functions = [], []
    for name, path in project_modules().items():
        text = path.read_text()
        if text.count("\n") > MAX_MODULE_LINES:
            long_modules.append(f"{name} ({text.count(chr(10))} lines)")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long_functions.append(f"{name}.{node.name} ({length} lines)")
    assert long_modules == [] and long_functions == []
