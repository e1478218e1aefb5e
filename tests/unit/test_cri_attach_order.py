"""A CRI attach answers the stdin it carries: the container's reply to it is
sent, however fast the container writes it (the follow offset is taken before
stdin can flow, as the Docker attach router does)."""

from __future__ import annotations

import json
import threading
from types import SimpleNamespace

from dockyard.cri.streaming import execattach


class _Out:
    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        pass


class _In:
    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)

    def read(self, size: int = -1) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""


class _Containers:
    """A container running ``sh`` whose answer lands in its stream file the moment
    stdin reaches it, and which ends when its stdin does (StdinOnce)."""

    def __init__(self, log_path: str) -> None:
        self.log_path, self.running = log_path, True
        self.config = {"Tty": False, "OpenStdin": True, "StdinOnce": True}

    def get(self, cid: str):
        state = SimpleNamespace(running=self.running, started_at="t0")
        return SimpleNamespace(state=state, config=self.config, log_path=self.log_path)

    def attached(self, cid: str) -> None:
        pass

    def attach_stdin(self, cid: str) -> "_Shell":
        return _Shell(self)


class _Shell:
    """The container's stdin: what it reads it answers in the stream file, at once."""

    def __init__(self, containers: _Containers) -> None:
        self.containers, self.data = containers, b""

    def sendall(self, data: bytes) -> None:
        self.data += data
        with open(self.containers.log_path, "a") as fh:
            line = data.decode().split("echo ", 1)[1]
            fh.write(json.dumps({"log": line, "stream": "stdout", "time": "t"}) + "\n")

    def close(self) -> None:  # stdin ended: so does the shell
        self.containers.running = False


def test_attach_sends_the_answer_to_its_stdin_even_when_it_comes_at_once(tmp_path, monkeypatch):
    log_path = tmp_path / "stream.log"
    log_path.write_text(json.dumps({"log": "before\n", "stream": "stdout", "time": "t"}) + "\n")
    containers = _Containers(str(log_path))

    def at_once(target, *args):  # the pump runs to its end before the attach goes on
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        thread.join(5)
        return thread

    monkeypatch.setattr(execattach, "_thread", at_once)
    monkeypatch.setattr(execattach, "POLL", 0.001)
    stdout, error = _Out(), _Out()
    conn = SimpleNamespace(closed=threading.Event(), close=lambda grace=None: None)
    session = SimpleNamespace(conn=conn, stdin=_In(b"echo hello-attach\n"), stdout=stdout, stderr=None,
                              resize=None, gone=lambda: False, finish=lambda status: error.write(
                                  json.dumps(status).encode()))
    execattach.run_attach(containers, SimpleNamespace(container_id="c1"), session)
    assert stdout.data == b"hello-attach\n"
    assert json.loads(error.data)["status"] == "Success"
