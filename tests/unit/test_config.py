"""``plugins.toml`` parsing: defaults, priority lists, and one-line refusals that
name the file, the key and the choices."""

import os
import tomllib

import pytest

from dockyard import config
from dockyard.config import Config, load, parse, write_atomic
from dockyard.errors import ConfigError


def write(tmp_path, text, name="plugins.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def refused(tmp_path, text):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(path)
    msg = str(info.value)
    assert "\n" not in msg, msg
    assert str(path) in msg, msg
    return msg


# defaults -----------------------------------------------------------------
def test_empty_file_gives_defaults(tmp_path):
    cfg = load(write(tmp_path, ""))
    assert cfg.source == str(tmp_path / "plugins.toml")
    assert cfg.drivers == {"storage": ["overlay", "vfs"], "exec": ["native"], "network": ["none", "host"],
                           "volume": ["local"], "logging": ["json-file", "local", "none", "journald", "syslog", "cri"]}
    assert cfg.options == {"storage": {}, "exec": {}, "network": {}, "volume": {}, "logging": {}}
    assert cfg.default_network == "none"
    assert cfg.enable == [] and cfg.block == [] and cfg.plugin_options == {}
    assert cfg.default_log_driver == "json-file" and cfg.log_opts == {}


def test_logging_table_and_daemon_flags(tmp_path):
    cfg = load(write(tmp_path, '[logging]\ndrivers = ["json-file", "local"]\ndefault = "local"\n'
                               'log_opts = { max-size = "10m" }\n'))
    assert (cfg.drivers["logging"], cfg.default_log_driver, cfg.log_opts) == (["json-file", "local"], "local",
                                                                              {"max-size": "10m"})
    assert load(write(tmp_path, cfg_text(cfg))).log_opts == {"max-size": "10m"}  # to_toml round trip
    flagged = cfg.with_log_defaults(None, ["max-file=3"])
    assert (flagged.default_log_driver, flagged.log_opts) == ("local", {"max-size": "10m", "max-file": "3"})
    other = cfg.with_log_defaults("json-file", ["compress=true"])
    assert (other.default_log_driver, other.log_opts) == ("json-file", {"compress": "true"})
    with pytest.raises(ConfigError, match="--log-driver 'syslog': not one of the enabled log drivers"):
        cfg.with_log_defaults("syslog", [])
    with pytest.raises(ConfigError, match="'logging.default' is 'none', not one of the enabled drivers"):
        load(write(tmp_path, '[logging]\ndrivers = ["json-file"]\ndefault = "none"\n'))


def cfg_text(cfg):
    import tomli_w

    return tomli_w.dumps(cfg.to_toml())


def test_shipped_default_parses():
    path = config.default_path()
    cfg = load(path)
    assert cfg.drivers["storage"][0] in ("overlay", "vfs")
    assert cfg.drivers["exec"] == ["native"]
    assert cfg.default_network in cfg.drivers["network"]


def test_shipped_default_is_used_without_system_file(monkeypatch, tmp_path):
    monkeypatch.setattr(config, "SYSTEM_CONFIG", tmp_path / "absent.toml")
    assert config.default_path().name == "plugins.toml"
    assert config.default_path().exists()
    monkeypatch.setattr(config, "SYSTEM_CONFIG", write(tmp_path, "[exec]\ndriver = 'native'\n", "sys.toml"))
    assert config.default_path() == tmp_path / "sys.toml"
    assert load().source == str(tmp_path / "sys.toml")


def test_single_name_becomes_a_list(tmp_path):
    cfg = load(write(tmp_path, '[storage]\ndriver = "vfs"\n'))
    assert cfg.drivers["storage"] == ["vfs"]


def test_priority_list_and_options(tmp_path):
    cfg = load(write(tmp_path, """
[storage]
driver = ["btrfs", "overlay", "vfs"]
[storage.options.vfs]
reflink = "never"
[storage.options.overlay]
mount_program = ""
[exec]
driver = ["native"]
[network]
drivers = ["none", "host"]
default = "host"
[plugins]
enable = ["audit"]
block = ["metrics"]
[plugins.options.audit]
log = "/tmp/audit.jsonl"
"""))
    assert cfg.drivers["storage"] == ["btrfs", "overlay", "vfs"]
    assert cfg.options["storage"] == {"vfs": {"reflink": "never"}, "overlay": {"mount_program": ""}}
    assert cfg.default_network == "host"
    assert cfg.enable == ["audit"] and cfg.block == ["metrics"]
    assert cfg.plugin_options == {"audit": {"log": "/tmp/audit.jsonl"}}


def test_network_default_is_first_enabled(tmp_path):
    cfg = load(write(tmp_path, '[network]\ndrivers = ["host", "none"]\n'))
    assert cfg.default_network == "host"


def test_with_override_names_the_flag(tmp_path):
    cfg = load(write(tmp_path, '[storage]\ndriver = ["overlay", "vfs"]\n'))
    over = cfg.with_override("storage", "vfs")
    assert over.drivers["storage"] == ["vfs"]
    assert cfg.drivers["storage"] == ["overlay", "vfs"]  # the original is untouched
    assert "--storage-driver" in over.source


# refusals -----------------------------------------------------------------
def test_unknown_table(tmp_path):
    msg = refused(tmp_path, '[volumes]\ndriver = "local"\n')
    assert "'volumes'" in msg
    for choice in ("storage", "exec", "network", "plugins"):
        assert choice in msg


def test_unknown_key_names_file_key_and_choices(tmp_path):
    msg = refused(tmp_path, '[storage]\ndrivr = "vfs"\n')
    assert "storage.drivr" in msg
    assert "choices" in msg and "driver" in msg and "options" in msg


def test_unknown_key_in_network(tmp_path):
    msg = refused(tmp_path, '[network]\ndriver = "none"\n')
    assert "network.driver" in msg and "drivers" in msg and "default" in msg


def test_unknown_key_in_plugins(tmp_path):
    msg = refused(tmp_path, '[plugins]\nenabled = ["audit"]\n')
    assert "plugins.enabled" in msg and "enable" in msg and "block" in msg


@pytest.mark.parametrize("text, key, want", [
    ("[storage]\ndriver = 3\n", "storage.driver", "str or list"),
    ("[network]\ndrivers = \"none\"\n", "network.drivers", "list"),
    ("[network]\ndefault = [\"none\"]\n", "network.default", "str"),
    ("[plugins]\nenable = \"audit\"\n", "plugins.enable", "list"),
    ("[storage]\noptions = 1\n", "storage.options", "dict"),
])
def test_wrong_type(tmp_path, text, key, want):
    msg = refused(tmp_path, text)
    assert key in msg and want in msg, msg


def test_table_that_is_a_value(tmp_path):
    msg = refused(tmp_path, 'storage = "vfs"\n')
    assert "'storage'" in msg and "table" in msg


def test_options_of_a_driver_must_be_a_table(tmp_path):
    msg = refused(tmp_path, '[storage.options]\nvfs = "fast"\n')
    assert "storage.options.vfs" in msg and "table" in msg


@pytest.mark.parametrize("value", ["[]", '[""]', '""', "[1]"])
def test_driver_list_must_name_a_driver(tmp_path, value):
    msg = refused(tmp_path, f"[storage]\ndriver = {value}\n")
    assert "storage.driver" in msg


def test_malformed_toml(tmp_path):
    msg = refused(tmp_path, "[storage\ndriver = 'vfs'\n")
    assert "malformed TOML" in msg
    assert "line 1" in msg  # tomllib's position is kept


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "nope.toml")
    assert str(tmp_path / "nope.toml") in str(info.value) and "cannot read" in str(info.value)


