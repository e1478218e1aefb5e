"""Dockyard's default seccomp profile, written as Python data grouped by purpose.

It is an allow-list: a system call that no rule below allows fails with EPERM.
In effect it matches Docker's default profile -- what ordinary programs (shells,
libcs, language runtimes, servers) need is allowed, and what reaches past the
container's namespaces and cgroups into the shared kernel is not -- but it is
kept as groups with the reason each is allowed, so a change is reviewed against
that reason rather than against a 400-line list.

:func:`profile` renders it in Docker's seccomp JSON format (the format of
``--security-opt seccomp=FILE``), so the default and a user's profile are
resolved against capabilities, architecture and kernel by the same code in
:mod:`dockyard.engine.bundle.seccomp`.

Names the kernel of a given architecture does not have (``chown32`` on x86_64,
``arch_prctl`` on arm64) are harmless: the runtime skips names it cannot resolve.
"""

EPERM = 1
ENOSYS = 38

# ---------------------------------------------------------------------------
# Allowed in every container. Each key says what the group is for; the comment
# above it says why none of it lets a process escape or disturb the host.
# ---------------------------------------------------------------------------
ALWAYS = {
    # Work on descriptors the process already holds; the kernel checked access
    # when the descriptor was opened.
    "descriptors: read, write, seek, duplicate, close": """
        read write readv writev pread64 pwrite64 preadv preadv2 pwritev pwritev2
        lseek _llseek close close_range dup dup2 dup3 fcntl fcntl64 ioctl flock
        sendfile sendfile64 splice tee vmsplice copy_file_range
        pipe pipe2
    """,
    # Data and page-cache control of one's own files; quotas and cgroups bound
    # the space, and sync only writes back what is dirty anyway.
    "file data: size, sync, advice, page cache": """
        truncate truncate64 ftruncate ftruncate64 fallocate
        fsync fdatasync sync syncfs sync_file_range
        fadvise64 fadvise64_64 readahead cachestat
    """,
    # Path-based operations, checked by ordinary permissions, capabilities and
    # the device cgroup (mknod); the mount namespace confines what they reach.
    "paths: open, look up, create, rename, remove": """
        open openat openat2 creat access faccessat faccessat2
        getcwd chdir fchdir mkdir mkdirat rmdir mknod mknodat
        rename renameat renameat2 link linkat symlink symlinkat unlink unlinkat
        readlink readlinkat getdents getdents64 name_to_handle_at
    """,
    "metadata: stat, owner, mode, times, extended attributes": """
        stat stat64 lstat lstat64 fstat fstat64 fstatat64 newfstatat statx
        statfs statfs64 fstatfs fstatfs64
        chmod fchmod fchmodat fchmodat2 umask
        chown chown32 fchown fchown32 fchownat lchown lchown32
        utime utimes utimensat utimensat_time64 futimesat
        getxattr lgetxattr fgetxattr getxattrat
        setxattr lsetxattr fsetxattr setxattrat
        listxattr llistxattr flistxattr listxattrat
        removexattr lremovexattr fremovexattr removexattrat
    """,
    # Watching files is bounded by per-user limits; fanotify_mark is useless
    # without a group from fanotify_init, which needs CAP_SYS_ADMIN below.
    "watching files": """
        inotify_init inotify_init1 inotify_add_watch inotify_rm_watch fanotify_mark
    """,
    # Reading the mount table is what /proc/self/mountinfo shows anyway.
    "mount table, read only": """
        listmount statmount
    """,
    "waiting for events: poll, select, epoll, eventfd, signalfd, timerfd": """
        poll ppoll ppoll_time64 select _newselect pselect6 pselect6_time64
        epoll_create epoll_create1 epoll_ctl epoll_ctl_old
        epoll_wait epoll_wait_old epoll_pwait epoll_pwait2
        eventfd eventfd2 signalfd signalfd4
        timerfd_create timerfd_settime timerfd_settime64 timerfd_gettime timerfd_gettime64
    """,
    # Linux native AIO (libaio: databases). io_uring is left out on purpose:
    # it has been the source of a long run of kernel exploits and bypasses
    # seccomp for the operations it submits (newer Docker blocks it too).
    "asynchronous I/O (not io_uring)": """
        io_setup io_destroy io_submit io_cancel io_getevents
        io_pgetevents io_pgetevents_time64
    """,
    # One's own address space. mlock is bounded by RLIMIT_MEMLOCK and the
    # memory cgroup; NUMA placement (mbind, set_mempolicy) needs CAP_SYS_NICE.
    "memory: map, protect, advise, lock": """
        brk mmap mmap2 munmap mremap mprotect madvise mincore msync remap_file_pages
        mlock mlock2 mlockall munlock munlockall
        memfd_create memfd_secret membarrier
        pkey_alloc pkey_free pkey_mprotect map_shadow_stack mseal
        process_mrelease
    """,
    # Creating processes (clone is below: only without namespace flags),
    # running programs, exiting and reaping.
    "processes: fork, exec, exit, wait": """
        fork vfork execve execveat exit exit_group wait4 waitid waitpid
        restart_syscall
    """,
    # What libc's thread and locking code is made of.
    "threads and futexes": """
        set_tid_address set_robust_list get_robust_list
        futex futex_time64 futex_waitv futex_wait futex_wake futex_requeue
        rseq get_thread_area set_thread_area sched_yield getcpu
    """,
    # Reading and switching one's own ids; setuid & co. are checked against
    # CAP_SETUID/CAP_SETGID, and the user namespace (if any) maps the result.
    "identity: user, group, session ids": """
        getuid getuid32 geteuid geteuid32 getgid getgid32 getegid getegid32
        getresuid getresuid32 getresgid getresgid32 getgroups getgroups32
        setuid setuid32 setgid setgid32 setreuid setreuid32 setregid setregid32
        setresuid setresuid32 setresgid setresgid32 setfsuid setfsuid32
        setfsgid setfsgid32 setgroups setgroups32
        getpid getppid gettid getpgid setpgid getpgrp getsid setsid
    """,
    # The process's own privileges and sandboxing: capabilities can only be
    # lowered within the bounding set, prctl's dangerous options are checked
    # by capability, and seccomp/landlock only ever add restrictions.
    "privileges and self-sandboxing": """
        capget capset prctl seccomp
        landlock_create_ruleset landlock_add_rule landlock_restrict_self
    """,
    # Priorities and affinity of processes one may signal; raising priority
    # above the limit needs CAP_SYS_NICE, which the kernel checks.
    "scheduling, limits, usage": """
        getpriority setpriority ioprio_get ioprio_set
        sched_getaffinity sched_setaffinity sched_getattr sched_setattr
        sched_getparam sched_setparam sched_getscheduler sched_setscheduler
        sched_get_priority_max sched_get_priority_min
        sched_rr_get_interval sched_rr_get_interval_time64
        getrlimit setrlimit ugetrlimit prlimit64 getrusage times sysinfo uname
    """,
    # Signals reach only processes in the container's pid namespace (and are
    # checked by uid / CAP_KILL).
    "signals": """
        kill tkill tgkill pidfd_open pidfd_send_signal
        rt_sigaction rt_sigprocmask rt_sigreturn sigreturn sigprocmask
        rt_sigpending rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64
        rt_sigqueueinfo rt_tgsigqueueinfo sigaltstack pause alarm
    """,
    # Reading clocks, sleeping and timers. adjtimex/clock_adjtime are here for
    # their read-only use (ntpd's status, chrony's checks): setting the clock
    # through them needs CAP_SYS_TIME, which the kernel checks; the calls
    # that only set the clock are in the CAP_SYS_TIME group.
    "time: clocks, sleeping, timers": """
        time gettimeofday clock_gettime clock_gettime64
        clock_getres clock_getres_time64 clock_nanosleep clock_nanosleep_time64
        nanosleep getitimer setitimer
        timer_create timer_delete timer_gettime timer_gettime64
        timer_settime timer_settime64 timer_getoverrun
        adjtimex clock_adjtime clock_adjtime64
    """,
    "randomness": """
        getrandom
    """,
    # Sockets live in the container's network namespace. socket() itself is
    # below, with the address families that are refused.
    "networking": """
        socketpair bind connect listen accept accept4 shutdown
        getsockname getpeername getsockopt setsockopt
        send sendto sendmsg sendmmsg recv recvfrom recvmsg recvmmsg recvmmsg_time64
    """,
    # SysV IPC and POSIX message queues are scoped by the IPC namespace.
    "IPC: SysV shared memory, semaphores, message queues; POSIX queues": """
        ipc shmget shmat shmdt shmctl semget semop semtimedop semtimedop_time64 semctl
        msgget msgsnd msgrcv msgctl
        mq_open mq_unlink mq_timedsend mq_timedsend_time64
        mq_timedreceive mq_timedreceive_time64 mq_notify mq_getsetattr
    """,
    # The uprobe return trampoline the kernel itself maps into traced
    # processes calls this; refusing it kills a process being probed.
    "kernel trampolines": """
        uretprobe
    """,
}

