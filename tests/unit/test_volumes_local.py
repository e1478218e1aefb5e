"""The ``local`` volume driver through its plugin slot, and a container's mount
points from Binds, Mounts, Config.Volumes and VolumesFrom (no daemon)."""

import os

import pytest

from dockyard import plugins
from dockyard.engine.containers import mountpoints
from dockyard.errors import InvalidParameter
from dockyard.model.container import ContainerRecord, MountPoint


@pytest.fixture
def slot(tmp_path):
    s = plugins.load_driver("volume", "local", tmp_path / "volumes")
    assert s.supported() is None
    s.init()
    return s


def test_local_driver_is_found_and_validated(slot, tmp_path):
    assert "local" in plugins.installed("volume")
    assert slot.hook.volume_capabilities() == {"scope": "local"}
    info = slot.hook.volume_create(name="data", options={})
    assert info["mountpoint"] == str(tmp_path / "volumes" / "data" / "_data") and os.path.isdir(info["mountpoint"])
    assert slot.hook.volume_get(name="data")["mountpoint"] == info["mountpoint"]
    assert [v["name"] for v in slot.hook.volume_list()] == ["data"]
    path = slot.hook.volume_mount(name="data", id="c1")
    assert path == info["mountpoint"] and slot.hook.volume_mount(name="data", id="c1") == path
    slot.hook.volume_unmount(name="data", id="c1")
    slot.hook.volume_unmount(name="data", id="never")  # idempotent
    slot.hook.volume_remove(name="data")
    assert slot.hook.volume_get(name="data") is None and not os.path.exists(tmp_path / "volumes" / "data")
    slot.hook.volume_remove(name="data")  # idempotent


@pytest.mark.parametrize("options, message", [
    ({"colour": "red"}, "invalid option key: 'colour'"),
    ({"size": "1G"}, "no quota support"),
    ({"type": "tmpfs"}, 'missing required option: "device"'),
    ({"device": "/srv"}, 'missing required option: "type"'),
])
def test_local_driver_refuses_bad_options_and_leaves_nothing(slot, tmp_path, options, message):
    with pytest.raises(InvalidParameter, match=message):
        slot.hook.volume_create(name="bad", options=options)
    assert not os.path.exists(tmp_path / "volumes" / "bad")


def test_local_driver_keeps_its_options(slot, tmp_path):
    slot.hook.volume_create(name="tv", options={"type": "tmpfs", "device": "tmpfs", "o": "size=1m"})
    assert (tmp_path / "volumes" / "tv" / "opts.json").exists()
    assert [v["name"] for v in slot.hook.volume_list()] == ["tv"]


def test_a_driver_missing_hooks_is_rejected(tmp_path):
    from dockyard.errors import PluginError
    from dockyard.hookspecs import hookimpl

    class Half:
        @hookimpl
        def volume_supported(self, home, options):
            return None

        @hookimpl
        def volume_create(self, name, options, colour):
            return {}

    with pytest.raises(PluginError, match="volume driver 'half'"):
        plugins.register_driver("volume", "half", Half(), tmp_path)


class FakeVolumes:
    default = "local"

    def __init__(self):
        self.made = {}

    def find(self, name):
        return self.made.get(name)

    def create(self, name, driver=None, options=None, labels=None, anonymous=False):
        self.made[name] = {"Name": name, "Driver": driver, "Mountpoint": f"/v/{name}/_data", "Options": options,
                           "Labels": labels, "Anonymous": anonymous}
        return self.made[name]

    def remove(self, name, force=False):
        self.made.pop(name, None)


class FakeContainers:
    def __init__(self, recs):
        self.recs = recs

    def resolve(self, ref):
        from dockyard.errors import ContainerNotFound
        if ref not in self.recs:
            raise ContainerNotFound(f"No such container: {ref}")
        return ref

    def get(self, cid):
        return self.recs[cid]


class FakeEngine:
    def __init__(self, recs=None):
        self.volumes = FakeVolumes()
        self.containers = FakeContainers(recs or {})


def rec(host=None, volumes=None, cid="c" * 64, mount_points=()):
    return ContainerRecord(id=cid, name="web", created="2024-01-01T00:00:00Z", path="sh", args=[],
                           image_id="sha256:1", config={"Volumes": volumes}, host_config=host or {},
                           network_mode="bridge", driver="vfs", log_path="", hostname_path="", hosts_path="",
                           resolv_conf_path="", mount_points=list(mount_points))


def test_mount_points_of_binds_mounts_and_image_volumes():
    eng = FakeEngine()
    mps = mountpoints.MountPoints(eng.volumes, eng.containers).prepare(rec({
        "Binds": ["/srv:/srv:ro", "named:/named:nocopy", "/anon"],
        "Mounts": [{"Type": "volume", "Source": "opt", "Target": "/opt/v", "ReadOnly": True,
                    "VolumeOptions": {"Labels": {"a": "b"}, "DriverConfig": {"Options": {"type": "tmpfs",
                                                                                         "device": "tmpfs"}}}},
                   {"Type": "tmpfs", "Target": "/tmp"}]}, volumes={"/data": {}, "/srv": {}, "/tmp": {}}))
    by = {m.destination: m for m in mps}
    assert set(by) == {"/srv", "/named", "/anon", "/opt/v", "/tmp", "/data"}  # image volumes only where free
    assert by["/srv"].to_api() == {"Type": "bind", "Source": "/srv", "Destination": "/srv", "Mode": "ro",
                                   "RW": False, "Propagation": "rprivate"}
    assert by["/named"].name == "named" and by["/named"].copy_up is False and by["/named"].mode == "nocopy"
    assert by["/named"].source == "/v/named/_data" and by["/named"].named
    assert len(by["/anon"].name) == 64 and not by["/anon"].named and by["/anon"].mode == ""
    assert by["/opt/v"].rw is False and eng.volumes.made["opt"]["Options"] == {"type": "tmpfs", "device": "tmpfs"}
    assert eng.volumes.made["opt"]["Labels"] == {"a": "b"}
    assert eng.volumes.made[by["/data"].name]["Anonymous"] is True
    assert by["/data"].made and by["/opt/v"].made and not by["/srv"].made
    assert by["/tmp"].type == "tmpfs"


