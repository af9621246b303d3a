/* Writes the shell start-up files of the home directory named by argv[1], each through a
 * different alias of it, and reads ~/.npmrc through /proc/self/root: the spellings an install
 * hook uses to slip past rules that match paths as written. argv[2] is a scratch directory. */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void put(int dirfd, const char *path) {
    int fd = openat(dirfd, path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) { perror(path); return; }
    if (write(fd, "echo pwned\n", 11) != 11) perror("write");
    close(fd);
}

int main(int argc, char **argv) {
    char path[PATH_MAX];
    if (argc < 3) return 2;
    const char *home = argv[1], *scratch = argv[2];
    snprintf(path, sizeof path, "/proc/self/root%s/.bashrc", home);
    put(AT_FDCWD, path);                                   /* /proc/self/root */
    if (chdir(home) != 0) return 1;
    put(AT_FDCWD, "/proc/self/cwd/.profile");              /* /proc/self/cwd */
    snprintf(path, sizeof path, "%s/.ssh", home);
    int ssh = open(path, O_RDONLY | O_DIRECTORY);
    put(ssh, "../.zshrc");                                 /* relative to a dirfd, with .. */
    snprintf(path, sizeof path, "/proc/self/fd/%d/../.bash_login", ssh);
    put(AT_FDCWD, path);                                   /* /proc/self/fd/N/.. */
    snprintf(path, sizeof path, "%s/h", scratch);
    if (symlink(home, path) != 0) perror("symlink");
    snprintf(path, sizeof path, "%s/h/.bash_profile", scratch);
    put(AT_FDCWD, path);                                   /* a symlinked directory */
    put(AT_FDCWD, ".ssh/../.ssh/../.zprofile");            /* a .. chain, relative to the cwd */
    snprintf(path, sizeof path, "/proc/self/root%s/.npmrc", home);
    int npmrc = open(path, O_RDONLY);                      /* a credential read by alias */
    char buf[256];
    if (npmrc >= 0 && read(npmrc, buf, sizeof buf) > 0) printf("read the npm token\n");
    return 0;
}