# ---------------------------------------------------------------------------
# Allowed only when the container holds the capability that the call needs
# anyway: without it the kernel would refuse, with it seccomp must not.
# A group may need several capabilities (all of them).
# ---------------------------------------------------------------------------
WITH_CAPS = [
    # CAP_SYS_ADMIN is "root of the whole machine" in practice: new
    # namespaces, mounting, the hostname, quotas, BPF, perf, the kernel log.
    (("CAP_SYS_ADMIN",), """
        mount umount umount2 mount_setattr move_mount open_tree
        fsopen fsconfig fsmount fspick
        unshare setns clone clone3
        sethostname setdomainname quotactl quotactl_fd
        fanotify_init lookup_dcookie bpf perf_event_open syslog
        lsm_get_self_attr lsm_set_self_attr lsm_list_modules
    """),
    (("CAP_SYS_BOOT",), "reboot"),
    (("CAP_SYS_CHROOT",), "chroot"),
    (("CAP_SYS_MODULE",), "init_module finit_module delete_module"),
    (("CAP_SYS_PACCT",), "acct"),
    # Reading and writing other processes' memory and descriptors.
    (("CAP_SYS_PTRACE",), "ptrace process_vm_readv process_vm_writev process_madvise kcmp pidfd_getfd"),
    # Direct port I/O.
    (("CAP_SYS_RAWIO",), "iopl ioperm"),
    # The clock is not namespaced: setting it sets the host's.
    (("CAP_SYS_TIME",), "settimeofday stime clock_settime clock_settime64"),
    (("CAP_SYS_TTY_CONFIG",), "vhangup"),
    # NUMA memory placement can starve other tenants of a node.
    (("CAP_SYS_NICE",), "mbind set_mempolicy get_mempolicy set_mempolicy_home_node"),
    (("CAP_SYSLOG",), "syslog"),
    (("CAP_BPF",), "bpf"),
    (("CAP_PERFMON",), "perf_event_open"),
    # open_by_handle_at can open any file of a mounted file system, outside
    # the container's root (the "shocker" escape).
    (("CAP_DAC_READ_SEARCH",), "open_by_handle_at"),
]

