"""What an exec driver's ``spawn`` gets from the shim and gives back (stdlib only,
importable standalone from the shim kit's directory, like :mod:`supervisor`).

The shim calls ``spawn(state, stdio)`` with the state the driver wrote and a
:class:`Stdio`: the ends of the pipes that become the process's standard
streams.  ``spawn`` starts the process with the child's ends (in the child:
:meth:`Stdio.dup_into_child`) and returns a :class:`Child`, or raises
:class:`StartError`, whose message and exit code the daemon reports as Docker
does (127: no such program, 126: not executable).  With ``terminal``, ``spawn``
makes the pseudo-terminal inside the container and returns its master.

The driver's ``finish(state, exit_code)`` is called after the process has been
reaped and its output logged; what it returns is added to the exit record.
"""

import fcntl
import os
import struct
import termios

TYPE_CHECKING = False  # annotations only: typing is not imported at run time (start-up cost)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    #: ``spawn(state, stdio)``: start the process; ``finish(state, exit code)``: extra exit record
    Spawn = Callable[[dict[str, Any], "Stdio"], "Child"]
    Finish = Callable[[dict[str, Any], int], "dict[str, Any] | None"]


class StartError(Exception):
    """The process could not be started; ``exit_code`` 127/126 as in Docker."""

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Child:
    """What ``spawn`` returns: the started process as the shim sees it.

    ``pid``: the shim's child, which it waits for.  ``init_pid``: the container
    process that the daemon is told about and signals, when it is not ``pid``
    itself (a launcher such as ``lxc-start -F`` stays the shim's child while the
    container's init runs elsewhere).  ``own_pidns``: the process is pid 1 of a
    pid namespace of its own, so every holder of its output pipes dies with it.
    ``master``: the pseudo-terminal master when ``terminal`` was asked for.
    """

    def __init__(self, pid: int, master: int | None = None, own_pidns: bool = False,
                 init_pid: int | None = None) -> None:
        self.pid, self.master, self.own_pidns = pid, master, own_pidns
        self.init_pid = pid if init_pid is None else init_pid


class Stdio:
    """The process's standard streams: the child's ends (``child``: fds for 0, 1,
    2, ``None`` meaning /dev/null) and the shim's (``stdin_w``, ``outputs``)."""

    def __init__(self, stdin_mode: str | None, terminal: bool) -> None:
        self.stdin_mode = stdin_mode
        self.terminal = terminal
        #: the process outlives whoever spawns it (the hub's stagers): no parent-death signal
        self.orphan = False
        self.stdin_w: int | None = None
        self.outputs: dict[int, str] = {}  # fd -> stream name
        self.child: tuple[int | None, int | None, int | None] = (None, None, None)
        if terminal:
            return  # the pty comes from spawn (made inside the container)
        stdin_r = None
        if stdin_mode:
            stdin_r, self.stdin_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        self.outputs = {out_r: "stdout", err_r: "stderr"}
        self.child = (stdin_r, out_w, err_w)

    def parent_fds(self) -> list[int]:
        return [fd for fd in [self.stdin_w, *self.outputs] if fd is not None]

    def close_child_ends(self) -> None:
        for fd in self.child:
            if fd is not None:
                os.close(fd)
        self.child = (None, None, None)

    def use_terminal(self, master: int) -> None:
        self.outputs = {master: "stdout"}
        if self.stdin_mode:
            self.stdin_w = master

    def dup_into_child(self) -> None:
        """In the child: make the child ends fds 0, 1 and 2."""
        stdin_r, out_w, err_w = self.child
        if stdin_r is None:
            stdin_r = os.open("/dev/null", os.O_RDONLY)
        for target, fd in ((0, stdin_r), (1, out_w), (2, err_w)):
            if fd is not None:
                os.dup2(fd, target)
        for fd in {stdin_r, out_w, err_w, *self.parent_fds()}:
            if fd is not None and fd > 2:
                os.close(fd)


def set_winsize(fd: int, rows: int | str, cols: int | str) -> None:
    """Set the size of the terminal ``fd`` (``TIOCSWINSZ``)."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", int(rows), int(cols), 0, 0))
