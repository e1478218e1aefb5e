/* The watcher of tests/security/test_exec_process.py, run as a container's init
 * (static, bind-mounted read-only): it attacks every process that appears in its
 * pid namespace, as container root would, and reports what it reached.
 *
 *   NEW pid             a new process, attacked from now on
 *   EXE pid path        readlink(/proc/pid/exe) succeeded
 *   FD pid n target     readlink(/proc/pid/fd/n) succeeded
 *   OPEN pid n target   open(/proc/pid/fd/n) succeeded
 *   SEIZED pid exe      PTRACE_SEIZE succeeded; exe read while it is stopped
 *   INJECT pid unshare=R  ("inject" argument, x86_64) the traced process ran
 *                       unshare(CLONE_NEWUSER) in place of its next system call
 *
 * A process is attacked until it is gone, traced, or 5 s passed.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static unsigned char seen[1 << 19];
static int inject;

static void say(const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > 0) write(1, buf, n < (int)sizeof buf ? n : (int)sizeof buf - 1);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* each fd of pid: its target, and whether it opens again through /proc */
static void fds(int pid) {
    char path[64], link[96], target[512];
    snprintf(path, sizeof path, "/proc/%d/fd", pid);
    DIR *d = opendir(path);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(link, sizeof link, "%s/%s", path, e->d_name);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n < 0) continue;
        target[n] = 0;
        say("FD %d %s %s\n", pid, e->d_name, target);
        int fd = open(link, O_RDONLY | O_NONBLOCK | O_NOCTTY);
        if (fd >= 0) {
            say("OPEN %d %s %s\n", pid, e->d_name, target);
            close(fd);
        }
    }
    if (d) closedir(d);
}

#ifdef __x86_64__
/* at the tracee's next system call entry: make it unshare(CLONE_NEWUSER)
   instead (seccomp judges the call after the tracer changed it), report the
   result, and have the original call made again */
static void inject_unshare(int pid) {
    struct user_regs_struct saved, regs;
    int st;
    for (int stops = 0; stops < 8; stops++) {
        if (ptrace(PTRACE_SYSCALL, pid, 0, 0) < 0 || waitpid(pid, &st, __WALL) != pid || !WIFSTOPPED(st)) return;
        if (WSTOPSIG(st) == (SIGTRAP | 0x80)) break;
    }
    if (WSTOPSIG(st) != (SIGTRAP | 0x80) || ptrace(PTRACE_GETREGS, pid, 0, &saved) < 0) return;
    regs = saved;
    regs.orig_rax = SYS_unshare;
    regs.rdi = 0x10000000;
    if (ptrace(PTRACE_SETREGS, pid, 0, &regs) < 0 || ptrace(PTRACE_SYSCALL, pid, 0, 0) < 0) return;
    if (waitpid(pid, &st, __WALL) != pid || !WIFSTOPPED(st) || ptrace(PTRACE_GETREGS, pid, 0, &regs) < 0) return;
    say("INJECT %d unshare=%ld\n", pid, (long)regs.rax);
    saved.rip -= 2;
    saved.rax = saved.orig_rax;
    ptrace(PTRACE_SETREGS, pid, 0, &saved);
}
#endif

static void attack(int pid) {
    char path[64], exe[512], last[512] = "";
    snprintf(path, sizeof path, "/proc/%d/exe", pid);
    say("NEW %d\n", pid);
    double end = now() + 5;
    for (int tries = 1; now() < end; tries++) {
        if (kill(pid, 0) < 0 && errno == ESRCH) return;
        ssize_t n = readlink(path, exe, sizeof exe - 1);
        if (n >= 0) {
            exe[n] = 0;
            if (strcmp(exe, last)) say("EXE %d %s\n", pid, exe);
            strcpy(last, exe);
        }
        if (tries % 64 == 0) fds(pid);
        if (ptrace(PTRACE_SEIZE, pid, 0, PTRACE_O_TRACESYSGOOD) == 0) {
            int st;
            ptrace(PTRACE_INTERRUPT, pid, 0, 0);
            if (waitpid(pid, &st, __WALL) == pid && WIFSTOPPED(st)) {
                n = readlink(path, exe, sizeof exe - 1);
                exe[n < 0 ? 0 : n] = 0;
                say("SEIZED %d %s\n", pid, exe);
                fds(pid);
#ifdef __x86_64__
                if (inject) inject_unshare(pid);
#endif
            }
            ptrace(PTRACE_DETACH, pid, 0, 0);
            return;
        }
    }
}

static void scan(int attacking) {
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        int pid = atoi(e->d_name);
        if (pid <= 0 || pid >= (int)sizeof seen * 8 || seen[pid >> 3] & (1 << (pid & 7))) continue;
        seen[pid >> 3] |= 1 << (pid & 7);
        if (attacking) attack(pid);
    }
    if (d) closedir(d);
}

int main(int argc, char **argv) {
    inject = argc > 1 && !strcmp(argv[1], "inject");
    scan(0);
    say("READY\n");
    for (;;) scan(1);
}