# ---------------------------------------------------------------------------
# Allowed only on some architectures (Docker's native arch names: amd64, x86,
# x32, arm, arm64, ppc64le, s390, s390x, riscv64, ...).
# ---------------------------------------------------------------------------
BY_ARCH = [
    (("amd64", "x32"), "arch_prctl"),  # TLS setup: every x86_64 program calls it
    (("amd64", "x32", "x86"), "modify_ldt"),  # Wine, old threading libraries
    (("arm", "arm64"), "arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls"),
    (("ppc64le",), "sync_file_range2 swapcontext"),
    (("s390", "s390x"), "s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr"),
    (("riscv64",), "riscv_flush_icache riscv_hwprobe"),
]

#: Allowed on kernels that are new enough. Before 4.8 a tracer could rewrite a
#: traced process's system call after seccomp had checked it.
ON_KERNEL = [
    ("4.8", "ptrace process_vm_readv process_vm_writev"),
]

# Namespace flags of clone(2): CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER
# | NEWPID | NEWNET. (CLONE_NEWTIME is 0x80, a bit that clone(2) reads as part
# of the exit signal; only clone3 and unshare can ask for a time namespace.)
CLONE_NAMESPACES = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000

# socket(2) address families that are refused: AF_ALG (38), the kernel crypto
# API (CVE-2026-31431 and earlier), and AF_VSOCK (40), a channel to the
# hypervisor's host. Everything below, between and above is allowed.
AF_ALG, AF_VSOCK = 38, 40

# personality(2) values a program may ask for: PER_LINUX (0), PER_LINUX32 (8,
# setarch i386), UNAME26 (0x20000) and both, and 0xffffffff (query). Others,
# such as ADDR_NO_RANDOMIZE or READ_IMPLIES_EXEC, weaken ASLR or NX.
PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

