"""The devicemapper storage driver.

* ``TestDevicemapperConformance``: the storage conformance kit plus
  devicemapper specifics, against a loop-backed pool in the test's temp dir
  (one per class: mkfs of its base device runs once); after every test
  ``storage_cleanup`` must leave no mount, no device-mapper device and no loop
  device behind, and the next test brings the same pool back.  It needs a
  kernel with device-mapper: here it is skipped with the driver's reason.
* ``test_devicemapper_suite_in_vm`` boots ONE qemu guest per session with
  Debian's kernel (tests/vm/harness.py) and runs ``-k conformance`` of this
  file in it, with ``DOCKYARD_IN_VM=1``, as two pytest processes sharing out
  the tests (one per vCPU, tests/vm/pytest_shard.py); it asserts that every
  one of them passed there.  Skipped only if the VM cannot be prepared.
* Unit checks of the options, the status parsing and ``storage_supported``.
"""

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from dockyard.driverkit.mounts import mountinfo, mounts_under
from dockyard.drivers.storage.devicemapper import DevicemapperDriver
from dockyard.drivers.storage.dm import dmsetup
from dockyard.drivers.storage.dm.metadata import read_json
from dockyard.drivers.storage.dm.options import GIB, MIB, human_size, parse_options, parse_size
from dockyard.drivers.storage.dm.pool import parse_pool_status
from dockyard.errors import DriverUnsupported, StorageError
from dockyard.testing.storage import StorageConformance, load_storage, make_tar, new_id

ROOT = Path(__file__).resolve().parents[2]
IN_VM = os.environ.get("DOCKYARD_IN_VM") == "1"
#: small and sparse: the guest keeps the pool files in RAM
OPTIONS = {"dm.loopdatasize": "2G", "dm.loopmetadatasize": "32M", "dm.basesize": "64M"}
VM_TIMEOUT = 900
#: the longest tests in the guest, started first so that the guest's pytest processes finish together
LONGEST = ["test_cross_driver_with_reference", "test_chain_of_five_layers", "test_empty_layers",
           "test_concurrent_layers", "test_whiteouts_and_opaque_dirs_round_trip", "test_xattrs",
           "test_file_types_and_metadata", "test_concurrent_mounts_of_one_layer", "test_changes_match_docker_diff"]


def _load(home, options=OPTIONS, driver=None):
    try:
        return load_storage(driver or DevicemapperDriver(), home, options, name="devicemapper")
    except DriverUnsupported as exc:
        pytest.skip(exc.reason)


def _leftovers(home):
    """Device-mapper devices and loop devices still there for the pool in ``home``."""
    pool = read_json(home / "metadata" / "pool.json") or {}
    left = []
    if pool.get("prefix"):
        left += [f"dm device {n}" for n in dmsetup.devices() if n.startswith(pool["prefix"] + "-")]
    for f in ("data", "metadata"):
        path = home / "devicemapper" / f
        if path.exists():
            left += [f"loop device {dev} on {path}" for dev in dmsetup.loop_of(path)]
    return left


def _teardown(home):
    """Check that the pool in ``home`` is fully torn down, then free its files."""
    assert mounts_under(home) == [], "mounts left under the driver's home"
    if home.exists():
        assert _leftovers(home) == []
        for f in ("data", "metadata"):  # sparse, but in the guest's RAM
            (home / "devicemapper" / f).unlink(missing_ok=True)


@pytest.fixture
def dm_home(tmp_path):
    """A home whose pool must be fully torn down after the test."""
    home = tmp_path / "home"
    yield home
    _teardown(home)


@pytest.fixture(scope="class")
def dm_shared(tmp_path_factory):
    """One pool for the class: each test ends with ``storage_cleanup`` (pool and
    loop devices gone, checked) and the next one brings the same pool back, as a
    restarted daemon does; mkfs of the base device runs once."""
    home = tmp_path_factory.mktemp("devicemapper") / "home"
    driver = DevicemapperDriver()
    hook = _load(home, driver=driver)
    yield driver, hook, home
    hook.storage_cleanup()
    _teardown(home)


def _status(hook):
    return dict(hook.storage_status())


