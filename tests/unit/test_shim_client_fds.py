"""The daemon's side of the shim kit watches fds of any number: with a thousand
containers a daemon holds fds past 1023, which select() cannot watch."""

import os
import resource

import pytest
from dockyard.driverkit.shim import client


@pytest.fixture
def high_fd():
    """A pipe whose read end is fd 1500 or more (the soft fd limit raised for it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip(f"the hard fd limit {hard} is too low")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2048), hard))
    r, w = os.pipe()
    high = os.dup2(r, 1500 + os.getpid() % 100)
    os.close(r)
    try:
        yield high, w
    finally:
        os.close(high)
        os.close(w)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_pipe_past_fd_1023_is_waited_on(high_fd):
    fd, w = high_fd
    assert fd > 1023
    assert client._readable(fd, 0.05) is False  # nothing written yet: times out
    os.write(w, b"x")
    assert client._readable(fd, 5) is True


class _Launcher:
    """A launcher whose report pipe is the high fd, as a zygote's would be."""

    def __init__(self, fd):
        self.fd = fd

    def launch(self, sdir):
        return self.fd


def test_start_reads_a_report_on_a_fd_past_1023(high_fd, tmp_path):
    fd, _ = high_fd  # for the raised limit
    r, w = os.pipe()
    report = os.dup2(r, fd + 1)  # what the zygote hands back, past 1023
    os.close(r)
    os.write(w, b'{"pid": 4242}')
    os.close(w)  # the shim's report ends: EOF
    assert client.start(_Launcher(report), str(tmp_path), "container x") == 4242  # start closes it
