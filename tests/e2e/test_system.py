"""System endpoints through the real ``docker`` CLI and the docker SDK: info and
version complete, system df (and -v), system prune and builder prune, and swarm,
plugins answering as a non-swarm single engine."""

import json
import os
import shutil
import uuid

import pytest

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("docker") is None, reason="docker CLI not installed"),
]
NOT_MANAGER = b"This node is not a swarm manager"


def _ok(res):
    assert res.returncode == 0, (res.stdout, res.stderr)
    return res.stdout.decode()


def test_docker_info_prints_every_section(daemon):
    name = f"sys-{uuid.uuid4().hex[:8]}"
    _ok(daemon.docker("run", "-d", "--name", name, "busybox", "sleep", "60"))
    try:
        out = _ok(daemon.docker("info"))
        for line in ("Containers:", "Running:", "Paused:", "Stopped:", "Images:", "Storage Driver:",
                     "Logging Driver: json-file", "Cgroup Driver: cgroupfs", "Cgroup Version:", "Swarm: inactive",
                     "Runtimes:", "Default Runtime:", "Security Options:", "Kernel Version:", "Operating System:",
                     "OSType: linux", "Architecture:", "CPUs:", "Total Memory:", "Docker Root Dir:",
                     "Live Restore Enabled: true", "Plugins:", "Network: bridge cni host none",
                     "Log: cri journald json-file local none syslog"):
            assert line in out, (line, out)
        assert "WARNING: No memory limit support" not in out + daemon.docker("info").stderr.decode()
        fmt = "{{.ContainersRunning}} {{.Swarm.LocalNodeState}} {{.OSType}} {{.CgroupVersion}}"
        fields = _ok(daemon.docker("system", "info", "--format", fmt)).split()
        assert int(fields[0]) >= 1 and fields[1:3] == ["inactive", "linux"] and fields[3] in ("1", "2")
        info = json.loads(_ok(daemon.docker("system", "info", "--format", "{{json .}}")))
        assert info["Containers"] == info["ContainersRunning"] + info["ContainersPaused"] + info["ContainersStopped"]
        assert info["NCPU"] == os.cpu_count() and info["MemTotal"] > 0
        assert info["RegistryConfig"]["IndexConfigs"]["docker.io"]["Official"] is True
    finally:
        daemon.docker("rm", "-f", name)


def test_sdk_info_and_version(daemon):
    client = daemon.sdk()
    try:
        info = client.info()
        for key in ("Containers", "ContainersRunning", "ContainersPaused", "ContainersStopped", "Images", "Driver",
                    "DriverStatus", "Plugins", "MemTotal", "NCPU", "KernelVersion", "OperatingSystem", "OSType",
                    "Architecture", "CgroupDriver", "CgroupVersion", "SecurityOptions", "Runtimes",
                    "DefaultRuntime", "Swarm", "RegistryConfig", "ServerVersion", "Name", "ID"):
            assert key in info, key
        assert set(info["Plugins"]) >= {"Volume", "Network", "Authorization", "Log"}
        assert info["Swarm"]["LocalNodeState"] == "inactive"
        assert info["DefaultRuntime"] in info["Runtimes"]
        assert info["MemoryLimit"] and info["PidsLimit"] and info["CPUShares"]
        version = client.version()
        assert version["ApiVersion"] == "1.41" and version["Os"] == "linux"
        assert version["Components"][0]["Name"] == "Engine"
        assert {"GoVersion", "GitCommit", "ApiVersion"} <= set(version["Components"][0]["Details"])
        assert _ok(daemon.docker("version", "--format", "{{.Server.APIVersion}}")).strip() == "1.41"
    finally:
        client.close()


def test_info_lists_insecure_registries_from_the_daemon_flags(session_root, busybox_tar):
    from dockyard.testing.daemon import Daemon

    d = Daemon(session_root / "insecure", extra_args=["--insecure-registry", "10.1.2.3:5000"]).start()
    try:
        out = _ok(d.docker("info"))
        assert "Insecure Registries:" in out and "10.1.2.3:5000" in out.split("Insecure Registries:")[1]
        cfg = d.sdk().info()["RegistryConfig"]["IndexConfigs"]["10.1.2.3:5000"]
        assert cfg["Secure"] is False
    finally:
        d.stop()
        d.remove_network_objects()


