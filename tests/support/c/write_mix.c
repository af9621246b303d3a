/* Every kind of write the compiled stop loop takes, from threads and processes at once, each
 * changing what a later read would see right after its syscall: the path buffer is rewritten,
 * the cwd moves, a dirfd is closed and its number reused for another directory.
 * Usage: write_mix DIR (DIR exists and is empty). Exits non-zero if a syscall fails. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define ROUNDS 40

static const char *root;
static int failures;

static void check(int ok, const char *what) {
    if (!ok) {
        perror(what);
        __atomic_add_fetch(&failures, 1, __ATOMIC_SEQ_CST);
    }
}

/* Writes through one reused buffer: a string read after the tracee ran on would be the next one. */
static void *writer(void *arg) {
    long id = (long)arg;
    char path[4096], other[4096];
    for (int round = 0; round < ROUNDS; round++) {
        snprintf(path, sizeof path, "%s/t%ld/f%d", root, id, round);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        check(fd >= 0, "open");
        check(fchmod(fd, 0600) == 0, "fchmod");
        close(fd);
        snprintf(other, sizeof other, "%s/t%ld/g%d", root, id, round);
        check(rename(path, other) == 0, "rename");
        snprintf(path, sizeof path, "%s/t%ld/h%d", root, id, round);
        check(link(other, path) == 0, "link");
        check(chmod(path, 0755) == 0, "chmod");
        check(truncate(path, 0) == 0, "truncate");
        check(unlink(other) == 0, "unlink");
        snprintf(other, sizeof other, "%s/t%ld/s%d", root, id, round);
        check(symlink(path, other) == 0, "symlink");
        fd = open(other, O_WRONLY | O_APPEND);  /* through the symlink: the target is written */
        check(fd >= 0, "open through symlink");
        close(fd);
        check(unlink(other) == 0, "unlink symlink");
    }
    return NULL;
}

/* Relative paths while the cwd moves and dirfd numbers are reused. */
static void relative(const char *name) {
    char path[4096];
    for (int round = 0; round < ROUNDS; round++) {
        snprintf(path, sizeof path, "%s/%s/a", root, name);
        check(chdir(path) == 0, "chdir a");
        int fd = open("rel", O_WRONLY | O_CREAT, 0644);
        check(fd >= 0, "open rel");
        close(fd);
        check(chdir("../b") == 0, "chdir b");
        fd = creat("rel", 0644);
        check(fd >= 0, "creat rel");
        close(fd);
        int dir = open("../a", O_RDONLY | O_DIRECTORY);
        check(dir >= 0, "open dir a");
        check(renameat(dir, "rel", AT_FDCWD, "moved") == 0, "renameat");
        close(dir);
        dir = open(".", O_RDONLY | O_DIRECTORY); /* the same fd number, another directory */
        check(unlinkat(dir, "moved", 0) == 0, "unlinkat");
        check(symlinkat("rel", dir, "sym") == 0, "symlinkat");
        check(fchmodat(dir, "rel", 0700, 0) == 0, "fchmodat");
        check(unlinkat(dir, "sym", 0) == 0, "unlinkat sym");
        /* Bare names through a symlink, from the cwd and from the dirfd: the target is written. */
        check(symlinkat("rel", dir, "lnk") == 0, "symlinkat lnk");
        fd = open("lnk", O_WRONLY);
        check(fd >= 0, "open lnk");
        close(fd);
        fd = openat(dir, "lnk", O_WRONLY | O_APPEND);
        check(fd >= 0, "openat lnk");
        close(fd);
        check(unlinkat(dir, "lnk", 0) == 0, "unlinkat lnk");
        check(linkat(dir, "rel", AT_FDCWD, "../a/hard", 0) == 0, "linkat");
        check(unlink("../a/hard") == 0, "unlink hard");
        close(dir);
    }
}

static void make(const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", root, name);
    check(mkdir(path, 0755) == 0, "mkdir");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: write_mix DIR\n");
        return 2;
    }
    root = argv[1];
    const char *dirs[] = {"t0", "t1", "t2", "p", "p/a", "p/b", "q", "q/a", "q/b"};
    for (unsigned i = 0; i < sizeof dirs / sizeof *dirs; i++)
        make(dirs[i]);
    pid_t child = fork();
    if (child == 0) {
        relative("q");
        _exit(failures);
    }
    pthread_t threads[3];
    for (long id = 0; id < 3; id++)
        pthread_create(&threads[id], NULL, writer, (void *)id);
    relative("p");
    for (int id = 0; id < 3; id++)
        pthread_join(threads[id], NULL);
    int status;
    waitpid(child, &status, 0);
    return failures + (WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}
