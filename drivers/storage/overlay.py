"""The ``overlay`` storage driver (Docker's overlay2 layout).

Layout under ``home``::

    l/<short>            symlink to ../<id>/diff (26-char names keep mount options short)
    <id>/diff/           the layer's own content (the overlay upper directory)
    <id>/link            <short>
    <id>/lower           l/<short of parent>:l/<short of grandparent>:...  (no file: no parent)
    <id>/work/ merged/   overlay work directory and mount point
    <id>/mounts          the mount reference count, while mounted

A layer without parent is "mounted" by returning its ``diff`` directory; any
other is an overlay mount at ``merged`` whose options name the lower layers by
their ``l/`` links *relative to home*: overlayfs resolves them against the cwd of
the mounting thread, which :data:`~dockyard.driverkit.mounts.CWD_RUNNER`
sets without moving the daemon's other threads.  A 130-layer chain fits in the
one-page limit of mount(2) options.

Mounts are reference-counted in memory and in ``<id>/mounts``; a mount found in
``/proc/self/mountinfo`` (left by an earlier daemon) is adopted, never doubled.

Native diff, changes, size and apply_diff work on ``diff`` directly, converting
between OCI whiteouts (``.wh.name``, ``.wh..wh..opq``) and overlay ones (0/0
character devices, ``trusted.overlay.opaque=y``), whenever ``parent`` is the
layer's own parent; otherwise they return ``None`` and the core's naive fallback
runs.  ``index``, ``redirect_dir`` and ``metacopy`` are forced off when the
kernel enables them by default, so the upper directory always holds whole files.

Options (``[storage.options.overlay]``): ``mountopt`` = extra mount options.
"""

import base64
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

from dockyard.driverkit.fdwalk import Tree
from dockyard.driverkit.ids import check_id, valid_id
from dockyard.driverkit.lowerview import LowerView
from dockyard.driverkit.mounts import CWD_RUNNER, MNT_DETACH, backing_fs, is_mounted, mount, mounts_under, umount
from dockyard.driverkit.naivediff import changes_size, mark_parents
from dockyard.driverkit.refcounts import RefCounts, release_mount
from dockyard.driverkit.safetar import (OVERLAY_OPAQUE_XATTR, OverlayWhiteouts, TarWriter, differs, extract,
                                        is_whiteout_dev, spool)
from dockyard.errors import LayerNotFound, StorageError
from dockyard.hookspecs import hookimpl

PAGE = os.sysconf("SC_PAGE_SIZE")
UNSUPPORTED_FS = ("overlay", "aufs", "zfs", "ecryptfs")
RESERVED = ("l",)
ADDED, MODIFIED, DELETED = 1, 0, 2


def _has_overlay():
    try:
        with open("/proc/filesystems") as f:
            return any(line.split()[-1:] == ["overlay"] for line in f)
    except OSError:
        return False


def _param(name):
    try:
        with open(f"/sys/module/overlay/parameters/{name}") as f:
            return f.read().strip()
    except OSError:
        return "N"


def _join(rel, name):
    return f"{rel}/{name}" if rel else name


