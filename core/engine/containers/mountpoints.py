"""A container's mount points: volumes, binds and tmpfs mounts, as Docker keeps them.

At create (:meth:`MountPoints.prepare`) the request's ``HostConfig.VolumesFrom``,
``HostConfig.Binds``, ``HostConfig.Mounts`` and ``Config.Volumes`` (the image's
``VOLUME``\\ s included) become the record's ``mount_points``: a list of
:class:`~dockyard.model.container.MountPoint` (Docker's MountPoint, with what the
engine keeps beside it: who made the volume, whether the image's content is copied
in, which container it came from).  Docker's order: what another container
has (``--volumes-from``) is overridden by this container's own binds and mounts,
and ``Config.Volumes`` get an anonymous volume (64-hex name) only where nothing
else is mounted.  Named volumes are created on demand, with the volume driver of
the request (``HostConfig.VolumeDriver``, a mount's ``DriverConfig``) or the
default one.

At start (:meth:`MountPoints.mount`) each volume is mounted through its driver for the
container's id, a new (empty) volume gets the image's content at its path
(unless ``nocopy``), and the OCI bind mounts of the volumes (and of binds that
came from another container) are returned for the bundle; binds and tmpfs mounts
of the container's own request are the bundle's (:mod:`dockyard.engine.bundle.ocispec`).
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from typing import Any, Callable, Protocol

import attrs

from ...driverkit.fdwalk import Tree, open_in_root
from ...driverkit.safetar import Whiteouts, extract
from ...driverkit.tarwriter import TarWriter
from ...errors import InvalidParameter, StorageError
from ...hookspecs.volume import VolumeError
from ...model.container import ContainerRecord, MountPoint
from ..bundle import ocispec
from ..volumes.service import NAME_RE, NAME_RULE, new_name

log = logging.getLogger("dockyard.mountpoints")


class Volumes(Protocol):
    """What a container's mount points need of the volume service."""

    default: str

    def find(self, name: str | None) -> dict | None: ...

    def create(self, name: str | None = None, driver: str | None = None, options: dict | None = None,
               labels: dict | None = None, anonymous: bool = False) -> dict: ...

    def remove(self, name: str, force: bool = False) -> None: ...

    def mount(self, name: str, user: str) -> str: ...

    def unmount(self, name: str, user: str) -> None: ...


class Containers(Protocol):
    def resolve(self, ref: str) -> str: ...

    def get(self, cid: str) -> ContainerRecord: ...


#: what a create asks of a volume it makes (options, labels), by mount point: not kept
Wanted = dict[int, tuple[dict | None, dict | None]]


def _target(spec: str, dest: Any) -> str:
    if not isinstance(dest, str) or not dest.startswith("/"):
        raise InvalidParameter(f"invalid volume specification: '{spec}': invalid mount config for type "
                               f"\"volume\": invalid mount path: '{dest}' mount path must be absolute")
    if ocispec.clean(dest) == "/":
        raise InvalidParameter(f"invalid volume specification: '{spec}': invalid mount config for type "
                               "\"volume\": invalid specification: destination can't be '/'")
    return ocispec.clean(dest)


def _volume(name: str, dest: str, driver: str, mode: str = "z", rw: bool = True, copy: bool = True) -> MountPoint:
    return MountPoint(type="volume", name=name, destination=dest, driver=driver, mode=mode, rw=rw,
                      copy_up=copy, named=bool(name))


def _from_bind(spec: str, driver: str) -> MountPoint:
    """A Binds entry -> a MountPoint (bind or volume)."""
    parts = spec.split(":")
    if len(parts) == 1:  # "/data": an anonymous volume
        return _volume("", _target(spec, parts[0]), driver, mode="")
    if len(parts) > 3 or not parts[0]:
        raise InvalidParameter(f"invalid volume specification: '{spec}'")
    mode = parts[2] if len(parts) == 3 else ""
    if not ocispec._valid_mode(mode):
        raise InvalidParameter(f"invalid mode: {mode}")
    opts = mode.split(",") if mode else []
    dest = _target(spec, parts[1])
    if parts[0].startswith("/"):
        prop = next((o for o in opts if o in ocispec.PROPAGATIONS), "rprivate")
        return MountPoint(type="bind", source=ocispec.clean(parts[0]), destination=dest, mode=mode,
                          rw="ro" not in opts, propagation=prop)
    if not NAME_RE.match(parts[0]):
        raise InvalidParameter(f'create {parts[0]}: "{parts[0]}" includes invalid characters for a local volume '
                               f"name, only {NAME_RULE} are allowed. If you intended to pass a host directory, "
                               "use absolute path")
    return _volume(parts[0], dest, driver, mode=mode or "z", rw="ro" not in opts, copy="nocopy" not in opts)


