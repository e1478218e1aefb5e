"""Dockerfile-style ``--change`` instructions applied to an image config
(``import --change``, later ``commit --change``)."""

import json
import shlex

from ...errors import InvalidParameter

ALLOWED = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "STOPSIGNAL",
           "USER", "VOLUME", "WORKDIR")


def _command(value):
    value = value.strip()
    if value.startswith("["):
        try:
            args = json.loads(value)
        except json.JSONDecodeError:
            args = None
        if isinstance(args, list) and all(isinstance(a, str) for a in args):
            return args
    return ["/bin/sh", "-c", value]


def _pairs(value, what):
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


def apply(config, changes):
    """Apply each change line to ``config`` (an image ``config`` dict) in place."""
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
        if op in ("CMD", "ENTRYPOINT"):
            config["Cmd" if op == "CMD" else "Entrypoint"] = _command(value)
        elif op == "ENV":
            env = [e for e in config.get("Env") or []]
            for key, val in _pairs(value, "ENV"):
                env = [e for e in env if e.split("=", 1)[0] != key] + [f"{key}={val}"]
            config["Env"] = env
        elif op == "LABEL":
            labels = dict(config.get("Labels") or {})
            labels.update(_pairs(value, "LABEL"))
            config["Labels"] = labels
        elif op == "EXPOSE":
            ports = dict(config.get("ExposedPorts") or {})
            for port in value.split():
                ports[port if "/" in port else f"{port}/tcp"] = {}
            config["ExposedPorts"] = ports
        elif op == "VOLUME":
            vols = dict(config.get("Volumes") or {})
            for path in _command(value) if value.strip().startswith("[") else value.split():
                vols[path] = {}
            config["Volumes"] = vols
        elif op == "ONBUILD":
            config["OnBuild"] = list(config.get("OnBuild") or []) + [value.strip()]
        else:
            config[{"STOPSIGNAL": "StopSignal", "USER": "User", "WORKDIR": "WorkingDir"}[op]] = value.strip()
    return config