def test_system_df_renders(daemon):
    name = f"sys-{uuid.uuid4().hex[:8]}"
    _ok(daemon.docker("run", "--name", name, "busybox", "sh", "-c", "head -c 50000 /dev/zero > /blob"))
    try:
        out = _ok(daemon.docker("system", "df"))
        rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
        assert set(rows) == {"Images", "Containers", "Local", "Build"}, out
        out = _ok(daemon.docker("system", "df", "-v"))
        assert "Images space usage:" in out and "Containers space usage:" in out and "busybox" in out
        line = next(line for line in out.splitlines() if line.rstrip().endswith(name))
        assert "50kB" in line, line
        df = daemon.sdk().df()
        assert df["LayersSize"] > 0 and isinstance(df["Volumes"], list)
        c = next(c for c in df["Containers"] if c["Names"] == ["/" + name])
        assert c["SizeRw"] >= 50000 and c["SizeRootFs"] > c["SizeRw"]
        img = next(i for i in df["Images"] if "busybox:latest" in i["RepoTags"])
        assert img["Containers"] >= 1 and img["SharedSize"] >= 0 and img["Size"] > 0
    finally:
        daemon.docker("rm", "-f", name)


def test_system_prune_and_builder_prune(daemon):
    stopped, live = f"sys-{uuid.uuid4().hex[:8]}", f"sys-{uuid.uuid4().hex[:8]}"
    _ok(daemon.docker("run", "--name", stopped, "busybox", "true"))
    _ok(daemon.docker("run", "-d", "--name", live, "busybox", "sleep", "60"))
    try:
        out = _ok(daemon.docker("system", "prune", "-f"))
        assert "Total reclaimed space" in out
        names = _ok(daemon.docker("ps", "-a", "--format", "{{.Names}}")).split()
        assert stopped not in names and live in names
        assert _ok(daemon.docker("images", "-q", "busybox")).strip()  # in use: kept
        out = _ok(daemon.docker("builder", "prune", "-f"))
        assert "Total" in out
        client = daemon.sdk()
        try:
            report = client.api.prune_builds()
            assert report["SpaceReclaimed"] == 0 and "CachesDeleted" in report
        finally:
            client.close()
    finally:
        daemon.docker("rm", "-f", live, stopped)


def test_classic_build_steps_are_images_not_build_cache(daemon, tmp_path):
    """As dockerd's: df lists no build cache after a classic build (its steps are
    images, listed as images); ``builder prune`` makes the next build run its steps again."""
    (tmp_path / "Dockerfile").write_text(f"FROM busybox\nRUN echo {uuid.uuid4().hex} > /stamp\n")
    tag = f"prune-{uuid.uuid4().hex[:8]}"
    import subprocess
    env = {**os.environ, "DOCKER_BUILDKIT": "0", "DOCKER_CONFIG": str(daemon.base / "docker-config")}

    def build():
        res = subprocess.run(["docker", "-H", daemon.host, "build", "-t", tag, str(tmp_path)], capture_output=True,
                             env=env, timeout=120)
        assert res.returncode == 0, res.stderr
        return res.stdout.decode()
    build()
    try:
        assert "Using cache" in build()
        client = daemon.sdk()
        try:
            assert client.df()["BuildCache"] is None
            out = _ok(daemon.docker("system", "df"))
            row = next(line.split() for line in out.splitlines() if line.startswith("Build Cache"))
            assert row[2:5] == ["0", "0", "0B"], out
            rows = _ok(daemon.docker("system", "df", "-v")).split("Build cache usage: 0B")[1].strip().splitlines()
            assert len(rows) <= 1, rows  # the table's header, no record
            report = client.api.prune_builds()
            assert report["CachesDeleted"]
        finally:
            client.close()
        assert "Using cache" not in build()
    finally:
        daemon.docker("rmi", "-f", tag)


@pytest.mark.parametrize("command", [("node", "ls"), ("service", "ls"), ("secret", "ls"), ("config", "ls"),
                                     ("swarm", "unlock-key")])
def test_swarm_commands_answer_as_a_non_swarm_engine(daemon, command):
    res = daemon.docker(*command)
    assert res.returncode != 0 and NOT_MANAGER in res.stderr, res.stderr


def test_swarm_and_plugin_endpoints(daemon):
    import docker.errors

    res = daemon.docker("swarm", "leave")
    assert res.returncode != 0 and b"This node is not part of a swarm" in res.stderr
    out = _ok(daemon.docker("plugin", "ls"))
    assert out.split() == ["ID", "NAME", "DESCRIPTION", "ENABLED"]
    res = daemon.docker("plugin", "rm", "nope")
    assert res.returncode != 0 and b'plugin "nope" not found' in res.stderr
    client = daemon.sdk()
    try:
        assert client.plugins.list() == []
        with pytest.raises(docker.errors.APIError) as err:
            client.swarm.reload()
        assert err.value.status_code == 503
        with pytest.raises(docker.errors.APIError) as err:
            client.services.list()
        assert err.value.status_code == 503 and "not a swarm manager" in str(err.value)
        with pytest.raises(docker.errors.NotFound):
            client.plugins.get("nope")
    finally:
        client.close()
