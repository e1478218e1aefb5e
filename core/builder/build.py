"""``POST /build``: Docker's classic builder (``DOCKER_BUILDKIT=0``).

:func:`build` extracts the context into a temporary directory under the data
root (removed afterwards, whatever happens), parses the Dockerfile and runs the
stages (up to ``target``) one instruction at a time.  Every instruction makes an
image whose parent is the previous one (``docker history`` lists their ids);
only the final image is tagged.  Output is Docker's: ``Step 2/5 : RUN ...``,
``" ---> Running in <id>"``, the command's output, ``"Removing intermediate
container <id>"``, ``" ---> <id>"``, ``{"aux": {"ID": ...}}`` per stage,
``Successfully built``/``Successfully tagged``.

Layout: this module (stages, FROM, the cache-or-make step, tags);
:mod:`.steps` (metadata instructions), :mod:`.layersteps` (COPY, ADD, WORKDIR,
RUN: the steps that make a layer), :mod:`.run` (RUN's container), :mod:`.copy`
(file copying), :mod:`.cache` (the build cache), :mod:`.cachefrom` (``cachefrom``
images as cache sources), :mod:`.buildargs`.

Errors before the first output line (a bad Dockerfile, a missing target) are
raised as they are (a plain HTTP error); later ones end the stream.
"""

import os
import shutil
import tempfile
from contextlib import contextmanager
from typing import Any

import attrs

from ..dockerignore import Matcher, read_patterns
from ..engine.images.importer import open_uncompressed
from ..errors import DockyardError, ImageNotFound, InvalidParameter, no_space
from ..model.image import ContainerConfig, History
from . import layersteps
from .buildargs import BuildArgs
from .cache import BuildCache
from .cachefrom import CacheSources
from .context import extract_context
from .dockerfile import DockerfileError, parse
from .instructions import Instruction, InstructionError, parse_instruction
from .run import BuildCancelled
from .shellexpand import ShellExpandError, expand_word
from .steps import DEFAULT_PATH, BuildStepError, apply_metadata, shell_of

__all__ = ["BuildCancelled", "BuildOptions", "BuildStepError", "Builder", "build"]


@attrs.define
class BuildOptions:
    """The query of ``POST /build``, checked (see :mod:`dockyard.daemon.routers.build`)."""

    tags: list = attrs.Factory(list)
    dockerfile: str = "Dockerfile"
    buildargs: dict = attrs.Factory(dict)
    labels: dict = attrs.Factory(dict)
    target: str = ""
    nocache: bool = False
    pull: bool = False
    quiet: bool = False
    rm: bool = True
    forcerm: bool = False
    host_config: dict = attrs.Factory(dict)  # RUN containers: NetworkMode, ExtraHosts, ShmSize, Memory, Cpu*
    cache_from: list = attrs.Factory(list)   # images whose history is a cache source (.cachefrom)
    auth: dict = attrs.Factory(dict)         # registry host -> AuthConfig (X-Registry-Config)


@attrs.define
class StageState:
    index: int
    name: str | None
    image_id: str | None
    config: ContainerConfig
    args: BuildArgs
    escape: str
    cmd_set: bool = False
    author: str = ""


def build(svc, body_path, opts, progress, cancel=None):
    """Build from the context tar at ``body_path``; returns the final image id.
    ``progress(msg)`` receives the JSON stream messages."""
    tmp = os.path.join(svc.data_root, "tmp")
    with no_space("build", svc.data_root):
        os.makedirs(tmp, exist_ok=True)
        ctx = tempfile.mkdtemp(prefix="build-", dir=tmp)
        try:
            with open_uncompressed(body_path) as fh:
                extract_context(_Padded(fh), ctx)
            text = read_dockerfile(ctx, opts.dockerfile)
            return Builder(svc, opts, ctx, progress, cancel).run(text)
        finally:
            shutil.rmtree(ctx, ignore_errors=True)