class OverlayDriver:
    def __init__(self):
        self.home = None
        self.options = ""
        self.refs = RefCounts(lambda id: self.home / id / "mounts")

    # ------------------------------------------------------------ helpers
    def _dir(self, id):
        check_id(id)
        if id in RESERVED:
            raise StorageError(f"overlay: layer id {id!r} is reserved")
        return self.home / id

    def _layer(self, id):
        d = self._dir(id)
        if not (d / "diff").is_dir():
            raise LayerNotFound(f"overlay: layer {id} not found")
        return d

    def _lower(self, id):
        try:
            return (self.home / id / "lower").read_text().strip()
        except FileNotFoundError:
            return ""

    def _link(self, id):
        return (self.home / id / "link").read_text().strip()

    def _lower_dirs(self, id):
        lower = self._lower(id)
        return [self.home / p for p in lower.split(":")] if lower else []

    def _direct(self, id, parent):
        """``True`` if ``parent`` is the layer's own parent (native ops apply)."""
        lower = self._lower(self._layer(id).name)
        if parent is None:
            return not lower
        try:
            return lower.split(":")[0] == f"l/{self._link(check_id(parent))}"
        except OSError:
            return False

    # ------------------------------------------------------------ lifecycle
    @hookimpl
    def storage_supported(self, home, options):
        if os.geteuid() != 0:
            return "overlay needs root to mount"
        if not _has_overlay():
            try:
                subprocess.run(["modprobe", "overlay"], capture_output=True, timeout=30)
            except (OSError, subprocess.SubprocessError):
                pass
            if not _has_overlay():
                return "kernel has no overlay filesystem"
        fs = backing_fs(home)
        if fs in UNSUPPORTED_FS:
            return f"{home} is on {fs}, which cannot hold overlay layers"
        return None

    @hookimpl
    def storage_init(self, home, options):
        options = dict(options or {})
        extra = options.pop("mountopt", "")
        if not isinstance(extra, str) or any(c in extra for c in " \n"):
            raise StorageError(f"overlay option mountopt: {extra!r} is not a comma-separated string")
        if options:
            raise StorageError(f"overlay: unknown option(s) {', '.join(sorted(options))} (known: mountopt)")
        forced = [f"{p}=off" for p in ("index", "redirect_dir", "metacopy") if _param(p) == "Y"]
        self.options = ",".join(forced + ([extra] if extra else []))
        self.home = Path(home).resolve()
        (self.home / "l").mkdir(parents=True, exist_ok=True)
        for leftover in self.home.glob(".tmp-*"):  # interrupted create/remove
            shutil.rmtree(leftover, ignore_errors=True)
        for link in (self.home / "l").iterdir():
            if not link.exists():
                link.unlink()

    @hookimpl
    def storage_create(self, id, parent):
        final = self._dir(id)
        if final.exists():
            raise StorageError(f"overlay: layer {id} exists already")
        lower = ""
        if parent is not None:
            pdir = self._dir(parent)
            if not (pdir / "diff").is_dir():
                raise StorageError(f"overlay: cannot create layer {id}: parent {parent} not found")
            plower = self._lower(parent)
            lower = f"l/{self._link(parent)}" + (f":{plower}" if plower else "")
            self._options(id, lower)  # refuse a chain too deep to mount, now
        stage = Path(tempfile.mkdtemp(prefix=f".tmp-{id}-", dir=self.home))
        link = None
        try:
            (stage / "diff").mkdir()
            if parent is not None:  # the child starts as an exact copy: same root dir
                st = os.stat(pdir / "diff")
                os.chown(stage / "diff", st.st_uid, st.st_gid)
                os.chmod(stage / "diff", stat.S_IMODE(st.st_mode))
                os.utime(stage / "diff", ns=(st.st_atime_ns, st.st_mtime_ns))
            else:
                os.chmod(stage / "diff", 0o755)
            (stage / "work").mkdir(0o700)
            (stage / "merged").mkdir(0o700)
            if lower:
                (stage / "lower").write_text(lower)
            while link is None:
                short = base64.b32encode(os.urandom(20)).decode()[:26]
                try:
                    (self.home / "l" / short).symlink_to(f"../{id}/diff")
                    link = self.home / "l" / short
                except FileExistsError:
                    continue
            (stage / "link").write_text(short)
            os.rename(stage, final)
        except OSError as exc:
            if link is not None:
                link.unlink(missing_ok=True)
            shutil.rmtree(stage, ignore_errors=True)
            raise StorageError(f"overlay: creating layer {id} failed: {exc}") from exc

    @hookimpl
    def storage_remove(self, id):
        d = self._dir(id)
        if not d.exists():
            return
        # Unmounted and moved away under the lock: a mount of the layer that
        # comes meanwhile (a ``cp`` still streaming) then finds no layer, instead
        # of mounting it again between the unmount and the move.
        with self.refs.lock:
            try:
                for _ in range(16):  # a mount stacked on another is unmounted too
                    if not is_mounted(d / "merged"):
                        break
                    umount(d / "merged", MNT_DETACH)
            except OSError as exc:
                raise StorageError(f"overlay: unmounting layer {id} to remove it failed: {exc}") from exc
            self.refs.forget(id)
            try:
                (self.home / "l" / self._link(id)).unlink(missing_ok=True)
            except OSError:
                pass
            trash = Path(tempfile.mkdtemp(prefix=f".tmp-rm-{id}-", dir=self.home))
            try:
                os.rename(d, trash / "layer")
            except OSError as exc:
                shutil.rmtree(trash, ignore_errors=True)
                raise StorageError(f"overlay: removing layer {id} failed: {exc}") from exc
        try:
            shutil.rmtree(trash)
        except OSError as exc:
            raise StorageError(f"overlay: removing layer {id} failed: {exc}") from exc

    @hookimpl
    def storage_exists(self, id):
        return valid_id(id) and id not in RESERVED and (self.home / id / "diff").is_dir()

    @hookimpl
    def storage_layers(self):
        """Every ``<id>/`` of home (``l/`` and ``.tmp-*`` scratch are not ids)."""
        return [e.name for e in os.scandir(self.home)
                if valid_id(e.name) and e.name not in RESERVED and e.is_dir(follow_symlinks=False)]

    @hookimpl
    def storage_metadata(self, id):
        """Docker's overlay2 ``GraphDriver.Data``: the layer's directories, and its
        lower layers' (``l/`` links resolved, topmost first) when it has any."""
        d = self._layer(id)
        data = {"MergedDir": str(d / "merged"), "UpperDir": str(d / "diff"), "WorkDir": str(d / "work")}
        lower = [os.path.normpath(os.path.join(p.parent, os.readlink(p))) for p in self._lower_dirs(id)]
        if lower:
            data["LowerDir"] = ":".join(lower)
        return data

    # ------------------------------------------------------------ mounts
    @hookimpl
    def storage_mount(self, id):
        with self.refs.lock:  # a removal holds it from its unmount to its move
            d = self._layer(id)
            lower = self._lower(id)
            n = self.refs.get(id)
            if not lower:
                self.refs.set(id, n + 1)
                return str(d / "diff")
            merged = d / "merged"
            if not is_mounted(merged):  # a count without a mount is stale
                n = 0
                self._mount(id, lower, merged)
            self.refs.set(id, n + 1)  # n == 0 and mounted: adopt an earlier daemon's mount
            return str(merged)

    def _options(self, id, lower):
        opts = f"lowerdir={lower},upperdir={id}/diff,workdir={id}/work"
        if self.options:
            opts += "," + self.options
        if len(opts.encode()) >= PAGE:
            raise StorageError(f"overlay: layer {id} would have too many lower layers "
                               f"({lower.count(':') + 1}) for the one-page mount options")
        return opts

    def _mount(self, id, lower, merged):
        opts = self._options(id, lower)
        try:
            CWD_RUNNER.run(self.home, mount, "overlay", str(merged), "overlay", 0, opts)
        except OSError as exc:
            raise StorageError(f"overlay: mounting layer {id} failed: {exc.strerror}") from exc

    @hookimpl
    def storage_unmount(self, id):
        d = self._dir(id)
        release_mount(self.refs, id, d / "merged", "overlay")

    @hookimpl
    def storage_cleanup(self):
        if self.home is None:
            return
        with self.refs.lock:
            for mp in mounts_under(self.home):
                try:
                    umount(mp, MNT_DETACH)
                except OSError:
                    pass
            for count in self.home.glob("*/mounts"):
                count.unlink(missing_ok=True)
            self.refs = RefCounts(self.refs._state_path)

    @hookimpl
    def storage_status(self):
        return [["Backing Filesystem", backing_fs(self.home or "/")], ["Supports d_type", "true"],
                ["Native Overlay Diff", "true"]]

    # ------------------------------------------------------------ native diffs
    @hookimpl
    def storage_apply_diff(self, id, parent, stream):
        if not self._direct(id, parent):
            return None
        view = LowerView(self._lower_dirs(id))
        return extract(stream, self.home / id / "diff", whiteouts=OverlayWhiteouts(view.lstat))

    @hookimpl
    def storage_diff(self, id, parent):
        if not self._direct(id, parent):
            return None
        out = spool()
        try:
            writer = TarWriter(out)
            with Tree(str(self.home / id / "diff")) as upper:  # a running container's: read by fds
                for e in upper.walk():
                    if is_whiteout_dev(e.st):
                        writer.add_whiteout(e.rel)
                        continue
                    writer.add_entry(e)
                    if e.fd is not None and e.xattr(OVERLAY_OPAQUE_XATTR) == b"y":
                        writer.add_opaque(e.rel)
            writer.close()
        except OSError as exc:
            out.close()
            raise StorageError(f"overlay: diff of layer {id} failed: {exc}") from exc
        out.seek(0)
        return out

    @hookimpl
    def storage_changes(self, id, parent):
        if not self._direct(id, parent):
            return None
        return [("/" + rel, kind) for rel, kind in self._changes(id)]

    @hookimpl
    def storage_size(self, id, parent):
        if not self._direct(id, parent):
            return None
        return changes_size(str(self.home / id / "diff"), self._changes(id))

    def _changes(self, id):
        """Changes of the upper directory against the lower layers, with the
        same rules as the naive fallback, in one walk of the upper directory
        (:mod:`dockyard.driverkit.fdwalk`: it may be a running container's).  Per
        directory, ``decided`` says how to read it: ``None`` when everything
        below is new, else whether an opaque directory above hides the lower
        one (then what the lower one has and the upper does not is deleted)."""
        low = LowerView(self._lower_dirs(id))
        out, decided, path = {}, {"": False}, []

        def listed(rel, entries):
            hidden = decided.pop(rel, None)
            live = [(n, st) for n, st in entries if not is_whiteout_dev(st)]
            if hidden is not None:
                if hidden:
                    gone = set(low.listdir(rel)) - {n for n, _ in live}
                else:
                    gone = {n for n, st in entries if is_whiteout_dev(st) and low.find(_join(rel, n)) is not None}
                out.update((_join(rel, n), DELETED) for n in gone)
            path.append((rel, hidden))
            return live

        with Tree(str(self.home / id / "diff")) as upper:
            for e in upper.walk(listed):
                parent = e.rel.rpartition("/")[0]
                while path[-1][0] != parent:
                    path.pop()
                hidden = path[-1][1]
                is_dir = stat.S_ISDIR(e.st.st_mode)
                hit = low.find(e.rel) if hidden is not None else None
                if hit is None:
                    out[e.rel] = ADDED
                    if is_dir:
                        decided[e.rel] = None
                    continue
                lpath, lst = hit
                if differs(lpath, lst, e, e.st):
                    out[e.rel] = MODIFIED
                if is_dir:  # a directory that replaced a non-directory: its content is new
                    decided[e.rel] = (hidden or e.xattr(OVERLAY_OPAQUE_XATTR) == b"y") if stat.S_ISDIR(lst.st_mode) \
                        else None
        return mark_parents(out)
