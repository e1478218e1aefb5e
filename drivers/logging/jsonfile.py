"""The ``json-file`` log driver: Docker's default, one JSON object per line in
``<container dir>/<id>-json.log`` (``LogPath``).

That file is the container's stream file, which the shim kit writes for every
container (``dockyard.driverkit.shim``): this driver names no writer module,
only the file's rotation (``max-size``, ``max-file``, ``compress``) and the
``attrs`` its entries carry (``labels``, ``env``, ``tag``...), and reads the
files back, rotated and compressed ones included, for ``docker logs``.
"""

import json

from dockyard.driverkit import logopts
from dockyard.driverkit.shim import logfile
from dockyard.hookspecs import hookimpl
from dockyard.hookspecs.logging import LogDriverError

OPTIONS = ("max-file", "max-size", "compress", *logopts.ATTRIBUTE_OPTS)


def rotation(config):
    """Check json-file's rotation options as dockerd does at start; return the
    shim's rotation (``dockyard.hookspecs.logging.Rotation``)."""
    try:
        size = logfile.parse_size(config["max-size"]) if config.get("max-size") else -1
        files = logopts.parse_int(config["max-file"]) if config.get("max-file") else 1
        compress = logopts.parse_bool(config["compress"]) if config.get("compress") else False
    except ValueError as exc:
        raise LogDriverError(str(exc)) from None
    if files < 1:
        raise LogDriverError("max-file cannot be less than 1")
    if compress and (files < 2 or size == -1):
        raise LogDriverError("compress cannot be true when max-file is less than 2 or max-size is not set")
    return {"max_size": size, "max_file": files if size != -1 else 1, "compress": compress}


def parse(data):
    """``logfile.Parse`` of json-file: the complete lines at the start of ``data``.

    The lines are parsed as one JSON array (a line holds no raw newline), one
    call instead of one per line; a torn or blank line makes that fail, and
    the lines are then parsed one by one, the bad ones skipped."""
    end = data.rfind(b"\n")
    if end < 0:
        return [], 0
    try:
        entries = json.loads(b"[" + data[:end].replace(b"\n", b",") + b"]")
        if all(type(e) is dict for e in entries):
            return entries, end + 1
    except ValueError:
        pass
    entries = []
    for line in data[: end + 1].splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a torn line: skip rather than break the stream
        if isinstance(entry, dict):
            entries.append(entry)
    return entries, end + 1


class JsonFileDriver:
    @hookimpl
    def logging_supported(self, home, options):
        return None

    @hookimpl
    def logging_init(self, home, options):
        return None

    @hookimpl
    def logging_validate(self, config):
        logopts.check_names(config, OPTIONS, "unknown log opt '{}' for json-file log driver")

    @hookimpl
    def logging_writer(self, container, config):
        attrs = logopts.extra_attributes(config, container)
        if config.get("tag"):
            attrs["tag"] = logopts.tag(config, container)
        return {"module": None, "stream": {"rotation": rotation(config), "attrs": attrs}}

    @hookimpl
    def logging_read(self, container, config, cursor, tail):
        if cursor is None and tail >= 0:
            return logfile.read_tail(container["log_path"], tail, parse, logfile.last_lines)
        return logfile.read_rotated(container["log_path"], cursor, parse)

    @hookimpl
    def logging_log_path(self, container, config):
        return container["log_path"]
