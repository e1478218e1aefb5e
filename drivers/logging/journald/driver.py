"""The ``journald`` log driver (dockerd's ``journald``): each line a journal
entry, sent by the shim (:mod:`.dockyard_log_journald`, which lists the
fields) to ``/run/systemd/journal/socket`` (the driver option ``socket`` in
``[logging.options.journald]`` names another).

Options as dockerd's: ``tag`` (``SYSLOG_IDENTIFIER`` and ``CONTAINER_TAG``,
default ``{{.ID}}``), ``labels``, ``labels-regex``, ``env``, ``env-regex``.
Reading back (``docker logs``) needs the journal's own reader, which this
driver does not have: it is refused as for ``none``.
"""

import os
import re

from dockyard.driverkit import logopts
from dockyard.hookspecs import hookimpl
from dockyard.hookspecs.logging import LogDriverError

HERE = os.path.dirname(os.path.abspath(__file__))
SOCKET = "/run/systemd/journal/socket"


def _field_name(key):
    """A journal field name from an attribute's: upper case, ``_`` for the rest
    (no leading ``_``: those are the journal's own)."""
    return re.sub(r"[^A-Z0-9_]", "_", key.upper()).lstrip("_") or "_"


class JournaldDriver:
    def __init__(self):
        self.socket = SOCKET

    @hookimpl
    def logging_supported(self, home, options):
        return None  # the journal may come later: checked at each start, as dockerd does

    @hookimpl
    def logging_init(self, home, options):
        self.socket = str((options or {}).get("socket") or SOCKET)

    @hookimpl
    def logging_validate(self, config):
        logopts.check_names(config, logopts.ATTRIBUTE_OPTS, "unknown log opt '{}' for journald log driver")

    @hookimpl
    def logging_writer(self, container, config):
        if not os.path.exists(self.socket):
            raise LogDriverError("journald is not enabled on this host")
        tag = logopts.tag(config, container)
        fields = {_field_name(k): v for k, v in logopts.extra_attributes(config, container).items()}
        fields.update({"CONTAINER_ID": container["id"][:12], "CONTAINER_ID_FULL": container["id"],
                       "CONTAINER_NAME": container["name"], "CONTAINER_TAG": tag,
                       "IMAGE_NAME": container["image_name"], "SYSLOG_IDENTIFIER": tag})
        return {"module": "dockyard_log_journald", "path": HERE,
                "options": {"socket": self.socket, "fields": fields}}
