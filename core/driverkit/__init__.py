"""The driver kit: what a Dockyard driver may import from Dockyard besides the
hook specs (:mod:`dockyard.hookspecs`) and the errors (:mod:`dockyard.errors`).

A driver -- ours in ``dockyard.drivers`` or a third party's in its own
distribution -- imports only those three, the standard library, the libraries
it needs, and its own package; never the engine, the daemon, the plugin loader,
the config, the store or another driver.  The kit is the bottom of Dockyard: it
imports nothing of Dockyard but the errors and the hook specs (import-linter
contracts in ``pyproject.toml`` enforce both rules; ``docs/architecture.md``,
"The driver kit").  The engine uses the same modules (its layer store registers
:class:`~.naivediff.NaiveDiff`, and it reads and writes layer tars with
:mod:`.safetar`, :mod:`.tarwriter` and :mod:`.tarsplit`), so a third-party driver
gets exactly what ours get.

Importing this package imports none of its modules (the CLI and the shim start
fast); import the one you use: ``from dockyard.driverkit.mounts import mount``.

Layer trees and tars (storage drivers)

:fdwalk:        read a tree someone else controls (a running container's)
                relative to directory fds, never following a swapped-in
                symlink: :class:`~.fdwalk.Tree`, :func:`~.fdwalk.open_in_root`
:tarwriter:     write deterministic layer tars (:class:`~.tarwriter.TarWriter`,
                ``write_tar``, ``walk``), OCI whiteout names, and
                :func:`~.tarwriter.differs`, Docker's rule for a changed file
:safetar:       extract a layer tar safely (:func:`~.safetar.extract`), whiteouts
                as deletions or as overlayfs whiteouts
                (:class:`~.safetar.OverlayWhiteouts`); re-exports the writing half
:tarsplit:      keep a layer tar's exact bytes without its file contents, and
                rebuild the tar (and its diff ID) from them
:tarsplit_tee:  the same record and diff ID taken while the tar streams into
                extraction (:class:`~.tarsplit_tee.TarSplitTee`)
:naivediff:     diff, apply, changes and size by mounting and walking
                (Docker's ``NaiveDiffDriver``): registered ``trylast`` for every
                storage driver; ``tree_changes``, ``changes_size`` and
                ``mark_parents`` for drivers that walk their own upper directory
:lowerview:     a stack of overlay-style layer directories read without mounting

Mounting layers (storage drivers)

:mounts:        mount(2)/umount2(2), the mount table (``mountinfo``,
                ``is_mounted``, ``mounts_under``, ``backing_fs``), and
                ``CWD_RUNNER`` for mounts with relative paths
:refcounts:     :class:`~.refcounts.RefCounts` of mounted layers, persisted so
                a restarted daemon knows which layers running containers hold;
                ``release_mount``
:ids:           ``check_id``/``valid_id``: ids that become path components

Running containers (exec drivers)

:shim:          the shim kit: a supervisor per container process that outlives
                the daemon, its fork server (``zygote``), the daemon's half
                (``shim.client``), a base class for exec drivers
                (``shim.driver.ShimDriver``), the OCI config checks every
                runtime shares (``shim.oci``, ``shim.runtime``), in-root path
                resolution (``shim.rootpath``) and what a process does before it
                enters a container (``shim.sanitize``).  ``supervisor``,
                ``zygote``, ``runtime``, ``rootpath`` and ``sanitize`` are stdlib
                only and also run standalone, imported by bare name with the
                kit's directory on ``sys.path`` (see ``shim/__init__.py``)
:cgroups:       a cgroup v1/v2 manager: make, limit (OCI ``linux.resources``),
                join, freeze, measure, kill and remove a container's cgroup

Logging containers' output (log drivers)

:logopts:       what Docker's log drivers share of ``--log-opt``: the option
                check, the ``tag`` template, the extra attributes (``labels``,
                ``env``), Go's bool and int parsing with its errors
:shim.logfile:  files that rotate as json-file's and local's do (``max-size``,
                ``max-file``, ``compress``), written in a shim by a log
                driver's writer (stdlib only, ``import logfile`` there) and read
                back with a cursor that follows rotations (``read_rotated``)

What is public, and the promise
-------------------------------
The public surface is every module named above and, in each, the names in its
``__all__`` where it has one, else the names without a leading underscore;
modules and names that start with ``_`` (``cgroups._fs``) are private.
:data:`API_VERSION` is the version of that surface, ``MAJOR.MINOR``:

* a **minor** bump (1.0 -> 1.1) only adds: a module, a name, a keyword argument
  with a default, a field in a returned dict.  A driver written against 1.0
  works unchanged on every 1.x;
* a **major** bump (1.x -> 2.0) removes or renames a public name, or changes what
  one accepts, returns or guarantees.  It is announced in the release notes, and
  a third-party driver that imports the kit checks the major it was written for
  in its ``*_supported`` hook (``dockyard.driverkit.API_VERSION.split(".")[0] !=
  "1"`` -> return a reason), so the engine skips it with that reason instead of
  failing later;
* bug fixes do not change the version: they keep the documented contract.

The kit's version is not Dockyard's release version, nor the hook specs'
(which grow compatibly through pluggy: an implementation may take fewer
arguments than its spec).
"""

#: Version of the kit's public surface (see the module doc): ``MAJOR.MINOR``.
API_VERSION = "1.0"
