"""The project's shape: the layering table of docs/architecture.md, no import cycles among its modules
(function-level and type-only imports included), one package as installed and as cloned, modules and functions
of a readable size."""
from __future__ import annotations

import ast
import importlib.util
import re
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


ARCHITECTURE = ROOT / "docs" / "architecture.md"
STAGES = ("errors", "runtimes", "calibration", "export", "bench", "cli")


def layer_of(module: str) -> str | None:
    """The row of the layering table a module belongs to: ``dcube_edge.<stage>...`` its stage's, any other
    ``dcube_edge.*`` module the core's; the package's own ``__init__`` none (Python runs it for every import)."""
    parts = module.split(".")
    if module == "dcube_edge":
        return None
    return parts[1] if parts[1] in STAGES else "core"


def layering_table(text: str) -> dict[str, tuple[set[str], bool]]:
    """docs/architecture.md's table "Packages and what may import what", read as written: row → (the rows it may
    import, whether it may import torch). "everything above" is every earlier row; torch is allowed where the row
    names it or reaches a row that does."""
    rows = re.findall(r"^\| `(dcube_edge(?:\.\w+)?)`[^|]*\|[^|]*\| ([^|]*) \|$", text, re.M)
    table: dict[str, tuple[set[str], bool]] = {}
    for package, may in rows:
        name = layer_of(package) or "core"
        allowed = {layer_of(f"dcube_edge.{m}") or "core" for m in re.findall(r"`(\w+)`", may)}
        allowed |= {"core"} if re.search(r"\bcore\b", may) else set()
        allowed |= set(table) if "everything above" in may else set()
        torch = "torch" in may or any(table[a][1] for a in allowed if a in table)
        table[name] = (allowed, torch)
    return table


def external_imports(path: Path) -> set[str]:
    """Top-level names of the packages a module imports anywhere in its body."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    return found


def layering_violations(graph: dict[str, set[str]], table: dict[str, tuple[set[str], bool]],
                        torch_users: set[str]) -> list[str]:
    """Every import the table does not allow, as 'module -> module (row -> row)'."""
    found = []
    for module, deps in sorted(graph.items()):
        row = layer_of(module)
        if row is None:
            continue
        allowed, torch = table[row]
        found += [f"{module} -> {d} ({row} -> {layer_of(d)})" for d in sorted(deps)
                  if layer_of(d) not in (None, row) and layer_of(d) not in allowed]
        if module in torch_users and not torch:
            found.append(f"{module} -> torch ({row} may not import torch)")
    return found


def test_the_layering_table_is_read_as_written():
    table = layering_table(ARCHITECTURE.read_text())
    assert set(table) == {"errors", "runtimes", "calibration", "core", "export", "bench", "cli"}
    assert table["errors"] == (set(), False)
    assert table["runtimes"] == ({"errors"}, False)
    assert table["export"][0] == {"core", "calibration", "runtimes", "errors"}
    assert table["export"][1]  # through the core
    assert table["cli"][0] == {"errors", "runtimes", "calibration", "core", "export", "bench"}


def test_the_layering_check_catches_an_import_against_the_table():
    table = layering_table(ARCHITECTURE.read_text())
    graph = {"dcube_edge.calibration.sets": {"dcube_edge.rundir", "dcube_edge.runtimes.files"},
             "dcube_edge.runtimes.sr": {"dcube_edge"}, "dcube_edge.rundir": set(), "dcube_edge.runtimes.files": set()}
    assert layering_violations(graph, table, {"dcube_edge.runtimes.files"}) == [
        "dcube_edge.calibration.sets -> dcube_edge.rundir (calibration -> core)",
        "dcube_edge.runtimes.files -> torch (runtimes may not import torch)"]


def test_every_import_follows_the_layering_table():
    """docs/architecture.md's table, enforced: which package may import which (type-only and function-level
    imports included), and no torch below the core."""
    torch_users = {m for m, path in project_modules().items() if "torch" in external_imports(path)}
    violations = layering_violations(import_graph(), layering_table(ARCHITECTURE.read_text()), torch_users)
    assert violations == []


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
    assert long_modules == []
    assert long_functions == []