@pytest.mark.root
class TestDevicemapperConformance(StorageConformance):
    @pytest.fixture
    def storage(self, dm_shared):
        self.driver, hook, self.home = dm_shared
        yield hook
        left = self.driver.store.layer_ids()
        for id in left:  # a failed test's layers must not fail the next ones
            hook.storage_remove(id=id)
        hook.storage_cleanup()
        assert mounts_under(self.home) == [], "mounts left under the driver's home"
        assert _leftovers(self.home) == []
        assert left == [], "layers left behind by the test"

    # ------------------------------------------------------------ devicemapper specifics
    def test_dm_layout_and_status(self, storage):
        with self.layers(storage) as create:
            base = create(None, make_tar([("f", "f", b"x" * 5000)]))
            name = f"{self.driver.prefix}-{base}"
            assert name not in dmsetup.devices()  # active only while mounted
            with self.mounted(storage, base) as root:
                assert root == str(self.home / "mnt" / base / "rootfs")
                assert name in dmsetup.devices()
                fstype = [fs for mp, fs in mountinfo() if mp == os.path.dirname(root)]
                assert fstype == ["ext4"]
                assert os.listdir(root) == ["f"]  # lost+found stays outside rootfs
                assert sorted(os.listdir(os.path.dirname(root))) == ["lost+found", "rootfs"]
            assert name not in dmsetup.devices()
            info = read_json(self.home / "metadata" / "layers" / f"{base}.json")
            assert info["size"] == 64 * MIB and info["parent"] is None
            status = _status(storage)
            for key in ("Pool Name", "Pool Blocksize", "Base Device Size", "Data Space Used", "Data Space Total",
                        "Metadata Space Used", "Metadata Space Total", "Thin Pool Minimum Free Space",
                        "Data loop file"):
                assert key in status, key
            assert status["Pool Name"] == f"{self.driver.prefix}-pool"
            assert status["Base Device Size"] == "67.11MB" and status["Data Space Total"] == "2.147GB"
            assert status["Data loop file"] == str(self.home / "devicemapper" / "data")
            assert storage.storage_metadata(id=base) == {  # dockerd's GraphDriver.Data of devicemapper
                "DeviceId": str(info["device_id"]), "DeviceName": name, "DeviceSize": str(64 * MIB)}

    def test_dm_snapshot_of_a_mounted_parent(self, storage):
        with self.layers(storage) as create:
            base = create()
            root = storage.storage_mount(id=base)
            try:
                Path(root, "before").write_text("written before the snapshot")  # not synced on purpose
                child = create(base)  # suspends (freezes) the mounted origin around create_snap
                Path(root, "after").write_text("parent only")
            finally:
                storage.storage_unmount(id=base)
            with self.mounted(storage, child) as croot:
                assert Path(croot, "before").read_text() == "written before the snapshot"
                assert not Path(croot, "after").exists()

    def test_dm_data_survives_cleanup_and_restart(self, storage):
        base = new_id()
        storage.storage_create(id=base, parent=None)
        storage.storage_apply_diff(id=base, parent=None, stream=make_tar([("etc", "d", None),
                                                                          ("etc/os", "f", b"dm")]))
        child = new_id()
        storage.storage_create(id=child, parent=base)
        root = storage.storage_mount(id=child)
        Path(root, "etc/os").write_text("child")
        storage.storage_cleanup()  # daemon shutdown: pool and loop devices gone
        assert _leftovers(self.home) == []
        again = _load(self.home)  # a new daemon on the same home
        try:
            assert again.storage_exists(id=base) and again.storage_exists(id=child)
            with self.mounted(again, base) as r:
                assert Path(r, "etc/os").read_bytes() == b"dm"
            with self.mounted(again, child) as r:
                assert Path(r, "etc/os").read_text() == "child"
            ids = {read_json(self.home / "metadata" / "layers" / f"{i}.json")["device_id"] for i in (base, child)}
            third = new_id()
            again.storage_create(id=third, parent=child)
            assert read_json(self.home / "metadata" / "layers" / f"{third}.json")["device_id"] not in ids
            for id in (third, child, base):
                again.storage_remove(id=id)
        finally:
            again.storage_cleanup()

    def test_dm_restart_adopts_pool_and_mounts(self, storage):
        with self.layers(storage) as create:
            base = create(None, make_tar([("f", "f", b"x")]))
            path = storage.storage_mount(id=base)
            mp = os.path.dirname(path)
            again = _load(self.home)  # a daemon restarted without cleanup: pool, loops, mount still there
            assert again.storage_mount(id=base) == path
            assert [m for m, _ in mountinfo()].count(mp) == 1
            again.storage_unmount(id=base)
            assert Path(path, "f").read_bytes() == b"x"  # the first daemon's reference remains
            again.storage_unmount(id=base)
            assert mp not in [m for m, _ in mountinfo()]
            assert f"{self.driver.prefix}-{base}" not in dmsetup.devices()
            storage.storage_unmount(id=base)  # not mounted any more: not an error

    def test_dm_remove_returns_blocks_to_the_pool(self, storage):
        pool = self.driver.pool
        pool.ensure()
        before = pool.usage()["data_used"]
        with self.layers(storage) as create:
            id = create()
            with self.mounted(storage, id) as root:
                Path(root, "blob").write_bytes(os.urandom(8 * MIB))
            assert pool.usage()["data_used"] >= before + 8 * MIB
        assert pool.usage()["data_used"] <= before + MIB

    def test_dm_interrupted_create_is_rolled_back(self, storage):
        store, pool = self.driver.store, self.driver.pool
        lost = store.pool()["next_device_id"] + 10
        pool.ensure()
        store.begin(lost, new_id())  # a daemon died between create_thin and recording the layer
        pool.message(f"create_thin {lost}")
        storage.storage_cleanup()
        again = _load(self.home)
        try:
            assert store.pending() == []
            pool.ensure()
            pool.message(f"create_thin {lost}")  # the id is free again: it was deleted at start-up
            pool.delete(lost)
        finally:
            again.storage_cleanup()

    def test_dm_min_free_space_is_enforced(self, dm_home):
        small = {"dm.loopdatasize": "64M", "dm.loopmetadatasize": "4M", "dm.basesize": "32M",
                 "dm.min_free_space": "99%"}
        hook = _load(dm_home, small)
        try:
            with pytest.raises(StorageError, match="min_free_space"):
                hook.storage_create(id=new_id(), parent=None)
        finally:
            hook.storage_cleanup()

    def test_dm_external_thinpooldev(self, dm_home, tmp_path):
        """dm.thinpooldev: a pool made outside (as by lvcreate --thin) is used, never removed."""
        reason = DevicemapperDriver().storage_supported(home=dm_home, options={})
        if reason is not None:
            pytest.skip(reason)
        files = [tmp_path / "ext-data", tmp_path / "ext-meta"]
        for f, size in zip(files, (512 * MIB, 8 * MIB)):
            with open(f, "wb") as fh:
                fh.truncate(size)
        name = f"dockyard-test-ext-{os.getpid()}"
        try:  # the loop devices are detached even when the pool cannot be made
            data, meta = (dmsetup.loop_attach(f) for f in files)
            dmsetup.create(name, f"0 {512 * MIB // 512} thin-pool {meta} {data} 128 16 1 skip_block_zeroing")
            hook = _load(dm_home, {"dm.thinpooldev": f"/dev/mapper/{name}", "dm.basesize": "32M"})
            try:
                assert _status(hook)["Pool Name"] == name and "Data loop file" not in _status(hook)
                with self.layers(hook) as create:
                    base = create(None, make_tar([("f", "f", b"ext")]))
                    child = create(base)
                    with self.mounted(hook, child) as root:
                        assert Path(root, "f").read_bytes() == b"ext"
            finally:
                hook.storage_cleanup()
            assert name in dmsetup.devices()  # not ours to remove
            assert _leftovers(dm_home) == []
        finally:
            if name in dmsetup.devices():
                dmsetup.remove(name)
            dmsetup.loop_detach(*files)

    def test_dm_bad_options_are_refused(self, dm_home):
        with pytest.raises(StorageError, match="bogus"):
            _load(dm_home, {**OPTIONS, "dm.bogus": 1})
        with pytest.raises(StorageError, match="dm.fs"):
            _load(dm_home, {**OPTIONS, "dm.fs": "btrfs"})


