"""JSON for the shim without ``import json`` (stdlib only, importable standalone
from the shim kit's directory, like :mod:`supervisor`).

``json`` drags in ``re`` and ``enum`` (~12 ms at every shim start); its C half,
``_json``, scans and escapes as fast and costs nothing.  The shim and the exec
drivers' spawn modules read the state files the daemon writes with
:func:`loads`/:func:`load_file`, and write theirs, and the report, with
:func:`dumps`/:func:`write_json`: dicts, lists, strings, numbers, booleans and
None are all they hold.
"""

import os

import _json

TYPE_CHECKING = False  # annotations only: typing is not imported at run time (start-up cost)
if TYPE_CHECKING:
    from typing import Any


class _Ctx:  # what _json's scanner wants of a json.JSONDecoder
    strict, object_hook, object_pairs_hook = True, None, None
    parse_float, parse_int, parse_constant = float, int, float


_scan = _json.make_scanner(_Ctx())  # type: ignore[arg-type]  # duck-typed, as _Ctx says


def loads(text: str | bytes) -> "Any":
    """One JSON value, with nothing but white space around it (else ValueError)."""
    if isinstance(text, bytes):
        text = text.decode()
    text = text.strip()
    try:
        obj, end = _scan(text, 0)
    except StopIteration:
        end = -1
    if end != len(text):
        raise ValueError("invalid JSON")
    return obj


def dumps(obj: "Any") -> str:
    """JSON for the few shapes the shim writes (dict, list, str, int, bool, None)."""
    if isinstance(obj, str):
        return _json.encode_basestring(obj)
    if obj is None or isinstance(obj, bool):
        return {None: "null", True: "true", False: "false"}[obj]
    if isinstance(obj, (int, float)):
        return repr(obj)
    if isinstance(obj, dict):
        return "{" + ",".join(f"{dumps(str(k))}:{dumps(v)}" for k, v in obj.items()) + "}"
    return "[" + ",".join(dumps(v) for v in obj) + "]"


def read_file(path: str) -> bytes:
    """The bytes of ``path``, through ``os`` calls: a shim's first ``open()``
    alone costs it ~0.1 MB of private memory (the io stack's objects, copied on
    write from the zygote), so the shim kit reads and writes without it."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks: list[bytes] = []
        while True:
            data = os.read(fd, 65536)
            if not data:
                return b"".join(chunks)
            chunks.append(data)
    finally:
        os.close(fd)


def load_file(path: str) -> "Any":
    return loads(read_file(path))


def write_json(path: str, data: object) -> None:
    """Write ``path`` atomically (a temporary file renamed over it): a reader sees
    the old record or the new one, never half of one."""
    tmp = path + ".tmp"
    raw = dumps(data).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        while raw:
            raw = raw[os.write(fd, raw):]
    finally:
        os.close(fd)
    os.replace(tmp, path)
