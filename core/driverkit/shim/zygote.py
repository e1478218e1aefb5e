"""A fork server for shims: one warm interpreter per daemon forks a shim per process.

Starting a fresh ``python -E -S`` for every container costs ~10 ms and ~4 MB of
private memory per shim.  The zygote imports the supervisor and the driver's
spawn module once; every shim is then a ``fork`` of it (a millisecond) that
shares the zygote's pages copy-on-write with all its siblings.

Run as ``python -E -S -c "...; zygote.main(sys.argv, spawn, finish)" FD`` where FD
is a ``SOCK_SEQPACKET`` socket to the daemon.  Each message is a state
directory, with the report pipe's write end passed as ``SCM_RIGHTS``; the zygote
forks a child that becomes an ordinary shim (its own session, stdio on
/dev/null and ``STATE_DIR/shim.log``) and runs :func:`supervisor.run`.  The zygote
exits when the daemon closes its end; the shims it made live on, like any shim.
Stdlib only.
"""

import gc
import os
import socket

import _signal as signal

TYPE_CHECKING = False  # annotations only: typing is not imported at run time (start-up cost)
if TYPE_CHECKING:
    from typing import NoReturn

    from . import supervisor
    from .supervisor import Finish, Spawn
else:
    import supervisor


def main(argv: list[str], spawn: "Spawn", finish: "Finish | None" = None) -> "NoReturn":
    sock = socket.socket(fileno=int(argv[1]))
    gc.collect()
    gc.freeze()  # what is here now is shared with every shim: keep the GC off it
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps our children
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 4096, 1)
        except InterruptedError:
            continue
        except OSError:
            os._exit(1)
        if not msg:
            os._exit(0)  # the daemon went away
        if not fds:
            continue
        try:
            pid = os.fork()
        except OSError:
            os.close(fds[0])  # the daemon reads EOF without a report: start failed
            continue
        if pid == 0:
            sock.close()
            _become_shim(os.fsdecode(msg), fds[0], spawn, finish)
        os.close(fds[0])


def _become_shim(state_dir: str, report_fd: int, spawn: "Spawn", finish: "Finish | None") -> "NoReturn":
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # we wait for our own child
        os.setsid()
        null = os.open("/dev/null", os.O_RDWR)
        log = os.open(os.path.join(state_dir, "shim.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        for target, fd in ((0, null), (1, null), (2, log)):
            os.dup2(fd, target)
        os.close(null)
        os.close(log)
        os.chdir("/")
        # so a wedged start can be killed (os calls, not open(): see _minijson.read_file)
        fd = os.open(os.path.join(state_dir, "shim.pid"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        os.write(fd, f"{os.getpid()} {supervisor.proc_start(os.getpid())}\n".encode())
        os.close(fd)
        code = supervisor.run(state_dir, report_fd, spawn, finish)
    except BaseException:  # into shim.log: os._exit below would swallow it
        import sys
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        raise
    finally:
        os._exit(code)
