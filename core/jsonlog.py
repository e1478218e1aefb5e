"""Reading Docker's ``json-file`` container logs (one JSON object per line:
``{"log", "stream", "time"}``), as they are written; shared by the API's log
streams and the builder's RUN output."""

import json


def read_entries(path, offset):
    """Return ``(entries, new_offset)``: the complete log lines after ``offset``."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    entries = []
    for line in data[: end + 1].splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue  # a torn line: skip rather than break the stream
    return entries, offset + end + 1