# --------------------------------------------------------------------------- the VM run
def _harness():
    spec = importlib.util.spec_from_file_location("dockyard_vm_harness", ROOT / "tests" / "vm" / "harness.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _guest_tests():
    return sorted(n for n in dir(TestDevicemapperConformance) if n.startswith("test_"))


def _guest_command(shards):
    """Shell for the guest: ``-k conformance`` of this file in ``shards`` pytest
    processes side by side (one per vCPU) that share out the tests
    (tests/vm/pytest_shard.py), each with its own basetemp and pool; their
    outputs follow one another under ``=== shard K/N rc=R`` headers."""
    test = shlex.quote(str(Path(__file__).resolve().relative_to(ROOT)))
    pytest_cmd = (f"{shlex.quote(sys.executable)} -m pytest {test} -k conformance -q -rs --color=no "
                  '-p no:cacheprovider -p pytest_shard --shard-queue "$TMPDIR/dockyard-shard-queue" '
                  f"--shard-first {','.join(LONGEST)}")
    lines = [f"export DOCKYARD_IN_VM=1 PYTHONPATH={shlex.quote(str(ROOT / 'tests' / 'vm'))} "
             'TMPDIR="${TMPDIR:-/tmp}"']
    for k in range(shards):
        lines.append(f'{pytest_cmd} --basetemp="$TMPDIR/dockyard-shard{k}" '
                     f'> "$TMPDIR/dockyard-shard{k}.log" 2>&1 & pid{k}=$!')
    lines.append("status=0")
    for k in range(shards):
        lines.append(f"wait $pid{k}; rc=$?; [ $rc = 0 ] || status=1")
        lines.append(f'echo "=== shard {k}/{shards} rc=$rc"; cat "$TMPDIR/dockyard-shard{k}.log"')
    lines.append("exit $status")
    return "\n".join(lines)


def _shard_summaries(output):
    """``[(shard header, pytest's last summary line)]`` from the guest output."""
    out = []
    for part in re.split(r"^(?==== shard )", output, flags=re.M)[1:]:
        header, _, body = part.partition("\n")
        found = [ln.strip() for ln in body.splitlines() if re.search(r" in [\d.]+s", ln)
                 and re.search(r"(\d+ (passed|failed|skipped|errors?)\b|no tests ran)", ln)]
        out.append((header, found[-1] if found else ""))
    return out


@pytest.fixture(scope="session")
def vm_run(request):
    """Boot ONE guest per session and run this file's conformance tests in it."""
    if IN_VM:
        pytest.skip("already inside the test VM")
    if os.geteuid() != 0:
        pytest.skip("the VM deps need root to install")
    vm = _harness()
    try:
        vm.ensure_guest()
    except vm.VMUnavailable:
        res = subprocess.run(["bash", str(ROOT / "scripts" / "vm-deps.sh")], capture_output=True, text=True,
                             timeout=1800)
        if res.returncode != 0:
            pytest.skip(f"VM deps could not be installed (scripts/vm-deps.sh): {(res.stderr or res.stdout)[-500:]}")
        try:
            vm.ensure_guest()
        except vm.VMUnavailable as exc:
            pytest.skip(f"no test VM: {exc}")
    smp = min(2, os.cpu_count() or 1)
    try:
        run = vm.boot(_guest_command(smp), timeout=VM_TIMEOUT, cwd=ROOT, smp=smp)
    except vm.VMError as exc:
        pytest.fail(f"the test VM failed: {exc}")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        shards = "; ".join(f"{h.strip('= ')}: {s}" for h, s in _shard_summaries(run.output))
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\nvm: devicemapper conformance in the guest (rc={run.rc}): {shards}; command "
                                f"started {run.ready or 0:.1f}s after qemu start, VM wall time {run.wall:.1f}s")
    return run


