/* Socket paths out that a tracer must not miss: sock_probe MODE ARGS...
 *   tfo HOST PORT        TCP Fast Open: sendto(MSG_FASTOPEN) with the destination, no connect()
 *   tfo-msg HOST PORT    the same through sendmsg's msg_name
 *   mmsg HOST PORT N     one sendmmsg of N datagrams, the last to HOST:PORT, the others to loopback
 *   dns HOST PORT NAME   a DNS query for NAME over UDP to HOST:PORT (any port)
 *   udp-fork HOST PORT   connect a UDP socket, then a forked child sends on it with send()
 *   raw                  socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)
 *   packet               socket(AF_PACKET, SOCK_RAW, ETH_P_ALL)
 *   int80 HOST PORT      socket() and connect() through the i386 ABI (int 0x80), then an HTTP GET
 *   netlink              an RTM_GETLINK dump, then RTM_NEWADDR 10.99.0.1/32 on lo (run it in a
 *                        network namespace of its own)
 * Prints one line per step: "<step> ok ..." or "<step> failed: <error>". Exits 0 either way. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef MSG_FASTOPEN
#define MSG_FASTOPEN 0x20000000
#endif

static struct sockaddr_in address_of(const char *host, const char *port) {
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons((unsigned short)atoi(port));
    inet_pton(AF_INET, host, &sin.sin_addr);
    return sin;
}

static void report(const char *step, long result) {
    if (result < 0)
        printf("%s failed: %s\n", step, strerror(errno));
    else
        printf("%s ok %ld\n", step, result);
    fflush(stdout);
}

static void read_reply(int fd, const char *step) {
    char buffer[256];
    ssize_t got = read(fd, buffer, sizeof buffer - 1);
    if (got > 0) {
        buffer[got] = 0;
        char *end = strchr(buffer, '\r');
        if (end)
            *end = 0;
        printf("%s reply %s\n", step, buffer);
    } else {
        printf("%s reply none\n", step);
    }
}

static int tfo(const char *host, const char *port, int use_msg) {
    struct sockaddr_in sin = address_of(host, port);
    char request[256];
    snprintf(request, sizeof request, "GET /tfo HTTP/1.0\r\nHost: %s\r\n\r\n", host);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    long sent;
    if (use_msg) {
        struct iovec iov = {request, strlen(request)};
        struct msghdr msg;
        memset(&msg, 0, sizeof msg);
        msg.msg_name = &sin;
        msg.msg_namelen = sizeof sin;
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        sent = sendmsg(fd, &msg, MSG_FASTOPEN);
    } else {
        sent = sendto(fd, request, strlen(request), MSG_FASTOPEN, (struct sockaddr *)&sin, sizeof sin);
    }
    report(use_msg ? "tfo-msg" : "tfo", sent);
    if (sent >= 0)
        read_reply(fd, use_msg ? "tfo-msg" : "tfo");
    return 0;
}

static int mmsg(const char *host, const char *port, int count) {
    struct sockaddr_in far = address_of(host, port), near = address_of("127.0.0.1", "9");
    struct mmsghdr *messages = calloc((size_t)count, sizeof *messages);
    struct iovec *iovs = calloc((size_t)count, sizeof *iovs);
    static char payload[] = "mmsg-exfil";
    for (int i = 0; i < count; i++) {
        iovs[i].iov_base = payload;
        iovs[i].iov_len = sizeof payload - 1;
        messages[i].msg_hdr.msg_iov = &iovs[i];
        messages[i].msg_hdr.msg_iovlen = 1;
        messages[i].msg_hdr.msg_name = i == count - 1 ? &far : &near;
        messages[i].msg_hdr.msg_namelen = sizeof far;
    }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    report("mmsg", sendmmsg(fd, messages, (unsigned)count, 0));
    return 0;
}

static int dns(const char *host, const char *port, const char *name) {
    unsigned char query[512] = {0x13, 0x37, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0};
    size_t at = 12;
    const char *label = name;
    while (*label) {
        const char *dot = strchr(label, '.');
        size_t length = dot ? (size_t)(dot - label) : strlen(label);
        query[at++] = (unsigned char)length;
        memcpy(query + at, label, length);
        at += length;
        label += length + (dot ? 1 : 0);
    }
    query[at++] = 0;
    query[at++] = 0, query[at++] = 1; /* A */
    query[at++] = 0, query[at++] = 1; /* IN */
    struct sockaddr_in sin = address_of(host, port);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    report("dns", sendto(fd, query, at, 0, (struct sockaddr *)&sin, sizeof sin));
    return 0;
}

