"""Who may enter the data root and the exec root: root, as with Docker.

The data root holds what no other host user may read or run: the store
(``dockyard.db`` with its ``-wal`` and ``-shm``: every container's environment,
i.e. its passwords and tokens), the containers' logs, image content, and the
volumes and layers in which a container may have left a setuid-root binary (the
CVE-2021-41091 class: a host user who reaches it runs it and is root).  The exec
root holds the bundles (``config.json``: the environment again) and the shims'
state.  What dockerd does since 20.10.9, and Dockyard does:

* both roots are ``0710``, owned by root: no other user gets past them, whatever
  the modes below.  The exec root's group is the API socket's when the socket
  lives in it (the default ``/run/dockyard/dockyard.sock``;
  ``dockyard.daemon.main`` sets it), so that group reaches the socket and
  nothing else: every entry below is ``0700``;
* below them, the directories the daemon owns are ``0700``, or ``0710`` where
  Docker has them so (``containers/``, each container's directory, the storage
  drivers' homes), and every file that holds container config, state or logs is
  ``0600``.  The files a container reads through a bind mount (``hostname``,
  ``hosts``, ``resolv.conf``) stay ``0644`` inside a ``0710`` directory, as
  Docker's; content blobs are ``0400`` in ``0700`` directories.  ``storage/``
  is ``0700``: with no remapped group the group is root's, and no layer tree is
  then reachable by anyone but root, whatever a driver makes in its home;
* Docker gives the ``0710`` directories the group of ``--userns-remap``'s root,
  whose containers set their mounts up as that user.  The daemon runs no
  user-namespaced container yet (``UsernsMode`` is refused; the native driver's
  own user namespaces, driven directly, check that their rootfs is reachable):
  user namespaces in the daemon will give the roots, ``containers/`` and
  ``storage/`` that group, as Docker does;
* the daemon runs with umask ``0022`` (dockerd's ``setDefaultUmask``) and sets
  the modes that matter explicitly: what it makes *for* a container (mount
  points, copied-up volume content, a volume's ``_data``) keeps the modes the
  container expects.

:func:`make_roots` runs before anything below the roots is written, and
:func:`secure_tree` right after the drivers made their homes, at every start:
on a root made by an older Dockyard (``0755`` directories, ``0644`` files) it
fixes the top directories and the files that hold secrets.  It never walks a
layer or a volume: closing their top directory makes the whole tree
unreachable, however many files it holds.
"""

import logging
import os
import stat

log = logging.getLogger("dockyard.engine.modes")

ROOT_MODE = 0o710  # the data root and the exec root
PRIVATE_DIR = 0o700
SHARED_DIR = 0o710  # Docker's: the group (a remapped root's, one day) may pass, not list
PRIVATE_FILE = 0o600
BLOB_MODE = 0o400
#: directories directly in the data root that Docker keeps at 0710; any other is 0700
DATA_SHARED_DIRS = ("containers",)
#: what a container reads through a bind mount of its directory's file: 0644 as in Docker
CONTAINER_VISIBLE_FILES = ("hostname", "hosts", "resolv.conf")


def narrow(path, mode):
    """Set the mode of ``path`` to ``mode`` if it is there, not a symbolic link,
    and has another mode; ``True`` if it changed."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode) or stat.S_IMODE(st.st_mode) == mode:
        return False
    os.chmod(path, mode)
    return True


def private_dir(path, mode=PRIVATE_DIR):
    """Make the directory ``path`` (missing parents too) with ``mode``, or give an
    existing one that mode: ``os.makedirs`` applies the umask and leaves an
    existing directory as it is."""
    os.makedirs(path, mode, exist_ok=True)
    narrow(path, mode)
    return path


def private_file(path, mode=PRIVATE_FILE):
    """Create the file ``path`` empty with ``mode``, or narrow an existing one to
    it, so that whoever opens it with ``O_CREAT`` later (a shim, SQLite) writes
    into a file nobody else can read from its first byte."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) != mode:
            os.fchmod(fd, mode)
    finally:
        os.close(fd)
    return path


def make_roots(data_root, exec_root):
    """Create (or close) the two roots, and the directories the engine writes
    directly, before anything else is written below them."""
    for root in (data_root, exec_root):
        private_dir(root, ROOT_MODE)
    private_dir(os.path.join(data_root, "containers"), SHARED_DIR)
    private_dir(os.path.join(data_root, "tmp"))
    private_dir(os.path.join(exec_root, "containers"))


def secure_tree(data_root, exec_root):
    """Give what is below the roots its modes: the top directories, the drivers'
    homes, each container's directories and the files that hold secrets.  Cheap:
    one listing per directory named here, never a walk of a layer or volume."""
    changed = _data_root(data_root) + _exec_root(exec_root)
    if changed:  # the homes the drivers just made, or what an older Dockyard left open
        log.debug("gave %d entries of %s and %s their modes", changed, data_root, exec_root)


def _entries(directory):
    try:
        with os.scandir(directory) as it:
            return list(it)
    except FileNotFoundError:
        return []


def _data_root(root):
    changed = 0
    for entry in _entries(root):
        if entry.is_dir(follow_symlinks=False):
            changed += narrow(entry.path, SHARED_DIR if entry.name in DATA_SHARED_DIRS else PRIVATE_DIR)
        elif entry.is_file(follow_symlinks=False):  # dockyard.db, -wal, -shm, locks
            changed += narrow(entry.path, PRIVATE_FILE)
    for home in _entries(os.path.join(root, "storage")):  # layers: their trees are closed here
        if home.is_dir(follow_symlinks=False):
            changed += narrow(home.path, SHARED_DIR)
    for kind in ("network", "volume"):  # the other drivers' homes
        for home in _entries(os.path.join(root, kind)):
            if home.is_dir(follow_symlinks=False):
                changed += narrow(home.path, PRIVATE_DIR)
    for vol in _entries(os.path.join(root, "volumes")):  # not _data: its mode is the container's
        if vol.is_dir(follow_symlinks=False):
            changed += narrow(vol.path, PRIVATE_DIR)
    for cdir in _entries(os.path.join(root, "containers")):
        if cdir.is_dir(follow_symlinks=False):
            changed += narrow(cdir.path, SHARED_DIR)
            for f in _entries(cdir.path):  # logs and whatever else but the bind-mounted files
                if f.is_file(follow_symlinks=False) and f.name not in CONTAINER_VISIBLE_FILES:
                    changed += narrow(f.path, PRIVATE_FILE)
    content = os.path.join(root, "content")
    for sub in ("blobs", os.path.join("blobs", "sha256"), "ingest"):
        path = os.path.join(content, sub)
        if os.path.isdir(path):
            changed += narrow(path, PRIVATE_DIR)
    for blob in _entries(os.path.join(content, "blobs", "sha256")):
        if blob.is_file(follow_symlinks=False):
            changed += narrow(blob.path, BLOB_MODE)
    return changed


def _exec_root(root):
    changed = 0
    for entry in _entries(root):  # containers/, exec/ (the shims' homes), netns/
        if entry.is_dir(follow_symlinks=False):
            changed += narrow(entry.path, PRIVATE_DIR)
    for bdir in _entries(os.path.join(root, "containers")):  # bundles: config.json, exec logs
        if bdir.is_dir(follow_symlinks=False):
            changed += narrow(bdir.path, PRIVATE_DIR)
            for f in _entries(bdir.path):
                if f.is_file(follow_symlinks=False):
                    changed += narrow(f.path, PRIVATE_FILE)
    return changed
