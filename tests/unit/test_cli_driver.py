"""``dockyard driver``: info as text, use keeping the file's comments, ls under the
data root it is given; and ``python -m dockyard.testing.busybox --help``."""

import subprocess
import sys
from importlib import resources

from dockyard.cli import driver, tomledit
from dockyard.config import parse

SHIPPED = (resources.files("dockyard") / "plugins.toml").read_text()
NO_DAEMON = "unix:///nonexistent/dockyard.sock"


def dockyard(*argv, **kw):
    return subprocess.run([sys.executable, "-m", "dockyard.cli.main", "-H", NO_DAEMON, *argv],
                          capture_output=True, text=True, timeout=60, **kw)


def test_use_rewrites_values_and_keeps_every_comment(tmp_path):
    doc = tomledit.load(SHIPPED)
    tomledit.choose(doc, "storage", "vfs", {"reflink": "never"})
    tomledit.choose(doc, "network", "host")
    text = tomledit.dump(doc)
    comments = [line for line in SHIPPED.splitlines() if line.lstrip().startswith("#")]
    assert comments and all(c in text.splitlines() for c in comments)
    cfg = parse(tomledit.plain(text))
    assert cfg.drivers["storage"] == ["vfs"] and cfg.options["storage"]["vfs"] == {"reflink": "never"}
    assert cfg.default_network == "host" and cfg.drivers["network"] == ["bridge", "host", "none", "cni"]
    # only the changed lines differ
    changed = [(a, b) for a, b in zip(SHIPPED.splitlines(), text.splitlines()) if a != b]
    assert changed[0] == ('driver = ["overlay", "vfs"]', 'driver = "vfs"'), changed


def test_use_on_a_new_file_starts_from_the_commented_default(tmp_path):
    target = tmp_path / "plugins.toml"
    res = dockyard("driver", "--config", str(target), "--data-root", str(tmp_path / "root"), "use", "storage", "vfs")
    assert res.returncode == 0, res.stderr
    text = target.read_text()
    assert "# One driver name, or a priority list" in text and 'driver = "vfs"' in text
    mode = target.stat().st_mode & 0o777
    target.chmod(0o600)
    res = dockyard("driver", "--config", str(target), "--data-root", str(tmp_path / "root"), "use", "exec", "native")
    assert res.returncode == 0 and target.stat().st_mode & 0o777 == 0o600 and mode == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plugins.toml"]  # no temporary file left


def test_use_refuses_an_unknown_driver_and_leaves_the_file(tmp_path):
    target = tmp_path / "plugins.toml"
    target.write_text(SHIPPED)
    res = dockyard("driver", "--config", str(target), "use", "storage", "nope")
    assert res.returncode == 1 and "unknown storage driver 'nope'" in res.stderr
    assert target.read_text() == SHIPPED


def test_info_is_text_a_person_reads(tmp_path):
    res = dockyard("driver", "--data-root", str(tmp_path), "info", "storage", "vfs")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[:2] == ["Kind:         storage", "Name:         vfs"]
    assert "Supported:    yes" in lines and f"Home:         {tmp_path}/storage/vfs" in lines
    assert any(line.startswith("Hooks:        ") and "implemented" in line for line in lines)
    assert any(line.strip().startswith("storage_create") and line.rstrip().endswith("yes") for line in lines)
    assert "Description:" in lines and not res.stdout.lstrip().startswith("{")
    res = dockyard("driver", "--data-root", str(tmp_path), "info", "--format", "json", "storage", "vfs")
    assert res.returncode == 0 and '"hooks"' in res.stdout


def test_ls_without_a_daemon_looks_under_the_data_root_given(tmp_path):
    res = dockyard("driver", "--data-root", str(tmp_path), "ls")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == f"# data root {tmp_path} (active: no daemon answers; the selection rules)"
    assert driver.locate(NO_DAEMON, str(tmp_path)).data_root == str(tmp_path)


def test_busybox_module_prints_help_instead_of_writing_a_tar(tmp_path):
    res = subprocess.run([sys.executable, "-m", "dockyard.testing.busybox", "--help"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.startswith("usage: python -m dockyard.testing.busybox")
    assert list(tmp_path.iterdir()) == []
    res = subprocess.run([sys.executable, "-m", "dockyard.testing.busybox"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "OUTPUT.tar" in res.stderr and list(tmp_path.iterdir()) == []


def test_ls_lists_the_log_drivers_as_a_kind(tmp_path):
    res = dockyard("driver", "--data-root", str(tmp_path), "ls", "--format", "json")
    assert res.returncode == 0, res.stderr
    import json

    rows = {(r["kind"], r["name"]): r for r in json.loads(res.stdout)}
    for name in ("json-file", "local", "none", "journald", "syslog"):
        assert rows[("logging", name)]["supported"] and rows[("logging", name)]["active"]
    assert rows[("volume", "local")]["active"]
    assert not (tmp_path / "logging").exists()  # listing sets nothing up
