/* posix_spawn (glibc: clone with CLONE_VM | CLONE_VFORK) of /bin/true. */
#include <spawn.h>
#include <stdio.h>
#include <sys/wait.h>

extern char **environ;

int main(void) {
    pid_t child;
    char *argv[] = {"true", "spawned-child", NULL};
    int error = posix_spawn(&child, "/bin/true", NULL, NULL, argv, environ);
    if (error != 0) {
        fprintf(stderr, "posix_spawn: %d\n", error);
        return 1;
    }
    int status = 0;
    waitpid(child, &status, 0);
    printf("child %d status %d\n", (int)child, status);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
