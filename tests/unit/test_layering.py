"""Which way imports run: the contracts of ``[tool.importlinter]`` in pyproject.toml,
checked by the venv's ``lint-imports`` (drivers import only the hook specs, the
errors and the driver kit of dockyard; no driver imports another; the kit, the hook
specs and the errors are the bottom; layer tars are read and written one way; the
Docker API's routers reach the engine only through the service facades; the CLI
imports the client, and only its offline verbs more; no import cycles).

lint-imports (grimp) finds ``dockyard`` through the installed package but walks only
that directory, core/, while ``dockyard.drivers`` is installed from drivers/
(setuptools package-dir).  So each run is given a view of the package as installed:
a ``dockyard`` directory of symlinks to core/'s entries with ``drivers`` beside them,
first on ``PYTHONPATH``.  ``python tests/unit/test_layering.py`` prints the report.

Two rules of issue 14 hold for the whole package, not only between the parts the
contracts name: no import cycle anywhere (grimp's graph of the same view, imports
under ``TYPE_CHECKING`` and inside functions included: a cycle hidden behind
either is still one), and no module over :data:`MAX_LINES` lines.
"""

import ast
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = REPO / "pyproject.toml"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
EXAMPLE_PLUGIN = REPO / "tests" / "fixtures" / "dockyard-example-plugin" / "dockyard_example_plugin"
#: a module longer than this is split by idea (docs/architecture.md; issue 14)
MAX_LINES = 500


def _installed():
    """Where the installed distribution keeps ``dockyard`` and ``dockyard.drivers``."""
    core = importlib.util.find_spec("dockyard").submodule_search_locations[0]
    drivers = importlib.util.find_spec("dockyard.drivers").submodule_search_locations[0]
    return Path(core), Path(drivers)


def _link_entries(src, dst, skip=()):
    for entry in src.iterdir():
        if entry.name != "__pycache__" and entry.name not in skip:
            (dst / entry.name).symlink_to(entry)


def package_view(root):
    """Make ``root/dockyard``: the package as installed, made of symlinks."""
    core, drivers = _installed()
    view = root / "dockyard"
    view.mkdir()
    _link_entries(core, view, skip={"drivers"})
    (view / "drivers").symlink_to(drivers)
    return root


def put(root, rel, text):
    """Write module ``rel`` (``drivers/storage/x.py``) into a view, replacing the
    symlinked directories on its way by real ones (their entries still linked)."""
    path = root / "dockyard"
    *dirs, name = rel.split("/")
    for part in dirs:
        path = path / part
        if path.is_symlink():
            target = path.resolve()
            path.unlink()
            path.mkdir()
            _link_entries(target, path)
    if (path / name).is_symlink():
        (path / name).unlink()
    (path / name).write_text(text)