def test_network_default_not_enabled(tmp_path):
    msg = refused(tmp_path, '[network]\ndrivers = ["none"]\ndefault = "bridge"\n')
    assert "network.default" in msg and "'bridge'" in msg
    assert "choices: none" in msg


def test_parse_without_file_names_the_source():
    with pytest.raises(ConfigError, match=r"^--flags: unknown key 'exec.drivers'"):
        parse({"exec": {"drivers": ["native"]}}, "--flags")


def test_load_changes_nothing(tmp_path):
    path = write(tmp_path, '[storage]\ndriver = "vfs"\n')
    before = sorted(os.listdir(tmp_path))
    load(path)
    with pytest.raises(ConfigError):
        load(write(tmp_path, "[bogus]\n", "bad.toml"))
    assert sorted(os.listdir(tmp_path)) == sorted(before + ["bad.toml"])


# writing ------------------------------------------------------------------
def roundtrip(tmp_path, cfg):
    target = tmp_path / "etc" / "dockyard" / "plugins.toml"
    write_atomic(target, cfg)
    assert sorted(os.listdir(target.parent)) == ["plugins.toml"]  # no temp file left
    tomllib.loads(target.read_text())  # valid TOML
    return load(target), target


def test_write_atomic_round_trip(tmp_path):
    cfg = load(write(tmp_path, """
[storage]
driver = ["overlay", "vfs"]
[storage.options.vfs]
reflink = "never"
[exec]
driver = "native"
[exec.options.native]
cgroup_parent = "dockyard"
[network]
drivers = ["none", "host"]
default = "host"
[network.options.host]
x = 1
[plugins]
enable = ["audit"]
block = ["other"]
[plugins.options.audit]
log = "/tmp/a.jsonl"
"""))
    back, target = roundtrip(tmp_path, cfg)
    assert back.source == str(target)
    for field in ("drivers", "options", "default_network", "enable", "block", "plugin_options"):
        assert getattr(back, field) == getattr(cfg, field), field


def test_write_atomic_round_trip_of_defaults(tmp_path):
    cfg = parse({}, "<defaults>")
    back, _ = roundtrip(tmp_path, cfg)
    assert back.drivers == cfg.drivers and back.default_network == cfg.default_network
    assert back.options == cfg.options


def test_write_atomic_replaces_and_keeps_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "plugins.toml"
    target.write_text("# old\n")
    cfg = parse({"storage": {"driver": "vfs"}}, "<x>")
    write_atomic(target, cfg)
    assert load(target).drivers["storage"] == ["vfs"]

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(config.os, "replace", boom)
    before = target.read_text()
    cfg2 = parse({"storage": {"driver": "overlay"}}, "<y>")
    with pytest.raises(OSError):
        write_atomic(target, cfg2)
    assert target.read_text() == before
    assert sorted(os.listdir(tmp_path)) == ["plugins.toml"]  # the temp file is gone too


def test_config_is_attrs_class():
    cfg = Config(source="s", drivers={"storage": ["vfs"], "exec": ["native"], "network": ["none"]},
                 options={"storage": {}, "exec": {}, "network": {}})
    assert cfg.default_network == "none" and cfg.enable == []
