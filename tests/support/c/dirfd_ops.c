/* File operations relative to a directory fd and to the cwd (the *at syscalls directly).
 * Usage: dirfd_ops DIR; run with the cwd set to DIR/cwd. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

static int check(int ok, const char *what) {
    if (!ok) {
        perror(what);
    }
    return ok ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: dirfd_ops DIR\n");
        return 2;
    }
    int failures = 0;
    int dir = open(argv[1], O_RDONLY | O_DIRECTORY);
    failures += check(dir >= 0, "open dir");
    int fd = openat(dir, "at-dirfd.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    failures += check(fd >= 0, "openat dirfd");
    close(fd);
    fd = openat(AT_FDCWD, "at-cwd.txt", O_RDWR | O_CREAT, 0644);
    failures += check(fd >= 0, "openat cwd");
    failures += check(fchmod(fd, 0755) == 0, "fchmod");
    close(fd);
    fd = openat(dir, "read-only.txt", O_RDONLY);
    failures += check(fd >= 0, "openat read");
    close(fd);
    failures += check(renameat2(dir, "at-dirfd.txt", dir, "renamed.txt", RENAME_NOREPLACE) == 0, "renameat2");
    failures += check(linkat(dir, "renamed.txt", AT_FDCWD, "hardlink.txt", 0) == 0, "linkat");
    failures += check(symlinkat("renamed.txt", dir, "symlink.txt") == 0, "symlinkat");
    failures += check(fchmodat(dir, "renamed.txt", 0600, 0) == 0, "fchmodat");
    failures += check(unlinkat(dir, "symlink.txt", 0) == 0, "unlinkat");
    return failures;
}
