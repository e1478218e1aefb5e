"""A third-party plug-in, installed for real: the example package in
``tests/fixtures/dockyard-example-plugin`` (its own distribution, entry points
``dockyard.storage: example`` and ``dockyard.plugins: audit``) is pip-installed
into this venv, then found, inspected and chosen by ``dockyard driver``, and used
by a daemon to import an image and run a container -- with no change to the core.
It is uninstalled at the end of the module.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from dockyard.testing.daemon import Daemon, mounts_under

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "dockyard-example-plugin"
DIST = "dockyard-example-plugin"
PY = sys.executable
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the daemon needs root")


def _pip(*args, timeout=300):
    return subprocess.run([PY, "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, timeout=timeout)


def _offline_build_possible():
    """``--no-build-isolation`` needs the venv's setuptools to build wheels by
    itself: setuptools >= 70.1, or the ``wheel`` package beside an older one."""
    if importlib.util.find_spec("wheel") is not None:
        return True
    try:
        major, minor = (int(x) for x in version("setuptools").split(".")[:2])
    except Exception:
        return False
    return (major, minor) >= (70, 1)


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """Install the example plug-in (from a copy: building writes build/ and
    *.egg-info next to the sources), uninstall it afterwards."""
    src = tmp_path_factory.mktemp("plugin-src") / "dockyard-example-plugin"
    shutil.copytree(FIXTURE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    args = ["install", "--no-deps", "-q"]
    if _offline_build_possible():
        args.append("--no-build-isolation")
    res = _pip(*args, str(src))
    assert res.returncode == 0, f"pip install failed:\n{res.stdout}\n{res.stderr}"
    try:
        yield src
    finally:
        res = _pip("uninstall", "-y", "-q", DIST)
        assert res.returncode == 0, res.stderr


def driver_cli(*args, data_root, config=None):
    cmd = [PY, "-m", "dockyard.cli.driver", "--data-root", str(data_root)]
    if config:
        cmd += ["--config", str(config)]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=120)


def test_installed_outside_the_core(plugin):
    """The plug-in is its own distribution, importable from site-packages."""
    res = subprocess.run([PY, "-c", "import dockyard_example_plugin, os; print(dockyard_example_plugin.__file__)"],
                         capture_output=True, text=True, cwd="/")
    assert res.returncode == 0, res.stderr
    where = res.stdout.strip()
    assert "site-packages" in where and str(FIXTURE) not in where


def test_driver_ls_lists_example(plugin, tmp_path):
    res = driver_cli("ls", "--format", "json", data_root=tmp_path / "data")
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    example = [r for r in rows if r["kind"] == "storage" and r["name"] == "example"]
    assert example == [{"kind": "storage", "name": "example", "supported": True, "reason": "",
                        "active": False}]
    assert not (tmp_path / "data").exists()  # listing writes nothing
    table = driver_cli("ls", data_root=tmp_path / "data")
    assert table.returncode == 0
    assert any(line.split()[:2] == ["storage", "example"] for line in table.stdout.splitlines())


def test_driver_info_shows_its_hooks(plugin, tmp_path):
    res = driver_cli("info", "--format", "json", "storage", "example", data_root=tmp_path / "data")
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["name"] == "example" and info["supported"] is True
    assert info["module"] == "dockyard_example_plugin.storage.ExampleStorage"
    assert "full copy" in info["description"]
    hooks = info["hooks"]
    for hook in ("storage_supported", "storage_init", "storage_create", "storage_remove", "storage_mount",
                 "storage_unmount", "storage_exists", "storage_status", "storage_cleanup"):
        assert hooks[hook] is True, hook
    for hook in ("storage_diff", "storage_apply_diff", "storage_changes", "storage_size"):
        assert hooks[hook] is False, hook  # the core's naive fallback does these


def test_driver_use_writes_config_atomically(plugin, tmp_path):
    from dockyard.config import load

    target = tmp_path / "etc" / "plugins.toml"
    res = driver_cli("use", "storage", "example", data_root=tmp_path / "data", config=target)
    assert res.returncode == 0, res.stderr
    assert "storage driver set to example" in res.stdout
    assert sorted(os.listdir(target.parent)) == ["plugins.toml"]  # no temp file left behind
    cfg = load(target)
    assert cfg.drivers["storage"] == ["example"]
    assert cfg.drivers["exec"] == ["native"]
    # run again on the file it wrote: still parses, nothing else changes
    res = driver_cli("use", "storage", "example", data_root=tmp_path / "data", config=target)
    assert res.returncode == 0, res.stderr
    assert load(target).drivers == cfg.drivers


def test_driver_use_refuses_an_option_the_driver_rejects(plugin, tmp_path):
    target = tmp_path / "plugins.toml"
    target.write_text('[storage]\ndriver = "vfs"\n')
    res = driver_cli("use", "storage", "example", "-o", "colour=red", data_root=tmp_path / "data",
                     config=target)
    assert res.returncode == 1
    assert "refusing storage driver 'example'" in res.stderr and "colour" in res.stderr
    assert target.read_text() == '[storage]\ndriver = "vfs"\n'


@needs_root
def test_daemon_runs_a_container_on_the_example_driver(plugin, session_root, busybox_tar):
    import attrs

    from dockyard.config import load, write_atomic

    base = session_root / "thirdparty"
    base.mkdir()
    cfg_path = base / "plugins.toml"
    audit_log = base / "audit.jsonl"
    res = driver_cli("use", "storage", "example", data_root=base / "data", config=cfg_path)
    assert res.returncode == 0, res.stderr
    # [plugins] enable = ["audit"], [plugins.options.audit] log = ... (kwargs of the class)
    cfg = attrs.evolve(load(cfg_path), enable=["audit"], plugin_options={"audit": {"log": str(audit_log)}})
    write_atomic(cfg_path, cfg)
    cfg = load(cfg_path)
    assert cfg.enable == ["audit"] and cfg.plugin_options == {"audit": {"log": str(audit_log)}}

    d = Daemon(base, config=cfg_path)
    d.start()
    client = None
    try:
        client = d.sdk()
        info = client.info()
        assert info["Driver"] == "example"
        assert ["Copy", "cp -a"] in info["DriverStatus"]

        if importlib.util.find_spec("dockyard.cli.main") is not None:
            res = d.cli("import", str(busybox_tar), "busybox")
            assert res.returncode == 0, res.stderr.decode()
            res = d.cli("run", "--rm", "busybox", "echo", "hi")
            assert res.returncode == 0, res.stderr.decode()
            out = res.stdout
        else:  # the dockyard CLI is not there yet: the docker SDK drives the same API
            client.api.import_image_from_data(busybox_tar.read_bytes(), repository="busybox")
            out = client.containers.run("busybox", ["echo", "hi"], remove=True)
        assert out == b"hi\n"
        assert client.containers.list(all=True) == []  # --rm removed it

        # the layers live in the example driver's own home
        layers = base / "data" / "storage" / "example" / "layers"
        assert layers.is_dir() and len(os.listdir(layers)) >= 1
        assert not (base / "data" / "storage" / "overlay").exists()
        assert not (base / "data" / "storage" / "vfs").exists()
    finally:
        if client is not None:
            try:
                for c in client.containers.list(all=True):
                    c.remove(force=True)
            finally:
                client.close()
        d.stop()
    assert d.proc.returncode == 0, d.log.read_text()
    assert mounts_under(base) == []

    records = [json.loads(line) for line in audit_log.read_text().splitlines()]
    calls = [r for r in records if r["kind"] == "call"]
    hooks = [r["hook"] for r in calls]
    assert "storage_create" in hooks and "storage_mount" in hooks
    assert "storage_apply_diff" in hooks  # the wrapper also wraps the core's fallback
    assert "storage_remove" in hooks      # the container's layer, by --rm
    assert all(r["ok"] for r in calls), [r for r in calls if not r["ok"]]
    # every mount was released again
    for layer in {r["args"]["id"] for r in calls if r["hook"] == "storage_mount"}:
        mounts = sum(1 for r in calls if r["hook"] == "storage_mount" and r["args"]["id"] == layer)
        unmounts = sum(1 for r in calls if r["hook"] == "storage_unmount" and r["args"]["id"] == layer)
        assert mounts == unmounts, (layer, mounts, unmounts)
    # a container layer is created as the child of the image's top layer
    assert any(r["hook"] == "storage_create" and r["args"]["parent"] for r in calls)
    actions = [r["action"] for r in records if r["kind"] == "event" and r["type"] == "container"]
    for action in ("create", "start", "die", "destroy"):
        assert action in actions, actions
    assert actions.index("create") < actions.index("start") < actions.index("die") < actions.index("destroy")