def _from_mount(m: Any, driver: str, wanted: Wanted) -> MountPoint:
    """A HostConfig.Mounts entry -> a MountPoint (the bundle validates binds and tmpfs);
    a volume's options and labels go to ``wanted``."""
    if not isinstance(m, dict):
        raise InvalidParameter(f"invalid HostConfig.Mounts entry: {m!r}")
    kind, target = m.get("Type") or "", m.get("Target")
    dest: Any = ocispec.clean(target) if isinstance(target, str) and target.startswith("/") else target
    rw = not m.get("ReadOnly")
    if kind == "bind":
        prop = (m.get("BindOptions") or {}).get("Propagation") or "rprivate"
        return MountPoint(type="bind", source=m.get("Source") or "", destination=dest, rw=rw, propagation=prop)
    if kind == "tmpfs":
        return MountPoint(type="tmpfs", destination=dest, rw=rw)
    if kind != "volume":
        raise InvalidParameter(f'invalid mount config for type "{kind}": mount type unknown')
    if m.get("BindOptions"):
        raise InvalidParameter('invalid mount config for type "volume": field BindOptions must not be specified')
    if m.get("TmpfsOptions"):
        raise InvalidParameter('invalid mount config for type "volume": field TmpfsOptions must not be specified')
    dest = _target(f"{m.get('Source') or ''}:{target}", target)
    vo = m.get("VolumeOptions") or {}
    dc = vo.get("DriverConfig") or {}
    name = m.get("Source") or ""
    if name and not NAME_RE.match(name):
        raise InvalidParameter(f'create {name}: "{name}" includes invalid characters for a local volume name, '
                               f"only {NAME_RULE} are allowed")
    mp = _volume(name, dest, dc.get("Name") or driver, rw=rw, copy=not vo.get("NoCopy"))
    wanted[id(mp)] = (dc.get("Options"), vo.get("Labels"))
    return mp


def _from_container(containers: Containers, spec: str) -> list[MountPoint]:
    """``--volumes-from CONTAINER[:ro|rw]`` -> that container's mount points."""
    ref, _, mode = spec.partition(":")
    if mode not in ("", "ro", "rw"):
        raise InvalidParameter(f"invalid mode: {mode}")
    other = containers.get(containers.resolve(ref))
    out = []
    for mp in other.mount_points:
        if mp.type == "tmpfs":
            continue
        cp = attrs.evolve(mp, from_container=other.id, copy_up=False)
        if mode:
            cp.rw = mode == "rw"
            cp.mode = mode
        out.append(cp)
    return out


def _quietly(fn: Callable, *args: Any, **kwargs: Any) -> None:
    try:
        fn(*args, **kwargs)
    except Exception:
        log.exception("%s%r failed", getattr(fn, "__name__", fn), args)


# --- start / stop ------------------------------------------------------------------

class _NoWhiteouts(Whiteouts):
    """Copy-up writes files, not a layer: a source entry named like a whiteout
    (``.wh.*``, which no image layer can hold) is left out, never applied."""

    def whiteout(self, dir_fd, name, rel, unpacked):
        pass

    def opaque(self, dir_fd, rel, unpacked):
        pass


def copy_up(rootfs: str, dest: str, path: str) -> bool:
    """Docker's copy of the image's content at ``dest`` into an empty volume at
    ``path``, ownership, modes, times and xattrs kept.

    Another container may share the volume and race the copy (the
    CVE-2018-15664 class, writing side): the image's tree is read by fds
    (:mod:`dockyard.driverkit.fdwalk`) and streamed as a tar into
    :func:`~dockyard.driverkit.safetar.extract`, which opens every parent in the volume
    with ``O_NOFOLLOW``: a directory swapped for a symlink mid-copy fails the
    copy, it is never written through."""
    root_fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        src = open_in_root(root_fd, dest.lstrip("/"), os.O_PATH | os.O_DIRECTORY)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            return False  # not there, not a directory, a symlink loop: nothing to copy
        raise VolumeError(f"copying the image's {dest} into the volume at {path} failed: {exc}") from None
    finally:
        os.close(root_fd)
    try:
        if os.listdir(path):
            return False
        with Tree(src) as tree:
            _stream_copy(tree, path, dest)
    finally:
        os.close(src)
    return True


class _Tell:
    """A pipe's writing end that can say where it is (tarfile asks)."""

    def __init__(self, out):
        self.out, self.pos = out, 0

    def write(self, data):
        self.pos += len(data)
        return self.out.write(data)

    def tell(self):
        return self.pos


def _stream_copy(tree, path, dest):
    """Tar ``tree`` (its top as ``.``) in a thread into a pipe that is
    extracted into ``path``: no spool, memory bounded whatever the size."""
    rfd, wfd = os.pipe()
    failed = []

    def produce():
        try:
            with os.fdopen(wfd, "wb") as out:
                writer = TarWriter(_Tell(out))
                writer.add_entry(tree.top(), ".")
                writer.add_tree(tree)
                writer.close()
        except BrokenPipeError:
            pass  # extraction stopped first: its error is the one to report
        except BaseException as exc:  # handed to the caller
            failed.append(exc)

    thread = threading.Thread(target=produce, name="dockyard-copy-up", daemon=True)
    thread.start()
    try:
        with os.fdopen(rfd, "rb") as inp:
            extract(inp, path, whiteouts=_NoWhiteouts(), same_owner=True)
    except StorageError as exc:
        thread.join()
        cause = failed[0] if failed else exc
        raise VolumeError(f"copying the image's {dest} into the volume at {path} failed: {cause}") from None
    thread.join()
    if failed:
        raise VolumeError(f"copying the image's {dest} into the volume at {path} failed: {failed[0]}")