@pytest.mark.vm
@pytest.mark.slow
@pytest.mark.xdist_group("host")  # a guest with a vCPU per host core
def test_devicemapper_suite_in_vm(vm_run):
    out = vm_run.output
    assert vm_run.rc == 0, f"guest pytest failed (rc {vm_run.rc}):\n{out[-8000:]}"
    shards = _shard_summaries(out)
    assert shards and all(summary for _, summary in shards), f"no pytest summary in the guest output:\n{out[-3000:]}"
    counts = {}
    for _, summary in shards:
        for n, kind in re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed)\b", summary):
            counts[kind] = counts.get(kind, 0) + int(n)
    wanted = len(_guest_tests())
    assert counts == {"passed": wanted}, (
        f"expected all {wanted} conformance tests to pass in the VM, got {counts} from {shards}:\n{out[-3000:]}")


# --------------------------------------------------------------------------- host-side units
def _dm_here():
    from dockyard.drivers.storage.devicemapper import _has_device_mapper

    return _has_device_mapper()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_reports_kernel_without_device_mapper(tmp_path):
    reason = DevicemapperDriver().storage_supported(home=tmp_path / "home", options=OPTIONS)
    if IN_VM or _dm_here():
        pytest.skip(f"this kernel has device-mapper (driver says: {reason})")
    assert reason == "kernel has no device-mapper (no /dev/mapper/control)"
    assert not (tmp_path / "home").exists()  # supported() changes nothing on disk


