/* Calls io_uring_setup; the kernel may refuse (io_uring disabled), the attempt is what counts. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif

int main(void) {
    unsigned char params[120]; /* struct io_uring_params */
    memset(params, 0, sizeof params);
    long fd = syscall(__NR_io_uring_setup, 4, params);
    if (fd >= 0) {
        close((int)fd);
        printf("io_uring_setup ok\n");
    } else {
        printf("io_uring_setup refused: %s\n", strerror(errno));
    }
    return 0;
}
