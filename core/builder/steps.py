"""The metadata instructions: how each changes the image config, and the
comment the classic builder records for it in the history.

A metadata step makes an image with the same layers and a history entry
``/bin/sh -c #(nop)  CMD ["sh"]`` (moby's ``withCmdComment``: the shell, then
``"#(nop) "``, then the comment, joined by spaces -- hence the two spaces), marked
``empty_layer``.  Comments follow moby's ``dispatchers.go`` formats, which use Go's
``%q``/``%v``: ``CMD ["echo" "hi"]``, ``SHELL [/bin/bash -c]``, ``VOLUME [/data]``,
``HEALTHCHECK &{["CMD-SHELL" "true"] "30s" "0s" "0s" '\\x00'}``.
"""

import json

from ..engine.containers.verify import parse_signal
from ..errors import InvalidParameter
from ..model.image import ContainerConfig, HealthConfig
from .shellexpand import expand_word, expand_words

DEFAULT_SHELL = ["/bin/sh", "-c"]
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class BuildStepError(InvalidParameter):
    """A step cannot be carried out (the message is the stream's error)."""


def shell_of(config: ContainerConfig) -> list[str]:
    return list(config.shell or DEFAULT_SHELL)


def nop_created_by(config: ContainerConfig, comment: str, single: bool = False) -> str:
    """``created_by`` of a metadata step (``single``: moby's ``withCmdCommentString``,
    one space, used by WORKDIR, COPY and ADD)."""
    parts = shell_of(config) + (["#(nop) " + comment] if single else ["#(nop) ", comment])
    return " ".join(parts)


def go_quote(s):
    """Go's ``strconv.Quote`` (close enough: JSON's escapes, non-ASCII kept)."""
    return json.dumps(s, ensure_ascii=False)


def go_list(values, quote: bool = True):
    """Go's ``%q`` (``["a" "b"]``) or ``%v`` (``[a b]``) of a string slice."""
    return "[" + " ".join(go_quote(v) if quote else v for v in values) + "]"


def go_duration(ns):
    """Go's ``time.Duration.String()``."""
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _trim(ns / size) + unit
    hours, rest = divmod(ns, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    secs = _trim(rest / 1e9) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}"
    if minutes:
        return f"{sign}{minutes}m{secs}"
    return sign + secs


def _trim(value):
    text = f"{value:.9f}".rstrip("0").rstrip(".")
    return text or "0"


def _go_rune(n):
    if 32 <= n < 127 and chr(n) not in "'\\":
        return f"'{chr(n)}'"
    return f"'\\x{n:02x}'" if n < 256 else f"'\\u{n:04x}'"


def expansion_env(state):
    """What ``$VAR`` means in a stage: its ENV, then the declared build args ENV does not set."""
    env = list(state.config.env or [])
    env += state.args.filter_allowed(env)
    out = {}
    for item in env:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def _expand(state, word):
    return expand_word(word, expansion_env(state), escape=state.escape)


def _set_env(env, key, value):
    return [e for e in env if e.partition("=")[0] != key] + [f"{key}={value}"]


def _ports(words):
    out = []
    for word in words:
        port, _, proto = word.partition("/")
        proto = (proto or "tcp").lower()
        if proto not in ("tcp", "udp", "sctp"):
            raise BuildStepError(f"invalid proto: {proto}")
        low, _, high = port.partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError:
            raise BuildStepError(f"invalid containerPort: {port}") from None
        if not (0 < first <= last <= 65535):
            raise BuildStepError(f"invalid containerPort: {port}")
        out += [f"{p}/{proto}" for p in range(first, last + 1)]
    return out


def command_line(ins, config):
    """RUN/CMD/ENTRYPOINT arguments: exec form as written, shell form via the SHELL."""
    if ins.json:
        return list(ins.args)
    return shell_of(config) + ins.args if ins.args else []


def health(ins):
    if ins.healthcheck == "NONE":
        test = ["NONE"]
    elif ins.json:
        test = ["CMD"] + list(ins.args)
    else:
        test = ["CMD-SHELL"] + list(ins.args)
    out = {"Test": test}
    for flag, key in (("interval", "Interval"), ("timeout", "Timeout"), ("start-period", "StartPeriod"),
                      ("start-interval", "StartInterval")):
        if ins.flags.get(flag):
            out[key] = ins.flags[flag]
    if ins.flags.get("retries"):
        out["Retries"] = ins.flags["retries"]
    return out


def health_comment(h):
    fields = [go_list(h["Test"])] + [go_quote(go_duration(h.get(k, 0))) for k in ("Interval", "Timeout",
                                                                                 "StartPeriod")]
    return "HEALTHCHECK &{" + " ".join(fields + [_go_rune(h.get("Retries", 0))]) + "}"


