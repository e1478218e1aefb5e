"""Plugin loading: pluggy validation of drivers and extensions, stevedore names,
driver selection (priority lists, support, prior state), the naive fallback and
extension wrappers -- and the daemon refusing a bad ``plugins.toml`` up front."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dockyard import plugins
from dockyard.config import parse
from dockyard.errors import ConfigError, DriverUnsupported, PluginError
from dockyard.hookspecs import hookimpl

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
sys.path.insert(0, str(FIXTURES))

import bad_plugins  # noqa: E402  (tests/fixtures/bad_plugins.py)
from bad_plugins import GoodStorage  # noqa: E402


def example_module(name):
    """A module of the example third-party plug-in, loaded from its source file
    (not installed here: tests/integration installs it for real)."""
    path = FIXTURES / "dockyard-example-plugin" / "dockyard_example_plugin" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_example_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# validation of drivers ------------------------------------------------------
def test_good_driver_registers(tmp_path):
    slot = plugins.register_driver("storage", "good", GoodStorage(), tmp_path / "good", {"a": 1})
    assert slot.kind == "storage" and slot.name == "good"
    assert slot.home == tmp_path / "good" and slot.options == {"a": 1}
    assert slot.supported() is None
    assert slot.hook.storage_mount(id="l1") == "/layers/l1"
    assert not (tmp_path / "good").exists()  # registering writes nothing
    slot.init()
    assert (tmp_path / "good").is_dir() and slot.driver.calls[-1] == ("init", str(tmp_path / "good"))


def test_misspelled_hook_is_rejected(tmp_path):
    with pytest.raises(PluginError) as info:
        plugins.register_driver("storage", "mout", bad_plugins.MisspelledHook(), tmp_path)
    msg = str(info.value)
    assert "storage driver 'mout'" in msg
    assert "bad_plugins.MisspelledHook" in msg
    assert "unknown hook 'storage_mout'" in msg
    assert "\n" not in msg


def test_wrong_signature_is_rejected(tmp_path):
    with pytest.raises(PluginError) as info:
        plugins.register_driver("storage", "colourful", bad_plugins.WrongSignature(), tmp_path)
    msg = str(info.value)
    assert "storage driver 'colourful'" in msg
    assert "bad_plugins.WrongSignature" in msg
    assert "storage_create" in msg and "colour" in msg
    assert "\n" not in msg


def test_missing_required_hooks_are_rejected(tmp_path):
    with pytest.raises(PluginError) as info:
        plugins.register_driver("storage", "partial", bad_plugins.MissingRequired(), tmp_path)
    msg = str(info.value)
    assert "storage driver 'partial'" in msg
    assert "missing hook(s) storage_mount, storage_unmount, storage_exists" in msg


def test_hook_of_another_kind_is_rejected(tmp_path):
    class Confused(GoodStorage):
        @hookimpl
        def exec_start(self, id):
            return 1

    with pytest.raises(PluginError, match=r"storage driver 'confused'.*unknown hook 'exec_start'"):
        plugins.register_driver("storage", "confused", Confused(), tmp_path)


def test_fewer_arguments_than_the_spec_are_fine(tmp_path):
    class Lean(GoodStorage):
        @hookimpl
        def storage_supported(self):
            return None

    slot = plugins.register_driver("storage", "lean", Lean(), tmp_path)
    assert slot.supported() is None


def test_crashing_support_check_is_a_reason(tmp_path):
    class Crashy(GoodStorage):
        @hookimpl
        def storage_supported(self, home, options):
            raise RuntimeError("no /proc/filesystems")

    slot = plugins.register_driver("storage", "crashy", Crashy(), tmp_path)
    assert slot.supported() == "support check failed: no /proc/filesystems"


# stevedore names ------------------------------------------------------------
def test_installed_lists_our_drivers():
    assert "vfs" in plugins.installed("storage")
    assert plugins.installed("storage") == sorted(plugins.installed("storage"))
    assert {"none", "host"} <= set(plugins.installed("network"))


def test_load_driver_unknown_name_names_the_choices(tmp_path):
    with pytest.raises(ConfigError) as info:
        plugins.load_driver("storage", "zfs-ng", tmp_path, source="/etc/dockyard/plugins.toml")
    msg = str(info.value)
    assert msg.startswith("/etc/dockyard/plugins.toml: storage.driver: unknown driver 'zfs-ng'")
    assert "choices:" in msg and "vfs" in msg


def test_load_driver_by_name(tmp_path):
    slot = plugins.load_driver("network", "none", tmp_path / "none")
    assert slot.name == "none" and slot.supported() is None
    assert not (tmp_path / "none").exists()


# selection ------------------------------------------------------------------
@pytest.fixture
def fake_installed(monkeypatch):
    """Make extra storage drivers look installed: ``fakes[name] = factory``."""
    fakes = {}
    real_entry_points = plugins._entry_points
    real_load_class = plugins._load_class

    def entry_points(group):
        found = dict(real_entry_points(group))
        if group == "dockyard.storage":
            found.update({name: f"fake:{name}" for name in fakes})
        return found

    def load_class(kind, name, source):
        if kind == "storage" and name in fakes:
            return fakes[name]
        return real_load_class(kind, name, source)

    monkeypatch.setattr(plugins, "_entry_points", entry_points)
    monkeypatch.setattr(plugins, "_load_class", load_class)
    return fakes


def test_unsupported_driver_is_skipped_in_a_priority_list(tmp_path, fake_installed):
    fake_installed["fancy"] = lambda: GoodStorage(reason="kernel has no fancyfs")
    fake_installed["plain"] = GoodStorage
    slot = plugins.select_driver("storage", ["fancy", "plain"], tmp_path, {"plain": {"x": 1}})
    assert slot.name == "plain" and slot.options == {"x": 1}
    assert slot.home == tmp_path / "plain"
    assert list(tmp_path.iterdir()) == []  # selection writes nothing


def test_unsupported_driver_named_alone_is_refused(tmp_path, fake_installed):
    fake_installed["fancy"] = lambda: GoodStorage(reason="kernel has no fancyfs")
    with pytest.raises(DriverUnsupported) as info:
        plugins.select_driver("storage", ["fancy"], tmp_path, {})
    assert info.value.reason == "kernel has no fancyfs"
    assert info.value.name == "fancy" and info.value.kind == "storage"
    assert "storage driver 'fancy' is unsupported here: kernel has no fancyfs" in str(info.value)


def test_no_supported_driver_lists_every_reason(tmp_path, fake_installed):
    fake_installed["a"] = lambda: GoodStorage(reason="no a here")
    fake_installed["b"] = lambda: GoodStorage(reason="no b here")
    with pytest.raises(PluginError) as info:
        plugins.select_driver("storage", ["a", "b"], tmp_path, {})
    assert "a: no a here" in str(info.value) and "b: no b here" in str(info.value)


def test_invalid_driver_in_a_list_stops_selection(tmp_path, fake_installed):
    """Only *unsupported* drivers are skipped: a broken one is an error."""
    fake_installed["broken"] = bad_plugins.MisspelledHook
    fake_installed["plain"] = GoodStorage
    with pytest.raises(PluginError, match="storage_mout"):
        plugins.select_driver("storage", ["broken", "plain"], tmp_path, {})


def test_unknown_name_in_a_list_is_refused_first(tmp_path, fake_installed):
    fake_installed["plain"] = GoodStorage
    with pytest.raises(ConfigError, match=r"my.toml: storage.driver: unknown driver 'nope' \(choices: .*plain"):
        plugins.select_driver("storage", ["plain", "nope"], tmp_path, {}, source="my.toml")


def test_prior_state_wins(tmp_path, fake_installed):
    fake_installed["first"] = GoodStorage
    fake_installed["second"] = GoodStorage
    (tmp_path / "second").mkdir()
    (tmp_path / "second" / "layers").mkdir()
    (tmp_path / "first").mkdir()  # an empty home is no prior state
    slot = plugins.select_driver("storage", ["first", "second"], tmp_path, {}, prior_wins=True)
    assert slot.name == "second"
    # without the rule (exec, network) the priority order decides
    slot = plugins.select_driver("storage", ["first", "second"], tmp_path, {})
    assert slot.name == "first"


def test_prior_state_counts_drivers_outside_the_list(tmp_path, fake_installed):
    """Data of an installed driver that the list does not name still wins (Docker)."""
    fake_installed["first"] = GoodStorage
    fake_installed["second"] = GoodStorage
    fake_installed["old"] = GoodStorage
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "x").write_text("layer")
    slot = plugins.select_driver("storage", ["first", "second"], tmp_path, {}, prior_wins=True)
    assert slot.name == "old"


def test_prior_state_of_an_unsupported_driver_is_refused(tmp_path, fake_installed):
    fake_installed["first"] = GoodStorage
    fake_installed["gone"] = lambda: GoodStorage(reason="module not loaded")
    (tmp_path / "gone").mkdir()
    (tmp_path / "gone" / "x").write_text("layer")
    with pytest.raises(DriverUnsupported, match="module not loaded"):
        plugins.select_driver("storage", ["first", "gone"], tmp_path, {}, prior_wins=True)


def test_prior_state_of_several_drivers_is_ambiguous(tmp_path, fake_installed):
    fake_installed["first"] = GoodStorage
    fake_installed["second"] = GoodStorage
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "x").write_text("layer")
    with pytest.raises(ConfigError) as info:
        plugins.select_driver("storage", ["first", "second"], tmp_path, {}, prior_wins=True)
    assert "first, second" in str(info.value) and "--storage-driver" in str(info.value)


def test_a_named_driver_overrides_prior_state(tmp_path, fake_installed):
    """``--storage-driver NAME`` (a one-name list) is obeyed even if another has data."""
    fake_installed["first"] = GoodStorage
    fake_installed["second"] = GoodStorage
    (tmp_path / "second").mkdir()
    (tmp_path / "second" / "x").write_text("layer")
    slot = plugins.select_driver("storage", ["first"], tmp_path, {}, prior_wins=True)
    assert slot.name == "first"


# the naive fallback (trylast) -----------------------------------------------
class FakeNaive:
    def __init__(self):
        self.calls = []

    @hookimpl(trylast=True)
    def storage_diff(self, id, parent):
        self.calls.append(("diff", id, parent))
        return "naive-diff"

    @hookimpl(trylast=True)
    def storage_size(self, id, parent):
        self.calls.append(("size", id, parent))
        return 42


class NativeDiff(GoodStorage):
    @hookimpl
    def storage_diff(self, id, parent):
        self.calls.append(("native-diff", id, parent))
        return "native-diff"


def test_fallback_runs_only_without_a_native_implementation():
    for driver, want in ((GoodStorage(), "naive-diff"), (NativeDiff(), "native-diff")):
        pm = plugins.new_manager("storage")
        naive = FakeNaive()
        # the fallback is registered first, as the layer store does after loading;
        # trylast keeps it behind the driver whatever the order
        pm.register(naive, name="naive-diff")
        pm.register(driver, name="driver")
        pm.check_pending()
        assert pm.hook.storage_diff(id="l2", parent="l1") == want
        assert pm.hook.storage_size(id="l2", parent="l1") == 42  # no native size in either
        if want == "native-diff":
            assert naive.calls == [("size", "l2", "l1")]
            assert ("native-diff", "l2", "l1") in driver.calls
        else:
            assert naive.calls == [("diff", "l2", "l1"), ("size", "l2", "l1")]


def test_real_naive_diff_uses_the_drivers_mounts(tmp_path):
    """The core's NaiveDiff works through any driver's mount/unmount hooks."""
    from dockyard.driverkit.naivediff import NaiveDiff

    class DirStorage(GoodStorage):
        @hookimpl
        def storage_mount(self, id):
            self.calls.append(("mount", id))
            (tmp_path / id).mkdir(exist_ok=True)
            return str(tmp_path / id)

    driver = DirStorage()
    slot = plugins.register_driver("storage", "dir", driver, tmp_path)
    slot.pm.register(NaiveDiff(slot.hook), name="naive-diff")
    (tmp_path / "l1").mkdir()
    (tmp_path / "l1" / "old").write_text("x")
    (tmp_path / "l2").mkdir()
    (tmp_path / "l2" / "new").write_text("y")
    assert slot.hook.storage_changes(id="l2", parent="l1") == [("/new", 1), ("/old", 2)]
    mounts = [c for c in driver.calls if c[0] in ("mount", "unmount")]
    assert sorted(mounts) == sorted([("mount", "l2"), ("mount", "l1"), ("unmount", "l1"), ("unmount", "l2")])


# extensions -----------------------------------------------------------------
class Recorder:
    def __init__(self):
        self.seen = []

    @hookimpl(wrapper=True)
    def storage_mount(self, id):
        self.seen.append(("before", id))
        result = yield
        self.seen.append(("after", id, result))
        return result

    @hookimpl
    def dockyard_container_event(self, container_id, action, attributes):
        self.seen.append(("event", container_id, action))


def test_extension_wrapper_sees_driver_calls(tmp_path):
    driver = GoodStorage()
    slot = plugins.register_driver("storage", "good", driver, tmp_path)
    import pluggy
    from dockyard.hookspecs import extensions as extension_specs

    events = pluggy.PluginManager("dockyard")
    events.add_hookspecs(extension_specs)
    rec = Recorder()
    # a slot whose hooks the extension does not name is left alone (here: no manager at all)
    plugins.register_extension("rec", rec, [("dockyard_", events), ("storage_", slot.pm), ("exec_", None)])
    assert slot.hook.storage_mount(id="l1") == "/layers/l1"
    assert rec.seen == [("before", "l1"), ("after", "l1", "/layers/l1")]
    assert ("mount", "l1") in driver.calls
    events.hook.dockyard_container_event(container_id="c1", action="start", attributes={})
    assert rec.seen[-1] == ("event", "c1", "start")
    # the extension is in the slot under its own name, next to the driver
    assert slot.pm.get_plugin("rec:storage") is not None


def test_extension_with_unknown_prefix_is_rejected(tmp_path):
    slot = plugins.register_driver("storage", "good", GoodStorage(), tmp_path)
    with pytest.raises(PluginError, match=r"extension 'vol' rejected: unknown hook 'gpu_mount'"):
        plugins.register_extension("vol", bad_plugins.UnknownPrefixExtension(), [("storage_", slot.pm)])


def test_extension_with_misspelled_wrapper_is_rejected(tmp_path):
    slot = plugins.register_driver("storage", "good", GoodStorage(), tmp_path)
    with pytest.raises(PluginError) as info:
        plugins.register_extension("typo", bad_plugins.MisspelledWrapperExtension(), [("storage_", slot.pm)])
    assert "extension 'typo'" in str(info.value) and "storage_mout" in str(info.value)
    assert slot.pm.get_plugin("typo:storage") is None  # nothing half-registered
    assert slot.hook.storage_mount(id="l1") == "/layers/l1"


def test_unknown_extension_in_config_names_the_choices(tmp_path):
    cfg = parse({"plugins": {"enable": ["no-such-ext"]}}, "/etc/dockyard/plugins.toml")
    with pytest.raises(ConfigError) as info:
        plugins.load_extensions(cfg, [])
    msg = str(info.value)
    assert msg.startswith("/etc/dockyard/plugins.toml: plugins.enable: unknown extension 'no-such-ext'")
    assert "choices:" in msg


def test_no_extension_gives_an_events_manager(tmp_path):
    events = plugins.load_extensions(parse({}, "<x>"), [])
    assert events.hook.dockyard_container_event(container_id="c", action="start", attributes={}) == []


def test_example_audit_extension_records_calls_and_events(tmp_path):
    """The example plug-in's audit wrapper, loaded from source, around a driver."""
    audit = example_module("audit")
    log = tmp_path / "audit.jsonl"
    ext = audit.AuditExtension(log=str(log))
    slot = plugins.register_driver("storage", "good", GoodStorage(), tmp_path)
    import pluggy
    from dockyard.hookspecs import extensions as extension_specs

    events = pluggy.PluginManager("dockyard")
    events.add_hookspecs(extension_specs)
    plugins.register_extension("audit", ext, [("dockyard_", events), ("storage_", slot.pm)])
    slot.hook.storage_create(id="l1", parent=None)
    assert slot.hook.storage_mount(id="l1") == "/layers/l1"
    slot.hook.storage_unmount(id="l1")
    events.hook.dockyard_container_event(container_id="c1", action="die", attributes={"exitCode": "0"})
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [(r["kind"], r.get("hook") or r.get("action")) for r in lines] == [
        ("call", "storage_create"), ("call", "storage_mount"), ("call", "storage_unmount"), ("event", "die")]
    assert lines[1]["args"] == {"id": "l1"} and lines[1]["ok"] is True
    assert lines[3]["attributes"] == {"exitCode": "0"}