def lint_imports(root):
    """Run lint-imports on the contracts of pyproject.toml over the view at ``root``."""
    assert LINT_IMPORTS.exists(), f"{LINT_IMPORTS} is missing: pip install -e '.[test]' (import-linter)"
    env = dict(os.environ, COLUMNS="300")  # no wrapping inside the names we look for
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH")) if p)
    return subprocess.run([str(LINT_IMPORTS), str(PYPROJECT), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def contract_count():
    with open(PYPROJECT, "rb") as fh:
        return len(tomllib.load(fh)["tool"]["importlinter"]["contracts"])


def test_the_contracts_hold(tmp_path):
    res = lint_imports(package_view(tmp_path))
    report = res.stdout + res.stderr
    assert res.returncode == 0, report
    assert f"Contracts: {contract_count()} kept, 0 broken." in report, report
    files = int(re.search(r"Analyzed (\d+) files", report).group(1))
    core, drivers = _installed()
    on_disk = sum(1 for d in (core, drivers) for p in d.rglob("*.py") if "__pycache__" not in p.parts)
    assert files == on_disk, f"lint-imports read {files} modules of {on_disk}: is drivers/ in its view?\n{report}"


def test_each_contract_catches_what_it_forbids(tmp_path):
    """One breach of every contract, planted in a view: each is reported by name."""
    root = package_view(tmp_path)
    core = _installed()[0]
    put(root, "drivers/storage/rogue.py", "from dockyard.engine import layers\nfrom . import overlay\n")
    put(root, "driverkit/rogue.py", "import dockyard.config\n")
    put(root, "driverkit/tarwriter.py", (core / "driverkit" / "tarwriter.py").read_text()
        + "\nfrom . import safetar  # noqa\n")
    put(root, "daemon/routers/rogue.py", "from dockyard.store import Store\n")  # a router past the services
    put(root, "cli/rogue.py", "import dockyard.engine.engine\n")  # the CLI past the client
    put(root, "engine/rogue.py", "import dockyard.daemon.app\n")  # the engine calling its front end back
    put(root, "engine/containers/records.py", (core / "engine" / "containers" / "records.py").read_text()
        + "\nfrom . import service  # noqa\n")  # a part of a service importing its facade
    res = lint_imports(root)
    report = res.stdout + res.stderr
    assert res.returncode == 1, report
    assert f"Contracts: 0 kept, {contract_count()} broken." in report, report
    for breach in ("dockyard.drivers.storage.rogue -> dockyard.engine.layers",
                   "dockyard.drivers.storage.rogue -> dockyard.drivers.storage.overlay",
                   "dockyard.driverkit.rogue -> dockyard.config",
                   "dockyard.driverkit.tarwriter -> dockyard.driverkit.safetar",
                   "dockyard.daemon.routers.rogue -> dockyard.store",
                   "dockyard.cli.rogue -> dockyard.engine.engine",
                   "No cycles are allowed in dockyard.\n",
                   "No cycles are allowed in dockyard.engine.containers.\n"):
        assert breach in report, f"{breach!r} not reported:\n{report}"


def test_importing_the_kit_imports_none_of_its_modules():
    """``import dockyard.driverkit`` costs nothing (the CLI and shims start fast)."""
    code = ("import sys, dockyard.driverkit as kit; "
            "print(kit.API_VERSION); print(sorted(m for m in sys.modules if m.startswith('dockyard')))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    version, modules = res.stdout.splitlines()
    assert re.fullmatch(r"\d+\.\d+", version)
    assert modules == "['dockyard', 'dockyard.driverkit']"


def test_the_example_plugin_needs_no_more_than_the_kit():
    """The third-party example (installed from its own distribution by
    test_thirdparty_plugin.py) imports of dockyard only what our drivers may."""
    allowed = ("dockyard.hookspecs", "dockyard.errors", "dockyard.driverkit")
    used = set()  # dotted names: "from dockyard.errors import X" is dockyard.errors.X
    for path in EXAMPLE_PLUGIN.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            used.update(n for n in names if n == "dockyard" or n.startswith("dockyard."))
    stray = sorted(n for n in used if not any(n == a or n.startswith(a + ".") for a in allowed))
    assert stray == [], f"the example plugin imports {stray}: a third-party driver may not"
    assert any(n.startswith("dockyard.driverkit") for n in used), used  # it does use the kit


_GRAPH = """
import grimp, json
g = grimp.build_graph("dockyard", cache_dir=None)
edges = {}
for importer in sorted(g.modules):
    for imported in sorted(g.find_modules_directly_imported_by(importer)):
        lines = sorted(d["line_number"] for d in g.get_import_details(importer=importer, imported=imported))
        edges.setdefault(importer, {})[imported] = lines[0] if lines else 0
print(json.dumps({"modules": sorted(g.modules), "edges": edges}))
"""


def import_graph(root):
    """``(modules, {importer: {imported: first line}})`` of the view at ``root``, by grimp."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p))
    res = subprocess.run([sys.executable, "-c", _GRAPH], cwd=root, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, f"grimp could not build the import graph:\n{res.stderr}"
    data = json.loads(res.stdout)
    return data["modules"], data["edges"]


def cycles(modules, edges):
    """The import cycles: strongly connected components of more than one module
    (Tarjan's algorithm, iterative), each sorted, largest first."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    for start in modules:
        if start in index:
            continue
        work = [(start, iter(edges.get(start, ())))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges.get(child, ()))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found, key=lambda c: (-len(c), c))


def describe_cycles(found, edges):
    """Each cycle with the imports that close it (``a -> b (line N)``)."""
    out = []
    for component in found:
        members = set(component)
        links = [f"{a} -> {b} (line {line})" for a in component for b, line in sorted(edges.get(a, {}).items())
                 if b in members]
        out.append(f"{len(component)} modules: " + "; ".join(links))
    return "\n".join(out)


def test_no_import_cycles(tmp_path):
    """No import cycle anywhere in dockyard (drivers included): the lower module
    declares what it needs (a typing.Protocol, a narrow collaborator) and is given
    it, or what two modules share moves to a module of its own."""
    modules, edges = import_graph(package_view(tmp_path))
    core, drivers = _installed()
    on_disk = sum(1 for d in (core, drivers) for p in d.rglob("*.py") if "__pycache__" not in p.parts)
    assert len(modules) == on_disk, f"grimp saw {len(modules)} modules of {on_disk}: is drivers/ in its view?"
    found = cycles(modules, edges)
    assert found == [], f"{len(found)} import cycle(s) in dockyard:\n{describe_cycles(found, edges)}"


def test_the_cycle_check_finds_a_planted_cycle(tmp_path):
    """The check above is not vacuous: a cycle planted in a view, across a
    ``TYPE_CHECKING`` import and a function-level one, is reported with its lines."""
    root = package_view(tmp_path)
    put(root, "driverkit/rogue_a.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    from . import rogue_b\n")
    put(root, "driverkit/rogue_b.py", "def f():\n    from .rogue_a import TYPE_CHECKING\n")
    modules, edges = import_graph(root)
    found = cycles(modules, edges)
    assert ["dockyard.driverkit.rogue_a", "dockyard.driverkit.rogue_b"] in found, found
    report = describe_cycles(found, edges)
    assert "dockyard.driverkit.rogue_a -> dockyard.driverkit.rogue_b (line 3)" in report, report
    assert "dockyard.driverkit.rogue_b -> dockyard.driverkit.rogue_a (line 2)" in report, report


def test_no_module_over_500_lines():
    """Every module of dockyard (core/ and drivers/ as installed) has at most
    :data:`MAX_LINES` lines: a longer one is split by idea, not by length."""
    core, drivers = _installed()
    long = []
    for prefix, top in (("dockyard", core), ("dockyard.drivers", drivers)):
        for path in sorted(top.rglob("*.py")):
            if "__pycache__" in path.parts or (top == core and path.relative_to(core).parts[0] == "drivers"):
                continue
            with open(path, "rb") as fh:
                n = sum(1 for _ in fh)
            if n > MAX_LINES:
                parts = path.relative_to(top).with_suffix("").parts
                name = ".".join((prefix, *parts[:-1], *([] if parts[-1] == "__init__" else [parts[-1]])))
                long.append(f"{name} ({n} lines, {os.path.relpath(path, REPO)})")
    assert long == [], f"modules over {MAX_LINES} lines: " + "; ".join(long)


if __name__ == "__main__":  # the report by hand: python tests/unit/test_layering.py
    with tempfile.TemporaryDirectory() as tmp:
        res = lint_imports(package_view(Path(tmp)))
    print(res.stdout + res.stderr)
    sys.exit(res.returncode)
