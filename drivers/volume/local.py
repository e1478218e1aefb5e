"""The ``local`` volume driver: Docker's default, a directory per volume.

A volume ``NAME`` lives in ``<home>/NAME/_data`` (``home`` is
``<data-root>/volumes``, as ``/var/lib/docker/volumes``); its driver options, if
any, in ``<home>/NAME/opts.json``.  Docker's options are understood:

``type``, ``device``, ``o``
    what mount(8) gets: ``type=tmpfs,device=tmpfs,o=size=64m`` is a tmpfs,
    ``type=none,device=/srv/x,o=bind`` a bind of a host directory,
    ``type=nfs,o=addr=...,device=:/export`` an NFS share.  The file system is
    mounted on ``_data`` when the first container starts using the volume and
    unmounted when the last one stops.

Any other option is refused, naming it.  Without options the volume is a plain
directory, which is always there.

Only root passes ``<home>`` (``0700``) and ``<home>/NAME`` (``0700``): a volume
holds what its containers wrote, a setuid-root binary included, which a host
user who reached it would run as root (CVE-2021-41091).  ``_data`` itself is
``0755`` until a copy-up gives it the image directory's mode: that mode is the
container's.
"""

import json
import os
import re
import shutil
import subprocess
import threading

from dockyard.driverkit.mounts import is_mounted
from dockyard.errors import InvalidParameter
from dockyard.hookspecs import hookimpl
from dockyard.hookspecs.volume import VolumeError

VALID_OPTIONS = ("type", "device", "o")
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


def _mounted(path):
    """Whether ``path`` is a mount point (asked of the kernel, not the mount table)."""
    return is_mounted(os.path.realpath(path))


def validate(options):
    """Refuse what the local driver cannot do, as Docker's does."""
    for key in options:
        if key not in VALID_OPTIONS:
            if key == "size":
                raise InvalidParameter('quota size requested but no quota support (option "size")')
            raise InvalidParameter(f"invalid option key: {key!r} (choices: {', '.join(VALID_OPTIONS)})")
    if not options:
        return
    if not options.get("device"):
        raise InvalidParameter('missing required option: "device"')
    if not options.get("type") and "bind" not in (options.get("o") or "").split(","):
        raise InvalidParameter('missing required option: "type"')


class LocalDriver:
    """Volumes as directories under the data root, optionally mounted file systems."""

    def __init__(self):
        self.home = None
        self._refs = {}  # name -> set of ids using it
        self._lock = threading.Lock()

    def _dir(self, name):
        if not NAME_RE.match(name or ""):
            raise InvalidParameter(f'"{name}" includes invalid characters for a local volume name, only '
                                   '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed')
        return os.path.join(self.home, name)

    def _data(self, name):
        return os.path.join(self._dir(name), "_data")

    def _options(self, name):
        try:
            with open(os.path.join(self._dir(name), "opts.json")) as fh:
                return json.load(fh)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise VolumeError(f"volume {name}: unreadable options: {exc}") from None

    @hookimpl
    def volume_supported(self, home, options):
        return None

    @hookimpl
    def volume_init(self, home, options):
        self.home = str(home)
        os.makedirs(self.home, mode=0o700, exist_ok=True)
        os.chmod(self.home, 0o700)  # made by an older Dockyard, or by the plugin loader, 0755

    @hookimpl
    def volume_capabilities(self):
        return {"scope": "local"}

    @hookimpl
    def volume_create(self, name, options):
        options = dict(options or {})
        validate(options)
        vdir = self._dir(name)
        try:
            os.makedirs(vdir, 0o700, exist_ok=True)
            os.chmod(vdir, 0o700)
            os.mkdir(os.path.join(vdir, "_data"))
            os.chmod(os.path.join(vdir, "_data"), 0o755)  # whatever the umask
            if options:  # may hold credentials (o=...,password=)
                tmp = os.path.join(vdir, ".opts.json.tmp")
                with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600), "w") as fh:
                    json.dump(options, fh)
                os.replace(tmp, os.path.join(vdir, "opts.json"))
        except OSError as exc:
            shutil.rmtree(vdir, ignore_errors=True)
            raise VolumeError(f"create {name}: {exc}") from None
        return {"mountpoint": self._data(name), "status": None}

    @hookimpl
    def volume_remove(self, name):
        vdir, data = self._dir(name), self._data(name)
        with self._lock:
            self._refs.pop(name, None)
            if _mounted(data):
                self._umount(name, data)
            if _mounted(data):  # never delete what a bind shows of the host
                raise VolumeError(f"remove {name}: {data} is still mounted")
            shutil.rmtree(vdir, ignore_errors=True)
            if os.path.exists(vdir):
                raise VolumeError(f"remove {name}: could not delete {vdir}")

    @hookimpl
    def volume_mount(self, name, id):
        data = self._data(name)
        if not os.path.isdir(data):
            raise VolumeError(f"mount {name}: no such volume")
        with self._lock:
            users = self._refs.setdefault(name, set())
            if id in users:
                return data
            options = self._options(name)
            if options and not _mounted(data):
                self._mount(name, options, data)
            users.add(id)
        return data

    @hookimpl
    def volume_unmount(self, name, id):
        with self._lock:
            users = self._refs.get(name)
            if not users or id not in users:
                return None
            users.discard(id)
            if users:
                return None
            del self._refs[name]
            data = self._data(name)
            if self._options(name) and _mounted(data):
                self._umount(name, data)
        return None

    @hookimpl
    def volume_get(self, name):
        try:
            data = self._data(name)
        except InvalidParameter:
            return None
        if not os.path.isdir(data):
            return None
        return {"name": name, "mountpoint": data, "status": None}

    @hookimpl
    def volume_list(self):
        try:
            names = sorted(os.listdir(self.home))
        except OSError:
            return []
        return [{"name": n, "mountpoint": os.path.join(self.home, n, "_data")} for n in names
                if NAME_RE.match(n) and os.path.isdir(os.path.join(self.home, n, "_data"))]

    # --- mount(8) ----------------------------------------------------------------------
    @staticmethod
    def _mount(name, options, target):
        cmd = ["mount"]
        if options.get("type") and options["type"] != "none":
            cmd += ["-t", options["type"]]
        if options.get("o"):
            cmd += ["-o", options["o"]]
        cmd += [options["device"], target]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            why = res.stderr.strip() or f"mount exited with {res.returncode}"
            raise VolumeError(f"error while mounting volume '{target}': failed to mount local volume "
                              f"{name} ({' '.join(cmd[1:])}): {why}")

    @staticmethod
    def _umount(name, target):
        res = subprocess.run(["umount", target], capture_output=True, text=True)
        if res.returncode != 0:  # a busy mount: detach it, it goes with its last user
            res = subprocess.run(["umount", "-l", target], capture_output=True, text=True)
        if res.returncode != 0:
            raise VolumeError(f"unmount {name}: {res.stderr.strip()}")