static int udp_fork(const char *host, const char *port) {
    struct sockaddr_in sin = address_of(host, port);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    report("udp-connect", connect(fd, (struct sockaddr *)&sin, sizeof sin));
    pid_t child = fork();
    if (child == 0) {
        report("udp-send", send(fd, "inherited-exfil", 15, 0));
        _exit(0);
    }
    waitpid(child, NULL, 0);
    return 0;
}

static long int80(long number, long a, long b, long c) {
    long result;
    __asm__ volatile("int $0x80" : "=a"(result) : "a"(number), "b"(a), "c"(b), "d"(c) : "memory");
    return result;
}

static int connect_int80(const char *host, const char *port) {
    /* i386 syscalls take 32-bit pointers: the sockaddr must live below 4 GiB. */
    struct sockaddr_in *sin = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
    *sin = address_of(host, port);
    long fd = int80(359 /* socket */, AF_INET, SOCK_STREAM, 0);
    long result = int80(362 /* connect */, fd, (long)sin, sizeof *sin);
    if (result < 0) {
        errno = (int)-result;
        result = -1;
    }
    report("int80-connect", result);
    if (result == 0) {
        char request[128];
        snprintf(request, sizeof request, "GET /int80 HTTP/1.0\r\nHost: %s\r\n\r\n", host);
        if (write((int)fd, request, strlen(request)) > 0)
            read_reply((int)fd, "int80");
    }
    return 0;
}

static long netlink_send(int fd, struct nlmsghdr *header) {
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    return sendto(fd, header, header->nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel);
}

static int netlink(void) {
    int fd = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
    struct {
        struct nlmsghdr header;
        struct ifinfomsg info;
    } dump = {{NLMSG_LENGTH(sizeof(struct ifinfomsg)), RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, 1, 0}, {0}};
    report("netlink-get", netlink_send(fd, &dump.header));
    struct {
        struct nlmsghdr header;
        struct ifaddrmsg addr;
        struct rtattr attr;
        struct in_addr local;
    } add;
    memset(&add, 0, sizeof add);
    add.header.nlmsg_len = sizeof add;
    add.header.nlmsg_type = RTM_NEWADDR;
    add.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK;
    add.header.nlmsg_seq = 2;
    add.addr.ifa_family = AF_INET;
    add.addr.ifa_prefixlen = 32;
    add.addr.ifa_index = 1; /* lo */
    add.attr.rta_len = RTA_LENGTH(sizeof(struct in_addr));
    add.attr.rta_type = IFA_LOCAL;
    inet_pton(AF_INET, "10.99.0.1", &add.local);
    report("netlink-newaddr", netlink_send(fd, &add.header));
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2)
        return 2;
    const char *mode = argv[1];
    if (!strcmp(mode, "tfo") && argc == 4)
        return tfo(argv[2], argv[3], 0);
    if (!strcmp(mode, "tfo-msg") && argc == 4)
        return tfo(argv[2], argv[3], 1);
    if (!strcmp(mode, "mmsg") && argc == 5)
        return mmsg(argv[2], argv[3], atoi(argv[4]));
    if (!strcmp(mode, "dns") && argc == 5)
        return dns(argv[2], argv[3], argv[4]);
    if (!strcmp(mode, "udp-fork") && argc == 4)
        return udp_fork(argv[2], argv[3]);
    if (!strcmp(mode, "raw")) {
        report("raw", socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));
        return 0;
    }
    if (!strcmp(mode, "packet")) {
        report("packet", socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL)));
        return 0;
    }
    if (!strcmp(mode, "int80") && argc == 4)
        return connect_int80(argv[2], argv[3]);
    if (!strcmp(mode, "netlink"))
        return netlink();
    return 2;
}
