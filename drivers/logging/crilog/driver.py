"""The ``cri`` log driver: the output of a Kubernetes pod's container in the
CRI log format, at the path the kubelet gives (``--log-opt path=FILE``, the
sandbox's ``log_directory`` joined with the container's ``log_path``).  The
shim writes it (:mod:`.dockyard_log_cri`, which documents the format); this
module checks the options, makes the file's directory, creates the new file
when the kubelet rotated the old one (``logging_reopen``) and reads the file
back for ``docker logs``.
"""

import os

from dockyard.driverkit import logopts
from dockyard.driverkit.shim import logfile
from dockyard.errors import InvalidParameter
from dockyard.hookspecs import hookimpl
from dockyard.hookspecs.logging import LogDriverError

from . import dockyard_log_cri as fmt

HERE = os.path.dirname(os.path.abspath(__file__))
OPTIONS = ("path",)


def log_file(config):
    path = config.get("path") or ""
    if not os.path.isabs(path):
        raise LogDriverError(f"the cri log driver needs an absolute path option, not {path!r}")
    return os.path.normpath(path)


def parse(data):
    """``logfile.Parse`` of the CRI format: entries as the API renders them
    (a partial line's text without a newline, as the json-file driver's)."""
    lines, used = fmt.parse(data)
    return [{"log": text.decode("utf-8", "replace") + ("" if partial else "\n"), "stream": stream, "time": time}
            for time, stream, partial, text in lines], used


def make_file(config):
    """The log file (and its directory) as the kubelet expects them: created
    if missing, never truncated."""
    path = log_file(config)
    try:
        os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
        os.close(fmt.open_file(path))
    except OSError as exc:
        raise LogDriverError(f"cannot open the log file {path}: {exc.strerror}") from None
    return path


class CriLogDriver:
    @hookimpl
    def logging_supported(self, home, options):
        return None

    @hookimpl
    def logging_init(self, home, options):
        return None

    @hookimpl
    def logging_validate(self, config):
        logopts.check_names(config, OPTIONS, "unknown log opt '{}' for cri log driver")
        if not os.path.isabs(config.get("path") or ""):
            raise InvalidParameter("the cri log driver needs the log opt path (an absolute file name)")

    @hookimpl
    def logging_writer(self, container, config):
        return {"module": "dockyard_log_cri", "path": HERE, "options": {"path": make_file(config)}}

    @hookimpl
    def logging_reopen(self, container, config):
        make_file(config)

    @hookimpl
    def logging_read(self, container, config, cursor, tail):
        if cursor is None and tail >= 0:
            return logfile.read_tail(log_file(config), tail, parse, logfile.last_lines)
        return logfile.read_rotated(log_file(config), cursor, parse)

    @hookimpl
    def logging_log_path(self, container, config):
        return log_file(config)
