/* Puts a #! shell script into a memfd and runs it by its /proc/self/fd/N path: code that
 * never touched the disk, run by an interpreter (the kernel runs /bin/sh, not the memfd). */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

extern char **environ;

int main(void) {
    /* not MFD_CLOEXEC: the interpreter opens the script by the same path after the exec */
    int memfd = memfd_create("ciwatch-script", 0);
    const char *script = "#!/bin/sh\necho ran-from-memfd\n";
    if (memfd < 0 || write(memfd, script, strlen(script)) != (ssize_t)strlen(script)) {
        perror("memfd");
        return 1;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", memfd);
    char *child_argv[] = {"payload", NULL};
    execve(path, child_argv, environ);
    perror("execve");
    return 1;
}
