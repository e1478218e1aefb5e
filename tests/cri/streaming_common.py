"""What the streaming tests share: a stand-in for the engine's container service
that runs real host processes, a small SPDY client, a TCP listener for port
forwarding."""

import fcntl
import json
import os
import pty
import secrets
import socket
import struct
import subprocess
import termios
import threading
import types
import uuid
from pathlib import Path

from dockyard.cri.streaming import spdy
from dockyard.errors import Conflict, ContainerNotFound, NotFound


# --- a stand-in for the engine's container service: real processes ----------------------
class FakeContainers:
    """Runs each exec (and each "container") as a host process and writes its
    output as json-file entries, as the shim does; feeds stdin through a socket."""

    def __init__(self, root: Path) -> None:
        self.root, self.execs, self.recs, self.procs = root, {}, {}, {}
        self.console_sizes, self.resizes = [], []

    def _log(self, path, stream, data):
        line = json.dumps({"log": data.decode(errors="replace"), "stream": stream, "time": "2026-01-01T00:00:00Z"})
        with open(path, "a") as fh:
            fh.write(line + "\n")

    def _spawn(self, cmd, tty, log_path, stdin_once=True, size=None):
        if tty:
            master, slave = pty.openpty()
            if size:  # as the exec driver makes the console: the size before the process starts
                fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
            proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
            os.close(slave)
            sources, feed = [("stdout", master)], master
        else:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            sources, feed = [("stdout", proc.stdout.fileno()), ("stderr", proc.stderr.fileno())], proc.stdin
        readers = [threading.Thread(target=self._read, args=(fd, s, log_path), daemon=True) for s, fd in sources]
        for r in readers:
            r.start()
        return types.SimpleNamespace(proc=proc, readers=readers, feed=feed, tty=tty, stdin_once=stdin_once)

    def _read(self, fd, stream, log_path):
        while True:
            try:
                data = os.read(fd, 4096)
            except OSError:
                return
            if not data:
                return
            self._log(log_path, stream, data)

    def _stdin_socket(self, run):
        ours, theirs = socket.socketpair()

        def pump():
            while data := ours.recv(4096):
                if run.tty:
                    os.write(run.feed, data)
                else:
                    run.feed.write(data)
                    run.feed.flush()
            if not run.tty and run.stdin_once:
                run.feed.close()
        threading.Thread(target=pump, daemon=True).start()
        return theirs

    # exec instances
    def exec_create(self, ref, body):
        rec = self.get(ref)
        if not rec.state.running:
            raise Conflict(f"Container {ref} is not running")
        eid = secrets.token_hex(8)
        self.execs[eid] = {"body": body, "ContainerID": rec.id}
        return eid

    def exec_start(self, eid, tty=None, console_size=None):
        ex = self.execs[eid]
        self.console_sizes.append(console_size)
        inst = {"ContainerID": ex["ContainerID"], "_log": str(self.root / f"exec-{eid}.log"),
                "_done": threading.Event(), "ExitCode": None}
        open(inst["_log"], "w").close()
        run = self._spawn(ex["body"]["Cmd"], tty, inst["_log"], size=console_size)
        ex.update(run=run, inst=inst)

        def wait():
            code = run.proc.wait()
            for r in run.readers:
                r.join(5)
            inst["ExitCode"] = code
            inst["_done"].set()
        threading.Thread(target=wait, daemon=True).start()
        return inst

    def exec_attach_stdin(self, cid, eid):
        return self._stdin_socket(self.execs[eid]["run"])

    def exec_resize(self, eid, height, width):
        self.resizes.append((height, width))

    def exec_finished(self, inst):
        os.unlink(inst["_log"])

    # containers
    def run(self, cmd, stdin_once=True):
        cid = uuid.uuid4().hex * 2
        log_path = str(self.root / f"{cid}-json.log")
        open(log_path, "w").close()
        run = self._spawn(cmd, False, log_path, stdin_once)
        state = types.SimpleNamespace(running=True, started_at="now")
        self.recs[cid] = types.SimpleNamespace(id=cid, state=state, log_path=log_path,
                                               config={"Tty": False, "OpenStdin": True, "StdinOnce": stdin_once})
        self.procs[cid] = run

        def wait():
            run.proc.wait()
            for r in run.readers:
                r.join(5)
            state.running = False
        threading.Thread(target=wait, daemon=True).start()
        return cid

    def resolve(self, ref):
        if ref not in self.recs:
            raise ContainerNotFound(f"No such container: {ref}")
        return ref

    def get(self, cid):
        return self.recs[self.resolve(cid)]

    def attached(self, cid):
        pass

    def attach_stdin(self, cid):
        return self._stdin_socket(self.procs[cid])

    def resize(self, ref, height, width):
        self.resizes.append((height, width))

    def stop_all(self):
        for run in [*self.procs.values(), *(ex["run"] for ex in self.execs.values() if "run" in ex)]:
            if run.proc.poll() is None:
                run.proc.kill()
                run.proc.wait()


