"""The CLI's argument parsing, request bodies, output formatting and lean start-up."""

import json
import os
import subprocess
import sys

import pytest

from dockyard.cli import containers, hosts, images, main, output, references


def parse(*argv):
    return main.build_parser().parse_args(list(argv))


def test_default_host_matches_client():
    from dockyard.client import DEFAULT_HOST
    assert main.DEFAULT_HOST == hosts.DEFAULT_HOST == DEFAULT_HOST


def test_run_flags_make_dockers_create_body():
    args = parse("-H", "unix:///tmp/x.sock", "run", "--rm", "-e", "A=1", "-e", "FROM_ENV", "-e", "UNSET",
                 "-w", "/tmp", "--name", "web", "-h", "boxy", "--net", "none", "--entrypoint", "/bin/sh",
                 "-u", "1000:1000", "-l", "a=b", "-l", "flag", "busybox", "-c", "echo hi", "--rm")
    assert args.host == "unix:///tmp/x.sock" and args.name == "web"
    body = containers.create_body(args, environ={"FROM_ENV": "yes"})
    assert body == {
        "Hostname": "boxy", "User": "1000:1000",
        "AttachStdin": False, "AttachStdout": True, "AttachStderr": True,
        "Tty": False, "OpenStdin": False, "StdinOnce": False,
        "Env": ["A=1", "FROM_ENV=yes"],
        "Cmd": ["-c", "echo hi", "--rm"],  # everything after the image belongs to the container
        "Image": "busybox", "WorkingDir": "/tmp", "Entrypoint": ["/bin/sh"],
        "Labels": {"a": "b", "flag": ""},
        "HostConfig": {"AutoRemove": True, "NetworkMode": "none"},
    }


def test_run_defaults_and_detach_interactive():
    body = containers.create_body(parse("run", "busybox"), environ={})
    assert body["Cmd"] is None and body["Entrypoint"] is None and body["Env"] == []
    assert body["HostConfig"] == {"AutoRemove": False, "NetworkMode": "default"}
    args = parse("run", "-d", "-it", "--network", "host", "--entrypoint", "", "busybox", "sh")
    body = containers.create_body(args, environ={})
    assert args.detach and body["Tty"] and body["OpenStdin"]
    assert not body["AttachStdout"] and not body["AttachStdin"] and not body["StdinOnce"]
    assert body["Entrypoint"] == [""] and body["HostConfig"]["NetworkMode"] == "host"
    args = parse("run", "-i", "busybox", "cat")
    body = containers.create_body(args, environ={})
    assert body["AttachStdin"] and body["OpenStdin"] and body["StdinOnce"]


def test_create_has_run_flags_but_no_detach():
    args = parse("create", "--name", "n", "--rm", "-e", "X=1", "busybox", "true")
    body = containers.create_body(args, environ={})
    assert body["Cmd"] == ["true"] and body["AttachStdout"] and body["HostConfig"]["AutoRemove"]
    with pytest.raises(SystemExit):
        parse("create", "-d", "busybox")


def test_env_file(tmp_path):
    f = tmp_path / "env"
    f.write_text("# comment\n\nA=1\nB\nC=has spaces = ok\n")
    args = parse("run", "--env-file", str(f), "-e", "D=4", "busybox")
    assert containers.create_body(args, environ={"B": "2"})["Env"] == ["A=1", "B=2", "C=has spaces = ok", "D=4"]


def test_other_verbs_parse():
    assert parse("ps", "-a", "-q", "--no-trunc").all
    a = parse("logs", "-f", "--tail", "10", "-t", "c1")
    assert (a.follow, a.tail, a.timestamps, a.container) == (True, "10", True, "c1")
    assert parse("stop", "-t", "3", "a", "b").time == 3
    assert parse("kill", "-s", "HUP", "a").signal == "HUP"
    assert parse("rm", "-f", "a", "b").containers == ["a", "b"]
    a = parse("inspect", "--type", "image", "-f", "{{.Id}}", "x")
    assert (a.type, a.format, a.names) == ("image", "{{.Id}}", ["x"])
    a = parse("import", "-", "repo:tag", "-c", "CMD [\"sh\"]", "--change", "ENV A=1", "-m", "msg")
    assert (a.file, a.reference, a.change, a.message) == ("-", "repo:tag", ['CMD ["sh"]', "ENV A=1"], "msg")
    assert parse("images", "-q", "-a").quiet
    assert parse("rmi", "-f", "x").force
    assert parse("start", "-a", "c").attach
    assert parse("wait", "a", "b").containers == ["a", "b"]


