"""Pure pieces of the engine: config merge, users, signals, log framing."""

import json
import struct

import pytest

from dockyard.daemon import streams
from dockyard.engine.bundle import resolve_user
from dockyard.engine.containers.create import merge_config
from dockyard.engine.containers.verify import parse_signal
from dockyard.errors import InvalidParameter


def test_merge_takes_image_defaults_and_request_overrides():
    from dockyard.model.image import ContainerConfig

    image = ContainerConfig.from_json({"Env": ["PATH=/bin", "A=1"], "Cmd": ["sh"], "WorkingDir": "/w",
                                       "Labels": {"x": "1"}})
    cfg = merge_config({"Image": "i", "Env": ["A=2"], "Labels": {"y": "2"}}, image)
    assert cfg["Env"] == ["PATH=/bin", "A=2"] and cfg["Cmd"] == ["sh"] and cfg["WorkingDir"] == "/w"
    assert cfg["Labels"] == {"x": "1", "y": "2"}
    # an entrypoint given on create drops the image's Cmd, as in Docker
    cfg = merge_config({"Image": "i", "Entrypoint": ["echo"]}, image)
    assert cfg["Entrypoint"] == ["echo"] and cfg.get("Cmd") is None


def test_resolve_user_from_image_files(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\nbob:x:1000:1000::/home/bob:/bin/sh\n")
    (tmp_path / "etc/group").write_text("root:x:0:\nbob:x:1000:\nwheel:x:10:bob\n")
    assert resolve_user(str(tmp_path), "") == {"uid": 0, "gid": 0, "additionalGids": []}
    assert resolve_user(str(tmp_path), "bob") == {"uid": 1000, "gid": 1000, "additionalGids": [10]}
    assert resolve_user(str(tmp_path), "bob:wheel")["gid"] == 10
    assert resolve_user(str(tmp_path), "4242")["uid"] == 4242
    with pytest.raises(ValueError, match="unable to find user alice"):
        resolve_user(str(tmp_path), "alice")


def test_resolve_user_never_reads_outside_the_rootfs(tmp_path):
    (tmp_path / "etc").symlink_to("/etc")
    with pytest.raises(ValueError):
        resolve_user(str(tmp_path), "root-of-host-should-not-be-found")
    assert resolve_user(str(tmp_path), "0")["uid"] == 0


@pytest.mark.parametrize("sig,num", [("SIGKILL", 9), ("kill", 9), ("15", 15), (2, 2), ("SIGUSR1", 10)])
def test_parse_signal(sig, num):
    assert parse_signal(sig) == num


@pytest.mark.parametrize("bad", ["SIGNOPE", "0", "99", "", None])
def test_parse_signal_refuses(bad):
    with pytest.raises(InvalidParameter):
        parse_signal(bad)


def test_log_reader_and_multiplexed_frames(tmp_path):
    log = tmp_path / "c-json.log"
    lines = [{"log": "out\n", "stream": "stdout", "time": "2026-01-01T00:00:00.000000001Z"},
             {"log": "err\n", "stream": "stderr", "time": "2026-01-01T00:00:01.000000001Z"}]
    log.write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"log": "torn')
    entries, offset = streams.read_entries(log, 0)
    assert entries == lines and offset == len(log.read_bytes()) - len('{"log": "torn')
    data = streams.LogFilter(stdout=True, stderr=True).render(entries)
    assert data[:8] == struct.pack(">BxxxL", 1, 4) and data[8:12] == b"out\n"
    assert data[12:20] == struct.pack(">BxxxL", 2, 4)
    assert streams.LogFilter(stdout=False, stderr=True, tty=True).render(entries) == b"err\n"
    assert streams.tail(entries, 1) == entries[1:] and streams.tail(entries, 0) == []
