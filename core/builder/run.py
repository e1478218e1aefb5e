"""RUN in a real container: created from the current image with the build's
network mode and resources, the build args in its environment (not in the
image), its output streamed to the build while it runs, its diff committed.

The output goes to the build's stream as dockerd's classic builder sends it:
stdout as it is, stderr wrapped in the bright-red SGR codes of moby's
``streamformatter.NewStderrWriter`` (``ESC[91m`` ... ``ESC[0m``), which the
docker CLI passes through to the terminal.

The container stays recorded until the build removes it (``rm``/``forcerm``,
see :mod:`.build`); its mount and network are released when it exits, whatever
the outcome.
"""

import time

from ..errors import DockyardError
from ..jsonlog import read_entries
from .steps import BuildStepError

__all__ = ["BuildCancelled", "RunFailed", "run_container"]
_POLL = 0.1
STDERR_START, STDERR_END = "\x1b[91m", "\x1b[0m"


class BuildCancelled(DockyardError):
    """The client went away: the build stopped."""


class RunFailed(BuildStepError):
    """A RUN exited non-zero (Docker's message and ``code`` in errorDetail)."""

    def __init__(self, cmd, code) -> None:
        super().__init__(f"The command '{' '.join(cmd)}' returned a non-zero code: {code}")
        self.code = code


def _follow(path, offset):
    """Complete json-file log lines after ``offset`` as the build shows them
    (stderr's in red): ``(texts, new offset)``."""
    entries, offset = read_entries(path, offset)
    texts = []
    for entry in entries:
        text = entry.get("log", "")
        if text and entry.get("stream") == "stderr":
            text = STDERR_START + text + STDERR_END
        texts.append(text)
    return texts, offset


def run_container(b, state, cmd, env, host_config):
    """Run ``cmd`` on ``state``'s image; returns ``(cid, (diff path, diff id))``.
    ``b`` is the :class:`~.build.Builder` (output, cancel, temp containers)."""
    svc = b.svc
    if not state.image_id:
        raise BuildStepError("RUN needs a base image with a file system (FROM scratch has none to run in)")
    cfg = state.config
    body = {"Image": state.image_id, "Cmd": cmd, "Entrypoint": [], "Env": env,
            "WorkingDir": cfg.working_dir or "", "User": cfg.user or "",
            "Labels": cfg.labels or {}, "AttachStdout": True, "AttachStderr": True,
            "HostConfig": dict(host_config)}
    cid = svc.containers.create(body)
    b.containers.append(cid)
    b.out(f" ---> Running in {cid[:12]}\n")
    rec = svc.containers.get(cid)
    log_path, offset = rec.log_path, 0
    svc.containers.start(cid)
    while True:
        done = svc.containers.wait_exit(cid, _POLL)
        texts, offset = _follow(log_path, offset)
        for text in texts:
            b.out(text)
        if done:
            break
        if b.cancel is not None and b.cancel.is_set():
            try:
                svc.containers.kill(cid)
            except DockyardError:
                pass
            svc.containers.wait_exit(cid, None)
            raise BuildCancelled("Build cancelled")
    time.sleep(0)  # let the log writer's last line land before the final read
    texts, offset = _follow(log_path, offset)
    for text in texts:
        b.out(text)
    code = svc.containers.get(cid).state.exit_code
    if code != 0:
        raise RunFailed(cmd, code)
    top = svc.images.top_layer(state.image_id)
    return cid, svc.writer.diff_layer(cid, top)
