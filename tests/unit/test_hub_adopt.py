"""A hub that adopts a container the last hub had recorded already (it died
between writing ``exit.json`` and removing the kept status) leaves nothing of
it behind: the status file goes and the keeper is told to drop its copies."""

import json
import subprocess
import sys
import textwrap


def test_adopting_a_recorded_container_removes_its_kept_status(tmp_path):
    home, sdir = tmp_path / "home", tmp_path / "ctr"
    (home / "reaped").mkdir(parents=True)
    sdir.mkdir()
    (sdir / "exit.json").write_text(json.dumps({"exit_code": 3}))
    (sdir / "running.json").write_text(json.dumps({"child_pid": 4242, "child_start": 777, "pid": 4243}))
    (home / "reaped" / "4242-777").write_text(json.dumps({"status": 3 << 8}))
    (home / "reaped" / "4242-778").write_text(json.dumps({"status": 0}))  # pid reused: someone else's
    script = textwrap.dedent(f"""
        import json, socket
        from dockyard.driverkit.shim import hub
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        h = hub.Hub({str(home)!r}, theirs, spawn=None, finish=None)
        r, w = __import__("os").pipe()
        h._adopt({{"op": "held", "sdir": {str(sdir)!r}, "streams": ["stdout"]}}, [r])
        print(ours.recv(4096).decode())
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True)
    assert json.loads(out.stdout) == {"op": "drop", "sdir": str(sdir)}
    assert sorted(p.name for p in (home / "reaped").iterdir()) == ["4242-778"]
