/* attack: escape attempts from inside a container, one per command, each
 * printing "NAME RESULT" lines, RESULT being "ok" (the attempt worked) or the
 * errno's name.  Static, so it runs in a busybox container; the tests assert
 * on the results and on what changed on the host.
 *
 *   attack mounts                 mount proc/tmpfs/bind/cgroup, remount, umount, new mount API
 *   attack sysctl PATH...         write each file's own content back to it (a real write that
 *                                 would change nothing on the host even if it were let through)
 *   attack sysrq                  write "h" (help: harmless) to /proc/sysrq-trigger
 *   attack devices MAJ MIN        mknod + open a block device, /dev/mem, /dev/kmsg; syslog(2)
 *   attack modules                init_module, finit_module, delete_module
 *   attack keys                   keyctl, add_key, request_key
 *   attack namespaces             unshare/clone of user and mount namespaces, setns
 *   attack release_agent          the cgroup release_agent escape (CVE-2022-0492)
 *   attack shocker                open_by_handle_at of the root file system's inode 2
 *   attack ptrace PID...          ptrace/kill/process_vm_readv of (host) pids
 *   attack kallsyms               count the /proc/kallsyms lines with a non-zero address
 *   attack kernel                 bpf, perf_event_open, userfaultfd, io_uring_setup, kexec_load, iopl
 *   attack chroot                 the chroot breakout: chroot into a subdirectory, climb "..", chroot "."
 *   attack whoami                 print the effective uid (built setuid root for the no-new-privileges test)
 *   attack fds PID...             each open fd of the pids: "inside" when it is a path of the container's
 *                                 (same inode through the fd and through its name, or the same character
 *                                 device: the host's /dev/null is stdin, as in Docker), "special" for pipes,
 *                                 sockets and anonymous inodes, else "OUTSIDE" (CVE-2024-21626's leak)
 *   attack cwd                    where the working directory is: climb ".." from it as far as it goes and
 *                                 compare with "/" (CVE-2024-21626: a cwd on a leaked host directory)
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define E(x) case x: return #x

static const char *ename(int e)
{
    static char buf[32];
    switch (e) {
    E(EPERM); E(ENOENT); E(ESRCH); E(EIO); E(EBADF); E(EACCES); E(EFAULT); E(EBUSY); E(EEXIST);
    E(ENODEV); E(ENOTDIR); E(EINVAL); E(EROFS); E(ENOSYS); E(EOPNOTSUPP); E(ENXIO); E(ESTALE);
    }
    snprintf(buf, sizeof buf, "errno%d", e);
    return buf;
}

static int same(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

static void report(const char *name, long rc)
{
    printf("%s %s\n", name, rc < 0 ? ename(errno) : "ok");
    fflush(stdout);
}

static void mounts(void)
{
    mkdir("/tmp/m", 0755);
    report("mount_proc", mount("proc", "/tmp/m", "proc", 0, NULL));
    report("mount_tmpfs", mount("none", "/tmp/m", "tmpfs", 0, ""));
    report("mount_bind_root", mount("/", "/tmp/m", NULL, MS_BIND | MS_REC, NULL));
    report("mount_cgroup", mount("cgroup", "/tmp/m", "cgroup", 0, "memory"));
    report("remount_proc_sys_rw", mount(NULL, "/proc/sys", NULL, MS_REMOUNT | MS_BIND, NULL));
    report("umount_masked_kcore", umount2("/proc/kcore", MNT_DETACH));
    report("fsopen", syscall(430 /* fsopen */, "tmpfs", 0));
    report("open_tree", syscall(428 /* open_tree */, AT_FDCWD, "/", 1 /* OPEN_TREE_CLONE */));
}

static void rewrite(const char *path, const char *name)
{
    char buf[4096];
    ssize_t n = -1;
    int fd = open(path, O_RDONLY);
    if (fd >= 0) {
        n = read(fd, buf, sizeof buf);
        close(fd);
    }
    if (n < 0) {
        report(name, -1);
        return;
    }
    fd = open(path, O_WRONLY);
    if (fd < 0) {
        report(name, -1);
        return;
    }
    report(name, write(fd, buf, n > 0 ? n : 1));
    close(fd);
}

static void devices(int maj, int min)
{
    struct { const char *name, *path; mode_t mode; dev_t dev; } dev[] = {
        {"root_disk", "/tmp/disk", S_IFBLK | 0600, makedev(maj, min)},
        {"dev_mem", "/tmp/mem", S_IFCHR | 0600, makedev(1, 1)},
        {"dev_kmsg", "/tmp/kmsg", S_IFCHR | 0600, makedev(1, 11)},
    };
    char key[64];
    for (unsigned i = 0; i < sizeof dev / sizeof *dev; i++) {
        snprintf(key, sizeof key, "mknod_%s", dev[i].name);
        report(key, mknod(dev[i].path, dev[i].mode, dev[i].dev));
        snprintf(key, sizeof key, "open_%s", dev[i].name);
        report(key, open(dev[i].path, O_RDONLY));
    }
    char buf[64];
    report("syslog_read_all", syscall(SYS_syslog, 3 /* SYSLOG_ACTION_READ_ALL */, buf, sizeof buf));
}

