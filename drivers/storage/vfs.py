"""The ``vfs`` storage driver: every layer is a full copy of its parent.

Layout: ``home/dir/<id>`` is layer ``id``; ``home/tmp/`` holds layers being
created (renamed into place when complete, so a crash leaves no half layer in
``dir/``).  A child is made with ``cp -a --reflink=auto``, which keeps modes,
owners, times, links, devices and xattrs, and shares blocks on btrfs/xfs.

Works everywhere (no mounts), slow and big.  There is no native diff: the core's
naive fallback walks the trees.

Options (``[storage.options.vfs]``): ``reflink`` = ``"auto"`` (default),
``"always"`` or ``"never"``.
"""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from dockyard.driverkit.ids import check_id, valid_id
from dockyard.driverkit.mounts import backing_fs
from dockyard.driverkit.refcounts import RefCounts
from dockyard.errors import LayerNotFound, StorageError
from dockyard.hookspecs import hookimpl

REFLINK = ("auto", "always", "never")


class VfsDriver:
    def __init__(self):
        self.home = None
        self.reflink = "auto"
        self.refs = RefCounts()

    def _dir(self, id):
        return self.home / "dir" / check_id(id)

    @hookimpl
    def storage_supported(self, home, options):
        return None

    @hookimpl
    def storage_init(self, home, options):
        options = dict(options or {})
        reflink = options.pop("reflink", "auto")
        if reflink is True:
            reflink = "always"
        elif reflink is False:
            reflink = "never"
        if reflink not in REFLINK:
            raise StorageError(f"vfs option reflink: {reflink!r} is not one of {', '.join(REFLINK)}")
        if options:
            raise StorageError(f"vfs: unknown option(s) {', '.join(sorted(options))} (known: reflink)")
        self.reflink = reflink
        self.home = Path(home).resolve()
        (self.home / "dir").mkdir(parents=True, exist_ok=True)
        tmp = self.home / "tmp"
        shutil.rmtree(tmp, ignore_errors=True)  # leftovers of an interrupted create
        tmp.mkdir(mode=0o700, exist_ok=True)

    @hookimpl
    def storage_create(self, id, parent):
        path = self._dir(id)
        if path.exists():
            raise StorageError(f"vfs: layer {id} exists already")
        if parent is not None:
            src = self._dir(parent)
            if not src.is_dir():
                raise StorageError(f"vfs: cannot create layer {id}: parent {parent} not found")
        work = Path(tempfile.mkdtemp(prefix=f"{id}-", dir=self.home / "tmp"))
        staged = work / "layer"
        try:
            if parent is None:
                staged.mkdir(0o755)
                os.chmod(staged, 0o755)
            else:
                cmd = ["cp", "-a", f"--reflink={self.reflink}", "--", str(src), str(staged)]
                res = subprocess.run(cmd, capture_output=True, text=True)
                if res.returncode != 0:
                    raise StorageError(f"vfs: copying layer {parent} to {id} failed: {res.stderr.strip()}")
            os.rename(staged, path)
        except OSError as exc:
            raise StorageError(f"vfs: creating layer {id} failed: {exc}") from exc
        finally:
            shutil.rmtree(work, ignore_errors=True)

    @hookimpl
    def storage_remove(self, id):
        path = self._dir(id)
        if not path.exists():
            return
        # rename first so a crash mid-delete leaves no half layer under dir/
        trash = Path(tempfile.mkdtemp(prefix=f"rm-{id}-", dir=self.home / "tmp"))
        try:
            os.rename(path, trash / "layer")
            shutil.rmtree(trash)
        except OSError as exc:
            raise StorageError(f"vfs: removing layer {id} failed: {exc}") from exc
        self.refs.forget(id)

    @hookimpl
    def storage_mount(self, id):
        path = self._dir(id)
        if not path.is_dir():
            raise LayerNotFound(f"vfs: layer {id} not found")
        self.refs.acquire(id)
        return str(path)

    @hookimpl
    def storage_unmount(self, id):
        check_id(id)
        self.refs.release(id)

    @hookimpl
    def storage_exists(self, id):
        return valid_id(id) and (self.home / "dir" / id).is_dir()

    @hookimpl
    def storage_layers(self):
        return [name for name in os.listdir(self.home / "dir") if valid_id(name)]

    @hookimpl
    def storage_status(self):
        return [["Backing Filesystem", backing_fs(self.home or "/")], ["Reflink", self.reflink]]

    @hookimpl
    def storage_cleanup(self):
        self.refs.clear()
