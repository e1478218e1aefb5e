"""``run``/``create`` flags for the restart policy and the health check: ``--restart``,
``--health-cmd``, ``--health-interval``, ``--health-timeout``, ``--health-start-period``,
``--health-retries`` and ``--no-healthcheck`` (registered with the others in
:data:`dockyard.cli.runflags.FLAGS`), checked as the docker CLI checks them.
"""

import re

from dockyard.cli.runflags import _value, flag_error, goquote

_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def parse_duration(text):
    """Go's time.ParseDuration -> nanoseconds: ``200ms``, ``1m30s``, ``-5s``, ``0``."""
    sign, body = (-1, text[1:]) if text.startswith("-") else (1, text.lstrip("+"))
    if body == "0":
        return 0
    parts = _GO_DURATION.findall(body)
    if not parts or "".join(n + u for n, u in parts) != body:
        raise ValueError(f"time: invalid duration {goquote(text)}")
    return sign * int(sum(float(n) * _NS[u] for n, u in parts))


def restart_config(args):
    """``{"RestartPolicy": ...}`` for ``--restart`` (nothing when it is not given)."""
    value = getattr(args, "restart", None)
    if value is None:
        return {}
    if getattr(args, "rm", False) and value not in ("", "no"):
        raise ValueError("Conflicting options: --restart and --rm")
    parts = value.split(":")
    if len(parts) > 2:
        raise ValueError("invalid restart policy format")
    policy = {"Name": parts[0], "MaximumRetryCount": 0}
    if len(parts) == 2:
        try:
            policy["MaximumRetryCount"] = int(parts[1])
        except ValueError:
            raise ValueError("maximum retry count must be an integer") from None
    return {"RestartPolicy": policy}


def health_config(args):
    """``{"Healthcheck": ...}`` for the ``--health-*`` flags and ``--no-healthcheck``."""
    times = {}
    for dest, key in (("health_interval", "Interval"), ("health_timeout", "Timeout"),
                      ("health_start_period", "StartPeriod")):
        raw = getattr(args, dest, None)
        if raw is None:
            times[key] = 0
            continue
        try:
            times[key] = parse_duration(raw)
        except ValueError as exc:
            raise flag_error(dest, raw, exc) from None
        if times[key] < 0:
            raise ValueError(f"--{dest.replace('_', '-')} cannot be negative")
    retries = _value(args, "health_retries") or 0
    cmd = getattr(args, "health_cmd", None) or ""
    given = bool(cmd) or any(times.values()) or retries != 0
    if getattr(args, "no_healthcheck", None):
        if given:
            raise ValueError("--no-healthcheck conflicts with --health-* options")
        return {"Healthcheck": {"Test": ["NONE"]}}
    if not given:
        return {}
    if retries < 0:
        raise ValueError("--health-retries cannot be negative")
    return {"Healthcheck": {"Test": ["CMD-SHELL", cmd] if cmd else None, **times, "Retries": retries}}
