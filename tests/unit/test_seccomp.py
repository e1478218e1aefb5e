"""Seccomp profiles: Docker-format parsing and resolution, the default profile, BPF compilation."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dockyard.engine.bundle import seccomp, seccomp_default
from dockyard.errors import InvalidParameter

ROOT = Path(__file__).resolve().parents[2]
DOCKER_PROFILE = Path("/work/shared/reference/moby-seccomp-default.json")

# Docker's default capability set (14).
DEFAULT_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]


def unconditional(spec, action="SCMP_ACT_ALLOW"):
    """Names a rule without argument conditions gives ``action``."""
    return {n for r in spec["syscalls"] if r["action"] == action and not r.get("args") for n in r["names"]}


def rules_for(spec, name):
    return [r for r in spec["syscalls"] if name in r["names"]]


def profile(*rules, **top):
    return json.dumps({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": list(rules), **top})


# --- the default profile --------------------------------------------------------------------------

def test_default_profile_shape_on_x86_64():
    spec = seccomp.linux_seccomp(None, DEFAULT_CAPS, "x86_64")
    assert spec["defaultAction"] == "SCMP_ACT_ERRNO" and spec["defaultErrnoRet"] == 1
    assert spec["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    for rule in spec["syscalls"]:
        assert set(rule) <= {"names", "action", "args", "errnoRet"}
        assert rule["names"] and rule["action"] in seccomp.ACTIONS
        for arg in rule.get("args", ()):
            assert set(arg) == {"index", "value", "valueTwo", "op"} and arg["op"] in seccomp.OPERATORS
    json.dumps(spec)  # goes into config.json as it is
    allowed = unconditional(spec)
    for name in ("read", "write", "openat", "execve", "mmap", "futex", "rt_sigaction", "epoll_wait",
                 "clock_gettime", "getrandom", "connect", "wait4", "arch_prctl", "chroot", "ptrace"):
        assert name in allowed, name


def test_default_profile_on_aarch64_has_arm_and_no_x86_calls():
    spec = seccomp.linux_seccomp(None, DEFAULT_CAPS, "aarch64")
    assert spec["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    allowed = unconditional(spec)
    assert "set_tls" in allowed and "arch_prctl" not in allowed and "modify_ldt" not in allowed


def test_default_profile_refuses_what_it_documents_with_default_caps():
    spec = seccomp.linux_seccomp(None, DEFAULT_CAPS, "x86_64")
    allowed = {n for r in spec["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" for n in r["names"]}
    refused = {n for names in seccomp_default.REFUSED for n in names.split()}
    assert refused & allowed == set()
    for name in ("mount", "umount2", "unshare", "setns", "keyctl", "add_key", "request_key", "kexec_load",
                 "kexec_file_load", "init_module", "finit_module", "delete_module", "bpf", "perf_event_open",
                 "userfaultfd", "reboot", "swapon", "swapoff", "settimeofday", "clock_settime", "acct",
                 "pivot_root", "open_by_handle_at", "io_uring_setup", "io_uring_enter", "io_uring_register"):
        assert name not in allowed, name


def test_default_clone_without_sys_admin_only_without_namespace_flags():
    spec = seccomp.linux_seccomp(None, DEFAULT_CAPS, "x86_64")
    (clone,) = rules_for(spec, "clone")
    assert clone["args"] == [{"index": 0, "value": seccomp_default.CLONE_NAMESPACES, "valueTwo": 0,
                              "op": "SCMP_CMP_MASKED_EQ"}]
    (clone3,) = rules_for(spec, "clone3")
    assert clone3 == {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}  # ENOSYS: libc falls back
    on_s390 = seccomp.linux_seccomp(None, DEFAULT_CAPS, "s390x")
    assert [r["args"][0]["index"] for r in rules_for(on_s390, "clone")] == [1]


def test_default_with_sys_admin_adds_mount_namespaces_and_plain_clone():
    spec = seccomp.linux_seccomp(None, DEFAULT_CAPS + ["CAP_SYS_ADMIN"], "x86_64")
    allowed = unconditional(spec)
    assert {"mount", "umount2", "unshare", "setns", "clone", "clone3", "sethostname"} <= allowed
    assert all(not r.get("args") for r in rules_for(spec, "clone"))
    assert not any(r["action"] == "SCMP_ACT_ERRNO" for r in rules_for(spec, "clone3"))
    assert "keyctl" not in allowed and "kexec_load" not in allowed  # no capability unlocks these


@pytest.mark.parametrize("cap, names", [
    ("CAP_SYS_PTRACE", {"process_madvise", "kcmp", "pidfd_getfd"}),
    ("CAP_SYS_MODULE", {"init_module", "finit_module", "delete_module"}),
    ("CAP_SYS_TIME", {"settimeofday", "clock_settime"}),
    ("CAP_SYS_BOOT", {"reboot"}),
    ("CAP_SYS_NICE", {"mbind", "set_mempolicy"}),
    ("CAP_SYS_PACCT", {"acct"}),
    ("CAP_SYS_RAWIO", {"iopl", "ioperm"}),
    ("CAP_SYSLOG", {"syslog"}),
    ("CAP_BPF", {"bpf"}),
    ("CAP_PERFMON", {"perf_event_open"}),
    ("CAP_DAC_READ_SEARCH", {"open_by_handle_at"}),
])
def test_default_capability_groups(cap, names):
    assert not names & unconditional(seccomp.linux_seccomp(None, DEFAULT_CAPS, "x86_64"))
    assert names <= unconditional(seccomp.linux_seccomp(None, DEFAULT_CAPS + [cap], "x86_64"))


def test_default_without_sys_chroot_refuses_chroot():
    caps = [c for c in DEFAULT_CAPS if c != "CAP_SYS_CHROOT"]
    assert "chroot" not in unconditional(seccomp.linux_seccomp(None, caps, "x86_64"))


def test_default_socket_and_personality_rules():
    spec = seccomp.linux_seccomp(None, DEFAULT_CAPS, "x86_64")
    socket = [(a["op"], a["value"]) for r in rules_for(spec, "socket") for a in r["args"]]
    assert socket == [("SCMP_CMP_LT", 38), ("SCMP_CMP_EQ", 39), ("SCMP_CMP_GT", 40)]  # not AF_ALG, AF_VSOCK
    assert rules_for(spec, "socketcall") == [{"names": ["socketcall"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
    values = sorted(r["args"][0]["value"] for r in rules_for(spec, "personality"))
    assert values == [0, 8, 0x20000, 0x20008, 0xFFFFFFFF]


def test_default_profile_is_ours_not_dockers_text():
    text = json.dumps(seccomp_default.profile())
    assert "s390 parameter ordering" not in text
    assert seccomp_default.profile() is not seccomp_default.profile()  # a fresh dict each call


@pytest.mark.skipif(not DOCKER_PROFILE.exists(), reason="Docker's profile is not here to compare with")
@pytest.mark.parametrize("arch", ["x86_64", "aarch64", "s390x"])
@pytest.mark.parametrize("extra", [[], ["CAP_SYS_ADMIN"], ["CAP_SYS_PTRACE", "CAP_SYS_NICE", "CAP_BPF"]])
def test_default_matches_dockers_in_effect(arch, extra):
    """Same rules as Docker's profile, but socketcall: ENOSYS, as newer Docker (moby#52494)."""
    def effect(spec):
        return {(n, r["action"], r.get("errnoRet"), json.dumps(r.get("args"), sort_keys=True))
                for r in spec["syscalls"] for n in r["names"] if n not in ("socketcall", "riscv_hwprobe")}

    ours = seccomp.linux_seccomp(None, DEFAULT_CAPS + extra, arch)
    docker = seccomp.linux_seccomp(DOCKER_PROFILE.read_text(), DEFAULT_CAPS + extra, arch)
    assert effect(ours) == effect(docker)
    assert ours["architectures"] == docker["architectures"]


