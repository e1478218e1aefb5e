"""The devicemapper driver's options (``[storage.options.devicemapper]``).

Names follow Docker's ``--storage-opt dm.*``; the ``dm.`` prefix is optional
(``"dm.basesize" = "20G"`` and ``basesize = "20G"`` are the same).  Sizes are
integers (bytes) or strings with a binary unit: ``"512M"``, ``"10G"``, ``"64k"``.

=====================  ==========  ===============================================
option                 default     meaning
=====================  ==========  ===============================================
``dm.thinpooldev``     (none)      an existing thin-pool (``/dev/mapper/NAME`` or
                                   ``NAME``, e.g. one made by ``lvcreate --thin``):
                                   production use; never created nor removed here.
                                   Without it a pool is built on two sparse files,
                                   ``home/devicemapper/{data,metadata}`` (loop-lvm)
``dm.loopdatasize``    ``10G``     size of the sparse data file (loop-lvm only)
``dm.loopmetadatasize`` ``1G``     size of the sparse metadata file (loop-lvm only)
``dm.blocksize``       ``64K``     the pool's data block size (64K..1G, multiple of 64K)
``dm.basesize``        ``10G``     virtual size of every layer's file system; fixed
                                   once the base device exists
``dm.fs``              ``ext4``    ``ext4`` or ``xfs``
``dm.mkfsarg``         (none)      extra ``mkfs`` arguments (one string, split on blanks)
``dm.mountopt``        (none)      extra mount options (comma-separated)
``dm.min_free_space``  ``10%``     refuse new layers when less than this share of
                                   the pool's data or metadata space is free
=====================  ==========  ===============================================
"""

import re
from dataclasses import dataclass, field

from dockyard.errors import StorageError

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
_UNITS = {"": 1, "b": 1, "k": KIB, "m": MIB, "g": GIB, "t": 1 << 40, "p": 1 << 50}
FILESYSTEMS = ("ext4", "xfs")
KNOWN = ("thinpooldev", "loopdatasize", "loopmetadatasize", "blocksize", "basesize", "fs", "mkfsarg",
         "mountopt", "min_free_space")
#: thin-pool metadata larger than this is never used by the kernel (dm-thin's limit)
MAX_METADATA = 16 * GIB


def parse_size(value, name):
    """Bytes from ``10G``, ``512m``, ``64KiB``, ``1.5G`` or an int; ``StorageError`` naming ``name``."""
    if isinstance(value, bool):
        raise StorageError(f"devicemapper option dm.{name}: {value!r} is not a size")
    if isinstance(value, int):
        size = value
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*", str(value), re.IGNORECASE)
        if not m:
            raise StorageError(f"devicemapper option dm.{name}: {value!r} is not a size (like 10G, 512M)")
        size = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if size <= 0:
        raise StorageError(f"devicemapper option dm.{name}: {value!r} must be positive")
    return size


def human_size(n):
    """Docker's ``units.HumanSize``: decimal units, 4 significant digits (``11.76MB``)."""
    n = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.4g}{unit}"
        n /= 1000
    return f"{n:.4g}PB"  # pragma: no cover


@dataclass
class Options:
    thinpooldev: str | None = None
    loopdatasize: int = 10 * GIB
    loopmetadatasize: int = 1 * GIB
    blocksize: int = 64 * KIB
    basesize: int = 10 * GIB
    basesize_set: bool = False
    fs: str = "ext4"
    mkfsarg: list = field(default_factory=list)
    mountopt: str = ""
    min_free_percent: float = 10.0

    @property
    def pool_device(self):
        """``/dev/mapper/NAME`` of ``dm.thinpooldev`` (``None`` for loop-lvm)."""
        if not self.thinpooldev:
            return None
        return self.thinpooldev if self.thinpooldev.startswith("/") else f"/dev/mapper/{self.thinpooldev}"


def parse_options(raw):
    """:class:`Options` from the options mapping; ``StorageError`` naming a bad or unknown option."""
    opts = Options()
    seen = {}
    for key, value in dict(raw or {}).items():
        name = str(key).lower().removeprefix("dm.")
        if name in seen:
            raise StorageError(f"devicemapper option dm.{name} is given twice ({seen[name]!r} and {key!r})")
        seen[name] = key
        if name not in KNOWN:
            known = ", ".join(f"dm.{k}" for k in KNOWN)
            raise StorageError(f"devicemapper: unknown option {key!r} (known: {known})")
        if name in ("loopdatasize", "loopmetadatasize", "blocksize", "basesize"):
            setattr(opts, name, parse_size(value, name))
            opts.basesize_set |= name == "basesize"
        elif name == "fs":
            if value not in FILESYSTEMS:
                raise StorageError(f"devicemapper option dm.fs: {value!r} is not one of {', '.join(FILESYSTEMS)}")
            opts.fs = value
        elif name == "thinpooldev":
            if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value):
                raise StorageError(f"devicemapper option dm.thinpooldev: {value!r} is not a device name")
            opts.thinpooldev = value.strip()
        elif name == "mkfsarg":
            if not isinstance(value, (str, list)):
                raise StorageError(f"devicemapper option dm.mkfsarg: {value!r} is not a string")
            opts.mkfsarg = value.split() if isinstance(value, str) else [str(v) for v in value]
        elif name == "mountopt":
            if not isinstance(value, str) or any(c.isspace() for c in value):
                raise StorageError(f"devicemapper option dm.mountopt: {value!r} is not a comma-separated string")
            opts.mountopt = value.strip(",")
        elif name == "min_free_space":
            m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%?\s*", str(value))
            if not m or not 0 <= float(m.group(1)) < 100:
                raise StorageError(f"devicemapper option dm.min_free_space: {value!r} is not a percentage "
                                   "from 0% to 99%")
            opts.min_free_percent = float(m.group(1))
    if opts.blocksize % (64 * KIB) or not 64 * KIB <= opts.blocksize <= GIB:
        raise StorageError(f"devicemapper option dm.blocksize: {human_size(opts.blocksize)} is not a multiple "
                           "of 64K between 64K and 1G")
    if opts.basesize % 512:
        raise StorageError("devicemapper option dm.basesize: not a multiple of 512 bytes")
    if opts.loopmetadatasize > MAX_METADATA:
        raise StorageError(f"devicemapper option dm.loopmetadatasize: at most {human_size(MAX_METADATA)}")
    if opts.loopdatasize < opts.blocksize * 16:
        raise StorageError("devicemapper option dm.loopdatasize: smaller than 16 data blocks")
    if opts.loopmetadatasize < 2 * MIB:
        raise StorageError("devicemapper option dm.loopmetadatasize: at least 2M")
    return opts
