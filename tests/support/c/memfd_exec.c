/* Copies an ELF (argv[1]) into a memfd and runs it with fexecve (execveat AT_EMPTY_PATH). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: memfd_exec ELF\n");
        return 2;
    }
    int source = open(argv[1], O_RDONLY);
    int memfd = memfd_create("ciwatch-payload", MFD_CLOEXEC);
    if (source < 0 || memfd < 0) {
        perror("open/memfd_create");
        return 1;
    }
    char buffer[65536];
    ssize_t got;
    while ((got = read(source, buffer, sizeof buffer)) > 0) {
        if (write(memfd, buffer, (size_t)got) != got) {
            perror("write");
            return 1;
        }
    }
    close(source);
    char *child_argv[] = {"payload", "from-memfd", NULL};
    fexecve(memfd, child_argv, environ);
    perror("fexecve");
    return 1;
}
