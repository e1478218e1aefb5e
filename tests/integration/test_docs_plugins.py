"""docs/plugins.md, tested as written.

The page walks a reader from an empty package to drivers that pass the
conformance kit.  This module reads its code blocks and:

* checks that the parts of the example plug-in the page shows are the fixture's
  code (``tests/fixtures/dockyard-example-plugin``, line by line, blank lines
  aside) and that every excerpt of Dockyard's own files is in those files;
* builds the package the page describes in a temporary directory: the fixture,
  with the page's files written over it (its ``(added)`` parts, the volume and
  network drivers, the tests);
* makes a fresh virtualenv that sees the Dockyard of this checkout (a ``.pth``
  file naming this environment's site-packages, and a ``dockyard`` command), and
  runs the page's ``sh`` commands there, in the package's directory, checking
  what each should do: the install, ``dockyard driver ls/info/use``, the storage
  conformance kit, the extension's test, the daemon test (root: a private
  daemon with the example's storage, volume and network drivers and its
  extension) and the wheel;
* loads every ``plugins.toml`` snippet with Dockyard's own config parser.

Two commands are not run, and :data:`NOT_RUN` says why; a command the page gains
that is in neither list fails :func:`test_every_command_is_run_or_explained`.
``pip install -e .`` builds the package with pip's build isolation, as a reader's
would: it needs setuptools from the package index (or pip's cache).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

#: the package is built once, so its tests stay on one xdist worker
pytestmark = pytest.mark.xdist_group("docs_plugins")
#: the tests that need the package installed (a virtualenv, pip, a daemon: ~20 s)
installed = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "plugins.md"
FIXTURE = REPO / "tests" / "fixtures" / "dockyard-example-plugin"
PACKAGE = "dockyard-example-plugin"

#: commands of the page that this test does not run, and why
NOT_RUN = {
    "dockyard daemon --config plugins.toml":
        "runs a daemon in the foreground on the system's data root and socket; "
        "the package's tests/test_daemon.py (run here) starts one on private roots",
    "twine upload dist/*": "would publish to PyPI",
    # the cni driver's: tests/integration/test_network_cni.py runs them against a daemon
    # with a CNI configuration of its own (here they would need the host's /etc/cni/net.d)
    "docker network create -d cni pods": "run by tests/integration/test_network_cni.py with a conf dir of its own",
    "docker network create -d cni -o cni_network=NAME pods2":
        "run by tests/integration/test_network_cni.py (the configuration picked by name)",
    "docker run --network pods -p 127.0.0.1:8080:80 busybox httpd -f -p 80":
        "run by tests/integration/test_network_cni.py (port published through portmap)",
}

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```\s*$", re.M | re.S)
_MARKER = re.compile(r"#\s+(\S+?)(?:\s+\((continued|added|excerpt)\))?\s*$")
_ELIDED = "# ..."


def _blocks():
    """``[(language, text)]`` of the page's fenced code blocks, in order."""
    return [(m.group(1), m.group(2)) for m in _FENCE.finditer(DOC.read_text())]


def _marked():
    """``[(path, how, body)]`` of the blocks whose first line names a file
    (``how``: ``None`` for a file's first part, ``continued``, ``added`` or
    ``excerpt``), and the other ``toml`` blocks (plugins.toml snippets)."""
    marked, configs = [], []
    for lang, text in _blocks():
        if lang not in ("python", "toml"):
            continue
        first, _, body = text.partition("\n")
        m = _MARKER.fullmatch(first)
        if m is None:
            assert lang == "toml", f"a python block of {DOC.name} names no file:\n{text}"
            configs.append(text)
            continue
        marked.append((m.group(1), m.group(2), body))
    return marked, configs


def _package_files():
    """``{path inside the package: (shown parts, added parts)}``."""
    files = {}
    for path, how, body in _marked()[0]:
        if not path.startswith(PACKAGE + "/") or how == "excerpt":
            continue
        shown, added = files.setdefault(path[len(PACKAGE) + 1:], ([], []))
        (added if how == "added" else shown).append(body)
    return files


