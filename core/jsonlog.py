"""Reading a container's stream file, Docker's ``json-file`` format (one JSON
object per line: ``{"log", "stream", "time"}``), as the shim writes it; shared
by ``docker attach`` and the builder's RUN output.  (``docker logs`` reads
through the container's log driver: ``dockyard.engine.logs``.)"""

import json
import os


def read_entries(path, offset):
    """Return ``(entries, new_offset)``: the complete log lines after ``offset``.

    A file shorter than ``offset`` was truncated or rotated by the shim
    (``max-size``): it is read again from its start."""
    try:
        with open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size < offset:
                offset = 0
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    try:  # one JSON array, one call (a line holds no raw newline); a torn line: line by line
        entries = json.loads(b"[" + data[:end].replace(b"\n", b",") + b"]")
        if all(type(e) is dict for e in entries):
            return entries, offset + end + 1
    except ValueError:
        pass
    entries = []
    for line in data[: end + 1].splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue  # a torn line: skip rather than break the stream
    return entries, offset + end + 1
