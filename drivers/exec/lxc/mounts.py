"""The mount part of the translation: OCI ``mounts``, ``linux.devices``,
``maskedPaths``, ``readonlyPaths`` and ``root.readonly`` -> LXC (daemon side).

Every OCI mount becomes an ``lxc.mount.entry`` (fstab syntax, targets relative
to the rootfs, symlinks in them resolved inside the rootfs first, as securejoin
does), in order, with ``create=dir|file`` so mount points are made as runc makes
them.  LXC's own ways are used where they are the same: its devpts (with a
terminal, which LXC must allocate there) and its cgroup mounts (in a cgroup
namespace).  Where LXC's way differs the bundle's is kept: the default device
nodes are bind mounts of the host's (``lxc.autodev`` would add a tmpfs and a
fake boot_id), /dev/ptmx is a link to pts/ptmx made by an ``lxc.hook.mount``
(LXC binds it), and the root is remounted read-only by that hook, after the
mounts.
"""

import os
import stat

from dockyard.errors import ExecError
from dockyard.driverkit.shim import rootpath

NOT_LXC = "not supported by the lxc exec driver"
# the devpts options LXC mounts /dev/pts with (lxc.pty.max); "newinstance" is implied
DEVPTS_OPTIONS = {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5", "rw"}
# mount options that mean something else to LXC than to mount(2)
LXC_ONLY_OPTIONS = ("create=", "optional", "relative")
PTY_MAX = 1024
HOOK_ERROR = "hook-error"  # what a failing hook step says, next to LXC's log
DEFAULT_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


def refuse(where, field, why):
    return ExecError(f"{where}: {field}: {NOT_LXC}: {why}")


def sh(text):
    return "'" + text.replace("'", "'\\''") + "'"


def step(command, what, sdir):
    """A mount hook step that leaves its reason in the hook-error file when it fails."""
    err = sh(os.path.join(sdir, HOOK_ERROR))
    return f"{{ {command}; }} 2> {err} || {{ echo {sh(what + ':')} $(cat {err}) > {err}; exit 1; }}"


def _esc(text):
    """fstab escaping (getmntent decodes \\ooo)."""
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in text)


def _entry(p, source, target, fstype, options):
    p.add("lxc.mount.entry", f"{_esc(source)} {_esc(target)} {fstype} {','.join(options) or 'defaults'} 0 0")


def _target(root, dest, earlier):
    """The entry target for ``dest``: resolved in the rootfs unless an earlier
    mount covers it (LXC then resolves it, refusing symlinks)."""
    norm = os.path.normpath(dest)
    if any(norm == d or norm.startswith(d.rstrip("/") + "/") for d in earlier):
        return norm.lstrip("/")
    return "/".join(rootpath.resolve(root, norm))


def _options(where, i, options):
    out = []
    for opt in options or ():
        if not isinstance(opt, str) or any(c.isspace() for c in opt) or "," in opt:
            raise ExecError(f"{where}: mounts[{i}]: bad option {opt!r}")
        if opt.startswith(LXC_ONLY_OPTIONS):
            raise refuse(where, f"mounts[{i}]", f"option {opt!r} means something else to LXC")
        out.append(opt)
    return out


