"""Fixtures of the adversarial suite: attacks performed for real.

* ``cc``: compiles a C helper statically (``cc("name", source)`` -> path), so it
  runs inside a busybox container that has no libc;
* ``as_nobody``: runs a host command as the unprivileged user ``nobody``
  (``setpriv``, no supplementary groups), the "host user without root" of the
  threat model in docs/security.md.

The daemon is the session's (``tests/conftest.py``), with ``busybox`` imported.
"""

import os
import shutil
import subprocess

import pytest

NOBODY = 65534


@pytest.fixture(scope="session")
def cc(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.fail("gcc is not installed: scripts/setup.sh installs it")
    out = tmp_path_factory.mktemp("attack-bin")
    os.chmod(out, 0o755)

    def build(name, source, *flags):
        src = out / f"{name}.c"
        src.write_text(source)
        exe = out / name
        res = subprocess.run(["gcc", "-static", "-O1", "-o", str(exe), str(src), *flags],
                             capture_output=True, text=True)
        assert res.returncode == 0, f"compiling {name}: {res.stderr}"
        return exe

    return build


@pytest.fixture(scope="session")
def as_nobody():
    if os.geteuid() != 0:
        pytest.skip("needs root to become nobody")

    def run(*cmd, **kw):
        # setpriv still holds root's capabilities at its execve, so the path of a command
        # it runs itself is looked up past every directory mode: a shell, already nobody,
        # runs it instead
        return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--",
                               "/bin/sh", "-c", 'exec "$@"', "sh", *cmd],
                              capture_output=True, text=True, timeout=kw.pop("timeout", 60), **kw)

    return run