def apply_metadata(state, ins, out):
    """Carry out metadata instruction ``ins``: returns ``(new config, comment)``;
    ``out(text)`` prints a note to the build's output."""
    cfg, cmd = state.config.copy(), ins.cmd
    if cmd == "ENV":
        env, parts = list(cfg.env or []), []
        for key, raw in ins.pairs:
            key, value = _expand(state, key), _expand(state, raw)
            env = _set_env(env, key, value)
            parts.append(f"{key}={value}")
        cfg.env = env
        return cfg, "ENV " + " ".join(parts)
    if cmd == "LABEL":
        labels, parts = dict(cfg.labels or {}), []
        for key, raw in ins.pairs:
            if ins.flags.get("no-expand"):  # the query's labels, as moby's NewLabelCommand(..., true)
                key, value = key, raw
            else:
                key, value = _expand(state, key), _expand(state, raw)
            if not key:
                raise BuildStepError("LABEL names can not be blank")
            labels[key] = value
            parts.append(f"{key}={value}")
        cfg.labels = labels
        return cfg, "LABEL " + " ".join(parts)
    if cmd == "ARG":
        parts = []
        for name, raw in ins.pairs:
            default = _expand(state, raw) if raw is not None else None
            state.args.add(name, default)
            parts.append(name if default is None else f"{name}={default}")
        return cfg, "ARG " + " ".join(parts)
    if cmd == "CMD":
        cfg.cmd = command_line(ins, cfg) or None
        state.cmd_set = True
        return cfg, "CMD " + go_list(cfg.cmd or [])
    if cmd == "ENTRYPOINT":
        cfg.entrypoint = command_line(ins, cfg) if (ins.json or ins.args) else None
        if not state.cmd_set:
            cfg.cmd = None
        return cfg, "ENTRYPOINT " + go_list(cfg.entrypoint or [])
    if cmd == "EXPOSE":
        words = []
        for word in ins.args:
            words += expand_words(word, expansion_env(state), escape=state.escape)
        ports = dict(cfg.exposed_ports or {})
        new = sorted(set(_ports(words)))
        ports.update({p: {} for p in new})
        cfg.exposed_ports = ports
        return cfg, "EXPOSE " + " ".join(new)
    if cmd == "VOLUME":
        vols, given = dict(cfg.volumes or {}), []
        for word in ins.args:
            words = [_expand(state, word)] if ins.json else expand_words(word, expansion_env(state),
                                                                           escape=state.escape)
            for v in words:
                if not v.strip():
                    raise BuildStepError("VOLUME specified can not be an empty string")
                vols[v.strip()] = {}
                given.append(v.strip())
        cfg.volumes = vols
        return cfg, "VOLUME " + go_list(given, quote=False)
    if cmd == "USER":
        cfg.user = _expand(state, ins.args[0])
        return cfg, "USER " + cfg.user
    if cmd == "STOPSIGNAL":
        sig = _expand(state, ins.args[0])
        try:
            parse_signal(sig)
        except InvalidParameter:
            raise BuildStepError(f"Invalid signal: {sig}") from None
        cfg.stop_signal = sig
        return cfg, "STOPSIGNAL " + sig
    if cmd == "HEALTHCHECK":
        old = (cfg.healthcheck.test if cfg.healthcheck else None) or []
        if old and old[0] != "NONE":
            out(f"Note: overriding previous HEALTHCHECK: {go_list(old, quote=False)}\n")
        check = health(ins)
        cfg.healthcheck = HealthConfig.from_json(check)
        return cfg, health_comment(check)
    if cmd == "SHELL":
        cfg.shell = list(ins.args)
        return cfg, "SHELL " + go_list(cfg.shell, quote=False)
    if cmd == "ONBUILD":
        expression = ins.original.strip()[len("ONBUILD"):].strip()
        cfg.on_build = list(cfg.on_build or []) + [expression]
        return cfg, "ONBUILD " + expression
    if cmd == "MAINTAINER":
        state.author = ins.args[0]
        return cfg, "MAINTAINER " + ins.args[0]
    raise BuildStepError(f"{cmd} is not a metadata instruction")


def workdir(state, ins):
    """WORKDIR's new working directory (moby ``normalizeWorkdir``)."""
    requested = _expand(state, ins.args[0])
    if not requested:
        raise BuildStepError("cannot normalize nothing")
    if requested.startswith("/"):
        return requested
    import posixpath

    return posixpath.normpath(posixpath.join("/", state.config.working_dir or "/", requested))