def _commands():
    out = []
    for lang, text in _blocks():
        if lang == "sh":
            out += [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return out


def _code_lines(text):
    return [line.rstrip() for line in text.splitlines() if line.strip()]


# ---------------------------------------------------------------------------- what the page shows


def test_the_page_shows_the_example_as_it_is():
    """Each file of the fixture that the page shows (all but its ``added``
    parts) is the fixture's file, in order, blank lines aside."""
    shown = {path: parts for path, (parts, _) in _package_files().items() if (FIXTURE / path).exists()}
    assert {"pyproject.toml", "dockyard_example_plugin/storage.py"} <= set(shown)
    for path, parts in shown.items():
        assert _code_lines("\n".join(parts)) == _code_lines((FIXTURE / path).read_text()), \
            f"{DOC.name} shows {path} otherwise than {FIXTURE.relative_to(REPO)} has it"


def test_excerpts_are_in_their_files():
    """An ``(excerpt)`` block is made of pieces (between ``# ...`` lines) that
    each appear, in order, in the file it names (the fixture's, or Dockyard's)."""
    excerpts = [(path, body) for path, how, body in _marked()[0] if how == "excerpt"]
    assert len(excerpts) >= 3
    for path, body in excerpts:
        source = (FIXTURE / path[len(PACKAGE) + 1:]) if path.startswith(PACKAGE + "/") else REPO / path
        text = source.read_text()
        at = 0
        for piece in re.split(rf"^{re.escape(_ELIDED)}\n", body, flags=re.M):
            found = text.find(piece, at)
            assert found >= 0, f"{DOC.name}: this part of the excerpt of {path} is not in it:\n{piece}"
            at = found + len(piece)


def test_plugins_toml_snippets_load():
    from dockyard.config import parse

    configs = _marked()[1]
    assert configs, f"{DOC.name} shows no plugins.toml"
    for text in configs:
        cfg = parse(tomllib.loads(text), f"{DOC.name} snippet")
        assert cfg.drivers["storage"]


def test_the_required_hooks_are_the_loaders():
    """The page's table of the hooks a driver must implement is the loader's."""
    from dockyard import plugins

    rows = re.findall(r"^\| (storage|exec|network|volume|logging) +\| (`.*`) \|$", DOC.read_text(), re.M)
    table = {kind: re.findall(r"`(\w+)`", hooks) for kind, hooks in rows}
    assert table == {kind: [f"{kind}_{h}" for h in hooks] for kind, hooks in plugins.REQUIRED.items()}


def test_every_command_is_run_or_explained():
    assert set(_commands()) == set(RUN) | set(NOT_RUN), \
        "a command of docs/plugins.md is neither run by this module (RUN) nor explained (NOT_RUN)"


# ---------------------------------------------------------------------------- the package, installed


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """The package the page builds, installed (``pip install -e .``, as the
    page says) in a fresh virtualenv that sees this checkout's Dockyard;
    ``(package dir, environment for its commands)``."""
    base = tmp_path_factory.mktemp("docs")
    pkg = base / PACKAGE
    shutil.copytree(FIXTURE, pkg, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    for path, (shown, added) in _package_files().items():
        target = pkg / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("\n".join(shown + added))
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    py = venv / "bin" / "python"
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    here = sysconfig.get_paths()["purelib"]  # this environment: Dockyard (editable) and its libraries
    Path(site, "_dockyard_checkout.pth").write_text(f"import site; site.addsitedir({here!r})\n")
    launcher = venv / "bin" / "dockyard"
    launcher.write_text(f"#!{py}\nimport sys\nfrom dockyard.cli.main import main\nsys.exit(main())\n")
    launcher.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "VIRTUAL_ENV"))}
    env.update(PATH=f"{venv / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}", VIRTUAL_ENV=str(venv),
               DOCKYARD_HOST=f"unix://{base}/no-daemon.sock",  # no daemon answers: the selection rules
               PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONDONTWRITEBYTECODE="1",
               # the editable install as a path entry, which comes before this environment's
               # site-packages: while test_thirdparty_plugin runs, that holds the fixture's
               # own copy of the package, which setuptools' default (an import hook,
               # consulted after every path entry) would let win
               PIP_CONFIG_SETTINGS="editable_mode=compat")
    res = _run("pip install -e .", pkg, env, base)
    assert res.returncode == 0, _output("pip install -e .", res)
    return pkg, env, base


