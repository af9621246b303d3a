/* Exec from a non-leader thread: the kernel gives the exec'ing thread the leader's pid.
 * Usage: thread_exec PROGRAM [ARGS...]; the worker thread execs PROGRAM with ARGS. */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

static char **program_argv;

static void *worker(void *unused) {
    (void)unused;
    execv(program_argv[0], program_argv);
    perror("execv");
    _exit(127);
}

int main(int argc, char **argv) {
    pthread_t thread;
    if (argc < 2) {
        fprintf(stderr, "usage: thread_exec PROGRAM [ARGS...]\n");
        return 2;
    }
    program_argv = argv + 1;
    if (pthread_create(&thread, NULL, worker, NULL) != 0) {
        perror("pthread_create");
        return 1;
    }
    pthread_join(thread, NULL); /* never returns: the exec replaces the whole process */
    return 1;
}