def translate(where, p, cfg, bundle, root, types, where_to):
    mounts = cfg.get("mounts") or ()
    # LXC's autodev would mount a /dev tmpfs of its own under the bundle's and add
    # a fake boot_id (/dev/.lxc-boot-id): the default nodes are bind mounts instead
    p.add("lxc.autodev", 0)
    dev_made = ptmx_link = devpts = False
    earlier = []
    for i, m in enumerate(mounts):
        dest = os.path.normpath(m["destination"])
        kind, opts = m.get("type") or "", _options(where, i, m.get("options"))
        dev_made = dev_made or dest == "/dev"
        if kind == "devpts" and dest == "/dev/pts" and p.terminal:
            # LXC allocates the console in a devpts of its own making, on /dev/pts
            if set(opts) - DEVPTS_OPTIONS:
                raise refuse(where, f"mounts[{i}]", f"devpts options {opts} with a terminal: LXC mounts /dev/pts "
                             "with nosuid,noexec,newinstance,ptmxmode=0666,mode=0620,gid=5")
            p.add("lxc.pty.max", PTY_MAX)
            devpts = True
        elif kind == "cgroup":
            if types.get("cgroup") is None:
                raise refuse(where, f"mounts[{i}]", "a cgroup mount without a cgroup namespace (LXC would show "
                             "the cgroups' whole host path)")
            if dest != "/sys/fs/cgroup":
                raise refuse(where, f"mounts[{i}]", f"cgroup mounted on {dest} (LXC mounts them on /sys/fs/cgroup)")
            p.add("lxc.mount.auto", "cgroup:ro:force" if "ro" in opts else "cgroup:rw:force")
        elif kind == "bind" or "bind" in opts or "rbind" in opts:
            source = os.path.join(bundle, m.get("source") or "")
            if not ("bind" in opts or "rbind" in opts):
                opts.insert(0, "bind")
            create = "create=dir" if os.path.isdir(source) else "create=file"
            _entry(p, os.path.normpath(source), _target(root, dest, earlier), "none", opts + [create])
        else:
            if not kind or any(c.isspace() for c in kind):
                raise ExecError(f"{where}: mounts[{i}]: bad type {kind!r}")
            source = m.get("source") or kind
            _entry(p, source, _target(root, dest, earlier), kind, opts + ["create=dir"])
            if kind == "devpts" and dest == "/dev/pts":
                # liblxc 5 unmounts /dev/pts once before it decides (lxc.pty.max unset)
                # not to mount a devpts of its own: a second instance on top is what goes
                _entry(p, source, "dev/pts", kind, opts)
                ptmx_link = True
        earlier.append(dest)
    if p.terminal and not devpts:
        raise refuse(where, "process.terminal", "LXC allocates the terminal in the container's devpts, and the "
                     "bundle mounts none at /dev/pts")
    lx = cfg.get("linux") or {}
    devices = lx.get("devices") or ()
    # one mount per node: liblxc cannot mount onto a node it cannot open (/dev/tty)
    last = {os.path.normpath(str(d.get("path"))): i for i, d in enumerate(devices) if isinstance(d, dict)}
    if dev_made and (ptmx_link or devpts):
        last.pop("/dev/ptmx", None)  # the container's own devpts's replaces it, as with runc
    if dev_made:  # the runtime spec's default devices, the host's nodes bound
        for name in DEFAULT_DEVICES:
            if "/dev/" + name not in last:
                _entry(p, "/dev/" + name, "dev/" + name, "none", ["bind", "create=file"])
    for i, device in enumerate(devices):
        if not isinstance(device, dict):
            raise ExecError(f"{where}: linux.devices[{i}] must be an object")
        if last.get(os.path.normpath(str(device.get("path")))) == i:
            _device(where, i, p, device, root, earlier)
    for path in lx.get("maskedPaths") or ():
        kind = _kind(root, path, earlier)
        if kind == "dir":
            _entry(p, "tmpfs", _target(root, path, earlier), "tmpfs", ["ro", "optional"])
        elif kind == "file":
            _entry(p, "/dev/null", _target(root, path, earlier), "none", ["bind", "optional"])
    for path in lx.get("readonlyPaths") or ():
        if _kind(root, path, earlier) in ("dir", "file"):
            rel = _target(root, path, earlier)
            _entry(p, rel, rel, "none", ["rbind", "ro", "nosuid", "nodev", "noexec", "relative", "optional"])
    if dev_made and ptmx_link:  # the terminals are the container's own devpts instance
        p.mount_steps.append('/bin/ln -sfn pts/ptmx "$LXC_ROOTFS_MOUNT/dev/ptmx"')
    if cfg["root"].get("readonly"):
        p.mount_steps.append(step('/bin/mount -o remount,bind,ro "$LXC_ROOTFS_MOUNT"',
                                   "root.readonly: remounting the root read-only", where_to["dir"]))


def _kind(root, path, earlier):
    """"dir", "file", "link" or None: what ``path`` is in the container, judged
    from the host's /proc and /sys (same kernel) or the rootfs."""
    norm = os.path.normpath(path)
    if norm.startswith(("/proc/", "/sys/")):
        host = norm
    else:
        host = os.path.join(root, _target(root, norm, earlier))
    if os.path.islink(host):
        return "link"
    if os.path.isdir(host):
        return "dir"
    return "file" if os.path.lexists(host) else None


def host_node(kind, major, minor, hint):
    """A node of the host's /dev for device ``major:minor`` (``hint`` first, then
    udev's /dev/char|block links, then a walk of /dev), or None."""
    want = os.makedev(major, minor)
    is_kind = stat.S_ISCHR if kind == "char" else stat.S_ISBLK

    def match(path):
        try:
            st = os.stat(path)
        except OSError:
            return False
        return is_kind(st.st_mode) and st.st_rdev == want

    for cand in (hint, f"/dev/{kind}/{major}:{minor}"):
        if match(cand):
            return os.path.realpath(cand)
    for dirpath, dirs, files in os.walk("/dev"):
        dirs[:] = [d for d in dirs if os.path.join(dirpath, d) not in ("/dev/pts", "/dev/shm", "/dev/mqueue")]
        for name in sorted(files):
            cand = os.path.join(dirpath, name)
            if not os.path.islink(cand) and match(cand):
                return cand
    return None


def _device(where, i, p, device, root, earlier):
    field = f"linux.devices[{i}]"
    path = device.get("path") or ""
    if not path.startswith("/dev/"):
        raise ExecError(f"{where}: {field}: path {path!r} must be under /dev")
    kind = {"c": "char", "u": "char", "b": "block"}.get(device.get("type"))
    if kind is None:
        raise refuse(where, field, f"type {device.get('type')!r} (devices are bind mounts of the host's nodes)")
    number = f"{device.get('major') or 0}:{device.get('minor') or 0}"
    node = host_node(kind, device.get("major") or 0, device.get("minor") or 0, path)
    if node is None:
        raise refuse(where, field, f"{path}: the host has no {kind} device {number} to bind "
                     "(LXC cannot make device nodes of its own)")
    st = os.stat(node)
    want = {"fileMode": st.st_mode & 0o7777, "uid": st.st_uid, "gid": st.st_gid}
    for key, have in want.items():
        if device.get(key) is not None and (device[key] & 0o7777 if key == "fileMode" else device[key]) != have:
            raise refuse(where, f"{field}.{key}", f"{device[key]!r} differs from the host's {node} ({have!r}); "
                         "devices are bind mounts of the host's nodes")
    _entry(p, os.path.realpath(node), _target(root, path, earlier), "none", ["bind", "create=file"])
