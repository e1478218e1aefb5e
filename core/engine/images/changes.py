"""Dockerfile-style ``--change`` instructions applied to an image config
(``import --change``, ``commit --change``)."""

from __future__ import annotations

import json
import shlex

from ...errors import InvalidParameter
from ...model.image import ContainerConfig

ALLOWED = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "STOPSIGNAL",
           "USER", "VOLUME", "WORKDIR")


def _command(value: str) -> list[str]:
    value = value.strip()
    if value.startswith("["):
        try:
            args = json.loads(value)
        except json.JSONDecodeError:
            args = None
        if isinstance(args, list) and all(isinstance(a, str) for a in args):
            return args
    return ["/bin/sh", "-c", value]


def _pairs(value: str, what: str) -> list[tuple[str, str]]:
    """``K=V K2="v 2"`` or the legacy ``K V`` form."""
    words = shlex.split(value)
    if words and "=" not in words[0]:
        key, _, rest = value.strip().partition(" ")
        return [(key, rest.strip())]
    out = []
    for word in words:
        key, sep, val = word.partition("=")
        if not sep or not key:
            raise InvalidParameter(f"{what} needs KEY=VALUE, got {word!r}")
        out.append((key, val))
    return out


def apply(config: ContainerConfig, changes: list[str] | tuple[str, ...] | None) -> ContainerConfig:
    """Apply each change line to ``config`` (an image's ``config``) in place; returns it."""
    for line in changes or ():
        line = line.strip()
        if not line:
            continue
        word, _, value = line.partition(" ")
        op = word.upper()
        if op not in ALLOWED:
            raise InvalidParameter(
                f"{word} is not a valid change command (choices: {', '.join(ALLOWED)})"
            )
        if op == "CMD":
            config.cmd = _command(value)
        elif op == "ENTRYPOINT":
            config.entrypoint = _command(value)
        elif op == "ENV":
            env = list(config.env or [])
            for key, val in _pairs(value, "ENV"):
                env = [e for e in env if e.split("=", 1)[0] != key] + [f"{key}={val}"]
            config.env = env
        elif op == "LABEL":
            labels = dict(config.labels or {})
            labels.update(_pairs(value, "LABEL"))
            config.labels = labels
        elif op == "EXPOSE":
            ports = dict(config.exposed_ports or {})
            for port in value.split():
                ports[port if "/" in port else f"{port}/tcp"] = {}
            config.exposed_ports = ports
        elif op == "VOLUME":
            vols = dict(config.volumes or {})
            for path in _command(value) if value.strip().startswith("[") else value.split():
                vols[path] = {}
            config.volumes = vols
        elif op == "ONBUILD":
            config.on_build = list(config.on_build or []) + [value.strip()]
        elif op == "STOPSIGNAL":
            config.stop_signal = value.strip()
        elif op == "USER":
            config.user = value.strip()
        else:
            config.working_dir = value.strip()
    return config
