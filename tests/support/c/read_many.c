/* An install hook that reads many system files and a few credentials, as man-db's trigger
 * does under apt: argv[1] read-only opens of the regular files under /usr/share, each spelled
 * one of six ways (absolute, relative to the cwd, relative to a dirfd, through a symlinked
 * directory with "..", in a directory that doesn't exist as every process's locale probes
 * are, through a symlink to a file); then $HOME/.npmrc by six spellings, a look-alike of it,
 * credentials that don't exist (in a missing directory, through a dangling symlink), another
 * process's environ and its own. argv[2] is a scratch directory; $HOME/sub must exist,
 * $HOME/.ssh and $HOME/.aws must not. */
#define _XOPEN_SOURCE 700
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SYSTEM_ROOT "/usr/share"
#define MAX_FILES 4000

static char *files[MAX_FILES]; /* relative to SYSTEM_ROOT */
static int file_count;

static int collect(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    if (type == FTW_F && strlen(path) < PATH_MAX / 2)
        files[file_count++] = strdup(path + strlen(SYSTEM_ROOT) + 1);
    return file_count >= MAX_FILES;
}

static void read_open(int dirfd, const char *path) {
    int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0)
        close(fd);
}

int main(int argc, char **argv) {
    char path[PATH_MAX], link_target[PATH_MAX];
    const char *home = getenv("HOME");
    if (argc < 3 || home == NULL)
        return 2;
    long count = atol(argv[1]);
    const char *scratch = argv[2];
    nftw(SYSTEM_ROOT, collect, 32, FTW_PHYS);
    if (file_count == 0)
        return 1;
    snprintf(path, sizeof path, "%s/share", scratch);
    if (symlink(SYSTEM_ROOT, path) != 0)
        perror("symlink");
    snprintf(path, sizeof path, "%s/file-link", scratch);
    snprintf(link_target, sizeof link_target, "%s/%s", SYSTEM_ROOT, files[0]);
    if (symlink(link_target, path) != 0)
        perror("symlink");
    int root = open(SYSTEM_ROOT, O_RDONLY | O_DIRECTORY);
    if (chdir(SYSTEM_ROOT) != 0)
        return 1;
    for (long index = 0; index < count; index++) {
        const char *file = files[index % file_count];
        switch (index % 6) {
        case 0:
            snprintf(path, sizeof path, "%s/%s", SYSTEM_ROOT, file);
            read_open(AT_FDCWD, path);
            break;
        case 1:
            read_open(AT_FDCWD, file);
            break;
        case 2:
            read_open(root, file);
            break;
        case 3:
            snprintf(path, sizeof path, "%s/share/../share/%s", scratch, file);
            read_open(AT_FDCWD, path);
            break;
        case 4:
            snprintf(path, sizeof path, "%s/.no-such-dir/%s", SYSTEM_ROOT, file);
            read_open(AT_FDCWD, path);
            break;
        default:
            snprintf(path, sizeof path, "%s/file-link", scratch);
            read_open(AT_FDCWD, path);
        }
    }

    snprintf(path, sizeof path, "%s/.npmrc", home);
    read_open(AT_FDCWD, path); /* absolute */
    snprintf(path, sizeof path, "%s/h", scratch);
    if (symlink(home, path) != 0)
        perror("symlink");
    snprintf(link_target, sizeof link_target, "%s/.npmrc", home);
    snprintf(path, sizeof path, "%s/npmrc-link", scratch);
    if (symlink(link_target, path) != 0)
        perror("symlink");
    read_open(AT_FDCWD, path); /* a symlink to it: the last component followed */
    snprintf(path, sizeof path, "%s/h/.npmrc", scratch);
    read_open(AT_FDCWD, path); /* through a symlinked directory */
    int home_fd = open(home, O_RDONLY | O_DIRECTORY);
    read_open(home_fd, ".npmrc"); /* relative to a dirfd */
    if (chdir(home) != 0)
        return 1;
    read_open(AT_FDCWD, ".npmrc");        /* relative to the cwd */
    read_open(AT_FDCWD, "sub/../.npmrc"); /* with .. */
    read_open(AT_FDCWD, ".npmrc.old");    /* a look-alike: no credential */
    read_open(AT_FDCWD, ".ssh/id_ed25519"); /* in a directory that doesn't exist */
    snprintf(path, sizeof path, "%s/dangling", scratch);
    snprintf(link_target, sizeof link_target, "%s/.aws/credentials", home);
    if (symlink(link_target, path) != 0)
        perror("symlink");
    read_open(AT_FDCWD, path); /* a dangling symlink to a credential */
    snprintf(path, sizeof path, "/proc/%d/environ", (int)getppid());
    read_open(AT_FDCWD, path);                 /* another process's environment */
    read_open(AT_FDCWD, "/proc/self/environ"); /* its own: no credential */
    printf("read %ld system files and the credentials\n", count);
    return 0;
}
