"""Seccomp filters in a real kernel: compile a profile, load it in a forked child, try system calls.

The filter is only ever loaded in a child made with ``os.fork()`` (which leaves
with ``os._exit``) or in a separate interpreter, never in the pytest process.
Calls the filter should refuse are made with arguments that would fail harmlessly
if it did not (a missing mount point, a zero-length io_uring), so a broken filter
fails the test without touching the machine.
"""

import errno
import json
import os
import signal
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from dockyard.engine.bundle.seccomp import linux_seccomp

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="loading a filter without no_new_privs needs root")

native = pytest.importorskip("dockyard.drivers.exec.native.seccomp")
from dockyard.drivers.exec.native import linux  # after the skip: it loads libc

NATIVE_DIR = Path(native.__file__).resolve().parent
BUSYBOX = "/bin/busybox"
DEFAULT_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]
# x86_64 numbers; the other architectures' where they differ
NR = {
    "x86_64": {"mount": 165, "umount2": 166, "unshare": 272, "keyctl": 250, "clone3": 435, "getpid": 39,
               "io_uring_setup": 425, "bpf": 321, "personality": 135, "kexec_file_load": 320,
               "userfaultfd": 323, "mkdir": 83},
    "aarch64": {"mount": 40, "umount2": 39, "unshare": 97, "keyctl": 219, "clone3": 435, "getpid": 172,
                "io_uring_setup": 425, "bpf": 280, "personality": 92, "kexec_file_load": 294,
                "userfaultfd": 282, "mkdir": None},
}.get(os.uname().machine)


def default_bpf(caps=DEFAULT_CAPS):
    return native.compile_bpf(linux_seccomp(None, caps))


def syscall(name_or_number, *args):
    """Raw syscall -> "ok" or the errno name; arguments as unsigned longs (None: NULL)."""
    import _ctypes

    nr = NR[name_or_number] if isinstance(name_or_number, str) else name_or_number
    args = [a if a is None or isinstance(a, bytes) else linux._CULong(a) for a in args]
    if linux._libc.syscall(linux._CLong(nr), *args) >= 0:
        return "ok"
    return errno.errorcode[_ctypes.get_errno()]


def in_child(bpf, probe):
    """Fork; the child loads ``bpf`` then returns ``probe()`` (JSON) through a pipe."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 0
        try:
            os.close(r)
            native.load(bpf)
            out = {"result": probe()}
        except BaseException as exc:  # noqa: BLE001  (reported to the parent)
            out, code = {"error": repr(exc), "errno": getattr(exc, "errno", None),
                         "trace": traceback.format_exc()}, 1
        try:
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        data = fh.read()
    _, status = os.waitpid(pid, 0)
    return json.loads(data) if data else {"status": status}


def exec_in_child(bpf, argv):
    """Fork; the child loads ``bpf`` then execs ``argv``; returns (exit status, output)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.dup2(w, 1)
            os.dup2(w, 2)
            native.load(bpf)
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        out = fh.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out


needs_arch = pytest.mark.skipif(NR is None, reason="system call numbers known for x86_64 and aarch64 only")


@needs_arch
def test_default_profile_blocks_what_reaches_the_host_and_allows_the_rest(tmp_path):
    missing = str(tmp_path / "missing").encode()

    def probe():
        fd = os.open(tmp_path / "f", os.O_CREAT | os.O_WRONLY, 0o600)  # openat
        written = os.write(fd, b"hello")
        os.close(fd)
        return {
            "mount": syscall("mount", b"none", missing, b"tmpfs", 0, None),
            "umount2": syscall("umount2", missing, 0),
            "unshare": syscall("unshare", 0x00020000),  # CLONE_NEWNS
            "unshare_net": syscall("unshare", 0x40000000),
            "keyctl": syscall("keyctl", 0, 0xFFFFFFFD, 0),  # KEYCTL_GET_KEYRING_ID, session keyring
            "clone3": syscall("clone3", None, 0),
            "io_uring_setup": syscall("io_uring_setup", 0, None),
            "bpf": syscall("bpf", 0, None, 0),
            "kexec_file_load": syscall("kexec_file_load", 0xFFFFFFFF, 0xFFFFFFFF, 0, None, 0),
            "userfaultfd": syscall("userfaultfd", 0),
            "personality_query": syscall("personality", 0xFFFFFFFF),
            "personality_no_aslr": syscall("personality", 0x0040000),  # ADDR_NO_RANDOMIZE
            "getpid": syscall("getpid"),
            "write": written,
            "pid_matches": os.getpid() == int(open("/proc/self/stat").read().split()[0]),
            "seccomp": next(ln.split()[1] for ln in open("/proc/self/status") if ln.startswith("Seccomp:")),
        }

    got = in_child(default_bpf(), probe)
    assert "result" in got, got
    res = got["result"]
    for name in ("mount", "umount2", "unshare", "unshare_net", "keyctl", "io_uring_setup", "bpf",
                 "kexec_file_load", "userfaultfd", "personality_no_aslr"):
        assert res[name] == "EPERM", (name, res)
    assert res["clone3"] == "ENOSYS"  # so that glibc falls back to clone
    assert res["getpid"] == "ok" and res["personality_query"] == "ok"
    assert res["write"] == 5 and res["pid_matches"] and res["seccomp"] == "2"
    assert (tmp_path / "f").read_bytes() == b"hello"