def test_prescan_finds_forwarded_commands():
    assert main._prescan(["-H", "unix:///s", "daemon", "--data-root", "/x"]) == ("unix:///s", False, 2, False)
    assert main._prescan(["-D", "--host=tcp://h:1", "driver", "ls"]) == ("tcp://h:1", True, 2, False)
    assert main._prescan(["--version"])[3] is True


def test_daemon_and_driver_get_remaining_argv(monkeypatch):
    seen = {}
    import types
    fake_daemon = types.ModuleType("dockyard.daemon.main")
    fake_daemon.main = lambda argv: seen.setdefault("daemon", argv) and 0
    fake_driver = types.ModuleType("dockyard.cli.driver")
    fake_driver.main = lambda argv, host: seen.setdefault("driver", argv) and seen.setdefault("host", host) and 3
    monkeypatch.setitem(sys.modules, "dockyard.daemon.main", fake_daemon)
    monkeypatch.setitem(sys.modules, "dockyard.cli.driver", fake_driver)
    assert main.main(["daemon", "--data-root", "/x"]) == 0
    assert main.main(["driver", "use", "storage", "vfs"]) == 3
    assert seen == {"daemon": ["--data-root", "/x"], "driver": ["use", "storage", "vfs"],
                    "host": hosts.resolve(None, os.environ)[0]}  # driver ls asks that daemon
    seen.clear()
    main.main(["-H", "unix:///s", "daemon"])
    assert seen["daemon"] == ["-H", "unix:///s"]


def test_host_from_environment(monkeypatch):
    monkeypatch.setenv("DOCKYARD_HOST", "unix:///nowhere/dockyard.sock")
    seen = {}

    def fake_cmd(ctx, args):
        seen[args.last] = ctx.host
        return 0
    monkeypatch.setattr(containers, "cmd_ps", fake_cmd)
    assert main.main(["ps"]) == 0  # read by main._plain_ps
    assert main.main(["ps", "-n", "-2"]) == 0  # by argparse
    assert seen == {-1: "unix:///nowhere/dockyard.sock", -2: "unix:///nowhere/dockyard.sock"}


def test_no_daemon_is_one_clear_line(tmp_path):
    res = subprocess.run([sys.executable, "-m", "dockyard.cli.main", "-H", f"unix://{tmp_path}/none.sock", "ps"],
                         capture_output=True, timeout=30)
    assert res.returncode == 1
    assert res.stderr.decode().strip() == (f"Cannot connect to the Dockyard daemon at unix://{tmp_path}/none.sock. "
                                           "Is the dockyard daemon running?")


FORBIDDEN = ("aiohttp", "pluggy", "stevedore", "dockyard.daemon", "dockyard.drivers", "dockyard.client",
             "dockyard.engine")


def imported_modules(*argv):
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "dockyard.cli.main", *argv],
                         capture_output=True, timeout=30)
    assert res.returncode == 0, res.stderr
    names = {line.split("|")[-1].strip() for line in res.stderr.decode().splitlines()
             if line.startswith("import time:") and "|" in line}
    return res.stdout.decode(), names


@pytest.mark.parametrize("flag", ["--version", "--help"])
def test_lean_start_up(flag):
    out, names = imported_modules(flag)
    assert ("Dockyard version" in out) if flag == "--version" else ("usage: dockyard" in out)
    heavy = sorted(n for n in names if n.split(".")[0] in FORBIDDEN or n.startswith(FORBIDDEN))
    assert heavy == []
    assert "json" not in names and "http.client" not in names
    if flag == "--version":
        assert "argparse" not in names and "dockyard.cli.containers" not in names


# --- output ---------------------------------------------------------------------------