def test_example_audit_records_a_failing_call(tmp_path, monkeypatch):
    audit = example_module("audit")
    log = tmp_path / "audit.jsonl"
    monkeypatch.setenv("DOCKYARD_AUDIT_LOG", str(log))

    class Failing(GoodStorage):
        @hookimpl
        def storage_mount(self, id):
            raise LookupError(f"layer {id} not found")

    slot = plugins.register_driver("storage", "failing", Failing(), tmp_path)
    plugins.register_extension("audit", audit.AuditExtension(), [("storage_", slot.pm)])
    with pytest.raises(LookupError):
        slot.hook.storage_mount(id="zz")
    rec = json.loads(log.read_text())
    assert rec["hook"] == "storage_mount" and rec["ok"] is False and "zz" in rec["error"]


def test_example_storage_driver_validates(tmp_path):
    storage = example_module("storage")
    slot = plugins.register_driver("storage", "example", storage.ExampleStorage(), tmp_path / "example")
    assert slot.supported() is None
    assert slot.pm.hook.storage_diff.get_hookimpls() == []  # left to the naive fallback


# the daemon refuses a bad plugins.toml ---------------------------------------
BAD_CONFIGS = {
    "unknown-key": ('[storage]\ndrivr = "vfs"\n', "storage.drivr"),
    "unknown-table": ('[gpu]\ndriver = "local"\n', "'gpu'"),
    "wrong-type": ('[storage]\ndriver = 7\n', "storage.driver"),
    "malformed": ('[storage\n', "malformed TOML"),
    "default-network": ('[network]\ndrivers = ["none"]\ndefault = "host"\n', "network.default"),
    "unknown-driver": ('[storage]\ndriver = ["vfs", "zfs-ng"]\n', "unknown driver 'zfs-ng'"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_daemon_refuses_bad_config_and_creates_nothing(tmp_path, case):
    text, key = BAD_CONFIGS[case]
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    data_root, exec_root, sock = tmp_path / "X", tmp_path / "Y", tmp_path / "Z.sock"
    before = sorted(os.listdir(tmp_path))
    res = subprocess.run(
        [sys.executable, "-m", "dockyard.daemon.main", "--config", str(bad), "--data-root", str(data_root),
         "--exec-root", str(exec_root), "-H", f"unix://{sock}"],
        capture_output=True, text=True, timeout=60)
    assert res.returncode == 1, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert str(bad) in lines[0] and key in lines[0], lines[0]
    assert lines[0].startswith("dockyard daemon: ")
    assert not data_root.exists() and not exec_root.exists() and not sock.exists()
    assert sorted(os.listdir(tmp_path)) == before
