"""The ``local`` log driver (dockerd's ``local``): the container's output in a
compact binary file, ``<container dir>/local-logs/container.log``, rotated at
``max-size`` (default 20m) into ``max-file`` files (default 5), the rotated
ones gzipped (``compress``, default true).  The shim writes it
(:mod:`.dockyard_log_local`, which documents the format); this module checks
the options and reads the files back for ``docker logs``.
"""

import os
import time

from dockyard.driverkit import logopts
from dockyard.driverkit.shim import logfile
from dockyard.hookspecs import hookimpl
from dockyard.hookspecs.logging import LogDriverError

from . import dockyard_log_local as fmt

HERE = os.path.dirname(os.path.abspath(__file__))
OPTIONS = ("max-file", "max-size", "compress")
DEFAULTS = {"max-size": "20m", "max-file": "5", "compress": "true"}


def log_file(container):
    return os.path.join(container["dir"], "local-logs", "container.log")


def _stamp(ns):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + ".%09dZ" % (ns % 10**9)


def parse(data):
    """``logfile.Parse`` of the local format: entries as the API renders them."""
    frames, used = fmt.unframe(data)
    return [{"log": line.decode("utf-8", "replace"), "stream": stream, "time": _stamp(ns)}
            for stream, line, ns, _ in frames], used


class LocalDriver:
    @hookimpl
    def logging_supported(self, home, options):
        return None

    @hookimpl
    def logging_init(self, home, options):
        return None

    @hookimpl
    def logging_validate(self, config):
        logopts.check_names(config, OPTIONS, "unknown log opt '{}' for log driver local")

    @hookimpl
    def logging_writer(self, container, config):
        opts = {**DEFAULTS, **config}
        values = {}
        for key, parse_value in (("max-size", logfile.parse_size), ("max-file", logopts.parse_int),
                                 ("compress", logopts.parse_bool)):
            try:
                values[key] = parse_value(opts[key])
            except ValueError as exc:
                raise LogDriverError(f"invalid value for {key}: {opts[key]}: {exc}") from None
        if values["max-file"] < 1:
            raise LogDriverError("max-file cannot be less than 1")
        path = log_file(container)
        os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
        return {"module": "dockyard_log_local", "path": HERE,
                "options": {"path": path, "max_size": values["max-size"], "max_file": values["max-file"],
                            "compress": values["compress"] and values["max-file"] > 1}}

    @hookimpl
    def logging_read(self, container, config, cursor, tail):
        if cursor is None and tail >= 0:
            return logfile.read_tail(log_file(container), tail, parse, fmt.last_frames)
        return logfile.read_rotated(log_file(container), cursor, parse)
