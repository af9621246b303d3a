/* PTRACE_TRACEME: fails under ciwatch (already traced), but the attempt is what counts. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>

int main(void) {
    long result = ptrace(PTRACE_TRACEME, 0, NULL, NULL);
    printf("ptrace traceme: %ld (%s)\n", result, result == 0 ? "ok" : strerror(errno));
    return 0;
}
