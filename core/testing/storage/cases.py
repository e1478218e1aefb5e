"""The trees the storage conformance tests make, and what a driver must say of
them: a base layer and a child with every kind of change (:data:`BASE`,
:data:`CHILD`, its changes and sizes), a chain of five layers, every file type
with its metadata (:data:`TYPES`), and ``user.*`` xattrs (:data:`XATTRS`).
Entries are :func:`~.tars.make_tar`'s."""

import os
from pathlib import Path

from .tars import T0, T1

MODIFIED, ADDED, DELETED = 0, 1, 2  # the kinds of ``storage_changes`` (docker diff's C, A, D)

BASE = [
    ("etc", "d", None), ("etc/conf", "f", b"old conf\n"), ("etc/keep", "f", b"keep\n"),
    ("gone", "f", b"to be deleted\n"), ("gonedir", "d", None), ("gonedir/x", "f", b"x"),
    ("opq", "d", None), ("opq/old1", "f", b"old1"), ("opq/sub", "d", None), ("opq/sub/old2", "f", b"old2"),
    ("usr", "d", None), ("usr/bin", "d", None), ("usr/bin/tool", "f", b"#!/bin/sh\n", {"mode": 0o755}),
]
CHILD = [
    ("etc", "d", None), ("etc/conf", "f", b"new conf, longer\n", {"mtime": T1}),
    ("etc/newdir", "d", None), ("etc/newdir/file", "f", b"nested\n"),
    (".wh.gone", "w", None), (".wh.gonedir", "w", None),
    ("hard", "h", "etc/conf"), ("lnk", "l", "/etc/conf"),
    ("opq", "d", None), ("opq/.wh..wh..opq", "w", None), ("opq/new", "f", b"fresh"),
    ("pipe", "p", None), ("rel", "l", "etc/keep"),
    ("usr", "d", None), ("usr/bin", "d", None), ("usr/bin/tool", "f", b"#!/bin/sh\n", {"mode": 0o700}),
]
CHILD_CHANGES = [
    ("/etc", MODIFIED), ("/etc/conf", MODIFIED), ("/etc/newdir", ADDED), ("/etc/newdir/file", ADDED),
    ("/gone", DELETED), ("/gonedir", DELETED), ("/hard", ADDED), ("/lnk", ADDED),
    ("/opq", MODIFIED), ("/opq/new", ADDED), ("/opq/old1", DELETED), ("/opq/sub", DELETED),
    ("/pipe", ADDED), ("/rel", ADDED), ("/usr", MODIFIED), ("/usr/bin", MODIFIED), ("/usr/bin/tool", MODIFIED),
]
CHILD_APPLIED = len(b"new conf, longer\n") + len(b"nested\n") + len(b"fresh") + len(b"#!/bin/sh\n")
CHILD_SIZE = CHILD_APPLIED + len("/etc/conf") + len("etc/keep")


ROOT = os.geteuid() == 0

# A chain of five layers: by diff (tar) or by writes through the mount.
CHAIN_L1 = [("a", "d", None), ("a/new", "f", b"a-new"), ("etc", "d", None),
            ("etc/conf", "f", b"v1", {"mtime": T1}), (".wh.gone", "w", None)]
CHAIN_L3 = [(".wh.a", "w", None), ("gone", "f", b"again"), ("opq", "d", None), ("opq/.wh..wh..opq", "w", None),
            ("opq/back", "f", b"back")]
_L0 = {"etc": None, "etc/conf": b"old conf\n", "etc/keep": b"keep\n", "gone": b"to be deleted\n",
       "gonedir": None, "gonedir/x": b"x", "opq": None, "opq/old1": b"old1", "opq/sub": None,
       "opq/sub/old2": b"old2", "usr": None, "usr/bin": None, "usr/bin/tool": b"#!/bin/sh\n"}
_L1 = {**{k: v for k, v in _L0.items() if k != "gone"}, "etc/conf": b"v1", "a": None, "a/new": b"a-new"}
_L2 = {**{k: v for k, v in _L1.items() if k not in ("etc/keep", "gonedir", "gonedir/x")},
       "a/new": b"a-newmore", "w": None, "w/file": b"w"}
_L3 = {**{k: v for k, v in _L2.items() if not k.startswith(("a", "opq/"))}, "gone": b"again", "opq/back": b"back"}
_L4 = {**_L3, "a": None, "a/again": b"A", "etc/conf": b"v4"}
CHAIN_VIEWS = [_L0, _L1, _L2, _L3, _L4]
CHAIN_CHANGES = [
    None,
    [("/a", ADDED), ("/a/new", ADDED), ("/etc", MODIFIED), ("/etc/conf", MODIFIED), ("/gone", DELETED)],
    [("/a", MODIFIED), ("/a/new", MODIFIED), ("/etc", MODIFIED), ("/etc/keep", DELETED), ("/gonedir", DELETED),
     ("/w", ADDED), ("/w/file", ADDED)],
    [("/a", DELETED), ("/gone", ADDED), ("/opq", MODIFIED), ("/opq/back", ADDED), ("/opq/old1", DELETED),
     ("/opq/sub", DELETED)],
    [("/a", ADDED), ("/a/again", ADDED), ("/etc", MODIFIED), ("/etc/conf", MODIFIED)],
]


def _write_l2(root: str) -> None:
    os.unlink(os.path.join(root, "etc/keep"))
    with open(os.path.join(root, "a/new"), "ab") as f:
        f.write(b"more")
    os.mkdir(os.path.join(root, "w"))
    Path(root, "w/file").write_bytes(b"w")
    os.unlink(os.path.join(root, "gonedir/x"))
    os.rmdir(os.path.join(root, "gonedir"))


def _write_l4(root: str) -> None:
    os.mkdir(os.path.join(root, "a"))
    Path(root, "a/again").write_bytes(b"A")
    Path(root, "etc/conf").write_bytes(b"v4")


LONG = "long/" + "d" * 120 + "/" + "f" * 150
TYPES = [
    ("d", "d", None, {"mode": 0o750, "uid": 1000, "gid": 1001}),
    ("d/setuid", "f", b"#!/bin/sh\n", {"mode": 0o4755, "mtime": T1}),
    ("d/setgid", "f", b"sg", {"mode": 0o2711, "uid": 1, "gid": 2, "mtime": T0 + 1}),
    ("sticky", "d", None, {"mode": 0o1777}),
    ("sgiddir", "d", None, {"mode": 0o2775, "gid": 50}),
    ("owned", "f", b"o", {"uid": 65534, "gid": 65534, "mode": 0o600, "mtime": 1_234_567_890}),
    ("link", "l", "d/setuid", {"mtime": T1}),
    ("abslink", "l", "/nonexistent/target"),
    ("hard", "h", "d/setgid"),
    ("fifo", "p", None, {"mode": 0o640, "mtime": T1}),
    ("null", "c", None, {"devmajor": 1, "devminor": 3, "mode": 0o666}),
    ("loop", "b", None, {"devmajor": 7, "devminor": 200, "mode": 0o660, "mtime": T1}),
    ("empty", "f", b""),
    ("big", "f", bytes(range(256)) * 12_289),  # 3 MiB + 256: several copy chunks
    ("space and \u00fcnicode", "f", b"u"),
    ("long", "d", None), ("long/" + "d" * 120, "d", None), (LONG, "f", b"long name"),
]
XATTRS = [("x", "d", None, {"xattrs": {"user.dir": b"d"}}),
          ("x/f", "f", b"f", {"xattrs": {"user.note": b"hello", "user.bin": b"\x00\xff\x01"}}),
          ("x/plain", "f", b"p")]