static void modules(void)
{
    static char image[64] = "\177ELF";
    report("init_module", syscall(SYS_init_module, image, sizeof image, ""));
    int fd = open("/bin/busybox", O_RDONLY);
    report("finit_module", syscall(SYS_finit_module, fd, "", 0));
    report("delete_module", syscall(SYS_delete_module, "loop", O_NONBLOCK));
}

static void keys(void)
{
    report("keyctl", syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* session */, 0));
    report("add_key", syscall(SYS_add_key, "user", "dockyard-test", "x", 1, -2 /* process */));
    report("request_key", syscall(SYS_request_key, "user", "dockyard-test", NULL, 0));
}

static void namespaces(void)
{
    report("unshare_user", unshare(CLONE_NEWUSER));
    report("unshare_mount", unshare(CLONE_NEWNS));
    report("unshare_cgroup", unshare(CLONE_NEWCGROUP));
    long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0)
        _exit(0);
    if (pid > 0)
        waitpid(pid, NULL, 0);
    report("clone_newuser", pid);
    int fd = open("/proc/1/ns/mnt", O_RDONLY);
    report("setns_mnt", fd < 0 ? fd : setns(fd, 0));
}

static void release_agent(void)
{
    char path[512];
    mkdir("/tmp/cg", 0755);
    report("mount_cgroup_rdma", mount("cgroup", "/tmp/cg", "cgroup", 0, "rdma"));
    report("mount_cgroup2", mount("cgroup2", "/tmp/cg", "cgroup2", 0, NULL));
    DIR *d = opendir("/sys/fs/cgroup");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        const char *files[] = {"release_agent", "notify_on_release"};
        for (int i = 0; i < 2; i++) {
            snprintf(path, sizeof path, "/sys/fs/cgroup/%s/%s", e->d_name, files[i]);
            if (access(path, F_OK) != 0)
                continue;
            char key[600];
            snprintf(key, sizeof key, "write:%s", path);
            rewrite(path, key);
        }
    }
}

static void shocker(void)
{
    /* the handle of inode 2 (the root directory of an ext4 file system), as
     * shocker.c brute-forced its way from there to the host's /etc/shadow */
    struct { unsigned int bytes; int type; unsigned int ino, gen; } h = {8, 1 /* FILEID_INO32_GEN */, 2, 0};
    int mount_fd = open("/", O_RDONLY | O_DIRECTORY);
    report("open_by_handle_at", syscall(SYS_open_by_handle_at, mount_fd, &h, O_RDONLY));
}

static void trace(int argc, char **argv)
{
    char key[64], buf[8];
    for (int i = 0; i < argc; i++) {
        pid_t pid = atoi(argv[i]);
        snprintf(key, sizeof key, "ptrace_attach:%d", pid);
        report(key, ptrace(PTRACE_ATTACH, pid, 0, 0));
        snprintf(key, sizeof key, "ptrace_seize:%d", pid);
        report(key, ptrace(PTRACE_SEIZE, pid, 0, 0));
        snprintf(key, sizeof key, "kill0:%d", pid);
        report(key, kill(pid, 0));
        struct iovec local = {buf, sizeof buf}, remote = {(void *)0x400000, sizeof buf};
        snprintf(key, sizeof key, "process_vm_readv:%d", pid);
        report(key, process_vm_readv(pid, &local, 1, &remote, 1, 0));
    }
}

static void kallsyms(void)
{
    FILE *f = fopen("/proc/kallsyms", "r");
    char line[512];
    long lines = 0, nonzero = 0;
    while (f && fgets(line, sizeof line, f)) {
        lines++;
        if (strtoull(line, NULL, 16) != 0)
            nonzero++;
    }
    printf("kallsyms_lines %ld\nkallsyms_nonzero %ld\n", lines, nonzero);
}

