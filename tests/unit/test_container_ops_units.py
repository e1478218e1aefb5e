"""Units of cp (scoped symlink resolution, path splitting, Go file modes), top's
ps parsing, update's merge rules, and the build-cache prune."""

import os
import stat

import pytest

from dockyard.engine.containers import archive as archive_ops
from dockyard.engine.containers import ops as container_ops
from dockyard.errors import Conflict, InvalidParameter


def test_resolve_in_root_never_leaves_the_root(root):
    assert archive_ops.resolve_in_root(root, "/a/up/etc/passwd") == "/etc/passwd"
    assert archive_ops.resolve_in_root(root, "/a/abs/passwd") == "/etc/passwd"
    assert archive_ops.resolve_in_root(root, "/a/rel/../../etc") == "/etc"
    assert archive_ops.resolve_in_root(root, "/../../..") == "/"
    assert archive_ops.resolve_in_root(root, "/a/missing/x") == "/a/missing/x"
    with pytest.raises(InvalidParameter):
        archive_ops.resolve_in_root(root, "/loop1")


def test_open_in_root_is_scoped_by_the_kernel(root):
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    try:
        inner = archive_ops.open_in_root(fd, "a/up/etc/passwd", os.O_RDONLY)
        with os.fdopen(inner) as fh:
            assert fh.read() == "root"
        with pytest.raises(FileNotFoundError):
            archive_ops.open_in_root(fd, "a/up/tmp/definitely-not-here-xyz")
    finally:
        os.close(fd)


def test_split_path_keeps_trailing_dot_and_slash():
    assert archive_ops.split_path("etc/passwd") == ("/etc/passwd", "/etc", "passwd")
    assert archive_ops.split_path("/data/") == ("/data/", "/data", "")
    assert archive_ops.split_path("/data/.") == ("/data/.", "/data", ".")
    assert archive_ops.split_path("/") == ("/", "/", "")
    with pytest.raises(InvalidParameter):
        archive_ops.split_path("")


def test_go_mode_bits():
    assert archive_ops.go_mode(stat.S_IFREG | 0o644) == 0o644
    assert archive_ops.go_mode(stat.S_IFDIR | 0o755) == (1 << 31) | 0o755
    assert archive_ops.go_mode(stat.S_IFLNK | 0o777) == (1 << 27) | 0o777
    assert archive_ops.go_mode(stat.S_IFREG | stat.S_ISUID | 0o755) == (1 << 23) | 0o755
    assert archive_ops.go_mode(stat.S_IFCHR | 0o666) == (1 << 26) | (1 << 21) | 0o666


def test_parse_ps_filters_by_pid():
    out = b"UID PID PPID C STIME TTY TIME CMD\nroot 10 1 0 12:00 ? 00:00:00 sleep 300 now\nroot 11 1 0 12:00 ? 00:00:00 x\n"
    top = container_ops.parse_ps(out, [10])
    assert top["Titles"][:2] == ["UID", "PID"] and top["Processes"] == [
        ["root", "10", "1", "0", "12:00", "?", "00:00:00", "sleep 300 now"]]
    with pytest.raises(InvalidParameter, match="Couldn't find PID"):
        container_ops.parse_ps(b"USER CMD\nroot x\n", [1])


def test_update_merge_rules():
    new, changed = container_ops._merge({"Memory": 0}, {"Memory": 64 << 20, "CpuShares": 0, "PidsLimit": 10})
    assert new["Memory"] == 64 << 20 and changed == {"Memory", "PidsLimit"}
    # a clash with the container's settings is dockerd's conflict (409)
    with pytest.raises(Conflict, match="NanoCPUs has already been set"):
        container_ops._merge({"NanoCpus": 10 ** 9}, {"CpuQuota": 20000})
    with pytest.raises(Conflict, match="CPU Period/Quota has already been set"):
        container_ops._merge({"CpuQuota": 20000}, {"NanoCpus": 10 ** 9})
    with pytest.raises(Conflict, match="memoryswap"):
        container_ops._merge({"Memory": 10 << 20, "MemorySwap": 20 << 20}, {"Memory": 30 << 20})
    res = container_ops._live_resources(*container_ops._merge({}, {"NanoCpus": 5 * 10 ** 8, "PidsLimit": -1}))
    assert res["cpu"]["quota"] == 50000 and res["cpu"]["period"] == 100000 and res["pids"] == {"limit": -1}


def test_build_cache_prune(tmp_path):
    from dockyard.builder import cache
    from dockyard.store import Store

    store = Store(str(tmp_path / "db.sqlite"))
    try:
        cache.BuildCache(store)
        with store.tx() as db:
            db.execute("INSERT INTO images(id, config, top_layer, created) VALUES ('i', '{}', NULL, '')")
            db.execute("INSERT INTO build_cache(key, image_id, parent, step, created) VALUES "
                       "('sha256:old', 'i', '', '\"s\"', '2000-01-01T00:00:00Z'),"
                       "('sha256:new', 'i', '', '\"s\"', '2999-01-01T00:00:00Z')")
        assert cache.prune(store, until=1_000_000_000) == ["sha256:old"]
        assert cache.prune(store) == ["sha256:new"]
    finally:
        store.close()