def _run(command, cwd, env, base, timeout=600):
    assert command in _commands(), f"{command!r} is not a command of {DOC.name}"
    inner = base / f"t{len(list(base.glob('t*')))}"  # short: a daemon's socket path is at most 107 bytes
    env = {**env, "PYTEST_ADDOPTS": f"-p no:cacheprovider --basetemp={inner}"}
    return subprocess.run(command, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _output(command, res):
    return f"`{command}` exited with {res.returncode}:\n{res.stdout[-6000:]}\n{res.stderr[-6000:]}"


def _check(package, command):
    pkg, env, base = package
    res = _run(command, pkg, env, base)
    assert res.returncode == 0, _output(command, res)
    return res


def _passed(res):
    m = re.search(r"(\d+) passed", res.stdout)
    return int(m.group(1)) if m else 0


@installed
def test_install_registers_the_entry_points(package):
    pkg, env, _ = package
    res = subprocess.run(["python", "-c", "from importlib.metadata import entry_points as e; import json; "
                          "print(json.dumps({g: sorted(x.name for x in e(group=g)) for g in "
                          "('dockyard.storage', 'dockyard.volume', 'dockyard.network', 'dockyard.plugins')}))"],
                         cwd="/", env=env, capture_output=True, text=True, check=True)
    groups = json.loads(res.stdout)
    assert "example" in groups["dockyard.storage"] and "example" in groups["dockyard.volume"]
    assert "macvlan" in groups["dockyard.network"] and "audit" in groups["dockyard.plugins"]


@installed
def test_driver_ls_and_info(package):
    ls = _check(package, "dockyard driver ls")
    assert any(line.split() == ["storage", "example", "yes"] for line in ls.stdout.splitlines()), ls.stdout
    assert any(line.split()[:2] == ["network", "macvlan"] for line in ls.stdout.splitlines()), ls.stdout
    info = _check(package, "dockyard driver info storage example")
    shown = [b for lang, b in _blocks() if lang == "text" and "dockyard_example_plugin" in b]
    assert len(shown) == 1
    lines = {line.rstrip() for line in (ls.stdout + info.stdout).splitlines()}
    for line in shown[0].splitlines():
        assert line == "..." or line.rstrip() in lines, f"{DOC.name} shows {line!r}; the commands print:\n" \
                                                         f"{ls.stdout}{info.stdout}"


@installed
def test_the_storage_conformance_kit_passes(package):
    res = _check(package, "python -m pytest tests/test_conformance.py")
    assert _passed(res) >= 20 and " failed" not in res.stdout, res.stdout
    assert "test_layers_lists_what_it_holds" not in res.stdout  # the added storage_layers: not skipped


@installed
def test_driver_use_writes_plugins_toml(package):
    from dockyard.config import load

    pkg = package[0]
    res = _check(package, "dockyard driver --config plugins.toml use storage example")
    assert "storage driver set to example" in res.stdout
    assert load(pkg / "plugins.toml").drivers["storage"] == ["example"]


@installed
def test_the_extension_test_passes(package):
    res = _check(package, "python -m pytest tests/test_audit.py")
    assert _passed(res) == 1, res.stdout


@installed
def test_the_daemon_test_passes(package):
    res = _check(package, "python -m pytest tests/test_daemon.py")
    if os.geteuid() == 0:
        assert _passed(res) == 4, res.stdout
    else:
        assert "skipped" in res.stdout, res.stdout


@installed
def test_the_wheel_carries_the_entry_points(package):
    pkg = package[0]
    _check(package, "pip wheel --no-deps -w dist .")
    wheels = list((pkg / "dist").glob("dockyard_example_plugin-*.whl"))
    assert len(wheels) == 1
    with zipfile.ZipFile(wheels[0]) as whl:
        names = whl.namelist()
        points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        text = whl.read(points).decode()
    for group in ("dockyard.storage", "dockyard.volume", "dockyard.network", "dockyard.plugins"):
        assert f"[{group}]" in text
    assert "dockyard_example_plugin/network.py" in names and "dockyard_example_plugin/volume.py" in names


#: every command of the page that this module runs (the fixture runs the first)
RUN = ("pip install -e .", "dockyard driver ls", "dockyard driver info storage example",
       "python -m pytest tests/test_conformance.py", "dockyard driver --config plugins.toml use storage example",
       "python -m pytest tests/test_audit.py", "python -m pytest tests/test_daemon.py",
       "pip wheel --no-deps -w dist .")
