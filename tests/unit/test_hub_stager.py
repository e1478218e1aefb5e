"""A hub's stager keeps none of the hub's fds but its own socket: not another
start's report pipe (whose daemon would wait for this stager to exit before it
heard its start had ended), not other containers' streams."""

import json
import subprocess
import sys
import textwrap


def test_a_stager_holds_only_its_socket_and_stdio(tmp_path):
    sdir = tmp_path / "ctr"
    sdir.mkdir()
    (sdir / "state.json").write_text(json.dumps({"log_path": str(tmp_path / "ctr.log")}))
    script = textwrap.dedent(f"""
        import json, os, select, socket
        from dockyard.driverkit.shim import hub
        from dockyard.driverkit.shim._spawning import StartError

        def spawn(state, stdio):  # what the stager holds when the driver's spawn runs
            raise StartError(json.dumps([os.readlink(f"/proc/self/fd/{{fd}}") for fd in os.listdir("/proc/self/fd")
                                         if os.path.exists(f"/proc/self/fd/{{fd}}")]))

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        h = hub.Hub({str(tmp_path)!r}, theirs, spawn=spawn, finish=None)
        other_r, other_w = os.pipe()  # another start's report pipe, open in the hub
        report_r, report_w = os.pipe()
        hubs = [os.readlink(f"/proc/self/fd/{{fd}}") for fd in (other_w, report_w, theirs.fileno(), h.wake_r)]
        h._start({str(sdir)!r}, report_w)
        (fd,) = [fd for fd in h.stagers.values()]
        select.select([fd], [], [], 10)
        h.owner[fd](fd, select.POLLIN)
        print(json.dumps({{"report": os.read(report_r, 65536).decode(), "hubs": hubs}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    held = json.loads(json.loads(got["report"])["error"])
    assert not set(got["hubs"]) & set(held), held  # not one of the hub's pipes and sockets
    assert len([link for link in held if link.startswith("socket:")]) == 1  # its own to the hub
