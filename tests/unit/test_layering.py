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
"""

import ast
import importlib.util
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


if __name__ == "__main__":  # the report by hand: python tests/unit/test_layering.py
    with tempfile.TemporaryDirectory() as tmp:
        res = lint_imports(package_view(Path(tmp)))
    print(res.stdout + res.stderr)
    sys.exit(res.returncode)
