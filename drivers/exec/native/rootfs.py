"""The container's file system, set up by its init in its new mount namespace.

:func:`setup` follows the OCI runtime spec: make the root a private (or slave)
mount, mount ``mounts`` in order under the root, create the default and the
configured device nodes, ``pivot_root`` into it, then apply sysctls, masked and
read-only paths and the read-only root.  Stdlib only (runs in the shim's child).
"""

import os
import stat

import linux as L
from supervisor import StartError

NSE = L.MS_NOSUID | L.MS_NODEV | L.MS_NOEXEC
# (name, type, major, minor): the devices every container gets (OCI "default devices")
DEFAULT_DEVICES = (("null", "c", 1, 3), ("zero", "c", 1, 5), ("full", "c", 1, 7),
                   ("random", "c", 1, 8), ("urandom", "c", 1, 9), ("tty", "c", 5, 0))
DEV_LINKS = (("ptmx", "pts/ptmx"), ("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
             ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"), ("core", "/proc/kcore"))
ROOT_PROPAGATION = {"": L.MS_SLAVE | L.MS_REC, "rslave": L.MS_SLAVE | L.MS_REC, "slave": L.MS_SLAVE,
                    "rprivate": L.MS_PRIVATE | L.MS_REC, "private": L.MS_PRIVATE,
                    "rshared": L.MS_SHARED | L.MS_REC, "shared": L.MS_SHARED,
                    "runbindable": L.MS_UNBINDABLE | L.MS_REC, "unbindable": L.MS_UNBINDABLE}


def setup(cfg, bundle, private, cgroup_mounts):
    """Build the root file system and pivot into it.

    ``private``: the namespace types new to (or joined by) the container.
    ``cgroup_mounts``: ``[{"name": "memory", "options": "memory", "path": host dir
    of the container's cgroup in that hierarchy, "version": 1|2}]`` from the driver.
    """
    lx = cfg.get("linux") or {}
    root = os.path.realpath(os.path.join(bundle, cfg["root"]["path"]))
    propagation = ROOT_PROPAGATION.get(lx.get("rootfsPropagation") or "", L.MS_SLAVE | L.MS_REC)
    L.mount(None, "/", None, propagation)
    parent_mount_private(root)
    L.mount(root, root, None, L.MS_BIND | L.MS_REC)
    dev_made = False
    for m in cfg.get("mounts") or ():
        mount_one(root, bundle, m, private, cgroup_mounts)
        dev_made = dev_made or m.get("destination") == "/dev"
    if dev_made:
        for name, kind, major, minor in DEFAULT_DEVICES:
            make_device(root, {"path": "/dev/" + name, "type": kind, "major": major, "minor": minor,
                               "fileMode": 0o666})
    for device in lx.get("devices") or ():
        make_device(root, device)
    if dev_made:
        dev = os.path.join(root, "dev")
        for name, target in DEV_LINKS:
            link = os.path.join(dev, name)
            if name == "ptmx" and os.path.lexists(link):
                os.unlink(link)  # the terminals are the container's own devpts instance
            if not os.path.lexists(link):
                os.symlink(target, link)
    try:  # a missing working directory is made, as runc does
        os.makedirs(L.secure_join(root, cfg["process"].get("cwd") or "/"), 0o755, exist_ok=True)
    except OSError:
        pass  # reported by the chdir before execve
    os.chdir(root)
    L.pivot_root(".", ".")
    L.umount2(".", L.MNT_DETACH)
    os.chdir("/")
    if propagation & L.MS_SHARED:  # the new root shares as asked (runc applies it after the pivot too)
        L.mount(None, "/", None, propagation)
    for key, value in (lx.get("sysctl") or {}).items():
        write_sysctl(key, value)
    for path in lx.get("maskedPaths") or ():
        mask(path)
    for path in lx.get("readonlyPaths") or ():
        if os.path.lexists(path) and not os.path.islink(path):
            L.mount(path, path, None, L.MS_BIND | L.MS_REC)
            L.remount_bind(path, L.MS_RDONLY | NSE)
    if cfg["root"].get("readonly"):
        L.remount_bind("/", L.MS_RDONLY)


def parent_mount_private(root):
    """Make the mount that holds ``root`` private if it is shared (``rshared``
    binds make every mount shared): pivot_root refuses a new root whose parent
    mount is shared (EINVAL), and the root's bind must not propagate to the host
    (runc's ``rootfsParentMountPrivate``)."""
    best, shared = "", False
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = fields[4].replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
            inside = root == point or root.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best):  # later mounts shadow earlier ones at the same point
                best, shared = point, any(o.startswith("shared:") for o in fields[6:fields.index("-")])
    if best and shared:
        L.mount(None, best, None, L.MS_PRIVATE)


def _fail(m, exc):
    what = f"{m.get('type') or 'bind'} {m.get('source') or ''}".rstrip()
    raise StartError(f"mounting {what} on {m.get('destination')}: {exc.strerror or exc}") from None


def mount_one(root, bundle, m, private, cgroup_mounts):
    dest = m.get("destination") or ""
    flags, prop, data = L.parse_mount_options(m.get("options"))
    fstype, source = m.get("type"), m.get("source")
    try:
        if fstype == "bind" or flags & L.MS_BIND:
            source = os.path.join(bundle, source or "")
            if not os.path.exists(source):
                raise StartError(f"mounts: bind source {source} of {dest} does not exist")
            L.mount_at(root, dest, source, None, flags | L.MS_BIND, None, prop, dir_=os.path.isdir(source))
        elif fstype == "sysfs" and "network" not in private:
            # sysfs shows its mounter's network namespace: show the host's, as a bind
            L.mount_at(root, dest, "/sys", None, L.MS_BIND | L.MS_REC | (flags & L.MS_RDONLY), None, prop)
        elif fstype == "cgroup":
            mount_cgroups(root, dest, flags, "cgroup" in private, cgroup_mounts)
        else:
            L.mount_at(root, dest, source or fstype, fstype, flags, data, prop)
    except OSError as exc:
        _fail(m, exc)


def mount_cgroups(root, dest, flags, own_ns, cgroup_mounts):
    """``/sys/fs/cgroup``: the container's own cgroups (a fresh mount inside its
    cgroup namespace, else a bind of its directory), read-only when asked."""
    ro = flags & L.MS_RDONLY
    if any(c["version"] == 2 for c in cgroup_mounts):
        c = cgroup_mounts[0]
        if own_ns:
            L.mount_at(root, dest, "cgroup2", "cgroup2", NSE | ro)
        else:
            L.mount_at(root, dest, c["path"], None, L.MS_BIND | L.MS_REC | NSE | ro)
        return
    base = L.mount_at(root, dest, "tmpfs", "tmpfs", NSE, "mode=755")
    for c in cgroup_mounts:
        where = os.path.join(dest, c["name"])
        try:
            if not own_ns:
                raise PermissionError(1, "no cgroup namespace")
            L.mount_at(root, where, "cgroup", "cgroup", NSE | ro, c["options"])
        except PermissionError:  # no cgroup namespace, or a user namespace may not mount v1
            L.mount_at(root, where, c["path"], None, L.MS_BIND | NSE | ro)
        for alias in c["options"].split(","):
            if alias != c["name"] and not os.path.lexists(os.path.join(base, alias)):
                os.symlink(c["name"], os.path.join(base, alias))
    if ro:
        L.mount(None, base, None, L.MS_REMOUNT | L.MS_RDONLY | NSE, "mode=755")


def make_device(root, device):
    path = device.get("path") or ""
    if not path.startswith("/dev/"):
        raise StartError(f"linux.devices: path {path!r} must be under /dev")
    kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}.get(device.get("type"))
    if kind is None:
        raise StartError(f"linux.devices: {path}: unknown type {device.get('type')!r}")
    parent, name = os.path.split(path.rstrip("/"))
    target = os.path.join(L.secure_join(root, parent), name)  # the node itself, never a link's target
    os.makedirs(os.path.dirname(target), 0o755, exist_ok=True)
    if os.path.lexists(target):
        os.unlink(target)
    mode = device.get("fileMode")
    mode = 0o666 if mode is None else mode
    try:
        try:
            os.mknod(target, (mode & 0o7777) | kind, os.makedev(device.get("major") or 0, device.get("minor") or 0))
        except PermissionError:  # a user namespace may not mknod: bind the host's node, as runc does
            L.mkfile(target, 0o600)
            L.mount(path, target, None, L.MS_BIND)
            return
        os.chmod(target, mode & 0o7777)  # mknod applies the umask
        if device.get("uid") is not None or device.get("gid") is not None:
            os.chown(target, device.get("uid") or 0, device.get("gid") or 0)
    except OSError as exc:
        raise StartError(f"linux.devices: creating {path}: {exc.strerror}") from None


def write_sysctl(key, value):
    path = "/proc/sys/" + key.replace(".", "/")
    try:
        with open(path, "w") as fh:
            fh.write(str(value))
    except OSError as exc:
        raise StartError(f"linux.sysctl: setting {key}={value}: {exc.strerror}") from None


def mask(path):
    if os.path.islink(path) or not os.path.lexists(path):
        return
    if os.path.isdir(path):
        L.mount("tmpfs", path, "tmpfs", L.MS_RDONLY)
    else:
        L.mount("/dev/null", path, None, L.MS_BIND)


def terminal_console(slave_name):
    """Bind the terminal onto ``/dev/console`` (where a /dev tmpfs is ours)."""
    if not os.path.isdir("/dev") or os.path.islink("/dev/console"):
        return
    if not os.path.lexists("/dev/console"):
        try:
            L.mkfile("/dev/console", 0o600)
        except OSError:
            return  # a read-only /dev: no console, as with runc
    L.mount(slave_name, "/dev/console", None, L.MS_BIND)
