/* Prints "N target" for each of its own open fds (its directory fd aside):
 * tests/security/test_exec_process.py checks that a container process holds
 * nothing but its stdio. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(void) {
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    char link[64], target[512];
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.' || atoi(e->d_name) == dirfd(d)) continue;
        snprintf(link, sizeof link, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(link, target, sizeof target - 1);
        target[n < 0 ? 0 : n] = 0;
        printf("%s %s\n", e->d_name, target);
    }
    return 0;
}
