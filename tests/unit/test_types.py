"""Types: the venv's ``mypy`` with the settings of ``[tool.mypy]`` in pyproject.toml.
Every function of the hook specs, the driver kit, the errors and the modules listed
there is typed; the rest is checked inside the functions that are.

mypy names a module after the directories it sits in and cannot follow the editable
install's import hook, so it cannot see core/ as ``dockyard`` nor drivers/ as
``dockyard.drivers`` (setuptools package-dir).  It runs in a view of the package as
installed instead: ``.mypy_cache/view/dockyard``, core/'s entries and drivers/
symlinked, where the config's ``files`` names the package.  Its cache is
``.mypy_cache`` (gitignored): the two tests take ~10 s with a cold cache on this
machine, ~1 s with a warm one.  ``python tests/unit/test_types.py`` prints the report.
"""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = REPO / "pyproject.toml"
MYPY = Path(sys.executable).with_name("mypy")
CACHE = REPO / ".mypy_cache"


def _installed():
    """Where the installed distribution keeps ``dockyard`` and ``dockyard.drivers``."""
    core = importlib.util.find_spec("dockyard").submodule_search_locations[0]
    drivers = importlib.util.find_spec("dockyard.drivers").submodule_search_locations[0]
    return Path(core), Path(drivers)


def _sync_links(want, view):
    """Make ``view`` hold exactly the symlinks ``want`` ({name: target}), touching
    only what differs, so that two runs at once leave the same view."""
    view.mkdir(parents=True, exist_ok=True)
    for entry in view.iterdir():
        if not entry.is_symlink() or os.readlink(entry) != str(want.get(entry.name, "")):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
    for name, target in want.items():
        try:
            (view / name).symlink_to(target)
        except FileExistsError:
            pass


def package_view(root, extra=None):
    """``root/dockyard``: the package as installed, made of symlinks (``extra`` adds
    top-level entries, name -> path)."""
    core, drivers = _installed()
    want = {e.name: e for e in core.iterdir() if e.name not in ("__pycache__", "drivers")}
    want["drivers"] = drivers
    want.update(extra or {})
    _sync_links(want, root / "dockyard")
    return root


def mypy(root, cache=CACHE):
    """Run mypy with pyproject.toml's settings over the view at ``root``."""
    assert MYPY.exists(), f"{MYPY} is missing: pip install -e '.[test]' (mypy)"
    cmd = [str(MYPY), "--config-file", str(PYPROJECT), "--cache-dir", str(cache), "--no-color-output"]
    env = dict(os.environ, MYPY_FORCE_COLOR="0", COLUMNS="200")
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=900)


def test_the_package_type_checks():
    res = mypy(package_view(CACHE / "view"))
    report = res.stdout + res.stderr
    assert res.returncode == 0, report
    checked = int(re.search(r"Success: no issues found in (\d+) source files", report).group(1))
    core, drivers = _installed()
    on_disk = sum(1 for d in (core, drivers) for p in d.rglob("*.py") if "__pycache__" not in p.parts)
    assert checked == on_disk, f"mypy read {checked} modules of {on_disk}: is drivers/ in its view?\n{report}"


def test_the_settings_are_in_force(tmp_path):
    """An untyped function in the kit and a wrong call inside an untyped function
    elsewhere, planted in a view: mypy reports both."""
    planted = tmp_path / "planted"
    (planted / "driverkit").mkdir(parents=True)
    core, _ = _installed()
    for entry in (core / "driverkit").iterdir():
        if entry.name != "__pycache__":
            (planted / "driverkit" / entry.name).symlink_to(entry)
    (planted / "driverkit" / "rogue.py").write_text("def untyped(x):\n    return x\n")
    (planted / "rogue.py").write_text("def untyped():\n    return len(1)\n")
    res = mypy(package_view(tmp_path / "view", extra={"driverkit": planted / "driverkit",
                                                      "rogue.py": planted / "rogue.py"}),
               cache=CACHE / "planted")  # its own: the two tests may run at once (xdist)
    report = res.stdout + res.stderr
    assert res.returncode == 1, report
    assert re.search(r"dockyard/driverkit/rogue\.py:1: error: Function is missing a type annotation", report), report
    assert re.search(r"dockyard/rogue\.py:2: error: Argument 1 to \"len\" has incompatible type", report), report


if __name__ == "__main__":  # the report by hand: python tests/unit/test_types.py
    res = mypy(package_view(CACHE / "view"))
    print(res.stdout + res.stderr, end="")
    sys.exit(res.returncode)