class MountPoints:
    """The mount points of containers, made of ``volumes`` (the volume service) and,
    for ``--volumes-from``, of other containers' records (``containers``)."""

    def __init__(self, volumes: Volumes, containers: Containers) -> None:
        self.volumes, self.containers = volumes, containers

    def prepare(self, rec: ContainerRecord) -> list[MountPoint]:
        """The record's mount points from its request; named volumes are created if
        missing, anonymous ones made.  On failure, the volumes it made are removed."""
        cfg, host = rec.config, rec.host_config
        driver = host.get("VolumeDriver") or self.volumes.default
        points: dict[str, MountPoint] = {}
        for spec in ocispec.items(host, "VolumesFrom", str):
            for mp in _from_container(self.containers, spec):
                points[mp.destination] = mp
        wanted: Wanted = {}
        own = [_from_bind(b, driver) for b in ocispec.items(host, "Binds", str)]
        own += [_from_mount(m, driver, wanted) for m in ocispec.items(host, "Mounts", object)]
        seen = set()
        for mp in own:
            if mp.destination in seen:
                raise InvalidParameter(f"Duplicate mount point: {mp.destination}")
            seen.add(mp.destination)
            points[mp.destination] = mp
        tmpfs = {ocispec.clean(d) for d in (host.get("Tmpfs") or {}) if isinstance(d, str) and d.startswith("/")}
        for dest in (cfg.get("Volumes") or {}):
            dest = _target(dest, dest)
            if dest not in points and dest not in tmpfs:
                points[dest] = _volume("", dest, driver, mode="")
        made = []
        try:
            for mp in points.values():
                if mp.type != "volume" or mp.from_container:
                    continue
                anonymous = not mp.name
                vol = self.volumes.find(mp.name) if mp.name else None
                if vol is None:
                    opts, labels = wanted.get(id(mp), (None, None))
                    vol = self.volumes.create(mp.name or new_name(), mp.driver, opts, labels, anonymous=anonymous)
                    made.append(vol["Name"])
                mp.name, mp.driver, mp.source = vol["Name"], vol["Driver"], vol["Mountpoint"]
        except BaseException:
            for name in made:
                _quietly(self.volumes.remove, name, force=True)
            raise
        for mp in points.values():
            mp.made = mp.type == "volume" and mp.name in made
        return sorted(points.values(), key=lambda m: m.destination)

    def discard(self, rec: ContainerRecord) -> None:
        """Undo :meth:`prepare` for a record that was never made: the volumes it made go."""
        for mp in rec.mount_points:
            if mp.made:
                _quietly(self.volumes.remove, mp.name, force=True)

    def remove_anonymous(self, rec: ContainerRecord) -> None:
        """``docker rm -v``: the container's anonymous volumes that nobody else uses go."""
        for mp in rec.mount_points:
            if mp.type == "volume" and not mp.named and mp.name:
                try:
                    self.volumes.remove(mp.name)
                except Exception as exc:  # in use by another container, or already gone
                    log.info("keeping volume %s: %s", mp.name, exc)

    def mount(self, rec: ContainerRecord, rootfs: str) -> list[dict]:
        """Mount the container's volumes; return the OCI mounts they (and the binds
        of ``--volumes-from``) add to its bundle.  On failure nothing stays mounted."""
        cid, out = rec.id, []
        try:
            for mp in rec.mount_points:
                if mp.type == "volume":
                    path = self.volumes.mount(mp.name, cid)
                    if mp.copy_up:
                        copy_up(rootfs, mp.destination, path)
                    prop = "rprivate"
                elif mp.type == "bind" and mp.from_container:
                    path, prop = mp.source, mp.propagation or "rprivate"
                else:
                    continue
                out.append({"destination": mp.destination, "type": "bind", "source": path,
                            "options": ["rbind"] + ([] if mp.rw else ["ro"]) + [prop]})
        except BaseException:
            self.unmount(rec)
            raise
        return out

    def unmount(self, rec: ContainerRecord) -> None:
        """Release the container's use of its volumes (idempotent)."""
        for mp in rec.mount_points:
            if mp.type == "volume" and mp.name:
                _quietly(self.volumes.unmount, mp.name, rec.id)

    def restore(self, rec: ContainerRecord) -> None:
        """After a daemon restart: count a running container's volumes as used again."""
        for mp in rec.mount_points:
            if mp.type == "volume" and mp.name:
                _quietly(self.volumes.mount, mp.name, rec.id)