class _Padded:
    """A tar stream completed at its end: zeros up to the 512-byte block and the
    end-of-archive blocks.  The docker CLI's ``build -f -`` sends its Dockerfile
    entry last, unpadded and without them (dockerd's Go reader accepts that)."""

    def __init__(self, raw) -> None:
        self.raw, self.count = raw, 0
        self.tail: bytes | None = None

    def read(self, n=-1):
        if self.tail is None:
            data = self.raw.read(n)
            if data:
                self.count += len(data)
                return data
            self.tail = b"\0" * ((-self.count) % 512 + 1024)
        data, self.tail = (self.tail, b"") if n is None or n < 0 else (self.tail[:n], self.tail[n:])
        return data


def read_dockerfile(ctx, name):
    """The Dockerfile's bytes; then, as moby does, ``.dockerignore`` and the
    Dockerfile leave the context if ``.dockerignore`` lists them."""
    name = (name or "Dockerfile").lstrip("/")
    candidates = [name] + (["dockerfile"] if name == "Dockerfile" else [])
    for cand in candidates:
        path = os.path.join(ctx, cand)
        if os.path.isfile(path) and os.path.realpath(path).startswith(os.path.realpath(ctx) + "/"):
            with open(path, "rb") as fh:
                text = fh.read()
            break
    else:
        raise InvalidParameter(f"Cannot locate specified Dockerfile: {name}")
    ignore = os.path.join(ctx, ".dockerignore")
    if os.path.isfile(ignore) and not os.path.islink(ignore):
        with open(ignore, encoding="utf-8", errors="surrogateescape") as fh:
            matcher = Matcher(read_patterns(fh.read()), keep_required=False)
        for rel in (".dockerignore", cand):
            if matcher.matches(rel):
                os.unlink(os.path.join(ctx, rel))
    return text


def _label_instruction(key, value):
    return Instruction("LABEL", 0, 0, f"LABEL {key}={value}", pairs=[(key, value)], flags={"no-expand": True})


