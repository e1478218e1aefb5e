"""Docker's JSON progress messages, as ``docker pull``/``docker push`` render them.

    {"status": "Pulling from library/busybox", "id": "latest"}
    {"status": "Downloading", "progressDetail": {"current": 1048576, "total": 2226035},
     "progress": "[=======================>                           ]  1.049MB/2.226MB",
     "id": "4b35f584bb4f"}
    {"error": "...", "errorDetail": {"message": "..."}}

A :class:`Progress` is handed to pulls and pushes; it is called from worker threads,
so it only formats and forwards each message to ``sink`` (thread-safe sinks only),
throttling byte counts to a few updates a second per layer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def human_size(n: float) -> str:
    """Docker's ``units.HumanSize``: decimal units, four significant digits."""
    size = float(n)
    i = 0
    while size >= 1000 and i < len(_UNITS) - 1:
        size /= 1000
        i += 1
    return f"{size:.4g}{_UNITS[i]}"


def bar(current: int, total: int | None, width: int = 50) -> str:
    """``[=====>      ]  1.2MB/3.4MB`` (Docker's JSONProgress.String)."""
    if total and total > 0:
        filled = min(int(current / total * 100) // 2, width)
        box = "[" + "=" * filled + ">" + " " * max(width - filled, 0) + "] "
        return f"{box}{human_size(current):>8}/{human_size(total)}"
    return f"{human_size(current):>8}"


def short_id(digest: str) -> str:
    """The 12 hex digits Docker shows for a layer."""
    return digest.split(":", 1)[-1][:12]


def error_message(message: str) -> dict[str, Any]:
    return {"error": message, "errorDetail": {"message": message}}


class Progress:
    """Formats progress for ``sink(dict)``; ``interval`` seconds between byte-count
    updates of one id (the first and the last are always sent)."""

    def __init__(self, sink: Callable[[dict[str, Any]], object] | None = None, interval: float = 0.1) -> None:
        self.sink = sink or (lambda msg: None)
        self.interval = interval
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def status(self, text: str, id: str | None = None) -> None:
        msg = {"status": text}
        if id is not None:
            msg["id"] = id
        self.sink(msg)

    def layer(self, id: str, text: str, current: int | None = None, total: int | None = None,
              force: bool = False) -> None:
        if current is None:
            self.sink({"status": text, "progressDetail": {}, "id": id})
            return
        now = time.monotonic()
        with self._lock:
            last = self._last.get(id)
            if not force and last is not None and now - last < self.interval and current != total:
                return
            self._last[id] = now
        detail: dict[str, int | None] = {"current": current, "total": total} if total else {"current": current}
        self.sink({"status": text, "progressDetail": detail, "progress": bar(current, total), "id": id})

    def aux(self, data: object) -> None:
        self.sink({"progressDetail": {}, "aux": data})

    def error(self, message: str) -> None:
        self.sink(error_message(message))
