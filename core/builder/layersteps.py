"""The steps that make a layer: RUN (in a container, :mod:`.run`), COPY and ADD
(into a temporary read-write layer, :mod:`.copy`) and WORKDIR (creates the
directory).

``created_by`` as the classic builder writes it: RUN ``/bin/sh -c echo hi``, or
``|2 A=1 B=2 /bin/sh -c echo hi`` when build args are in effect (the declared
ones, and proxy args only if declared; sorted; moby ``prependEnvOnCmd``); COPY
``/bin/sh -c #(nop) COPY file:<hex> in /dst `` (``file:`` for one file,
``dir:`` for one directory, ``multi:`` for several sources; the hex is the
sources' checksum, which covers ``--chmod``); WORKDIR ``/bin/sh -c #(nop)
WORKDIR /app``.  A layer whose diff is empty is recorded as ``empty_layer``.
"""

import hashlib
import os
import shutil
import tempfile
from contextlib import ExitStack

from ..model.image import History
from .context import checksum
from .copy import (
    copy_sources,
    download,
    is_url,
    mkdirs,
    normalize_dest,
    parse_chown,
    resolve,
)
from .run import run_container
from .shellexpand import expand_word
from .steps import BuildStepError, command_line, expansion_env, shell_of, workdir

__all__ = ["dispatch"]


def dispatch(b, state, ins) -> None:
    {"RUN": _run, "WORKDIR": _workdir, "COPY": _copy, "ADD": _copy}[ins.cmd](b, state, ins)


def rw_image(b, state, config, created_by, change, container_config):
    """Apply ``change(rootfs)`` to a temporary read-write layer on the current
    image and store the result as an image (the layer always goes again)."""
    svc = b.svc
    top = svc.images.top_layer(state.image_id) if state.image_id else None
    rw = svc.layers.create_scratch(top)
    try:
        root = svc.layers.mount(rw)
        try:
            change(root)
        finally:
            svc.layers.unmount(rw)
        path, diff_id = svc.writer.diff_layer(rw, top)
        try:
            return svc.writer.new_image(state.image_id, config, History(created_by=created_by), diff=(path, diff_id),
                             author=state.author, container_config=container_config)
        finally:
            os.unlink(path)
    finally:
        svc.layers.remove_scratch(rw)


def _mounted(b, image_id, stack):
    """A read-write view of ``image_id`` for reading (``COPY --from``), undone by ``stack``."""
    svc = b.svc
    if not image_id:
        raise BuildStepError("COPY --from names a stage without a file system (FROM scratch and nothing added)")
    rw = svc.layers.create_scratch(svc.images.top_layer(image_id))
    stack.callback(svc.layers.remove_scratch, rw)
    root = svc.layers.mount(rw)
    stack.callback(svc.layers.unmount, rw)
    return root


def _run(b, state, ins) -> None:
    cmd = command_line(ins, state.config)
    build_env = state.args.filter_allowed(state.config.env)
    save = cmd
    if build_env:
        shown = sorted(e for e in build_env if state.args.in_history(e.partition("=")[0]))
        save = [f"|{len(shown)}"] + shown + cmd
    created_by = " ".join(save)
    config = state.config

    def make():
        env = list(config.env or []) + build_env
        cid, (path, diff_id) = run_container(b, state, cmd, env, b.opts.host_config)
        try:
            return b.svc.writer.new_image(state.image_id, config, History(created_by=created_by),
                                          diff=(path, diff_id), container=cid,
                                          container_config=config.replace(cmd=save), author=state.author)
        finally:
            os.unlink(path)

    b.step(state, {"created_by": created_by, "config": config.to_json(), "author": state.author}, make, config)


def _workdir(b, state, ins) -> None:
    path = workdir(state, ins)
    config = state.config.replace(working_dir=path)
    nop = shell_of(state.config) + ["#(nop) WORKDIR " + path]

    def change(root) -> None:
        mkdirs(root, path, refusal="mkdir {path}: not a directory")

    b.step(state, {"created_by": " ".join(nop), "config": config.to_json(), "author": state.author},
           lambda: rw_image(b, state, config, " ".join(nop), change, config.replace(cmd=nop)), config)


def _chmod(text):
    if text is None:
        return None
    try:
        mode = int(text, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o7777:
        raise BuildStepError(f"invalid chmod parameter {text!r}: an octal mode is expected (e.g. 0755)")
    return mode


def _copy(b, state, ins):
    cmd = ins.cmd
    env = expansion_env(state)

    def exp(word):
        return expand_word(word, env, escape=state.escape)

    srcs, dest = [exp(s) for s in ins.args[:-1]], exp(ins.args[-1])
    chown = exp(ins.flags["chown"]) if ins.flags.get("chown") else ""
    chmod = _chmod(ins.flags.get("chmod"))
    from_ = exp(ins.flags["from"]) if ins.flags.get("from") else ""
    if ins.flags.get("checksum"):
        raise BuildStepError("ADD --checksum is not supported by the classic builder")
    if cmd == "COPY" and any(is_url(s) for s in srcs):
        raise BuildStepError("source can't be a URL for COPY")
    dest_abs = normalize_dest(state.config.working_dir, dest)
    with ExitStack() as stack:
        root = _mounted(b, b.source_image(from_), stack) if from_ else b.ctx
        local = [s for s in srcs if not is_url(s)]
        sources = resolve(root, local, cmd, allow_archives=cmd == "ADD" and not from_) if local else []
        digest = hashlib.sha256(checksum(root, local, chmod=chmod).encode() if local else b"")
        urls = [s for s in srcs if is_url(s)]
        if urls:
            tmp = tempfile.mkdtemp(prefix="build-add-", dir=os.path.join(b.svc.data_root, "tmp"))
            stack.callback(shutil.rmtree, tmp, True)
            for n, url in enumerate(urls):
                into = os.path.join(tmp, str(n))
                os.mkdir(into)
                src = download(url, into)
                sources.append(src)
                digest.update(checksum(into, [src.name], chmod=chmod if chmod is not None else 0o600).encode())
        if len(sources) == 1:
            kind = "dir" if os.path.isdir(sources[0].path) else "file"
        else:
            kind = "multi"
        nop = shell_of(state.config) + [f"#(nop) {cmd} {kind}:{digest.hexdigest()} in {dest} "]
        config = state.config

        def change(rootfs) -> None:
            owner = parse_chown(chown, rootfs) if chown else None
            copy_sources(rootfs, sources, dest_abs, owner=owner, chmod=chmod, cmd=cmd)

        b.step(state, {"created_by": " ".join(nop), "config": config.to_json(), "author": state.author,
                       "chown": chown},
               lambda: rw_image(b, state, config, " ".join(nop), change, config.replace(cmd=nop)), config)
