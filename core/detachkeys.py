"""Detach keys: the key sequence (``ctrl-p,ctrl-q`` by default) that ends an attach
to a terminal while the container, or the exec'd process, keeps running.

Both ends of the API look for it, as Docker's do: the daemon in the client's stdin
of a hijacked ``attach`` or ``exec start`` with a terminal (the ``detachKeys`` query
parameter, or the exec's ``DetachKeys``), and the CLI in its own terminal's input
(``--detach-keys``, else ``detachKeys`` in Docker's ``config.json``), so either
one can end the session and the other follows.  Stdlib only: the CLI imports it.
"""

#: ``ctrl-p,ctrl-q``: Docker's default
DEFAULT = b"\x10\x11"

#: key names Docker accepts (moby/term's ``ASCII``); each is its index as a byte
_CTRL = ["ctrl-@"] + [f"ctrl-{c}" for c in "abcdefghijklmnopqrstuvwxyz"] + ["ctrl-[", "ctrl-\\", "ctrl-]",
                                                                             "ctrl-^", "ctrl-_"]


def parse(text):
    """``"ctrl-p,ctrl-q"`` -> ``b"\\x10\\x11"`` (moby/term ``ToBytes``): comma-separated
    single characters, ``ctrl-X`` names and ``DEL``.  An empty text is the
    default; a key Docker does not know is a ValueError naming it."""
    if not text:
        return DEFAULT
    out = bytearray()
    for key in text.split(","):
        raw = key.encode()
        if len(raw) == 1:
            out += raw
        elif key in _CTRL:
            out.append(_CTRL.index(key))
        elif key == "DEL":
            out.append(127)
        else:
            raise ValueError(f"unknown character: '{key}'")
    return bytes(out)


class Scanner:
    """Watches a byte stream for the key sequence.

    :meth:`feed` returns what may go on to the process now: a prefix of the
    sequence is held back until the next bytes complete it (then nothing of it
    is sent and :attr:`detached` is set) or break it (then it is passed through,
    as Docker's escape proxy does).  Bytes after the sequence are dropped."""

    def __init__(self, keys=DEFAULT):
        self.keys = bytes(keys)
        self.held = b""
        self.detached = False

    def feed(self, data):
        if self.detached:
            return b""
        out = bytearray()
        for i in range(len(data)):
            candidate = self.held + data[i:i + 1]
            while candidate and not self.keys.startswith(candidate):
                out += candidate[:1]  # cannot start the sequence: it goes through
                candidate = candidate[1:]
            if candidate == self.keys:
                self.held, self.detached = b"", True
                return bytes(out)
            self.held = candidate
        return bytes(out)