class FakePods:
    def __init__(self):
        self.netns = {}

    def sandbox(self, pod_id):
        if pod_id not in self.netns:
            raise NotFound(f"pod sandbox {pod_id} not found")
        return types.SimpleNamespace(id=pod_id)

    def netns_path(self, pod_id):
        self.sandbox(pod_id)
        return self.netns[pod_id]


# --- a small SPDY client ------------------------------------------------------------------
class SpdyClient:
    """Upgrades to SPDY, opens streams, collects what comes back."""

    def __init__(self, url, protocols=("v4.channel.k8s.io",), upgrade="SPDY/3.1"):
        rest = url.split("://", 1)[1]
        hostport, path = rest.split("/", 1)
        host, port = hostport.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=20)
        proto = "".join(f"X-Stream-Protocol-Version: {p}\r\n" for p in protocols)
        self.sock.sendall(f"POST /{path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: Upgrade\r\n"
                          f"Upgrade: {upgrade}\r\n{proto}Content-Length: 0\r\n\r\n".encode())
        self.rfile = self.sock.makefile("rb")
        self.status_line = self.rfile.readline().decode()
        self.headers = {}
        while (line := self.rfile.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            key = name.strip().lower()
            self.headers[key] = ", ".join(filter(None, [self.headers.get(key), value.strip()]))
        self.status = int(self.status_line.split()[1])
        self.codec, self.next_id = spdy.HeaderCodec(), 1
        self.data, self.fin, self.replied, self.reset = {}, set(), set(), set()
        self.goaway = threading.Event()
        self.cond = threading.Condition()
        if self.status == 101:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        reader = spdy.FrameReader(self.rfile)
        try:
            while (frame := reader.read()) is not None:
                kind, code, flags, payload = frame
                with self.cond:
                    if kind == "data":
                        self.data[code] = self.data.get(code, b"") + payload
                        if flags & spdy.FLAG_FIN:
                            self.fin.add(code)
                    elif code == spdy.SYN_REPLY:
                        self.replied.add(struct.unpack_from(">I", payload)[0])
                    elif code == spdy.RST_STREAM:
                        self.reset.add(struct.unpack_from(">I", payload)[0])
                    elif code == spdy.GOAWAY:
                        self.goaway.set()
                    self.cond.notify_all()
        except OSError:
            pass
        self.goaway.set()

    def open(self, **headers):
        sid, self.next_id = self.next_id, self.next_id + 2
        block = self.codec.encode({k: [str(v)] for k, v in headers.items()})
        self.sock.sendall(spdy.control_frame(spdy.SYN_STREAM, struct.pack(">IIH", sid, 0, 0) + block))
        self.wait(lambda: sid in self.replied or sid in self.reset)
        return sid

    def send(self, sid, data, fin=False):
        self.sock.sendall(spdy.data_frame(sid, data, spdy.FLAG_FIN if fin else 0))

    def wait(self, cond, timeout=20):
        with self.cond:
            assert self.cond.wait_for(cond, timeout), "timed out"

    def read_all(self, sid, timeout=20):
        self.wait(lambda: sid in self.fin or sid in self.reset, timeout)
        return self.data.get(sid, b"")

    def close(self):
        self.sock.close()


def listener_script(port):
    return ("import socket\n"
            "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            f"s.bind(('127.0.0.1', {port})); s.listen(); print('ready', flush=True)\n"
            "while True:\n"
            "    c, _ = s.accept(); data = b''\n"
            "    while not data.endswith(b'\\n'):\n"
            "        data += c.recv(100)\n"
            "    c.sendall(b'pod says ' + data.upper()); c.close()\n")