@pytest.mark.parametrize("host, message", [
    ({"Binds": ["a/b:/x"]}, "includes invalid characters"),
    ({"Binds": ["vol:x"]}, "mount path must be absolute"),
    ({"Binds": ["vol:/"]}, "destination can't be '/'"),
    ({"Binds": ["vol:/x:bogus"]}, "invalid mode: bogus"),
    ({"Binds": ["vol:/x", "/h:/x"]}, "Duplicate mount point: /x"),
    ({"Mounts": [{"Type": "volume", "Target": "/x", "BindOptions": {}}, ]}, None),
    ({"Mounts": [{"Type": "volume", "Target": "/x", "TmpfsOptions": {"SizeBytes": 1}}]}, "TmpfsOptions"),
    ({"VolumesFrom": ["ghost"]}, "No such container: ghost"),
    ({"VolumesFrom": ["c:rx"]}, "invalid mode: rx"),
])
def test_mount_points_refused(host, message):
    eng = FakeEngine({"c": rec(cid="c")})
    if message is None:  # an empty BindOptions is no BindOptions
        mountpoints.MountPoints(eng.volumes, eng.containers).prepare(rec(host))
        return
    with pytest.raises(Exception, match=message):
        mountpoints.MountPoints(eng.volumes, eng.containers).prepare(rec(host))
    assert eng.volumes.made == {}  # nothing made survives a refusal


def test_volumes_from_copies_and_own_mounts_win():
    other = rec(cid="o" * 64, mount_points=[
        MountPoint("volume", "/s", "/v/shared/_data", "shared", "local", "z", named=True),
        MountPoint("bind", "/h", "/h", propagation="rprivate"),
        MountPoint("tmpfs", "/t")])
    eng = FakeEngine({"web": other})
    mps = mountpoints.MountPoints(eng.volumes, eng.containers).prepare(rec({"VolumesFrom": ["web:ro"], "Binds": ["/mine:/h"]}))
    by = {m.destination: m for m in mps}
    assert set(by) == {"/s", "/h"}  # tmpfs mounts are not shared
    assert by["/s"].rw is False and by["/s"].from_container == other.id and by["/h"].source == "/mine"
    assert by["/s"].copy_up is False and other.mount_points[0].rw is True  # a copy: the other's stays as it was
    assert eng.volumes.made == {}  # the shared volume exists already


def test_copy_up_keeps_owners_and_modes_and_never_fills_a_used_volume(tmp_path):
    rootfs, vol = tmp_path / "rootfs", tmp_path / "vol"
    (rootfs / "real" / "sub").mkdir(parents=True)
    (rootfs / "real" / "sub" / "f").write_text("seed")
    os.chown(rootfs / "real" / "sub" / "f", 123, 456)
    os.chmod(rootfs / "real", 0o750)
    os.symlink("/real", rootfs / "data")  # followed inside the rootfs
    vol.mkdir()
    assert mountpoints.copy_up(str(rootfs), "/data", str(vol)) is True
    st = os.stat(vol / "sub" / "f")
    assert (st.st_uid, st.st_gid) == (123, 456) and (vol / "sub" / "f").read_text() == "seed"
    assert os.stat(vol).st_mode & 0o777 == 0o750
    (vol / "sub" / "f").write_text("mine")
    assert mountpoints.copy_up(str(rootfs), "/data", str(vol)) is False
    assert mountpoints.copy_up(str(rootfs), "/missing", str(tmp_path)) is False


def test_tree_size_counts_inodes_once_and_follows_no_link(tmp_path):
    from dockyard.engine.volumes.service import tree_size

    vol, host = tmp_path / "vol", tmp_path / "host"
    (vol / "d").mkdir(parents=True)
    host.mkdir()
    (host / "big").write_bytes(b"x" * 100_000)
    (vol / "d" / "f").write_bytes(b"y" * 1000)
    os.link(vol / "d" / "f", vol / "hard")
    os.symlink(host, vol / "link")  # counted as the link it is (its own size), never entered
    assert tree_size(str(vol)) == 1000 + len(str(host))


def test_copy_up_streams_devices_links_and_xattrs(tmp_path):
    rootfs, vol = tmp_path / "rootfs", tmp_path / "vol"
    (rootfs / "data" / "sub").mkdir(parents=True)
    (rootfs / "data" / "sub" / "f").write_bytes(b"z" * (3 << 20))  # more than a pipe holds
    os.link(rootfs / "data" / "sub" / "f", rootfs / "data" / "hard")
    os.symlink("/etc/shadow", rootfs / "data" / "abs")  # copied as a link, not read
    os.mkfifo(rootfs / "data" / "fifo")
    os.setxattr(rootfs / "data" / "sub" / "f", "user.k", b"v")
    vol.mkdir()
    assert mountpoints.copy_up(str(rootfs), "/data", str(vol)) is True
    assert (vol / "sub" / "f").read_bytes() == b"z" * (3 << 20)
    assert os.stat(vol / "hard").st_ino == os.stat(vol / "sub" / "f").st_ino
    assert os.readlink(vol / "abs") == "/etc/shadow" and os.path.islink(vol / "abs")
    assert os.path.exists(vol / "fifo") and os.getxattr(vol / "sub" / "f", "user.k") == b"v"
