"""The docs build, and say only what is there.

* ``docs/`` builds with Sphinx with warnings as errors: the reference of the hook
  specs and the driver kit, generated from their docstrings (autodoc), and the
  Markdown pages (myst-parser), whose links and anchors are checked too.  A
  docstring with broken markup fails here with Sphinx's message.
* The reference names every module of the hook specs and of the kit, so a new
  module cannot stay out of it.
* Every repository path that the Markdown pages name (``core/...``,
  ``tests/...``) exists: a change that moves code updates the page that points
  at it.
"""

import importlib
import importlib.util
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
TOP = ("core/", "drivers/", "tests/", "docs/", "scripts/", "contrib/", "bench/")


def test_the_docs_build_with_warnings_as_errors(tmp_path):
    missing = [m for m in ("sphinx", "myst_parser") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: pip install -e '.[docs]' (scripts/setup.sh does)")
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-q", "-b", "dummy",
           "-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "out")]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"sphinx-build found problems in docs/:\n{res.stderr}{res.stdout[-3000:]}"


def _public_modules(package):
    names = {package}
    for info in pkgutil.walk_packages(importlib.import_module(package).__path__, package + "."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.add(info.name)
    return names


def test_the_reference_covers_every_hook_spec_and_kit_module():
    documented = set()
    for rst in (DOCS / "reference").glob("*.rst"):
        documented |= set(re.findall(r"^\.\. automodule:: (\S+)", rst.read_text(), re.M))
    public = _public_modules("dockyard.hookspecs") | _public_modules("dockyard.driverkit")
    assert public - documented == set(), "add these modules to docs/reference/*.rst"
    assert documented - public - {"dockyard.errors"} == set(), "docs/reference names modules that are gone"


def test_paths_named_by_the_pages_exist():
    missing = []
    for page in sorted(DOCS.glob("*.md")):
        for name in re.findall(r"`([^`\s<>*{}]+)`", page.read_text()):
            path = name.split("#")[0].rstrip(":,.")
            if path.startswith(TOP) and not (REPO / path).exists():
                missing.append(f"{page.name}: {name}")
    assert missing == [], "pages name paths that do not exist:\n" + "\n".join(missing)
