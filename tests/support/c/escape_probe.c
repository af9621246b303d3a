/* Ways out of a tracer's sight: escape_probe MODE...
 *   listener          seccomp(SET_MODE_FILTER, NEW_LISTENER) with a filter that notifies on
 *                     getppid; a supervisor thread answers CONTINUE: the call runs, unseen
 *   filter            prctl(PR_SET_SECCOMP) with an allow-everything filter (no listener)
 *   unshare [HOST PORT]  unshare(CLONE_NEWNET), then an HTTP GET /escaped to HOST:PORT
 *   setns PATH [HOST PORT]  setns(open(PATH), CLONE_NEWNET), then setns(fd, 0); then an HTTP
 *                     GET /escaped to HOST:PORT from wherever it now is
 *   untraced PATH     clone(CLONE_UNTRACED | SIGCHLD); the child execs PATH
 *   clone3 PATH       clone3 (flags 0); the child execs PATH
 * Prints "<step> ok ..." or "<step> failed: <error>" per step; exits 0. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void report(const char *step, long result) {
    if (result < 0)
        printf("%s failed: %s\n", step, strerror(errno));
    else
        printf("%s ok %ld\n", step, result);
    fflush(stdout);
}

static void http_get(const char *host, const char *port) {
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons((unsigned short)atoi(port));
    inet_pton(AF_INET, host, &sin.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    report("connect", connect(fd, (struct sockaddr *)&sin, sizeof sin));
    char request[128];
    snprintf(request, sizeof request, "GET /escaped HTTP/1.0\r\nHost: %s\r\n\r\n", host);
    if (write(fd, request, strlen(request)) > 0) {
        char reply[64] = {0};
        printf("reply %s\n", read(fd, reply, 12) > 0 ? reply : "none");
    }
}

static int listener_fd = -1;

static void *supervise(void *unused) {
    struct seccomp_notif request;
    struct seccomp_notif_resp response;
    memset(&request, 0, sizeof request);
    if (ioctl(listener_fd, SECCOMP_IOCTL_NOTIF_RECV, &request) != 0)
        return NULL;
    memset(&response, 0, sizeof response);
    response.id = request.id;
    response.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
    ioctl(listener_fd, SECCOMP_IOCTL_NOTIF_SEND, &response);
    printf("listener continued syscall %d\n", request.data.nr);
    fflush(stdout);
    return NULL;
}

static int listener(void) {
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog program = {sizeof code / sizeof code[0], code};
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    listener_fd = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &program);
    report("listener", listener_fd);
    if (listener_fd < 0)
        return 0;
    pthread_t thread;
    pthread_create(&thread, NULL, supervise, NULL);
    report("getppid", syscall(SYS_getppid));
    pthread_join(thread, NULL);
    return 0;
}

static int filter(void) {
    struct sock_filter code[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
    struct sock_fprog program = {1, code};
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    report("filter", prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program, 0, 0));
    return 0;
}

static int run_child(const char *step, long pid, const char *path) {
    if (pid == 0) {
        execl(path, path, "escaped-child", (char *)NULL);
        _exit(127);
    }
    report(step, pid);
    if (pid > 0) {
        int status = 0;
        waitpid((pid_t)pid, &status, 0);
        printf("%s child exited %d\n", step, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2)
        return 2;
    const char *mode = argv[1];
    if (!strcmp(mode, "listener"))
        return listener();
    if (!strcmp(mode, "filter"))
        return filter();
    if (!strcmp(mode, "unshare") && (argc == 2 || argc == 4)) {
        report("unshare", unshare(CLONE_NEWNET));
        if (argc == 4)
            http_get(argv[2], argv[3]);
        return 0;
    }
    if (!strcmp(mode, "setns") && (argc == 3 || argc == 5)) {
        int fd = open(argv[2], O_RDONLY);
        report("setns", setns(fd, CLONE_NEWNET));
        report("setns-any", setns(fd, 0));
        if (argc == 5)
            http_get(argv[3], argv[4]);
        return 0;
    }
    if (!strcmp(mode, "untraced") && argc == 3)
        return run_child("untraced", syscall(SYS_clone, CLONE_UNTRACED | SIGCHLD, 0, 0, 0, 0), argv[2]);
    if (!strcmp(mode, "clone3") && argc == 3) {
        struct clone_args args;
        memset(&args, 0, sizeof args);
        args.exit_signal = SIGCHLD;
        return run_child("clone3", syscall(SYS_clone3, &args, sizeof args), argv[2]);
    }
    return 2;
}
