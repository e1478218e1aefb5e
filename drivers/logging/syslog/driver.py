"""The ``syslog`` log driver (dockerd's ``syslog``): each line a syslog message,
sent by the shim (:mod:`.dockyard_log_syslog`, which shows the formats).

Options as dockerd's: ``syslog-address`` (``udp://host:port``,
``tcp://host:port``, ``tcp+tls://host:port``, ``unix:///path``,
``unixgram:///path``; the port defaults to 514; without it, the host's
``/dev/log``), ``syslog-facility`` (a name or number, default ``daemon``),
``syslog-format`` (``rfc3164``, ``rfc5424``, ``rfc5424micro``; default the
local form without a host name), ``syslog-tls-ca-cert``, ``syslog-tls-cert``,
``syslog-tls-key``, ``syslog-tls-skip-verify``, ``tag`` (default ``{{.ID}}``),
``labels``, ``labels-regex``, ``env``, ``env-regex``.  The options are checked
at create; a syslog that cannot be reached fails the start.  ``docker logs`` is
refused, as by dockerd.
"""

import os
import re

from dockyard.driverkit import logopts
from dockyard.errors import InvalidParameter
from dockyard.hookspecs import hookimpl
from dockyard.hookspecs.logging import LogDriverError

HERE = os.path.dirname(os.path.abspath(__file__))
OPTIONS = ("syslog-address", "syslog-facility", "syslog-tls-ca-cert", "syslog-tls-cert", "syslog-tls-key",
           "syslog-tls-skip-verify", "syslog-format", *logopts.ATTRIBUTE_OPTS)
FACILITIES = {"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
              "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "local0": 16, "local1": 17, "local2": 18,
              "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23}
FORMATS = ("", "rfc3164", "rfc5424", "rfc5424micro")
LOCAL = ("/dev/log", "/var/run/syslog", "/var/run/log")


def address(text):
    """``(proto, address)``: a ``(host, port)`` list or a socket path; dockerd's
    refusals."""
    if not text:
        return "unix", None
    proto, sep, rest = text.partition("://")
    if not sep or proto not in ("tcp", "udp", "tcp+tls", "unix", "unixgram"):
        raise InvalidParameter(f"syslog-address should be in form proto://address, got {text}")
    if proto in ("unix", "unixgram"):
        return proto, rest
    m = re.fullmatch(r"\[([0-9a-fA-F:.]+)\](?::(\d+))?|([^:\[\]]+)(?::(\d+))?", rest)
    if not m:
        raise InvalidParameter(f"syslog-address should be in form proto://address, got {text}")
    host, port = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    return proto, [host, int(port or 514)]


def facility(text):
    if not text:
        return FACILITIES["daemon"]
    if text in FACILITIES:
        return FACILITIES[text]
    if text.isdigit() and 0 <= int(text) <= 23:
        return int(text)
    raise InvalidParameter("invalid syslog facility")


class SyslogDriver:
    @hookimpl
    def logging_supported(self, home, options):
        return None

    @hookimpl
    def logging_init(self, home, options):
        return None

    @hookimpl
    def logging_validate(self, config):
        logopts.check_names(config, OPTIONS, "unknown log opt '{}' for syslog log driver")
        address(config.get("syslog-address", ""))
        facility(config.get("syslog-facility", ""))
        if config.get("syslog-format", "") not in FORMATS:
            raise InvalidParameter("Invalid syslog format")

    @hookimpl
    def logging_writer(self, container, config):
        proto, where = address(config.get("syslog-address", ""))
        if where is None:  # the host's syslog
            where = next((p for p in LOCAL if os.path.exists(p)), None)
            if where is None:
                raise LogDriverError("Unix syslog delivery error")
        tls = {}
        if proto == "tcp+tls":
            try:
                skip = logopts.parse_bool(config.get("syslog-tls-skip-verify") or "false")
            except ValueError as exc:
                raise LogDriverError(str(exc)) from None
            tls = {"ca": config.get("syslog-tls-ca-cert"), "cert": config.get("syslog-tls-cert"),
                   "key": config.get("syslog-tls-key"), "skip_verify": skip}
        return {"module": "dockyard_log_syslog", "path": HERE,
                "options": {"proto": proto, "address": where, "facility": facility(config.get("syslog-facility")),
                            "format": config.get("syslog-format", ""), "tag": logopts.tag(config, container),
                            "tls": tls}}
