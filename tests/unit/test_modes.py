"""The modes of the data root and the exec root (dockyard.engine.modes), on a
root laid out as an older Dockyard left it: 0755 directories, 0644 files."""

import os
import stat

from dockyard.engine import modes


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def old_root(tmp_path):
    """A data root and an exec root with every entry open, a layer and a volume
    holding files whose modes are the container's."""
    data, run = tmp_path / "data", tmp_path / "run"
    files = {
        data / "dockyard.db": "", data / "dockyard.db-wal": "",
        data / "containers" / "c1" / "c1-json.log": "secret\n", data / "containers" / "c1" / "resolv.conf": "",
        data / "containers" / "c1" / "hostname": "", data / "content" / "blobs" / "sha256" / ("a" * 64): "",
        data / "storage" / "overlay" / "l1" / "diff" / "etc" / "passwd": "", data / "volumes" / "v" / "_data" / "f": "",
        data / "network" / "bridge" / "state": "", run / "containers" / "c1" / "config.json": "{}",
        run / "exec" / "native" / "c1" / "state.json": "{}", run / "dockyard.pid": "1\n",
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for root in (data, run):
        for dirpath, dirs, names in os.walk(root):
            os.chmod(dirpath, 0o755)
            for name in names:
                os.chmod(os.path.join(dirpath, name), 0o644)
    os.chmod(data / "volumes" / "v" / "_data", 0o777)  # the container's choice
    os.symlink("../l1/diff", data / "storage" / "overlay" / "link")
    return data, run


def test_an_older_root_is_closed_from_the_top(tmp_path):
    data, run = old_root(tmp_path)
    modes.make_roots(str(data), str(run))
    modes.secure_tree(str(data), str(run))
    assert mode(data) == mode(run) == 0o710
    assert mode(data / "containers") == mode(data / "containers" / "c1") == 0o710
    assert mode(data / "storage" / "overlay") == 0o710
    for d in ("storage", "tmp", "content", "content/blobs", "content/blobs/sha256", "volumes", "volumes/v", "network",
              "network/bridge"):
        assert mode(data / d) == 0o700, d
    for d in ("containers", "containers/c1", "exec"):
        assert mode(run / d) == 0o700, d
    for f in ("dockyard.db", "dockyard.db-wal", "containers/c1/c1-json.log"):
        assert mode(data / f) == 0o600, f
    assert mode(run / "containers" / "c1" / "config.json") == 0o600
    assert mode(data / "content" / "blobs" / "sha256" / ("a" * 64)) == 0o400
    # what a container reads through a bind mount, and what is the container's, keep their modes
    assert mode(data / "containers" / "c1" / "resolv.conf") == mode(data / "containers" / "c1" / "hostname") == 0o644
    assert mode(data / "volumes" / "v" / "_data") == 0o777
    assert mode(data / "storage" / "overlay" / "l1") == mode(data / "storage" / "overlay" / "l1" / "diff") == 0o755
    assert mode(data / "storage" / "overlay" / "l1" / "diff" / "etc" / "passwd") == 0o644
    # nothing below a closed directory is walked: the shim's files rely on exec/ (0700)
    assert mode(run / "exec" / "native" / "c1" / "state.json") == 0o644


def test_new_roots_and_private_files_ignore_the_umask(tmp_path):
    old = os.umask(0)
    try:
        modes.make_roots(str(tmp_path / "data"), str(tmp_path / "run"))
        log = tmp_path / "data" / "containers" / "c1-json.log"
        modes.private_file(str(log))
        os.chmod(log, 0o644)
        modes.private_file(str(log))  # an existing file is narrowed, not truncated
    finally:
        os.umask(old)
    assert mode(tmp_path / "data") == mode(tmp_path / "run") == 0o710
    assert mode(tmp_path / "data" / "tmp") == mode(tmp_path / "run" / "containers") == 0o700
    assert mode(log) == 0o600
