"""The fast body check (``schema.accepts``) decides as jsonschema does: it accepts
exactly the bodies the draft-4 validator accepts, so a refused body still gets
jsonschema's message and an accepted one skips the slow walk."""

import copy
import random

import pytest

from dockyard.daemon import schema
from dockyard.errors import InvalidParameter

# what the docker CLI 28 sends for `docker run -d --network none busybox sleep 1` (abridged)
CLI_BODY = {
    "Hostname": "", "User": "", "AttachStdin": False, "Tty": False, "OpenStdin": False, "Env": None,
    "Cmd": ["sleep", "1"], "Image": "busybox", "Volumes": {}, "WorkingDir": "", "Entrypoint": None,
    "Labels": {}, "StopTimeout": 5,
    "HostConfig": {"Binds": None, "LogConfig": {"Type": "", "Config": {}}, "NetworkMode": "none",
                   "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]},
                   "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}, "ConsoleSize": [0, 0],
                   "Memory": 0, "CpuShares": 0, "ShmSize": 0, "Ulimits": [{"Name": "nofile", "Soft": 1, "Hard": 2}],
                   "BlkioWeight": 0, "PidsLimit": None, "MemorySwappiness": None, "Devices": [],
                   "Sysctls": {"net.ipv4.ip_forward": "1"}, "Dns": [], "ExtraHosts": None},
    "NetworkingConfig": {"EndpointsConfig": {"none": {"Aliases": ["a"], "IPAMConfig": None}}},
}

VALUES = [None, True, False, 0, -1, 1.5, 2.0, 2**63, 2**64, -(2**63) - 1, 70000, "", "x", [], ["a"], [1],
          {}, {"a": "b"}, {"a": 1}, [None], [{"Name": 5}]]


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, (*prefix, i))


def _set(body, path, value):
    target = body
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value


def _jsonschema_accepts(operation, body):
    return schema.validator(operation).is_valid(body)


def test_every_operation_gets_a_fast_check():
    missing = [op for op in schema._document()["bodies"] if schema.accepts(op) is None]
    assert missing == []


def test_it_agrees_with_jsonschema_on_a_body_and_every_one_field_change():
    fast = schema.accepts("ContainerCreate")
    assert fast(CLI_BODY) and _jsonschema_accepts("ContainerCreate", CLI_BODY)
    paths = [p for p in _paths(CLI_BODY) if p]
    checked = refused = 0
    for path in paths:
        for value in VALUES:
            body = copy.deepcopy(CLI_BODY)
            _set(body, path, value)
            expected = _jsonschema_accepts("ContainerCreate", body)
            assert fast(body) == expected, (path, value)
            checked += 1
            refused += not expected
    for key in ("Memory", "CpuShares", "NanoCpus", "Privileged", "Links", "Mounts", "Healthcheck"):
        for value in VALUES:  # fields the CLI's body does not carry
            body = copy.deepcopy(CLI_BODY)
            (body["HostConfig"] if key in ("Memory", "CpuShares", "NanoCpus", "Privileged", "Links", "Mounts")
             else body)[key] = value
            assert fast(body) == _jsonschema_accepts("ContainerCreate", body), (key, value)
    assert checked > 500 and refused > 100  # both answers were exercised


def test_random_bodies_of_every_operation_agree():
    rng = random.Random(17)
    for op in schema._document()["bodies"]:
        fast = schema.accepts(op)
        for _ in range(150):
            body = {rng.choice(["Name", "Labels", "Driver", "Options", "Spec", "Config", "Env", "Id", "x"]):
                    rng.choice(VALUES) for _ in range(rng.randint(0, 4))}
            assert fast(body) == _jsonschema_accepts(op, body), (op, body)


def test_a_refused_body_still_gets_the_go_like_message():
    body = copy.deepcopy(CLI_BODY)
    body["HostConfig"]["Memory"] = 10**30
    with pytest.raises(InvalidParameter, match="HostConfig.Memory of type int64"):
        schema.check("ContainerCreate", body)