#: Notable calls that no group above allows with the default capabilities, and
#: why. Documentation, and checked by the tests.
REFUSED = {
    "mount umount2 pivot_root move_mount fsopen": "changing mounts (needs CAP_SYS_ADMIN)",
    "unshare setns": "new or foreign namespaces (needs CAP_SYS_ADMIN)",
    "keyctl add_key request_key": "the kernel keyring is not namespaced",
    "kexec_load kexec_file_load reboot": "replacing or stopping the host's kernel",
    "init_module finit_module delete_module": "loading kernel code (needs CAP_SYS_MODULE)",
    "bpf perf_event_open": "kernel attack surface, host-wide tracing (CAP_BPF, CAP_PERFMON)",
    "userfaultfd": "lets an exploit stall the kernel at a chosen page fault",
    "swapon swapoff": "host-wide swap",
    "settimeofday clock_settime stime": "the clock is not namespaced (needs CAP_SYS_TIME)",
    "acct": "process accounting is host-wide (needs CAP_SYS_PACCT)",
    "open_by_handle_at": "opens files outside the container root (needs CAP_DAC_READ_SEARCH)",
    "io_uring_setup io_uring_enter io_uring_register": "kernel attack surface; bypasses seccomp",
    "ioperm iopl": "port I/O (needs CAP_SYS_RAWIO)",
    "quotactl nfsservctl uselib _sysctl sysfs ustat vm86 vm86old lookup_dcookie": "obsolete or host-wide",
    "move_pages get_kernel_syms query_module create_module": "obsolete, or leaks kernel layout",
    "mbind set_mempolicy": "NUMA placement (needs CAP_SYS_NICE)",
    "socketcall": "the 32-bit multiplexer would bypass the socket family rule",
}


def _names(text):
    return text.split()


def profile():
    """The default profile in Docker's seccomp JSON format (a new dict each call)."""
    rules = [{"names": sorted({n for group in ALWAYS.values() for n in _names(group)}),
              "action": "SCMP_ACT_ALLOW", "comment": "always: " + "; ".join(ALWAYS)}]
    # On 32-bit x86 every socket call can go through socketcall(2), whose
    # arguments are behind a pointer that seccomp cannot read, so it would
    # bypass the socket family rule below. Since Linux 4.3 (and glibc 2.23)
    # there are direct calls; ENOSYS makes an old libc fall back to them.
    rules.append({"names": ["socketcall"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS})
    rules += [{"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [arg]} for arg in (
        {"index": 0, "value": AF_ALG, "op": "SCMP_CMP_LT"},
        {"index": 0, "value": AF_ALG + 1, "op": "SCMP_CMP_EQ"},
        {"index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_GT"},
    )]
    rules += [{"names": ["personality"], "action": "SCMP_ACT_ALLOW",
               "args": [{"index": 0, "value": value, "op": "SCMP_CMP_EQ"}]} for value in PERSONALITIES]
    for arches, names in BY_ARCH:
        rules.append({"names": _names(names), "action": "SCMP_ACT_ALLOW", "includes": {"arches": list(arches)}})
    for version, names in ON_KERNEL:
        rules.append({"names": _names(names), "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": version}})
    for caps, names in WITH_CAPS:
        rules.append({"names": _names(names), "action": "SCMP_ACT_ALLOW", "includes": {"caps": list(caps)}})
    # Without CAP_SYS_ADMIN: clone only without namespace flags (s390 swaps the
    # first two arguments), and clone3 -- whose flags are behind a pointer --
    # fails with ENOSYS so that libc falls back to clone.
    rules.append({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                  "args": [{"index": 0, "value": CLONE_NAMESPACES, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
                  "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]}})
    rules.append({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                  "args": [{"index": 1, "value": CLONE_NAMESPACES, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
                  "includes": {"arches": ["s390", "s390x"]}, "excludes": {"caps": ["CAP_SYS_ADMIN"]}})
    rules.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS,
                  "excludes": {"caps": ["CAP_SYS_ADMIN"]}})
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "archMap": [
            {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
            {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
            {"architecture": "SCMP_ARCH_PPC64LE", "subArchitectures": []},
            {"architecture": "SCMP_ARCH_S390X", "subArchitectures": ["SCMP_ARCH_S390"]},
            {"architecture": "SCMP_ARCH_RISCV64", "subArchitectures": []},
        ],
        "syscalls": rules,
    }
