"""Detach keys (dockyard.detachkeys), shared by the daemon's hijacked streams and
the CLI's terminal: Docker's key names, and a scanner that holds back a prefix of
the sequence until it is completed (detach) or broken (passed through)."""

import json

import pytest

from dockyard import detachkeys
from dockyard.cli import terminal


def test_key_names_as_docker_reads_them():
    assert detachkeys.parse("") == b"\x10\x11" == detachkeys.DEFAULT
    assert detachkeys.parse("ctrl-p,ctrl-q") == b"\x10\x11"
    assert detachkeys.parse("ctrl-@,ctrl-a,ctrl-z,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_") == bytes(
        [0, 1, 26, 27, 28, 29, 30, 31])
    assert detachkeys.parse("a,b,DEL") == b"ab\x7f"
    for bad in ("ctrl-bogus", "ctrl-p,,ctrl-q", "é", "ab"):
        with pytest.raises(ValueError, match="unknown character"):
            detachkeys.parse(bad)


def feed_all(scanner, chunks):
    return b"".join(scanner.feed(c) for c in chunks)


def test_the_sequence_detaches_and_what_comes_before_it_goes_through():
    s = detachkeys.Scanner()
    assert s.feed(b"ls -l\r\x10\x11echo never") == b"ls -l\r"
    assert s.detached and s.feed(b"more") == b""


def test_a_sequence_split_across_reads_is_held_then_detaches():
    s = detachkeys.Scanner()
    assert s.feed(b"abc\x10") == b"abc" and not s.detached
    assert s.feed(b"\x11") == b"" and s.detached


def test_a_broken_prefix_is_passed_through_in_order():
    s = detachkeys.Scanner()
    assert feed_all(s, [b"x\x10", b"y"]) == b"x\x10y" and not s.detached
    s = detachkeys.Scanner(detachkeys.parse("a,b,c"))
    assert feed_all(s, [b"a", b"b", b"x"]) == b"abx" and not s.detached
    # a prefix that fails can itself start the sequence again
    s = detachkeys.Scanner(detachkeys.parse("a,b"))
    assert feed_all(s, [b"a", b"a", b"b"]) == b"a" and s.detached
    s = detachkeys.Scanner()
    assert s.feed(b"\x10\x10\x11") == b"\x10" and s.detached


def test_cli_keys_come_from_the_flag_then_dockers_config(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert terminal.detach_keys(None) is None
    (tmp_path / "config.json").write_text(json.dumps({"detachKeys": "ctrl-x,x", "auths": {}}))
    assert terminal.detach_keys(None) == "ctrl-x,x"
    assert terminal.detach_keys("ctrl-a,q") == "ctrl-a,q"
    with pytest.raises(ValueError, match=r"invalid detach keys \(ctrl-nope\)"):
        terminal.detach_keys("ctrl-nope")
    (tmp_path / "config.json").write_text("not json")
    assert terminal.detach_keys(None) is None


def test_cli_refuses_a_terminal_session_without_a_terminal(monkeypatch):
    monkeypatch.setattr(terminal, "stdin_is_tty", lambda: False)
    assert terminal.check_tty(stdin=True, tty=True) == "the input device is not a TTY"
    assert terminal.check_tty(stdin=False, tty=True) is None
    assert terminal.check_tty(stdin=True, tty=False) is None
    monkeypatch.setattr(terminal, "stdin_is_tty", lambda: True)
    assert terminal.check_tty(stdin=True, tty=True) is None


class FakeAttachment:
    def __init__(self):
        self.sent, self.half_closed = [], False
        import socket
        self.sock, self.peer = socket.socketpair()

    def send(self, data):
        self.sent.append(data)

    def close_stdin(self):
        self.half_closed = True


def test_stdin_pump_detaches_and_hangs_up(monkeypatch):
    import os
    import sys
    import time

    r, w = os.pipe()
    monkeypatch.setattr(sys, "stdin", os.fdopen(r, "rb", buffering=0))
    att = FakeAttachment()
    pump = terminal.StdinPump(att, tty=True).start()
    os.write(w, b"echo hi\r\x10")
    time.sleep(0.2)
    os.write(w, b"\x11after")
    deadline = time.monotonic() + 5
    while not pump.detached and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pump.detached and b"".join(att.sent) == b"echo hi\r" and not att.half_closed
    assert att.peer.recv(10) == b""  # our side shut: the output loop sees the end
    os.close(w)


def test_stdin_pump_without_a_terminal_sends_everything_then_half_closes(monkeypatch):
    import os
    import sys
    import time

    r, w = os.pipe()
    monkeypatch.setattr(sys, "stdin", os.fdopen(r, "rb", buffering=0))
    att = FakeAttachment()
    pump = terminal.StdinPump(att, tty=False).start()
    os.write(w, b"a\x10\x11b")
    os.close(w)
    deadline = time.monotonic() + 5
    while not att.half_closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert b"".join(att.sent) == b"a\x10\x11b" and att.half_closed and not pump.detached