def test_loads_through_the_core(tmp_path):
    from dockyard.plugins import load_driver

    slot = load_driver("storage", "devicemapper", tmp_path / "devicemapper")
    reason = slot.supported()
    if reason is None:
        pytest.skip("device-mapper is usable here: covered by the conformance tests")
    assert reason.startswith(("kernel has no device-mapper", "devicemapper needs root", "dmsetup not found"))


def test_supported_reasons(monkeypatch, tmp_path):
    from dockyard.drivers.storage import devicemapper as mod

    drv = DevicemapperDriver()
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert drv.storage_supported(home=tmp_path, options={}) == "devicemapper needs root"
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(mod, "_has_device_mapper", lambda: True)
    real_which = dmsetup.which
    monkeypatch.setattr(dmsetup, "which", lambda tool: None if tool == "dmsetup" else real_which(tool))
    assert drv.storage_supported(home=tmp_path, options={}) == "dmsetup not found (apt install dmsetup)"
    monkeypatch.setattr(dmsetup, "which", lambda tool: f"/usr/sbin/{tool}")
    monkeypatch.setattr(dmsetup, "targets", lambda: {"linear": "v1", "striped": "v1"})
    monkeypatch.setattr(mod, "_modprobe", lambda m: False)
    assert "thin-pool" in drv.storage_supported(home=tmp_path, options={})
    monkeypatch.setattr(dmsetup, "targets", lambda: {"thin-pool": "v1.22.0", "thin": "v1.22.0"})
    monkeypatch.setattr(os.path, "exists", lambda p, _real=os.path.exists: False if p == "/dev/loop-control"
                        else _real(p))
    assert drv.storage_supported(home=tmp_path, options={}) == "kernel has no loop devices (no /dev/loop-control)"
    # with an existing pool no loop device is needed
    assert drv.storage_supported(home=tmp_path, options={"dm.thinpooldev": "vg-thinpool"}) is None


def test_parse_options():
    o = parse_options({})
    assert (o.loopdatasize, o.basesize, o.fs, o.thinpooldev, o.min_free_percent) == (10 * GIB, 10 * GIB, "ext4",
                                                                                     None, 10.0)
    o = parse_options({"dm.basesize": "512M", "loopdatasize": 3 * GIB, "dm.fs": "xfs", "dm.min_free_space": "5%",
                       "dm.thinpooldev": "vg-pool", "dm.mkfsarg": "-m 0", "dm.mountopt": "noatime"})
    assert (o.basesize, o.basesize_set, o.loopdatasize, o.fs, o.min_free_percent) == (512 * MIB, True, 3 * GIB,
                                                                                      "xfs", 5.0)
    assert (o.pool_device, o.mkfsarg, o.mountopt) == ("/dev/mapper/vg-pool", ["-m", "0"], "noatime")
    for bad, match in [({"dm.bogus": 1}, "bogus"), ({"dm.fs": "btrfs"}, "dm.fs"), ({"dm.basesize": "ten"}, "basesize"),
                       ({"dm.blocksize": "60K"}, "blocksize"), ({"dm.min_free_space": "150%"}, "min_free_space"),
                       ({"dm.loopmetadatasize": "32G"}, "loopmetadatasize"), ({"dm.thinpooldev": ""}, "thinpooldev"),
                       ({"dm.basesize": "1G", "basesize": "2G"}, "twice")]:
        with pytest.raises(StorageError, match=match):
            parse_options(bad)


def test_sizes():
    assert parse_size("10G", "x") == 10 * GIB and parse_size("64k", "x") == 65536
    assert parse_size("1.5GiB", "x") == 3 * GIB // 2 and parse_size(4096, "x") == 4096
    assert [human_size(n) for n in (0, 999, 11_760_000, 107_400_000_000, 65536)] == [
        "0B", "999B", "11.76MB", "107.4GB", "65.54kB"]


def test_parse_pool_status():
    st = parse_pool_status("0 4194304 thin-pool 3 23/8192 171/32768 - rw no_discard_passdown "
                           "queue_if_no_space - 1024")
    assert (st["transaction_id"], st["meta_used"], st["meta_total"], st["data_used"], st["data_total"]) == (
        3, 23, 8192, 171, 32768)
    assert st["mode"] == "rw" and not st["needs_check"]
    assert parse_pool_status("0 4194304 thin-pool Fail") == {"mode": "Fail"}
    with pytest.raises(ValueError):
        parse_pool_status("0 2048 linear 7:0 0")
