"""A thin wrapper around ``dmsetup`` and ``losetup`` (run as subprocesses).

Every failure raises :class:`DmError` carrying the device and the tool's own
message; the driver turns it into a ``StorageError`` at its hook boundary.

udev: without a running udev (containers, CI, the test VM) libdevmapper would
wait forever for udev to create ``/dev/mapper/*``; then ``DM_DISABLE_UDEV=1``
makes it create the nodes itself and ``--noudevsync`` skips the wait.
"""

import os
import shutil
import subprocess
import time

SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")
SYS_BLOCK = "/sys/block"
TIMEOUT = 120


class DmError(Exception):
    """A ``dmsetup``/``losetup``/``mkfs`` call failed: ``device``, ``message``."""

    def __init__(self, action, device, message):
        super().__init__(f"{action} {device}: {message}")
        self.action, self.device, self.message = action, device, message


def which(tool):
    """Path of ``tool``, looking in the sbin directories too (PATH may lack them)."""
    found = shutil.which(tool)
    if found:
        return found
    for d in SBIN:
        path = os.path.join(d, tool)
        if os.access(path, os.X_OK):
            return path
    return None


def udev_running():
    return os.path.exists("/run/udev/control")


def _env():
    env = dict(os.environ)
    if not udev_running():
        env["DM_DISABLE_UDEV"] = "1"
    env["LC_ALL"] = "C"
    return env


def _clean(text):
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and ln.strip() != "Command failed."]
    return "; ".join(lines) or "failed"


def run(argv, action, device, timeout=TIMEOUT):
    """Run a tool; return its stdout; :class:`DmError` on failure."""
    tool = which(argv[0])
    if tool is None:
        raise DmError(action, device, f"{argv[0]} not found")
    try:
        res = subprocess.run([tool, *argv[1:]], capture_output=True, text=True, env=_env(), timeout=timeout,
                             stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise DmError(action, device, f"{argv[0]} did not finish in {timeout}s") from None
    except OSError as exc:
        raise DmError(action, device, f"{argv[0]}: {exc.strerror}") from exc
    if res.returncode != 0:
        raise DmError(action, device, _clean(res.stderr or res.stdout))
    return res.stdout


def dmsetup(*args, action=None, device=None, sync=False):
    """``dmsetup ARGS``; ``sync`` for commands that create or remove nodes."""
    argv = ["dmsetup"]
    if sync and not udev_running():
        argv.append("--noudevsync")
    return run(argv + list(args), action or f"dmsetup {args[0]}", device or (args[1] if len(args) > 1 else ""))


# --------------------------------------------------------------------------- devices
def devices():
    """``{name: (major, minor)}`` of every active device-mapper device.

    Read from sysfs (``/sys/block/dm-N/dm/name``): no process to start, which
    matters where exec is slow (under emulation); ``dmsetup ls`` without sysfs."""
    try:
        found = {}
        for entry in os.listdir(SYS_BLOCK):
            if entry.startswith("dm-"):
                try:
                    with open(f"{SYS_BLOCK}/{entry}/dm/name") as f:
                        name = f.read().strip()
                    with open(f"{SYS_BLOCK}/{entry}/dev") as f:
                        major, _, minor = f.read().strip().partition(":")
                except OSError:  # being removed meanwhile (ENOENT, or EINVAL while it is deleted)
                    continue
                found[name] = (int(major), int(minor))
        return found
    except FileNotFoundError:
        pass
    out = dmsetup("ls", action="listing devices", device="device-mapper")
    found = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].startswith("("):
            major, _, minor = parts[1].strip("()").partition(":")
            found[parts[0]] = (int(major), int(minor))
    return found


def exists(name):
    return name in devices()


def create(name, table):
    """Activate ``name`` with a one-line ``table``; return ``/dev/mapper/NAME``."""
    dmsetup("create", name, "--table", table, action="activating", device=name, sync=True)
    return f"/dev/mapper/{name}"


def remove(name, retries=20):
    """Deactivate ``name``, retrying while it is busy (a just-unmounted fs may be)."""
    for attempt in range(retries):
        try:
            dmsetup("remove", name, action="deactivating", device=name, sync=True)
            return
        except DmError as exc:
            if "busy" not in exc.message.lower() or attempt == retries - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


def suspend(name):
    dmsetup("suspend", name, action="suspending", device=name, sync=True)


def resume(name):
    dmsetup("resume", name, action="resuming", device=name, sync=True)


def message(pool, text):
    """Send ``text`` (``create_thin 3``, ``create_snap 4 3``, ``delete 3``) to a thin-pool."""
    dmsetup("message", pool, "0", text, action=f"message {text!r} to", device=pool)


def status(name):
    """The status line of ``name`` (``0 2097152 thin-pool 0 11/4096 3/16384 ...``)."""
    return dmsetup("status", name, action="reading the status of", device=name).strip()


def table(name):
    return dmsetup("table", name, action="reading the table of", device=name).strip()


def targets():
    """``{target: version}`` the kernel offers now."""
    out = dmsetup("targets", action="listing targets", device="device-mapper")
    return {p[0]: p[1] for p in (line.split() for line in out.splitlines()) if len(p) >= 2}


def block_size(path):
    """Size in bytes of a block device."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- loop devices
def loop_of(path):
    """The loop devices backed by file ``path`` (from sysfs, else ``losetup -j``)."""
    if os.path.isdir(SYS_BLOCK):
        want, found = os.path.realpath(path), []
        for entry in sorted(os.listdir(SYS_BLOCK)):
            try:
                with open(f"{SYS_BLOCK}/{entry}/loop/backing_file") as f:
                    backing = f.read().rstrip("\n")
            except OSError:  # not a bound loop device, or one being detached (ENODEV)
                continue
            if backing == want:
                found.append(f"/dev/{entry}")
        return found
    out = run(["losetup", "-j", str(path)], "looking up loop devices of", path)
    return [line.split(":", 1)[0] for line in out.splitlines() if line.startswith("/dev/")]


def loop_attach(path):
    """A loop device for ``path``: the one already attached, or a new one."""
    found = loop_of(path)
    if found:
        return found[0]
    return run(["losetup", "--find", "--show", str(path)], "attaching a loop device to", path).strip()


def loop_detach(*paths):
    """Detach every loop device backed by one of ``paths`` (one ``losetup`` call)."""
    devs = [dev for path in paths for dev in loop_of(path)]
    if devs:
        run(["losetup", "-d", *devs], f"detaching {' '.join(devs)} from", " ".join(map(str, paths)))