@needs_arch
def test_system_calls_newer_than_the_profile_get_enosys():
    got = in_child(default_bpf(), lambda: syscall(1000))
    assert got == {"result": "ENOSYS"}, got  # the default action would say EPERM


@needs_arch
def test_sys_admin_profile_lets_unshare_through():
    def probe():
        return {"unshare": syscall("unshare", 0x00020000), "keyctl": syscall("keyctl", 0, 0xFFFFFFFD, 0)}

    got = in_child(default_bpf(DEFAULT_CAPS + ["CAP_SYS_ADMIN"]), probe)
    assert got["result"] == {"unshare": "ok", "keyctl": "EPERM"}, got  # the child's own mount namespace


def test_python_threads_processes_and_sockets_work_under_the_default_profile(tmp_path):
    script = (
        "import os, socket, subprocess, threading, tempfile, json\n"
        "t = threading.Thread(target=lambda: None); t.start(); t.join()\n"  # clone3 -> ENOSYS -> clone
        "out = subprocess.run(['/bin/busybox', 'echo', 'sub'], capture_output=True, text=True).stdout\n"
        "a, b = socket.socketpair(); a.sendall(b'x'); assert b.recv(1) == b'x'\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_STREAM); s.bind(('127.0.0.1', 0)); s.listen()\n"
        "try:\n"
        "    socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM); vsock = 'allowed'\n"
        "except OSError as e:\n"
        "    vsock = e.errno\n"
        f"with tempfile.TemporaryDirectory(dir={str(tmp_path)!r}) as d:\n"
        "    os.mkdir(os.path.join(d, 'x')); os.rename(os.path.join(d, 'x'), os.path.join(d, 'y'))\n"
        "    os.chmod(os.path.join(d, 'y'), 0o700); listed = os.listdir(d)\n"
        "print(json.dumps({'sub': out.strip(), 'listed': listed, 'vsock': vsock}))\n"
    )
    code, out = exec_in_child(default_bpf(), [sys.executable, "-c", script])
    assert code == 0, out
    assert json.loads(out.splitlines()[-1]) == {"sub": "sub", "listed": ["y"], "vsock": errno.EPERM}


@pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="busybox-static is not installed")
def test_filter_survives_execve_of_busybox(tmp_path):
    missing = tmp_path / "missing"
    cmd = (f"echo started; mkdir {tmp_path}/made && echo mkdir-ok; "
           f"mount -t tmpfs none {missing} 2>&1; echo mount=$?; "
           "grep '^Seccomp:' /proc/self/status; unshare -m true 2>&1; echo unshare=$?")
    code, out = exec_in_child(default_bpf(), [BUSYBOX, "sh", "-c", cmd])
    assert code == 0, out
    assert "started" in out and "mkdir-ok" in out and (tmp_path / "made").is_dir()
    assert "mount=0" not in out and "unshare=0" not in out, out
    assert "Seccomp:\t2" in out, out


def test_custom_profile_blocks_mkdir_with_its_errno(tmp_path):
    text = json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES}]})
    bpf = native.compile_bpf(linux_seccomp(text, DEFAULT_CAPS))

    def probe():
        try:
            os.mkdir(tmp_path / "nope")
            made = "made"
        except OSError as exc:
            made = errno.errorcode[exc.errno]
        os.rmdir(tmp_path / "keep")  # anything else is allowed
        return {"mkdir": made, "raw": syscall("mkdir", str(tmp_path / "raw").encode(), 0o755)
                if NR and NR["mkdir"] else "EACCES"}

    (tmp_path / "keep").mkdir()
    got = in_child(bpf, probe)
    assert got.get("result") == {"mkdir": "EACCES", "raw": "EACCES"}, got
    assert not (tmp_path / "nope").exists() and not (tmp_path / "keep").exists()


def test_kill_process_action_kills_with_sigsys():
    text = json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"}]})
    got = in_child(native.compile_bpf(linux_seccomp(text, [])), os.getppid)
    assert os.WIFSIGNALED(got["status"]) and os.WTERMSIG(got["status"]) == signal.SIGSYS, got


@pytest.mark.parametrize("garbage", [bytes(16), b"\xff" * 64, b"\x06\x00\x00\x00\x00\x00\xff"])
def test_load_of_garbage_raises_einval(garbage):
    got = in_child(garbage, lambda: "loaded")
    assert got.get("errno") == errno.EINVAL and "OSError" in got["error"], got


@pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="busybox-static is not installed")
def test_standalone_load_in_the_container_init_interpreter(tmp_path):
    """As the native driver's init runs it: ``python -E -S``, this directory and the
    shim kit's first (as the zygote has them), no ctypes."""
    import dockyard.driverkit.shim

    kit = os.path.dirname(os.path.abspath(dockyard.driverkit.shim.__file__))
    bpf_file = tmp_path / "filter.bpf"
    bpf_file.write_bytes(default_bpf())
    code = (
        "import sys, os\n"
        f"sys.path[0:0] = [{str(NATIVE_DIR)!r}, {kit!r}]\n"
        "import seccomp\n"
        f"seccomp.load(open({str(bpf_file)!r}, 'rb').read())\n"
        "assert 'ctypes' not in sys.modules\n"
        f"os.execv({BUSYBOX!r}, ['busybox', 'sh', '-c', 'grep ^Seccomp: /proc/self/status'])\n"
    )
    out = subprocess.run([sys.executable, "-E", "-S", "-c", code], capture_output=True, text=True, timeout=30,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "Seccomp:\t2"