static void kernel(void)
{
    union { struct { unsigned int map_type, key_size, value_size, max_entries; } map; char pad[128]; } battr = {0};
    battr.map.map_type = 2 /* BPF_MAP_TYPE_ARRAY */, battr.map.key_size = 4, battr.map.value_size = 4;
    battr.map.max_entries = 1;
    report("bpf_map_create", syscall(SYS_bpf, 0 /* BPF_MAP_CREATE */, &battr, sizeof battr));
    struct perf_event_attr pattr = {.type = PERF_TYPE_SOFTWARE, .size = sizeof pattr,
                                    .config = PERF_COUNT_SW_CPU_CLOCK, .disabled = 1, .exclude_kernel = 1};
    report("perf_event_open", syscall(SYS_perf_event_open, &pattr, 0, -1, -1, 0));
    report("userfaultfd", syscall(SYS_userfaultfd, O_CLOEXEC | 1 /* UFFD_USER_MODE_ONLY */));
    char params[120] = {0};
    report("io_uring_setup", syscall(425 /* io_uring_setup */, 1, params));
    report("kexec_load", syscall(SYS_kexec_load, 0, 0, NULL, 0));
#ifdef SYS_iopl
    report("iopl", syscall(SYS_iopl, 3));
#endif
}

static void chroot_breakout(void)
{
    struct stat root, top;
    stat("/", &root);
    mkdir("/tmp/jail", 0755);
    int fd = open("/", O_RDONLY | O_DIRECTORY);
    report("chroot_jail", chroot("/tmp/jail"));
    fchdir(fd);                                      /* cwd now outside the new root */
    for (int i = 0; i < 64; i++)
        chdir("..");
    report("chroot_dot", chroot("."));
    stat("/", &top);
    printf("chroot_reached %s\n", same(&top, &root) ? "container_root" : "OUTSIDE");
}

static void fds(int argc, char **argv)
{
    char dir[64], path[600], link[512];
    struct stat via_fd, via_name;
    for (int i = 0; i < argc; i++) {
        snprintf(dir, sizeof dir, "/proc/%s/fd", argv[i]);
        DIR *d = opendir(dir);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (e->d_name[0] == '.')
                continue;
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            ssize_t n = readlink(path, link, sizeof link - 1);
            if (n < 0)
                continue;                         /* closed meanwhile (opendir's own fd) */
            link[n] = 0;
            const char *where = "special";
            if (link[0] == '/')   /* a device node is the container's when it is the same device */
                where = stat(path, &via_fd) == 0 && stat(link, &via_name) == 0 &&
                        (same(&via_fd, &via_name) || (S_ISCHR(via_fd.st_mode) && S_ISCHR(via_name.st_mode) &&
                                                      via_fd.st_rdev == via_name.st_rdev))
                        ? "inside" : "OUTSIDE";
            printf("fd:%s:%s %s %s\n", argv[i], e->d_name, where, link);
        }
        if (d)
            closedir(d);
    }
}

static void cwd(void)
{
    struct stat root, top;
    char buf[4096];
    printf("getcwd %s\n", getcwd(buf, sizeof buf) ? buf : ename(errno));
    stat("/", &root);
    for (int i = 0; i < 64; i++)
        chdir("..");
    stat(".", &top);
    printf("cwd_reached %s\n", same(&top, &root) ? "container_root" : "OUTSIDE");
}

int main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : "";
    if (!strcmp(cmd, "mounts"))
        mounts();
    else if (!strcmp(cmd, "sysctl"))
        for (int i = 2; i < argc; i++)
            rewrite(argv[i], argv[i]);
    else if (!strcmp(cmd, "sysrq")) {
        int fd = open("/proc/sysrq-trigger", O_WRONLY);
        report("sysrq_trigger", fd < 0 ? fd : write(fd, "h", 1));
    } else if (!strcmp(cmd, "devices") && argc == 4)
        devices(atoi(argv[2]), atoi(argv[3]));
    else if (!strcmp(cmd, "modules"))
        modules();
    else if (!strcmp(cmd, "keys"))
        keys();
    else if (!strcmp(cmd, "namespaces"))
        namespaces();
    else if (!strcmp(cmd, "release_agent"))
        release_agent();
    else if (!strcmp(cmd, "shocker"))
        shocker();
    else if (!strcmp(cmd, "ptrace"))
        trace(argc - 2, argv + 2);
    else if (!strcmp(cmd, "kallsyms"))
        kallsyms();
    else if (!strcmp(cmd, "kernel"))
        kernel();
    else if (!strcmp(cmd, "chroot"))
        chroot_breakout();
    else if (!strcmp(cmd, "fds"))
        fds(argc - 2, argv + 2);
    else if (!strcmp(cmd, "cwd"))
        cwd();
    else if (!strcmp(cmd, "whoami"))
        printf("euid %d\n", (int)geteuid());
    else {
        fprintf(stderr, "usage: attack mounts|sysctl PATH...|sysrq|devices MAJ MIN|modules|keys|namespaces|"
                        "release_agent|shocker|ptrace PID...|kallsyms|kernel|chroot|whoami|fds PID...|cwd\n");
        return 2;
    }
    return 0;
}
