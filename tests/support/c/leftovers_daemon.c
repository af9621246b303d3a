/* A hook's daemon that waits for the build to end, then acts (tests/evasion/test_leftovers.py).
 *
 * leftovers_daemon WATCH_PID IPV4 PORT HOST OUT_FILE
 *
 * Double-forks and detaches (setsid, stdio to /dev/null) so the hook returns at once, waits
 * until WATCH_PID (the package manager) is gone, then connects to IPV4:PORT, sends an HTTP
 * request for /after-build with Host: HOST, and writes what happened to OUT_FILE. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 6)
        return 2;
    pid_t watched = (pid_t)atoi(argv[1]);
    if (fork() != 0)
        return 0;
    setsid();
    if (fork() != 0)
        _exit(0);
    if (!freopen("/dev/null", "r", stdin) || !freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))
        return 1;
    for (int i = 0; i < 1200 && kill(watched, 0) == 0; i++)
        usleep(50000);
    char result[256];
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[3]))};
    inet_pton(AF_INET, argv[2], &to.sin_addr);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(s, (struct sockaddr *)&to, sizeof to) != 0) {
        snprintf(result, sizeof result, "connect failed: %s\n", strerror(errno));
    } else {
        char request[256];
        int n = snprintf(request, sizeof request, "GET /after-build HTTP/1.0\r\nHost: %s\r\n\r\n", argv[4]);
        if (write(s, request, (size_t)n) != n) {
            snprintf(result, sizeof result, "send failed: %s\n", strerror(errno));
        } else {
            char reply[64] = {0};
            ssize_t got = read(s, reply, sizeof reply - 1);
            snprintf(result, sizeof result, "sent; reply %.12s\n", got > 0 ? reply : "(none)");
        }
    }
    close(s);
    FILE *out = fopen(argv[5], "w");
    if (!out)
        return 1;
    fputs(result, out);
    fclose(out);
    return 0;
}