# --- user profiles --------------------------------------------------------------------------------

def test_unconfined_and_empty_profiles_mean_no_filter():
    assert seccomp.linux_seccomp("unconfined", DEFAULT_CAPS) is None
    assert seccomp.linux_seccomp("{}", DEFAULT_CAPS) is None


def test_user_profile_resolved_against_caps():
    text = profile(
        {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["both"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN", "CAP_BPF"]}},
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_SYS_ADMIN", "CAP_BPF"]}},
    )
    spec = seccomp.linux_seccomp(text, ["CAP_CHOWN"], "x86_64")
    assert unconditional(spec) == {"read", "write", "clone"}
    spec = seccomp.linux_seccomp(text, ["SYS_ADMIN"], "x86_64")  # the CAP_ prefix may be left out
    assert unconditional(spec) == {"read", "write", "mount"}
    spec = seccomp.linux_seccomp(text, ["CAP_SYS_ADMIN", "cap_bpf"], "x86_64")
    assert unconditional(spec) == {"read", "write", "mount", "both"}


def test_user_profile_resolved_against_arch():
    text = profile(
        {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64", "x32"]}},
        {"names": ["set_tls"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm64"]}},
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["s390x"]}},
        archMap=[{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
                 {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
    )
    amd = seccomp.linux_seccomp(text, [], "x86_64")
    assert unconditional(amd) == {"arch_prctl", "clone"}
    assert amd["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]
    arm = seccomp.linux_seccomp(text, [], "aarch64")
    assert unconditional(arm) == {"set_tls", "clone"} and arm["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    s390 = seccomp.linux_seccomp(text, [], "s390x")
    assert unconditional(s390) == set() and "architectures" not in s390  # no archMap entry: native only
    assert seccomp.linux_seccomp(text, [], None)["architectures"][0] == {
        "x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}.get(os.uname().machine)


def test_user_profile_architectures_list_is_kept():
    text = profile({"names": ["read"], "action": "SCMP_ACT_ALLOW"}, architectures=["SCMP_ARCH_X86_64"])
    assert seccomp.linux_seccomp(text, [], "aarch64")["architectures"] == ["SCMP_ARCH_X86_64"]


def test_user_profile_min_kernel():
    text = profile(
        {"names": ["old"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "3.0"}},
        {"names": ["future"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "99.0"}},
        {"names": ["until_3"], "action": "SCMP_ACT_ALLOW", "excludes": {"minKernel": "3.0"}},
        {"names": ["until_99"], "action": "SCMP_ACT_ALLOW", "excludes": {"minKernel": "99.1.2"}},
    )
    assert unconditional(seccomp.linux_seccomp(text, [])) == {"old", "until_99"}


def test_kernel_version_parsing():
    assert seccomp._version("6.18.0-1-amd64") == (6, 18, 0)
    assert seccomp._version("4.8") == (4, 8, 0)
    assert seccomp._version("5.10.209+") == (5, 10, 209)
    assert seccomp._version("4.8") <= seccomp._version("4.10")  # numbers, not strings


def test_user_profile_keeps_args_errno_and_flags():
    text = profile(
        {"name": "mkdir", "action": "SCMP_ACT_ERRNO", "errnoRet": 13},  # the old single-name form
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}], "comment": "ignored"},
        {"names": ["getpid"], "action": "SCMP_ACT_ALLOW", "errnoRet": 5},  # runc ignores it there
        defaultErrnoRet=38, flags=["SECCOMP_FILTER_FLAG_LOG"],
    )
    spec = seccomp.linux_seccomp(text, [])
    assert spec["defaultErrnoRet"] == 38 and spec["flags"] == ["SECCOMP_FILTER_FLAG_LOG"]
    assert spec["syscalls"] == [
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]},
        {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
    ]


@pytest.mark.parametrize("text, words", [
    ("{not json", ["not valid JSON"]),
    ("[1, 2]", ["must be a JSON object"]),
    (profile({"names": ["read"], "action": "SCMP_ACT_FOO"}), ["unknown action", "SCMP_ACT_FOO", "syscalls[0]"]),
    (json.dumps({"defaultAction": "SCMP_ACT_FOO"}), ["defaultAction", "SCMP_ACT_FOO"]),
    (json.dumps({"syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}), ["defaultAction", "''"]),
    (profile({"names": ["read"], "action": "SCMP_ACT_NOTIFY"}), ["SCMP_ACT_NOTIFY", "not supported"]),
    (profile({"names": ["read"], "action": ["SCMP_ACT_ALLOW"]}), ["unknown action", "['SCMP_ACT_ALLOW']"]),
    (profile({"action": "SCMP_ACT_ALLOW"}), ["syscalls[0]", "names no system call"]),
    (profile({"names": [], "action": "SCMP_ACT_ALLOW"}), ["syscalls[0]", "names no system call"]),
    (profile({"names": "read", "action": "SCMP_ACT_ALLOW"}), ["'names' must be a list"]),
    (profile({"name": "read", "names": ["write"], "action": "SCMP_ACT_ALLOW"}), ["both 'name' and 'names'"]),
    (profile({"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_XX"}]}),
     ["unknown op", "SCMP_CMP_XX", "args[0]", "read"]),
    (profile({"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}),
     ["index must be 0 to 5"]),
    (profile({"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]}),
     ["value must be an unsigned 64-bit number"]),
    (profile({"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}), ["errnoRet", "0 to 4095"]),
    (profile({"names": ["read"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "new"}}),
     ["minKernel", "'new'", "kernel version"]),
    (profile({"names": ["read"], "action": "SCMP_ACT_ALLOW", "includes": []}), ["includes must be an object"]),
    (profile(architectures=["SCMP_ARCH_X86_64"], archMap=[{"architecture": "SCMP_ARCH_X86_64"}]),
     ["both 'architectures' and 'archMap'"]),
    (profile(architectures=["SCMP_ARCH_Z80"]), ["unknown architecture", "SCMP_ARCH_Z80"]),
    (profile(archMap=[{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["x86"]}]),
     ["archMap[0].subArchitectures", "'x86'"]),
    (profile(flags=["SECCOMP_FILTER_FLAG_NOPE"]), ["unknown flag", "SECCOMP_FILTER_FLAG_NOPE"]),
    (profile(listenerPath="/run/agent.sock"), ["listenerPath", "not supported"]),
    (json.dumps({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": {"read": 1}}), ["'syscalls' must be a list"]),
])
def test_bad_profiles_are_refused_with_a_message_for_the_user(text, words):
    with pytest.raises(ValueError) as info:
        seccomp.linux_seccomp(text, DEFAULT_CAPS, "x86_64")
    assert isinstance(info.value, InvalidParameter)
    message = str(info.value)
    assert message.startswith("--security-opt seccomp: ")
    for word in words:
        assert word in message, (word, message)


def test_a_bad_rule_fails_even_where_it_would_not_apply():
    text = profile({"names": ["set_tls"], "action": "SCMP_ACT_BAD", "includes": {"arches": ["arm64"]}})
    with pytest.raises(ValueError, match="SCMP_ACT_BAD"):
        seccomp.linux_seccomp(text, [], "x86_64")


# --- compiling to BPF (libseccomp) ----------------------------------------------------------------

native = pytest.importorskip("dockyard.drivers.exec.native.seccomp")


def _libseccomp_missing():
    import ctypes.util
    return ctypes.util.find_library("seccomp") is None


needs_libseccomp = pytest.mark.skipif(_libseccomp_missing(), reason="libseccomp is not installed")


def fresh_compile(spec):
    native._compiled.clear()
    return native.compile_bpf(spec)


def instructions(bpf):
    return [(int.from_bytes(bpf[i:i + 2], sys.byteorder), bpf[i + 2], bpf[i + 3],
             int.from_bytes(bpf[i + 4:i + 8], sys.byteorder)) for i in range(0, len(bpf), 8)]


@needs_libseccomp
def test_compile_default_profile_is_whole_instructions_and_deterministic():
    spec = seccomp.linux_seccomp(None, DEFAULT_CAPS)
    first = fresh_compile(spec)
    assert len(first) % 8 == 0 and 100 < len(first) // 8 <= 4096
    assert fresh_compile(json.loads(json.dumps(spec))) == first
    assert native.compile_bpf(spec) == first  # memoised
    assert fresh_compile(seccomp.linux_seccomp(None, DEFAULT_CAPS + ["CAP_SYS_ADMIN"])) != first


@needs_libseccomp
def test_compile_starts_with_an_enosys_stub_that_falls_through_to_libseccomp():
    bpf = fresh_compile(seccomp.linux_seccomp(None, DEFAULT_CAPS))
    insns = instructions(bpf)
    assert insns[0] == (0x20, 0, 0, 4)  # load seccomp_data.arch
    returns = [i for i, ins in enumerate(insns[:16]) if ins[0] == 0x06]
    assert returns and all(insns[i][3] == 0x00050000 | 38 for i in returns)  # ERRNO(ENOSYS)
    stub_end = returns[-1] + 1
    assert insns[stub_end] == (0x20, 0, 0, 4)  # libseccomp's own program starts: arch again
    for pos, (code, jt, jf, _k) in enumerate(insns[:stub_end]):
        if code & 0x07 == 0x05:  # a jump: every target stays in the stub or lands on its end
            assert pos + 1 + jt <= stub_end and pos + 1 + jf <= stub_end
    # A profile that allows by default has no stub: new calls are allowed, not ENOSYS.
    allow_all = {"defaultAction": "SCMP_ACT_ALLOW",
                 "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}
    assert 0x00050000 | 38 not in {k for code, _, _, k in instructions(fresh_compile(allow_all)) if code == 0x06}


@needs_libseccomp
def test_compile_skips_unknown_names_and_rules_equal_to_the_default():
    base = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
            "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}]}
    with_unknown = json.loads(json.dumps(base))
    with_unknown["syscalls"][0]["names"].append("no_such_syscall")
    # the same as the default action (EPERM): left out, so it does not clash with the allow rule
    with_unknown["syscalls"].append({"names": ["write"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1})
    assert fresh_compile(with_unknown) == fresh_compile(base)


@needs_libseccomp
def test_compile_conditions_on_one_argument_become_separate_rules():
    spec = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [
            {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
        {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [
            {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 1, "op": "SCMP_CMP_EQ"}]},
    ]}
    assert len(fresh_compile(spec)) % 8 == 0


@needs_libseccomp
@pytest.mark.parametrize("spec, word", [
    ({"defaultAction": "SCMP_ACT_FOO", "syscalls": []}, "SCMP_ACT_FOO"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_BAR"}]},
     "SCMP_ACT_BAR"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ZZ"}]}]},
     "SCMP_CMP_ZZ"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_Z80"], "syscalls": []}, "SCMP_ARCH_Z80"),
])
def test_compile_refuses_bad_actions_ops_and_arches(spec, word):
    with pytest.raises(ValueError, match=word):
        fresh_compile(spec)


def test_filter_flags():
    assert native.filter_flags({"flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_TSYNC"]}) == 3
    assert native.filter_flags({}) == 0
    with pytest.raises(ValueError, match="SECCOMP_FILTER_FLAG_X"):
        native.filter_flags({"flags": ["SECCOMP_FILTER_FLAG_X"]})


def test_load_refuses_a_partial_instruction_before_the_kernel():
    with pytest.raises(OSError) as info:
        native.load(b"\x06\x00\x00\x00\x00\x00\xff")  # 7 bytes: nothing is loaded
    assert info.value.errno == 22


def test_module_imports_standalone_without_ctypes():
    """The container init imports it as top-level ``seccomp`` under ``python -E -S``."""
    code = ("import sys; import seccomp; "
            "assert 'ctypes' not in sys.modules, sorted(sys.modules); "
            "assert callable(seccomp.load); print('ok')")
    out = subprocess.run([sys.executable, "-E", "-S", "-c", code], cwd=ROOT / "drivers/exec/native",
                         capture_output=True, text=True, timeout=30, check=False,
                         env={"PYTHONPATH": "", "PATH": os.environ.get("PATH", "")})
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_the_default_profile_is_resolved_once_per_capability_set_and_each_container_gets_its_own_top():
    with_admin = [*DEFAULT_CAPS, "CAP_SYS_ADMIN"]
    for caps in (DEFAULT_CAPS, with_admin):
        fresh = seccomp._resolve(seccomp_default.profile(), seccomp._cap_set(caps), seccomp._machine("x86_64"))
        first = seccomp.linux_seccomp(None, caps, arch="x86_64")
        assert first == fresh
        first["defaultAction"] = "SCMP_ACT_ALLOW"  # a caller's change stays its own
        assert seccomp.linux_seccomp(None, caps, arch="x86_64") == fresh
    assert seccomp.linux_seccomp(None, DEFAULT_CAPS, "x86_64") != seccomp.linux_seccomp(None, with_admin, "x86_64")