class Builder:
    def __init__(self, svc, opts, ctx, progress, cancel) -> None:
        self.svc, self.opts, self.ctx = svc, opts, ctx
        self.progress, self.cancel = progress, cancel
        self.cache = BuildCache(svc.store)
        self.sources = CacheSources(svc.images, svc.layers, opts.cache_from) if opts.cache_from else None
        self.containers: list[str] = []   # this step's temporary containers
        self.stages: list[tuple[int, str | None, str]] = []  # finished: (index, name, image id)
        self.quiet_buffer: list[dict[str, Any]] = []
        self.step_no, self.total = 0, 0

    # output -------------------------------------------------------------------
    def out(self, text) -> None:
        if text:
            self.send({"stream": text})

    def send(self, msg) -> None:
        if self.opts.quiet and "aux" not in msg:
            self.quiet_buffer.append(msg)
        else:
            self.progress(msg)

    def print_step(self, ins) -> None:
        self.step_no += 1
        self.out(f"Step {self.step_no}/{self.total} : {ins.original}\n")

    # the build ------------------------------------------------------------------
    def run(self, text):
        try:
            df = parse(text, filename=self.opts.dockerfile)
        except DockerfileError as exc:
            where = f" line {exc.line}" if exc.line else ""
            raise InvalidParameter(f"Dockerfile parse error{where}: {exc.message}") from None
        stages = list(df.stages)
        if self.opts.target:
            idx = next((i for i, st in enumerate(stages) if st.name == self.opts.target.lower()), None)
            if idx is None:
                raise InvalidParameter(f"failed to reach build target {self.opts.target} in Dockerfile")
            stages = stages[:idx + 1]
        extra = [_label_instruction(k, v) for k, v in sorted(self.opts.labels.items())]
        self.total = len(df.args) + sum(1 + len(st.instructions) for st in stages) + len(extra)
        self.escape = df.escape
        for warning in df.warnings:
            self.out(warning + "\n")
        try:
            image_id = self._stages(df, stages, extra)
        except BaseException as exc:
            self._flush_quiet()
            if isinstance(exc, (ShellExpandError, InstructionError)):
                raise BuildStepError(str(exc)) from None
            raise
        self.out(f"Successfully built {image_id.removeprefix('sha256:')[:12]}\n")
        for tag in self.opts.tags:
            ref = self.svc.images.tag(image_id, tag)
            self.out(f"Successfully tagged {ref}\n")
        if self.opts.quiet:
            self.progress({"stream": image_id + "\n"})
        return image_id

    def _flush_quiet(self) -> None:
        buffered, self.quiet_buffer = self.quiet_buffer, []
        for msg in buffered:
            self.progress(msg)

    def _stages(self, df, stages, extra):
        args = BuildArgs(self.opts.buildargs)
        for ins in df.args:
            self.print_step(ins)
            for name, raw in ins.pairs:
                default = expand_word(raw, args.meta_env(), escape=df.escape) if raw is not None else None
                args.add_meta(name, default)
        state = None
        for n, stage in enumerate(stages):
            self.print_step(stage.from_)
            with self.at(stage.from_):
                state = self._from(stage, args)
            self.out(f" ---> {(state.image_id or '').removeprefix('sha256:')[:12]}\n")
            instructions = stage.instructions + (extra if n == len(stages) - 1 else [])
            for ins in instructions:
                if self.cancel is not None and self.cancel.is_set():
                    self.out("Build cancelled\n")
                    raise BuildCancelled("Build cancelled")
                self.print_step(ins)
                with self.at(ins):
                    self.dispatch(state, ins)
                self.out(f" ---> {(state.image_id or '').removeprefix('sha256:')[:12]}\n")
            if state.image_id:
                self.send({"aux": {"ID": state.image_id}})
            self.stages.append((stage.index, stage.name, state.image_id))
        unused = args.unused()
        if unused:
            self.out(f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed\n")
        if state is None or not state.image_id:
            raise BuildStepError("No image was generated. Is your Dockerfile empty?")
        return state.image_id

    @contextmanager
    def at(self, ins):
        """A step's error names the Dockerfile line it comes from: ``Dockerfile:3: ...``
        (Docker's own wording follows, so clients matching on it still match)."""
        try:
            yield
        except BuildCancelled:
            raise
        except DockyardError as exc:
            if ins is not None and getattr(ins, "line", None) and not getattr(exc, "located", False):
                exc.args = (f"{self.opts.dockerfile}:{ins.line}: {exc}",) + exc.args[1:]
                exc.located = True  # type: ignore[attr-defined]  # (said once, by the innermost step)
            raise

    # FROM -------------------------------------------------------------------------
    def _from(self, stage, args):
        base = expand_word(stage.base, args.meta_env(), escape=self.escape)
        if not base:
            raise BuildStepError(f"base name ({stage.base}) should not be blank")
        image_id = None
        done = {name: image for _, name, image in self.stages if name}
        if base.lower() in done:
            image_id = done[base.lower()]
        elif base.lower() != "scratch":
            image_id = self.image(base)
        config = self.svc.images.config(image_id).defaults.copy() if image_id else ContainerConfig()
        state = StageState(stage.index, stage.name, image_id, config, args.for_stage(), self.escape)
        env = list(config.env or [])
        if not any(e.partition("=")[0] == "PATH" for e in env):
            state.config.env = env + [f"PATH={DEFAULT_PATH}"]
        triggers = list(config.on_build or [])
        state.config.on_build = None
        if triggers:
            self.out(f"# Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}\n")
        for trigger in triggers:
            try:
                ins = parse_instruction(trigger, stage.from_.line, stage.from_.line, self.escape)
            except InstructionError as exc:
                raise BuildStepError(f"invalid ONBUILD trigger {trigger!r}: {exc}") from None
            if ins.cmd in ("ONBUILD", "FROM", "MAINTAINER"):
                raise BuildStepError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed" if ins.cmd == "ONBUILD"
                                     else f"{ins.cmd} isn't allowed as an ONBUILD trigger")
            self.dispatch(state, ins)
        return state

    def image(self, name):
        """A base (or ``COPY --from``) image: local, or pulled from a registry."""
        from ..registry import names

        try:
            parsed = names.parse(name)
        except InvalidParameter as exc:
            raise BuildStepError(str(exc)) from None
        local = None
        try:
            local = self.svc.images.resolve(name)
        except ImageNotFound:
            pass
        registry = getattr(self.svc, "registry", None)
        if (local is None or self.opts.pull) and registry is not None and parsed.domain != names.DOCKER_HUB:
            forward = (lambda msg: None) if self.opts.quiet else self.progress
            return registry.pull(name, auth=self.opts.auth.get(parsed.domain), progress=forward,
                                 cancel=self.cancel)
        if local is not None:
            return local
        raise BuildStepError(f"pull access denied for {parsed.familiar.rpartition(':')[0] or parsed.familiar}, "
                             "repository does not exist or may require 'docker login': no such image here "
                             f"({parsed}) and this daemon does not pull from Docker Hub")

    def source_image(self, key):
        """``COPY --from=key``: a finished stage (by name or index) or an image."""
        for index, name, image in self.stages:
            if key.lower() == name or key == str(index):
                return image
        if key.isdigit():
            raise BuildStepError(f"invalid from flag value {key}: index out of bounds")
        try:
            return self.image(key)
        except DockyardError as exc:
            raise BuildStepError(f"invalid from flag value {key}: {exc}") from None

    # one instruction ----------------------------------------------------------------
    def dispatch(self, state, ins):
        try:
            if ins.cmd in ("RUN", "COPY", "ADD", "WORKDIR"):
                layersteps.dispatch(self, state, ins)
            else:
                config, comment = apply_metadata(state, ins, self.out)
                nop = shell_of(config) + ["#(nop) ", comment]
                self.step(state, {"created_by": " ".join(nop), "config": config.to_json(), "author": state.author},
                          lambda: self.metadata_image(state, config, nop), config)
        except BaseException:
            # unlike dockerd (which keeps a failed step's container unless forcerm), a failed
            # build leaves nothing behind unless rm=false asked to keep containers
            if self.opts.rm or self.opts.forcerm:
                self.remove_containers()
            raise
        if self.opts.rm or self.opts.forcerm:
            self.remove_containers()

    def step(self, state, description, make, config) -> None:
        """Reuse the cached image of (parent, ``description``), or ``make()`` one."""
        parent = state.image_id or ""
        hit = None if self.opts.nocache else self.cached(parent, description, config)
        if hit is not None:
            self.out(" ---> Using cache\n")
            new = hit
        else:
            new = make()
            self.cache.record(parent, description, new)
        state.image_id, state.config = new, config

    def cached(self, parent, description, config):
        """The image of a step done before: the local cache's, or with ``cachefrom``
        what its sources allow or hold (:mod:`.cachefrom`)."""
        local = self.cache.lookup(parent, description)
        if self.sources is None:
            return local
        if local is not None and self.sources.allows(local):
            return local
        return self.sources.lookup(parent, description["created_by"], config)

    def metadata_image(self, state, config, nop):
        return self.svc.writer.new_image(state.image_id, config, History(created_by=" ".join(nop)),
                                         author=state.author, container_config=config.replace(cmd=nop))

    def remove_containers(self) -> None:
        while self.containers:
            cid = self.containers.pop(0)
            try:
                self.svc.containers.remove(cid, force=True)
            except DockyardError as exc:
                self.out(f"Failed to remove intermediate container {cid[:12]}: {exc}\n")
                continue
            self.out(f"Removing intermediate container {cid[:12]}\n")
