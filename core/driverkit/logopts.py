"""What Docker's log drivers share of a container's ``--log-opt``: the option
check, the ``tag`` template and the extra attributes (``labels``, ``env`` and
their ``-regex`` forms).  Daemon side: log drivers call these from their hooks
(``dockyard.hookspecs.logging``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ..errors import InvalidParameter

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from ..hookspecs.logging import Container

#: the options of moby's ``logger.ReadLogInfo`` every driver that tags or labels takes
ATTRIBUTE_OPTS = ("labels", "labels-regex", "env", "env-regex", "tag")
DEFAULT_TAG = "{{.ID}}"
_FIELD = re.compile(r"\{\{\s*\.(\w+)\s*\}\}")


def check_names(config: Mapping[str, str], allowed: Iterable[str], message: str) -> None:
    """Refuse the first option of ``config`` not in ``allowed``; ``message`` is
    dockerd's with ``{}`` for the option (``unknown log opt '{}' for json-file log driver``)."""
    allowed = set(allowed)
    for key in config:
        if key not in allowed:
            raise InvalidParameter(message.format(key))


def tag(config: Mapping[str, str], container: Container) -> str:
    """The ``tag`` option with Docker's template fields filled in (``{{.ID}}``,
    ``{{.FullID}}``, ``{{.Name}}``, ``{{.ImageName}}``, ``{{.ImageID}}``,
    ``{{.ImageFullID}}``, ``{{.DaemonName}}``); ``{{.ID}}`` by default."""
    image_id = container["image_id"].split(":", 1)[-1]
    fields = {"ID": container["id"][:12], "FullID": container["id"], "Name": container["name"],
              "ImageName": container["image_name"], "ImageID": image_id[:12], "ImageFullID": image_id,
              "DaemonName": container.get("daemon_name") or "docker"}
    template = config.get("tag") or DEFAULT_TAG

    def fill(m: re.Match[str]) -> str:
        if m.group(1) not in fields:
            raise InvalidParameter(f"template: log-tag: can't evaluate field {m.group(1)}")
        return fields[m.group(1)]

    return _FIELD.sub(fill, template)


def extra_attributes(config: Mapping[str, str], container: Container) -> dict[str, str]:
    """The container's labels and environment variables the options name
    (``labels=a,b``, ``labels-regex=^com\\.``, ``env=X``, ``env-regex=...``)."""
    out: dict[str, str] = {}
    labels = container.get("labels") or {}
    env = dict(e.split("=", 1) for e in container.get("env") or [] if "=" in e)
    for source, keys, pattern in ((labels, config.get("labels"), config.get("labels-regex")),
                                  (env, config.get("env"), config.get("env-regex"))):
        for key in (keys or "").split(","):
            if key.strip() and key.strip() in source:
                out[key.strip()] = source[key.strip()]
        if pattern:
            try:
                rx = re.compile(pattern)
            except re.error as exc:
                raise InvalidParameter(f"invalid regex {pattern!r}: {exc}") from None
            out.update({k: v for k, v in source.items() if rx.search(k)})
    return out


def parse_bool(text: str) -> bool:
    """Go's ``strconv.ParseBool``, with its error."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(f'strconv.ParseBool: parsing "{text}": invalid syntax')


def parse_int(text: str) -> int:
    """Go's ``strconv.Atoi``, with its error."""
    if re.fullmatch(r"[+-]?\d+", text or ""):
        return int(text)
    raise ValueError(f'strconv.Atoi: parsing "{text}": invalid syntax')