def test_human_units():
    assert [output.human_duration(s) for s in (0.5, 1, 42, 70, 150, 3000, 3700, 7200, 3 * 86400, 30 * 86400)] == [
        "Less than a second", "1 second", "42 seconds", "About a minute", "2 minutes", "50 minutes",
        "About an hour", "2 hours", "3 days", "4 weeks"]
    assert output.since(1000, now=1090) == "About a minute ago"
    assert [output.human_size(n) for n in (0, 999, 4096, 1_240_000, 5_300_000_000)] == [
        "0B", "999B", "4.1kB", "1.24MB", "5.3GB"]


def test_ps_table_like_docker():
    c = {"Id": "a" * 64, "Names": ["/web"], "Image": "busybox", "Command": "sh -c 'while true; do sleep 1; done'",
         "Created": 1000, "State": "running", "Status": "Up 3 seconds",
         "Ports": [{"PrivatePort": 80, "Type": "tcp"}]}
    rec = containers.ps_record(c, now=1003)
    assert rec["ID"] == "a" * 12 and rec["Command"] == '"sh -c \'while true; …"'
    assert rec["RunningFor"] == "3 seconds ago" and rec["Names"] == "web" and rec["Ports"] == "80/tcp"
    lines = output.render_rows(containers.PS_FORMAT, [rec], containers.PS_HEADERS)
    assert lines[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    assert lines[0].startswith("CONTAINER ID   IMAGE     COMMAND")
    assert lines[1].startswith("a" * 12 + "   busybox   ")
    assert "Up 3 seconds" in lines[1] and lines[1].endswith("80/tcp    web")
    assert output.render_rows("{{.Names}}: {{.Status}}", [rec], containers.PS_HEADERS) == ["web: Up 3 seconds"]
    full = containers.ps_record(c, trunc=False, now=1003)
    assert full["ID"] == "a" * 64 and full["Command"] == '"sh -c \'while true; do sleep 1; done\'"'


def test_images_rows():
    imgs = [{"Id": "sha256:" + "b" * 64, "RepoTags": ["busybox:latest", "localhost:5000/bb:v1"], "Created": 0,
             "Size": 4_260_000},
            {"Id": "sha256:" + "c" * 64, "RepoTags": None, "Created": 0, "Size": 0}]
    recs = images.image_records(imgs, now=90)
    assert [(r["Repository"], r["Tag"], r["ID"], r["Size"]) for r in recs] == [
        ("busybox", "latest", "b" * 12, "4.26MB"), ("localhost:5000/bb", "v1", "b" * 12, "4.26MB"),
        ("<none>", "<none>", "c" * 12, "0B")]
    lines = output.render_rows(images.IMAGES_FORMAT, recs, images.IMAGES_HEADERS)
    assert lines[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert references.split_reference("localhost:5000/x") == ("localhost:5000/x", None)
    assert references.split_reference("x:1.0") == ("x", "1.0")


def test_go_templates():
    obj = {"Id": "abc", "State": {"Status": "exited", "ExitCode": 3, "Running": False},
           "Config": {"Cmd": ["echo", "hi"], "Env": ["A=1"], "Labels": {"x.y": "z"}, "Tty": False}}
    render = lambda t: output.Template(t).render(obj)  # noqa: E731
    assert render("{{.Id}}") == "abc"
    assert render("{{.State.Status}} {{.State.ExitCode}}") == "exited 3"
    assert json.loads(render("{{json .Config}}")) == obj["Config"]
    assert render("{{json .Config.Cmd}}") == '["echo","hi"]'
    assert render("{{.Config.Cmd}} {{.Config.Tty}} {{.Nope}}") == "[echo hi] false <no value>"
    assert render('{{index .Config.Labels "x.y"}}') == "z"
    assert render("{{range .Config.Env}}<{{.}}>{{end}}") == "<A=1>"
    assert render("{{if .State.Running}}up{{else}}down{{end}}") == "down"
    assert render("{{.Config.Cmd | json}}") == '["echo","hi"]'
    with pytest.raises(output.TemplateError):
        output.Template("{{range .X}}")


def test_time_arg():
    assert containers.time_arg("1700000000") == "1700000000"
    assert containers.time_arg("10m", now=1000) == "400"
    assert containers.time_arg("1h30m", now=10000) == "4600"
    assert containers.time_arg("2024-01-01T00:00:00Z") == "1704067200"
    with pytest.raises(ValueError):
        containers.time_arg("yesterday")


def test_start_error_codes():
    assert containers.start_error_code('exec: "nope": executable file not found in $PATH') == 127
    assert containers.start_error_code("permission denied") == 126
    assert containers.start_error_code("cgroup trouble") == 125


# --- run/create resource, device, mount and security flags (cli/runflags.py) -------------------


def test_resource_and_security_flags_fill_host_config(tmp_path):
    profile = tmp_path / "seccomp.json"
    profile.write_text('{\n  "defaultAction": "SCMP_ACT_ALLOW",\n  "syscalls": []\n}\n')
    args = parse("run", "-m", "512m", "--memory-swap", "1g", "--memory-reservation", "100k", "--memory-swappiness", "10",
                 "--kernel-memory", "64M", "--oom-kill-disable", "--oom-score-adj", "-500", "--cpus", "1.5",
                 "-c", "512", "--cpu-period", "50000", "--cpu-quota", "-1", "--cpuset-cpus", "0-1", "--cpuset-mems", "0",
                 "--pids-limit", "100", "--blkio-weight", "300", "--blkio-weight-device", "/dev/sda:200",
                 "--device-read-bps", "/dev/sda:1mb", "--device-write-iops", "/dev/sda:1000",
                 "--device", "/dev/fuse", "--device", "/dev/sda:/dev/xvda:rw", "--device", "/dev/null:r",
                 "--device-cgroup-rule", "c 42:* rmw", "--ulimit", "nofile=1024:2048", "--ulimit", "nproc=10",
                 "--cap-add", "NET_ADMIN", "--cap-drop", "ALL", "--privileged", "--security-opt", "no-new-privileges",
                 "--security-opt", f"seccomp={profile}", "--security-opt", "label:disable", "--read-only",
                 "--tmpfs", "/run:rw,size=64m", "--tmpfs", "/tmp", "-v", "/srv:/srv:ro", "-v", "/data",
                 "--mount", "type=bind,source=/a,target=/b,readonly,bind-propagation=rshared",
                 "--mount", "type=tmpfs,dst=/t,tmpfs-size=1m,tmpfs-mode=1777", "--shm-size", "1g", "--init",
                 "--pid", "host", "--ipc", "shareable", "--uts", "host", "--cgroupns", "private", "--group-add", "audio",
                 "--group-add", "29", "--sysctl", "net.ipv4.ip_forward=1", "--sysctl", "kernel.shmmax=100",
                 "--stop-signal", "SIGUSR1", "--stop-timeout", "30", "--cgroup-parent", "/mine", "busybox")
    body = containers.create_body(args, environ={})
    mib = 1024 * 1024
    assert body["HostConfig"] == {
        "AutoRemove": False, "NetworkMode": "default",
        "Memory": 512 * mib, "MemorySwap": 1024 * mib, "MemoryReservation": 100 * 1024, "MemorySwappiness": 10,
        "KernelMemory": 64 * mib, "OomScoreAdj": -500, "NanoCpus": 1_500_000_000, "CpuShares": 512,
        "CpuPeriod": 50000, "CpuQuota": -1, "CpusetCpus": "0-1", "CpusetMems": "0", "PidsLimit": 100,
        "BlkioWeight": 300, "ShmSize": 1024 * mib, "CgroupParent": "/mine", "IpcMode": "shareable",
        "PidMode": "host", "UTSMode": "host", "CgroupnsMode": "private",
        "OomKillDisable": True, "Privileged": True, "ReadonlyRootfs": True, "Init": True,
        "BlkioWeightDevice": [{"Path": "/dev/sda", "Weight": 200}],
        "BlkioDeviceReadBps": [{"Path": "/dev/sda", "Rate": mib}],
        "BlkioDeviceWriteIOps": [{"Path": "/dev/sda", "Rate": 1000}],
        "Mounts": [{"Type": "bind", "Source": "/a", "Target": "/b", "ReadOnly": True,
                    "BindOptions": {"Propagation": "rshared"}},
                   {"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": mib, "Mode": 0o1777}}],
        "DeviceCgroupRules": ["c 42:* rmw"],
        "Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 2048}, {"Name": "nproc", "Soft": 10, "Hard": 10}],
        "Sysctls": {"net.ipv4.ip_forward": "1", "kernel.shmmax": "100"},
        "Devices": [{"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse", "CgroupPermissions": "rwm"},
                    {"PathOnHost": "/dev/sda", "PathInContainer": "/dev/xvda", "CgroupPermissions": "rw"},
                    {"PathOnHost": "/dev/null", "PathInContainer": "/dev/null", "CgroupPermissions": "r"}],
        "CapAdd": ["NET_ADMIN"], "CapDrop": ["ALL"], "GroupAdd": ["audio", "29"],
        "SecurityOpt": ["no-new-privileges", 'seccomp={"defaultAction":"SCMP_ACT_ALLOW","syscalls":[]}', "label:disable"],
        "Tmpfs": {"/run": "rw,size=64m", "/tmp": ""},
        "Binds": ["/srv:/srv:ro"],
    }
    assert body["StopSignal"] == "SIGUSR1" and body["StopTimeout"] == 30 and body["Volumes"] == {"/data": {}}


def test_flags_not_given_set_nothing():
    body = containers.create_body(parse("create", "busybox"), environ={})
    assert body["HostConfig"] == {"AutoRemove": False, "NetworkMode": "default"}
    assert not {"StopSignal", "StopTimeout", "Volumes"} & set(body)


def test_sizes_and_numbers_in_dockers_units():
    from dockyard.cli import runflags
    assert [runflags.ram_in_bytes(s) for s in ("100", "100b", "1k", "1KiB", "2m", "1.5g", "1 GB", "1t")] == [
        100, 100, 1024, 1024, 2 * 1024 ** 2, int(1.5 * 1024 ** 3), 1024 ** 3, 1024 ** 4]
    assert [runflags.parse_int(s) for s in ("42", "-1", "0x10", "010", "1_000")] == [42, -1, 16, 8, 1000]
    assert runflags.parse_cpus("0.5") == 500_000_000 and runflags.parse_cpus("3/2") == 1_500_000_000
    hc = containers.create_body(parse("run", "--memory-swap", "-1", "-m", "6m", "busybox"), environ={})["HostConfig"]
    assert hc["MemorySwap"] == -1 and hc["Memory"] == 6 * 1024 ** 2
    hc = containers.create_body(parse("run", "-v", "./here:/x", "--mount", "type=bind,src=.,dst=/y", "busybox"),
                                environ={})["HostConfig"]
    import os
    assert hc["Binds"] == [f"{os.path.abspath('./here')}:/x"] and hc["Mounts"][0]["Source"] == os.getcwd()


@pytest.mark.parametrize("argv, message", [
    (["-m", "12x"], 'invalid argument "12x" for "-m, --memory" flag: invalid size: \'12x\''),
    (["--memory-swap", "lots"], 'invalid argument "lots" for "--memory-swap" flag: invalid size: \'lots\''),
    (["--shm-size", "1.2.3m"], 'invalid argument "1.2.3m" for "--shm-size" flag: invalid size: \'1.2.3m\''),
    (["--cpus", "abc"], 'invalid argument "abc" for "--cpus" flag: failed to parse abc as a rational number'),
    (["--cpus", "0.0000000001"], 'invalid argument "0.0000000001" for "--cpus" flag: value is too precise'),
    (["--pids-limit", "x"], 'invalid argument "x" for "--pids-limit" flag: strconv.ParseInt: parsing "x": invalid syntax'),
    (["--blkio-weight", "70000"],
     'invalid argument "70000" for "--blkio-weight" flag: strconv.ParseUint: parsing "70000": value out of range'),
    (["-c", "1.5"], 'invalid argument "1.5" for "-c, --cpu-shares" flag: strconv.ParseInt: parsing "1.5": invalid syntax'),
    (["--memory-swappiness", "101"], "invalid value: 101. Valid memory swappiness range is 0-100"),
    (["--ulimit", "files=1"], 'invalid argument "files=1" for "--ulimit" flag: invalid ulimit type: files'),
    (["--ulimit", "nofile"], 'invalid argument "nofile" for "--ulimit" flag: invalid ulimit argument: nofile'),
    (["--ulimit", "nofile=20:10"],
     'invalid argument "nofile=20:10" for "--ulimit" flag: ulimit soft limit must be less than or equal to hard limit: 20 > 10'),
    (["--ulimit", "nofile=1:2:3"], 'invalid argument "nofile=1:2:3" for "--ulimit" flag: too many limit value '
                                   'arguments - 1:2:3, can only have up to two, `soft[:hard]`'),
    (["--sysctl", "kernel.panic=1"], 'invalid argument "kernel.panic=1" for "--sysctl" flag: sysctl \'kernel.panic=1\' is not allowed'),
    (["--device-cgroup-rule", "c 1:3"],
     'invalid argument "c 1:3" for "--device-cgroup-rule" flag: invalid device cgroup format \'c 1:3\''),
    (["--device", "/dev/sda:/dev/xvda:rwx"], "bad mode specified: rwx"),
    (["--device", "/dev/sda:xvda"], "xvda is not an absolute path"),
    (["--device", "a:b:c:d"], "bad format for path: a:b:c:d"),
    (["--blkio-weight-device", "/dev/sda:5"],
     'invalid argument "/dev/sda:5" for "--blkio-weight-device" flag: invalid weight for device: /dev/sda:5'),
    (["--blkio-weight-device", "sda:500"],
     'invalid argument "sda:500" for "--blkio-weight-device" flag: bad format for device path: sda:500'),
    (["--device-read-bps", "/dev/sda:fast"],
     'invalid argument "/dev/sda:fast" for "--device-read-bps" flag: invalid rate for device: /dev/sda:fast. The correct '
     'format is <device-path>:<number>[<unit>]. Number must be a positive integer. Unit is optional and can be kb, mb, or gb'),
    (["--mount", "type=bind,src=/a,dst=/b,color=red"],
     'invalid argument "type=bind,src=/a,dst=/b,color=red" for "--mount" flag: unexpected key \'color\' in \'color=red\''),
    (["--mount", "type=bind,src=/a"], 'invalid argument "type=bind,src=/a" for "--mount" flag: target is required'),
    (["--mount", "type=bind,dst=/a,fast"],
     'invalid argument "type=bind,dst=/a,fast" for "--mount" flag: invalid field \'fast\' must be a key=value pair'),
    (["--mount", "type=bind,dst=/a,tmpfs-size=1m"],
     'invalid argument "type=bind,dst=/a,tmpfs-size=1m" for "--mount" flag: cannot mix \'tmpfs-*\' options with mount type \'bind\''),
    (["--mount", "type=tmpfs,dst=/a,tmpfs-mode=999"],
     'invalid argument "type=tmpfs,dst=/a,tmpfs-mode=999" for "--mount" flag: invalid value for tmpfs-mode: 999'),
    (["--mount", "type=bind,dst=/a,readonly=maybe"],
     'invalid argument "type=bind,dst=/a,readonly=maybe" for "--mount" flag: invalid value for readonly: maybe'),
    (["--security-opt", "nonsense"], 'Invalid --security-opt: "nonsense"'),
    (["--security-opt", "seccomp=/no/such/profile.json"],
     "opening seccomp profile (/no/such/profile.json) failed: open /no/such/profile.json: no such file or directory"),
    (["--pid", "container:"], "--pid: invalid PID mode"),
    (["--uts", "private"], "--uts: invalid UTS mode"),
    (["--cgroupns", "shared"], "--cgroupns: invalid CGROUP mode"),
    (["--stop-timeout", "soon"], 'invalid argument "soon" for "--stop-timeout" flag: strconv.ParseInt: parsing "soon": invalid syntax'),
])
def test_bad_flag_values_give_dockers_messages(argv, message):
    args = parse("run", *argv, "busybox")
    with pytest.raises(ValueError) as info:
        containers.create_body(args, environ={})
    assert str(info.value) == message


def test_seccomp_profile_that_is_not_json(tmp_path):
    bad = tmp_path / "p.json"
    bad.write_text("{nope")
    with pytest.raises(ValueError, match=rf"^compacting json for seccomp profile \({bad}\) failed: "):
        containers.create_body(parse("run", "--security-opt", f"seccomp={bad}", "busybox"), environ={})


def test_systempaths_unconfined_and_unconfined_seccomp():
    hc = containers.create_body(parse("run", "--security-opt", "systempaths=unconfined", "--security-opt",
                                      "seccomp=unconfined", "--pid", "container:db", "busybox"), environ={})["HostConfig"]
    assert hc["MaskedPaths"] == [] and hc["ReadonlyPaths"] == []
    assert hc["SecurityOpt"] == ["seccomp=unconfined"] and hc["PidMode"] == "container:db"


def test_bad_run_flag_exits_125(tmp_path):
    res = subprocess.run([sys.executable, "-m", "dockyard.cli.main", "-H", f"unix://{tmp_path}/none.sock",
                          "run", "-m", "12x", "busybox"], capture_output=True, timeout=30)
    assert res.returncode == 125
    assert res.stderr.decode().strip() == 'invalid argument "12x" for "-m, --memory" flag: invalid size: \'12x\''


def test_each_command_builds_only_its_registrars_and_the_same_parser():
    """main.REGISTRARS is complete and exact: every command of the full parser is
    listed, and the partial parser a command gets has the same help and flags."""
    full = main.build_parser()
    choices = full._subparsers._group_actions[0].choices
    listed = {cmd for cmds in main.REGISTRARS.values() for cmd in cmds}
    assert set(choices) - {"daemon", "driver", "storage"} == listed
    for cmd in listed:
        partial = main.build_parser(cmd)._subparsers._group_actions[0].choices
        assert len(partial) < len(choices)
        assert partial[cmd].format_help() == choices[cmd].format_help(), cmd


#: ``ps`` command lines main._plain_ps reads itself, and ones it leaves to argparse
PLAIN_PS = [[], ["-a"], ["-aq"], ["-qa"], ["--all", "--quiet"], ["--no-trunc", "-s"], ["-l"], ["--latest"],
            ["-n", "3"], ["-n3"], ["--last", "2"], ["--last=2"], ["-an1"], ["-n", "+4"], ["-f", "status=exited"],
            ["-fstatus=exited"], ["--filter=name=x", "-f", "label=a=b"], ["--format", "{{.ID}}"],
            ["--format={{json .}}"], ["--format="], ["-qf", "name=x"], ["--format", "table {{.Names}}", "-a"],
            ["--size", "--last", "1", "--all", "-a"]]
LEFT_TO_ARGPARSE = [["-h"], ["--help"], ["-x"], ["-n"], ["-n", "x"], ["-n", "-1"], ["--all=1"], ["-f"],
                    ["--format", "-x"], ["name"], ["--"], ["-a=1"], ["-f=k=v"], ["--no"], ["-aX"], ["-a", "-H", "x"]]
PS_DESTS = ("all", "quiet", "no_trunc", "latest", "size", "last", "filter", "format")


def test_plain_ps_reads_what_argparse_reads():
    """``ps`` is parsed without argparse (its import and re's were a third of the
    command): for the plain forms, the values argparse would give; anything else is
    argparse's, to parse or to refuse in docker's words; and the flags are ps's."""
    parser = main.build_parser("ps")
    for words in PLAIN_PS:
        ours, theirs = main._plain_ps(words, "unix:///x", True), parser.parse_args(["ps", *words])
        assert ours is not None, words
        assert {k: getattr(ours, k) for k in PS_DESTS} == {k: getattr(theirs, k) for k in PS_DESTS}, words
        assert (ours.func, ours.host, ours.debug) == (theirs.func, "unix:///x", True)
    for words in LEFT_TO_ARGPARSE:
        assert main._plain_ps(words, None, False) is None, words
    ps = parser._subparsers._group_actions[0].choices["ps"]
    assert sorted(main.PS_FLAGS) == sorted(o for a in ps._actions for o in a.option_strings if a.dest != "help")
    assert {dest for dest, _ in main.PS_FLAGS.values()} == set(PS_DESTS)
