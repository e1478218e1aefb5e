"""Our terminal while a container (or an exec'd process) runs attached: raw mode
and resizes, stdin copied to the daemon with the detach keys looked for, and
signals forwarded.  As the docker CLI does, a terminal session needs a terminal:
``-it`` with a stdin that is not one is refused before anything is created.
"""

import os
import sys

PROXIED_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")
NOT_A_TTY = "the input device is not a TTY"


def stdin_is_tty():
    try:
        return os.isatty(sys.stdin.fileno())
    except (AttributeError, OSError, ValueError):
        return False


def check_tty(stdin, tty):
    """Docker's ``CheckTty``: the error line for attaching stdin to a terminal
    session when our stdin is a pipe or a file, else None."""
    return NOT_A_TTY if stdin and tty and not stdin_is_tty() else None


def docker_config_path():
    base = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(base, "config.json")


def detach_keys(flag=None):
    """The detach keys to use: ``--detach-keys``, else ``detachKeys`` in Docker's
    ``config.json`` (the file whose credentials ``login`` keeps), else None (the
    daemon's default, ctrl-p,ctrl-q).  A bad sequence is a ValueError, as the
    docker CLI refuses it before attaching."""
    text = flag
    if not text:
        import json
        try:
            with open(docker_config_path(), encoding="utf-8") as fh:
                text = json.load(fh).get("detachKeys")
        except (OSError, ValueError, AttributeError):
            text = None
    if not text:
        return None
    from dockyard import detachkeys
    try:
        detachkeys.parse(text)
    except ValueError as exc:
        raise ValueError(f"invalid detach keys ({text}): {exc}") from None
    return text


class StdinPump:
    """Copies our stdin to the attachment in a thread.  In a session with a
    terminal (``tty``) it looks for the detach keys (``keys``, None for
    ctrl-p,ctrl-q), as the docker CLI does: once they are typed nothing more is
    sent, :attr:`detached` is set and the connection is shut, so the output loop
    ends while the container runs on."""

    def __init__(self, attachment, tty, keys=None):
        from dockyard import detachkeys
        self.attachment = attachment
        self.scanner = detachkeys.Scanner(detachkeys.parse(keys or "")) if tty else None
        self.detached = False

    def start(self):
        import threading
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self):
        fd = sys.stdin.fileno()
        try:
            while data := os.read(fd, 65536):
                if self.scanner is not None:
                    data = self.scanner.feed(data)
                if data:
                    self.attachment.send(data)
                if self.scanner is not None and self.scanner.detached:
                    self.detached = True
                    self._hang_up()
                    return
        except OSError:
            pass
        self.attachment.close_stdin()

    def _hang_up(self):
        import socket
        try:
            self.attachment.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class Terminal:
    """Raw mode for our terminal while an interactive tty container runs; follows resizes."""

    def __init__(self, client, cid, active, resize=None):
        self.client, self.cid = client, cid
        self.active = active and stdin_is_tty()
        self.saved = None
        self._resize = resize or client.resize  # (id, rows, columns)

    def __enter__(self):
        if self.active:
            import signal
            import termios
            import tty
            self.saved = termios.tcgetattr(sys.stdin.fileno())
            tty.setraw(sys.stdin.fileno(), termios.TCSANOW)  # not tty's TCSAFLUSH: keep what was typed ahead
            self.old_winch = signal.signal(signal.SIGWINCH, lambda *_: self.resize())
        return self

    def resize(self):
        if not self.active:
            return
        from dockyard.client import ClientError
        try:
            size = os.get_terminal_size(sys.stdout.fileno())
            self._resize(self.cid, size.lines, size.columns)
        except (OSError, ClientError):
            pass

    def __exit__(self, *exc):
        if self.saved is not None:
            import signal
            import termios
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self.saved)
            signal.signal(signal.SIGWINCH, self.old_winch)
            self.saved = None


class SignalProxy:
    """Forward the signals we receive to the container (docker's --sig-proxy).

    Handlers are set with ``_signal``: ``signal`` makes enums of every signal
    number, handler and mask at import, on every attached ``run``, for what is
    needed only when a signal comes (its name)."""

    def __init__(self, client, cid, enabled):
        self.client, self.cid, self.enabled = client, cid, enabled
        self.saved = {}

    def _forward(self, signum, _frame):
        import signal
        from dockyard.client import ClientError
        try:
            self.client.kill(self.cid, signal.Signals(signum).name)
        except ClientError:
            pass

    def __enter__(self):
        if self.enabled:
            import _signal
            for name in PROXIED_SIGNALS:
                self.saved[name] = _signal.signal(getattr(_signal, name), self._forward)
        return self

    def __exit__(self, *exc):
        import _signal
        for name, handler in self.saved.items():
            _signal.signal(getattr(_signal, name), handler)
