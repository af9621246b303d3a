/* What the compiled stop loop's files share (_stoploop.c: the wait and the batch; _stopread.c:
 * what a stop's row asks for, read while the tracee is stopped; _stopjudge.c: a hook's reads
 * judged without Python; _stopdecode.c: a write's event built without Python). */
#ifndef CIWATCH_STOPLOOP_H
#define CIWATCH_STOPLOOP_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef PTRACE_EVENT_SECCOMP
#define PTRACE_EVENT_SECCOMP 7
#endif
#define AUDIT_ARCH_X86_64_ 0xC000003EU
#define X32_SYSCALL_BIT_ 0x40000000UL
#define AT_FDCWD_ (-100)
#define O_CREAT_ 0100
#define O_EXCL_ 0200
#define O_NOFOLLOW_ 0400000
#define AT_SYMLINK_FOLLOW_ 0x400
#define STRING_LIMIT 65536
#define PATH_BUF 8192

/* The kinds of a row's reads, as ciwatch.trace.batch passes them. */
enum { READ_PATH = 1, READ_STRING = 2, READ_FD = 3 };
/* When a path's last component is followed. */
enum { FOLLOW_NEVER = 0, FOLLOW_ALWAYS = 1, FOLLOW_OPEN_FLAGS = 2, FOLLOW_AT_FLAG = 3 };

/* A syscall retried when a signal interrupted it: the hold's timer ticks while a batch is
 * held (_stoploop.c), and a lookup on a network or FUSE file system can be interrupted. */
#define RETRY(call)                                                                                                    \
    ({                                                                                                                 \
        long retried_;                                                                                                 \
        do                                                                                                             \
            retried_ = (long)(call);                                                                                   \
        while (retried_ < 0 && errno == EINTR);                                                                        \
        retried_;                                                                                                      \
    })

/* At most this many reads per row (a rename's or a link's two paths). */
#define MAX_READS 2

/* One of a row's reads, as gathered in C before anything is built for Python. */
struct gathered {
    int kind;
    unsigned long address; /* READ_PATH, READ_STRING: where the string was read */
    char *text;            /* its bytes (STRING_LIMIT), NUL-terminated at length */
    size_t length;
    int fd; /* READ_FD, or a READ_PATH's dirfd other than AT_FDCWD (-1 otherwise) */
    char fd_link[PATH_BUF];
    int canonicalised; /* a READ_PATH the loop resolved: joined, follow, canonical */
    int unsettled;     /* a READ_PATH joined, but not resolved by canonical_fast */
    char joined[PATH_BUF];
    int follow;
    char canonical[PATH_BUF];
};

/* Everything a stop's row asks for, read while the tracee is stopped. */
struct capture {
    Py_ssize_t count;
    struct gathered reads[MAX_READS];
    int have_cwd;
    char cwd[PATH_BUF];
};

/* The literal heads of the credential patterns (ciwatch.facts.paths.credential_prefixes, as
 * bytes), held for one next_batch call. */
#define MAX_PREFIXES 64
struct prefixes {
    Py_ssize_t count;
    const char *text[MAX_PREFIXES];
    Py_ssize_t length[MAX_PREFIXES];
};

/* _stopread.c */
void read_init(void);
int gather(pid_t tid, const __uint64_t *args, PyObject *reads, struct capture *c);
int canonical_fast(const char *joined, int follow, char *out, size_t size);

/* _stopjudge.c */
int landing(const struct gathered *g, char *out, size_t size);
int parse_prefixes(PyObject *tuple, struct prefixes *out);
int is_plain_read(const struct capture *c, const __uint64_t *args, long flag_arg, unsigned long write_flags,
                  const struct prefixes *credential);

/* _stopdecode.c */
PyObject *decoded_write(PyObject *decoding, PyObject *pid, PyObject *number, const __uint64_t *args,
                        const struct capture *c);
PyObject *decoded_write_of(PyObject *self, PyObject *call);

#endif
