/* vfork + exec: prints the child's pid, then the child's exit status. */
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
    pid_t child = vfork();
    if (child == 0) {
        execl("/bin/true", "true", "vforked-child", (char *)NULL);
        _exit(127);
    }
    if (child < 0) {
        perror("vfork");
        return 1;
    }
    int status = 0;
    waitpid(child, &status, 0);
    printf("child %d status %d\n", (int)child, status);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
