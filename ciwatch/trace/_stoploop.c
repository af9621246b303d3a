/* The tracer's wait loop for the stops that need no judgement, in compiled code.
 *
 * next_batch() waits for the build's stops. A SECCOMP stop of a syscall in the fast set (the
 * table's file rows), by a thread the tracer knows and does not step, is read here: its
 * syscall info, the path strings its row names, the cwd or dirfd link a relative path is
 * resolved against, and the path made canonical the way ciwatch.trace.memory's fast path
 * does it (an openat2 of the directory that refuses magic links, then where the descriptor
 * landed). All of that can change once the tracee runs on (its memory, its cwd, its fds, and
 * the tree itself at its next syscall), so it is read first; then the tracee is resumed at
 * once and a compact tuple appended to the batch. Python decodes the batch later with the
 * table's own decoders over what was read (ciwatch.trace.batch): what a write means is
 * decided there only.
 *
 * Any other stop (exec, fork, exit, a signal, a network syscall, a thread the tracer steps,
 * a path the fast resolution can't settle) ends the batch unresumed: Python handles it as
 * it always has. Each event is complete before its tracee runs on, so a batch's order is
 * the order the stops happened in.
 *
 * A hook's read-only open (the hook filter stops at every open) whose canonical path starts
 * with none of the credential patterns' literal heads (ciwatch.facts.paths.credential_prefixes,
 * handed in by Python) can't be a credential: it is resumed and counted here, and nothing is
 * built for Python, since FileWatch.on_read would record nothing for it.
 */
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

static long page_size;
/* TracedThread.steps_syscalls's name, made once: asked at every stop. */
static PyObject *steps_syscalls_name;

/* The NUL-terminated string at address in tid's memory, page by page (as
 * ciwatch.trace.memory.read_cstring), into buffer (STRING_LIMIT bytes): its length, 0 when
 * unreadable. */
static size_t read_cstring(pid_t tid, unsigned long address, char *buffer) {
    size_t length = 0;
    if (address == 0)
        return 0;
    while (length < STRING_LIMIT) {
        size_t to_page_end = page_size - (address % page_size);
        size_t want = length == 0 && to_page_end > 256 ? 256 : to_page_end;
        if (want > STRING_LIMIT - length)
            want = STRING_LIMIT - length;
        struct iovec local = {buffer + length, want}, remote = {(void *)address, want};
        ssize_t got = process_vm_readv(tid, &local, 1, &remote, 1, 0);
        if (got <= 0)
            break;
        char *nul = memchr(buffer + length, 0, got);
        if (nul != NULL)
            return nul - buffer;
        length += got;
        address += got;
    }
    return length;
}

/* readlink of /proc/<tid>/<what> into out; "" when it fails (as procfs.readlink). */
static void proc_link(pid_t tid, const char *what, char *out, size_t size) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/%s", tid, what);
    ssize_t got = readlink(path, out, size - 1);
    out[got < 0 ? 0 : got] = 0;
}

/* ciwatch.trace.memory.TraceeMemory.canonical's fast path: the directory resolved by the
 * kernel, refusing magic links; 0 when it can't settle it (Python's slow walk then). */
static int canonical_fast(const char *joined, int follow, char *out, size_t size) {
    char directory[PATH_BUF];
    const char *slash = strrchr(joined, '/');
    const char *last = slash ? slash + 1 : joined;
    int whole = *last == 0 || strcmp(last, ".") == 0 || strcmp(last, "..") == 0;
    if (whole) {
        snprintf(directory, sizeof directory, "%s", joined);
    } else if (slash == NULL || slash == joined) {
        strcpy(directory, "/");
    } else {
        size_t head = slash - joined;
        if (head >= sizeof directory)
            return 0;
        memcpy(directory, joined, head);
        directory[head] = 0;
    }
    struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC, .resolve = RESOLVE_NO_MAGICLINKS};
    int fd = syscall(SYS_openat2, AT_FDCWD_, directory, &how, sizeof how);
    if (fd < 0)
        return 0;
    char one;
    if (!whole && follow && readlinkat(fd, last, &one, 1) >= 0) {
        close(fd);
        return 0; /* the last component is a symlink the syscall follows */
    }
    char self[64], found[PATH_BUF];
    snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
    ssize_t got = readlink(self, found, sizeof found - 1);
    close(fd);
    if (got <= 0)
        return 0;
    found[got] = 0;
    if (strncmp(found, "/proc/", 6) == 0)
        return 0;
    if (whole) {
        snprintf(out, size, "%s", found);
    } else {
        while (got > 0 && found[got - 1] == '/')
            found[--got] = 0;
        if ((size_t)snprintf(out, size, "%s/%s", found, last) >= size)
            return 0;
    }
    return 1;
}

/* A bare name (no slash, not "." or "..") relative to the tracee's cwd or a dirfd, whose link
 * `base` the loop has just read: the kernel's own spelling of that directory, so the name's
 * canonical path is `base/name` without walking the directory again (canonical_fast's openat2,
 * descriptor link and close: three syscalls a stop). Where the syscall follows the name, it
 * is looked up through the tracee's own link (/proc/<tid>/cwd/<name>), as the tracee will:
 * a symlink goes to the slow walk. -1: not a bare name (canonical_fast decides); 0: the slow
 * walk; 1: `out` holds the canonical path. */
static int canonical_bare(pid_t tid, const char *via, const char *base, const char *name, int follow, char *out,
                          size_t size) {
    if (*name == 0 || strchr(name, '/') != NULL || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return -1;
    size_t length = strlen(base);
    const char *deleted = " (deleted)";
    size_t tail = strlen(deleted);
    if (base[0] != '/' || (length >= tail && strcmp(base + length - tail, deleted) == 0) ||
        strncmp(base, "/proc/", 6) == 0)
        return 0; /* gone, unreachable or in /proc: as canonical_fast refuses them */
    if (follow) {
        char link[PATH_BUF], one;
        if ((size_t)snprintf(link, sizeof link, "/proc/%d/%s/%s", tid, via, name) >= sizeof link)
            return 0;
        if (readlink(link, &one, 1) >= 0)
            return 0; /* the last component is a symlink the syscall follows */
    }
    while (length > 1 && base[length - 1] == '/')
        length--;
    if ((size_t)snprintf(out, size, "%.*s/%s", length == 1 ? 0 : (int)length, base, name) >= size)
        return 0;
    return 1;
}

static int follows(long mode, unsigned long flag_arg) {
    switch (mode) {
    case FOLLOW_ALWAYS:
        return 1;
    case FOLLOW_OPEN_FLAGS:
        return !(flag_arg & O_NOFOLLOW_) && (flag_arg & (O_CREAT_ | O_EXCL_)) != (O_CREAT_ | O_EXCL_);
    case FOLLOW_AT_FLAG:
        return (flag_arg & AT_SYMLINK_FOLLOW_) != 0;
    default:
        return 0;
    }
}

/* Append (key..., value) to list; steals nothing, returns -1 on error. */
static int append_new(PyObject *list, PyObject *item) {
    if (item == NULL)
        return -1;
    int failed = PyList_Append(list, item);
    Py_DECREF(item);
    return failed;
}

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

static char string_buffers[MAX_READS][STRING_LIMIT + 1];
static struct capture captured;

/* Check a read spec (kind, a, b, follow, flag_arg) from ciwatch.trace.batch into spec. */
static int parse_read(PyObject *read, long spec[5]) {
    if (!PyTuple_Check(read) || PyTuple_GET_SIZE(read) != 5) {
        PyErr_SetString(PyExc_ValueError, "a read is (kind, a, b, follow, flag_arg)");
        return -1;
    }
    for (int part = 0; part < 5; part++)
        spec[part] = PyLong_AsLong(PyTuple_GET_ITEM(read, part));
    if (PyErr_Occurred())
        return -1;
    if (spec[1] < -1 || spec[1] > 5 || spec[2] < 0 || spec[2] > 5 || spec[4] < 0 || spec[4] > 5) {
        PyErr_SetString(PyExc_ValueError, "a read names an argument beyond the sixth");
        return -1;
    }
    return 0;
}

/* Read what the row's decoder will ask for into c, in C buffers only. 1: read; 0: not for
 * the fast path (the stop goes to Python unresumed); -1: a Python error. */
static int gather(pid_t tid, const __uint64_t *args, PyObject *reads, struct capture *c) {
    c->count = PyTuple_GET_SIZE(reads);
    c->have_cwd = 0;
    if (c->count > MAX_READS) {
        PyErr_SetString(PyExc_ValueError, "a row has more reads than the loop holds");
        return -1;
    }
    for (Py_ssize_t index = 0; index < c->count; index++) {
        long spec[5];
        struct gathered *g = &c->reads[index];
        if (parse_read(PyTuple_GET_ITEM(reads, index), spec) < 0)
            return -1;
        g->kind = (int)spec[0];
        g->fd = -1;
        g->canonicalised = 0;
        g->unsettled = 0;
        g->text = string_buffers[index];
        g->length = 0;
        g->text[0] = 0;
        if (g->kind == READ_FD) {
            char what[32];
            g->fd = (int)(args[spec[1]] & 0xFFFFFFFF);
            snprintf(what, sizeof what, "fd/%d", g->fd);
            proc_link(tid, what, g->fd_link, sizeof g->fd_link);
            continue;
        }
        g->address = args[spec[2]];
        g->length = read_cstring(tid, g->address, g->text);
        g->text[g->length] = 0;
        if (g->kind != READ_PATH)
            continue;
        if (g->length >= PATH_BUF)
            return 0; /* longer than the loop's buffers: the Python loop reads it */
        const char *written = g->text, *base = "";
        char via[32] = ""; /* the tracee's link a relative name is resolved through: cwd, fd/N */
        if (written[0] == '/') {
            memcpy(g->joined, written, g->length + 1);
        } else {
            int dirfd = spec[1] < 0 ? AT_FDCWD_ : (int)(args[spec[1]] & 0xFFFFFFFF);
            if (dirfd == AT_FDCWD_) {
                snprintf(via, sizeof via, "cwd");
                if (!c->have_cwd) {
                    proc_link(tid, "cwd", c->cwd, sizeof c->cwd);
                    c->have_cwd = 1;
                }
                base = c->cwd;
            } else {
                g->fd = dirfd;
                snprintf(via, sizeof via, "fd/%d", dirfd);
                proc_link(tid, via, g->fd_link, sizeof g->fd_link);
                base = g->fd_link;
            }
            if (base[0] != '/')
                continue; /* the decoder resolves it textually: nothing to canonicalise */
            if ((size_t)snprintf(g->joined, sizeof g->joined, written[0] ? "%s/%s" : "%s", base, written) >=
                sizeof g->joined)
                return 0;
        }
        g->follow = follows(spec[3], spec[3] >= FOLLOW_OPEN_FLAGS ? args[spec[4]] & 0xFFFFFFFF : 0);
        int settled = via[0] ? canonical_bare(tid, via, base, written, g->follow, g->canonical, sizeof g->canonical)
                             : -1;
        if (settled < 0)
            settled = canonical_fast(g->joined, g->follow, g->canonical, sizeof g->canonical);
        if (!settled) {
            g->unsettled = 1;
            return 0;
        }
        g->canonicalised = 1;
    }
    return 1;
}

/* Where the directory at path lands, refusing magic links, into out; 0 when it can't be opened
 * (errno says why) or lands in /proc. */
static int landed_directory(const char *path, char *out, size_t size, int *fd_out) {
    struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC, .resolve = RESOLVE_NO_MAGICLINKS};
    int fd = syscall(SYS_openat2, AT_FDCWD_, path, &how, sizeof how);
    if (fd < 0)
        return 0;
    char self[64];
    snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
    ssize_t got = readlink(self, out, size - 1);
    out[got < 0 ? 0 : got] = 0;
    if (got <= 0 || strncmp(out, "/proc/", 6) == 0 || strcmp(out, "/proc") == 0) {
        close(fd);
        errno = EPERM;
        return 0;
    }
    while (got > 1 && out[got - 1] == '/')
        got--;
    out[got] = 0;
    *fd_out = fd;
    return 1;
}

/* The path a read-only open that canonical_fast could not settle reaches, as Python's slow walk
 * (ciwatch.trace.decode.canonicalise) would spell it, for judging it only; 0 when unsure (the
 * stop then goes to Python). Two cases are common in a hook: a followed last component that is
 * a symlink (a library's soname), settled by the kernel's own walk of the whole path; and a
 * directory that doesn't exist (every process probes /usr/lib/locale/C.UTF-8/...), settled by
 * the deepest directory that does, then the rest as written: a component that is missing, or
 * no directory, has nothing under it for the walk to follow. A symlink at that point, a ".."
 * or anything in /proc is left to Python. */
static int landing(const struct gathered *g, char *out, size_t size) {
    char found[PATH_BUF];
    int fd;
    if (g->follow) {
        struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_NO_MAGICLINKS};
        fd = syscall(SYS_openat2, AT_FDCWD_, g->joined, &how, sizeof how);
        if (fd >= 0) {
            char self[64];
            snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
            ssize_t got = readlink(self, found, sizeof found - 1);
            close(fd);
            found[got < 0 ? 0 : got] = 0;
            if (got <= 0 || strncmp(found, "/proc", 5) == 0)
                return 0;
            return (size_t)snprintf(out, size, "%s", found) < size;
        }
        if (errno != ENOENT && errno != ENOTDIR)
            return 0;
    }
    /* The components, "." dropped as the walk drops them. */
    char copy[PATH_BUF];
    const char *parts[PATH_BUF / 2];
    int count = 0;
    char *rest = NULL;
    snprintf(copy, sizeof copy, "%s", g->joined);
    for (char *part = strtok_r(copy, "/", &rest); part != NULL; part = strtok_r(NULL, "/", &rest)) {
        if (strcmp(part, "..") == 0)
            return 0;
        if (strcmp(part, ".") != 0)
            parts[count++] = part;
    }
    if (count == 0)
        return 0;
    for (int kept = count - 1, tries = 0; kept >= 0 && tries < 16; kept--, tries++) {
        char directory[PATH_BUF] = "/";
        size_t used = 1;
        for (int index = 0; index < kept; index++)
            used += snprintf(directory + used, sizeof directory - used, index ? "/%s" : "%s", parts[index]);
        if (used >= sizeof directory)
            return 0;
        if (!landed_directory(directory, found, sizeof found, &fd)) {
            if (errno == ENOENT || errno == ENOTDIR)
                continue; /* not there (or no directory): one level up */
            return 0;
        }
        char one;
        int is_link = readlinkat(fd, parts[kept], &one, 1) >= 0;
        close(fd);
        /* A symlink where the walk goes on (or the followed last component) is followed by it. */
        if (is_link && (kept < count - 1 || g->follow))
            return 0;
        size_t length = snprintf(out, size, "%s", strcmp(found, "/") == 0 ? "" : found);
        for (int index = kept; index < count && length < size; index++)
            length += snprintf(out + length, size - length, "/%s", parts[index]);
        return length < size;
    }
    return 0;
}

/* The literal heads of the credential patterns (ciwatch.facts.paths.credential_prefixes, as
 * bytes), held for one next_batch call. */
#define MAX_PREFIXES 64
struct prefixes {
    Py_ssize_t count;
    const char *text[MAX_PREFIXES];
    Py_ssize_t length[MAX_PREFIXES];
};

static int parse_prefixes(PyObject *tuple, struct prefixes *out) {
    out->count = PyTuple_GET_SIZE(tuple);
    if (out->count > MAX_PREFIXES) {
        PyErr_SetString(PyExc_ValueError, "too many credential prefixes");
        return -1;
    }
    for (Py_ssize_t index = 0; index < out->count; index++) {
        PyObject *item = PyTuple_GET_ITEM(tuple, index);
        if (!PyBytes_Check(item)) {
            PyErr_SetString(PyExc_TypeError, "a credential prefix is bytes");
            return -1;
        }
        out->text[index] = PyBytes_AS_STRING(item);
        out->length[index] = PyBytes_GET_SIZE(item);
    }
    return 0;
}

/* Whether the stop is a read-only open whose canonical path starts with no credential prefix:
 * FileWatch.on_read would record nothing for it (is_credential_path is given exactly that
 * path, the decoder's canonical one), so it is resumed here and never reaches Python. A path
 * canonical_fast couldn't settle is judged by its landing() when that is sure; anything else
 * (/proc, a symlink where a directory is missing, "..") goes to Python as before. flag_arg < 0:
 * the row is no open. */
static int is_plain_read(const struct capture *c, const __uint64_t *args, long flag_arg, unsigned long write_flags,
                         const struct prefixes *credential) {
    if (flag_arg < 0 || (args[flag_arg] & 0xFFFFFFFF & write_flags) != 0)
        return 0;
    if (c->count != 1 || c->reads[0].kind != READ_PATH)
        return 0;
    const struct gathered *g = &c->reads[0];
    char landed[PATH_BUF];
    const char *path = g->canonical;
    if (!g->canonicalised) {
        if (!g->unsettled || !landing(g, landed, sizeof landed))
            return 0;
        path = landed;
    }
    for (Py_ssize_t index = 0; index < credential->count; index++)
        if (strncmp(path, credential->text[index], credential->length[index]) == 0)
            return 0;
    return 1;
}

/* The tuple ciwatch.trace.batch.Snapshot reads, built from what gather() read. */
static PyObject *build(pid_t tid, const struct __ptrace_syscall_info *info, const struct capture *c) {
    const __uint64_t *args = info->seccomp.args;
    PyObject *strings = PyList_New(0), *fds = PyList_New(0), *canon = PyList_New(0), *cwd = NULL, *result = NULL;
    if (strings == NULL || fds == NULL || canon == NULL)
        goto done;
    if (c->have_cwd) {
        if ((cwd = PyUnicode_DecodeFSDefault(c->cwd)) == NULL)
            goto done;
    } else {
        cwd = Py_None;
        Py_INCREF(cwd);
    }
    for (Py_ssize_t index = 0; index < c->count; index++) {
        const struct gathered *g = &c->reads[index];
        if (g->fd >= 0 &&
            append_new(fds, Py_BuildValue("(iN)", g->fd, PyUnicode_DecodeFSDefaultAndSize(g->fd_link, strlen(g->fd_link)))) < 0)
            goto done;
        if (g->kind == READ_FD)
            continue;
        PyObject *text = PyBytes_FromStringAndSize(g->text, g->length);
        if (text == NULL || append_new(strings, Py_BuildValue("(kN)", g->address, text)) < 0)
            goto done;
        if (!g->canonicalised)
            continue;
        PyObject *key = Py_BuildValue("(NN)", PyUnicode_DecodeFSDefault(g->joined), PyBool_FromLong(g->follow));
        if (append_new(canon, Py_BuildValue("(NN)", key, PyUnicode_DecodeFSDefault(g->canonical))) < 0)
            goto done;
    }
    result = Py_BuildValue(
        "(iK(KKKKKK)NNNN)", tid, (unsigned long long)info->seccomp.nr, args[0], args[1], args[2], args[3], args[4],
        args[5], strings, cwd, fds, canon);
    strings = cwd = fds = canon = NULL;
done:
    Py_XDECREF(strings);
    Py_XDECREF(cwd);
    Py_XDECREF(fds);
    Py_XDECREF(canon);
    return result;
}

/* Whether the stop's thread may take the fast path: known to the tracer, not stepped. */
static int thread_is_fast(PyObject *threads, pid_t tid) {
    PyObject *key = PyLong_FromLong(tid);
    if (key == NULL)
        return -1;
    PyObject *thread = PyDict_GetItemWithError(threads, key);
    Py_DECREF(key);
    if (thread == NULL)
        return PyErr_Occurred() ? -1 : 0;
    PyObject *steps = PyObject_GetAttr(thread, steps_syscalls_name);
    if (steps == NULL)
        return -1;
    int stepping = PyObject_IsTrue(steps);
    Py_DECREF(steps);
    return stepping < 0 ? -1 : !stepping;
}

/* Holding a batch while the build is busy. A build that makes one syscall at a time stops
 * again a few tens of microseconds after it is resumed: handing each stop to Python as it
 * came (a batch of one, then the record written before the next wait) cost more than the stop.
 * So once the batch holds a stop, the loop waits for the next one up to `hold` nanoseconds
 * (a timer signal aimed at this thread interrupts the wait) and goes back to Python only when
 * the build has been quiet that long, when the batch is full, or at a stop it doesn't handle.
 * The record then trails the build by at most one such burst, as before. */
static volatile sig_atomic_t hold_expired;
static timer_t hold_timer;
static int hold_state; /* 0: not made yet, 1: ready, -1: unavailable (each stop goes to Python) */

static void on_hold_expired(int signal_number) {
    (void)signal_number;
    hold_expired = 1;
}

static int hold_ready(void) {
    if (hold_state != 0)
        return hold_state > 0;
    hold_state = -1;
    /* A real-time signal nothing else in ciwatch uses; no SA_RESTART, so that the wait ends. */
    int signal_number = SIGRTMAX - 2;
    struct sigaction action = {0};
    action.sa_handler = on_hold_expired;
    sigemptyset(&action.sa_mask);
    if (sigaction(signal_number, &action, NULL) != 0)
        return 0;
    struct sigevent event = {0};
    event.sigev_notify = SIGEV_THREAD_ID;
    event.sigev_signo = signal_number;
    event._sigev_un._tid = (pid_t)syscall(SYS_gettid); /* the tracer's thread: the one that waits */
    if (timer_create(CLOCK_MONOTONIC, &event, &hold_timer) != 0)
        return 0;
    hold_state = 1;
    return 1;
}

static void hold_arm(long nanoseconds) {
    struct itimerspec when = {{0, 0}, {nanoseconds / 1000000000L, nanoseconds % 1000000000L}};
    timer_settime(hold_timer, 0, &when, NULL);
}

/* The next stop within `hold` nanoseconds: its tid, 0 when none came (or any signal arrived:
 * Python's own handlers then run as soon as the batch is back in Python), -1 when no tracee is
 * left. The GIL is released while waiting. */
static pid_t wait_held(int *status, long hold) {
    pid_t tid;
    hold_expired = 0;
    hold_arm(hold);
    int error;
    Py_BEGIN_ALLOW_THREADS;
    tid = waitpid(-1, status, __WALL | __WNOTHREAD); /* as wait_any */
    error = errno;
    hold_arm(0); /* disarmed before the GIL is taken again */
    Py_END_ALLOW_THREADS;
    if (tid < 0 && error == EINTR)
        return 0;
    errno = error;
    return tid;
}

/* waitpid(-1) over every tracee, the GIL released; EINTR lets Python run its signal handlers
 * (Ctrl-C) and retries, as os.waitpid does. -2: a handler raised. */
static pid_t wait_any(int *status, int options) {
    for (;;) {
        pid_t tid;
        Py_BEGIN_ALLOW_THREADS;
        /* The tracer thread's children and tracees only (ciwatch.trace.idlewait.TRACEE_WAIT). */
        tid = waitpid(-1, status, options | __WNOTHREAD);
        Py_END_ALLOW_THREADS;
        if (tid >= 0 || errno != EINTR)
            return tid;
        if (PyErr_CheckSignals() < 0)
            return -2;
    }
}

/* The row's flags argument when the row is an open that the hook filter stops at whatever its
 * flags (read_opens: number -> argument); -1 otherwise. */
static long read_open_flag_arg(PyObject *read_opens, PyObject *key) {
    PyObject *found = PyDict_GetItemWithError(read_opens, key);
    if (found == NULL)
        return PyErr_Occurred() ? -2 : -1;
    long arg = PyLong_AsLong(found);
    if (arg == -1 && PyErr_Occurred())
        return -2;
    if (arg < 0 || arg > 5) {
        PyErr_SetString(PyExc_ValueError, "an open's flags argument beyond the sixth");
        return -2;
    }
    return arg;
}

#define JUDGED_LIMIT 4096

static PyObject *next_batch(PyObject *self, PyObject *args) {
    PyObject *rows, *threads, *read_opens, *prefix_tuple;
    Py_ssize_t limit;
    int block;
    unsigned long write_flags;
    struct prefixes credential;
    long hold = 0;
    if (!PyArg_ParseTuple(args, "O!O!npO!kO!|l", &PyDict_Type, &rows, &PyDict_Type, &threads, &limit, &block,
                          &PyDict_Type, &read_opens, &write_flags, &PyTuple_Type, &prefix_tuple, &hold))
        return NULL;
    if (hold > 0 && !hold_ready())
        hold = 0;
    if (parse_prefixes(prefix_tuple, &credential) < 0)
        return NULL;
    PyObject *batch = PyList_New(0);
    if (batch == NULL)
        return NULL;
    Py_ssize_t judged = 0; /* plain reads resumed here, never handed to Python */
    for (;;) {
        int status = 0;
        pid_t tid;
        if (PyList_GET_SIZE(batch) == 0) {
            tid = wait_any(&status, __WALL | (block ? 0 : WNOHANG));
        } else {
            tid = wait_any(&status, __WALL | WNOHANG);
            if (tid == 0 && hold > 0)
                tid = wait_held(&status, hold);
        }
        if (tid == -2)
            goto error;
        if (tid <= 0) /* 0: nothing waiting; -1 (ECHILD): no tracee left */
            return Py_BuildValue("(Niin)", batch, tid < 0 ? -1 : 0, 0, judged);
        int seccomp = WIFSTOPPED(status) && (status >> 8) == (SIGTRAP | (PTRACE_EVENT_SECCOMP << 8));
        int fast = seccomp ? thread_is_fast(threads, tid) : 0;
        if (fast < 0)
            goto error;
        struct __ptrace_syscall_info info;
        PyObject *reads = NULL;
        long flag_arg = -1;
        if (fast) {
            long got = ptrace(PTRACE_GET_SYSCALL_INFO, tid, sizeof info, &info);
            if (got < 0) {
                if (errno == ESRCH)
                    continue; /* killed while stopped: its exit comes next */
                fast = 0;
            } else if (info.op != PTRACE_SYSCALL_INFO_SECCOMP || info.arch != AUDIT_ARCH_X86_64_ ||
                       (info.seccomp.nr & X32_SYSCALL_BIT_)) {
                fast = 0;
            } else {
                PyObject *key = PyLong_FromUnsignedLongLong(info.seccomp.nr);
                if (key == NULL)
                    goto error;
                reads = PyDict_GetItemWithError(rows, key);
                flag_arg = reads != NULL ? read_open_flag_arg(read_opens, key) : -1;
                Py_DECREF(key);
                if ((reads == NULL && PyErr_Occurred()) || flag_arg == -2)
                    goto error;
                fast = reads != NULL && PyTuple_Check(reads);
            }
        }
        int gathered = 0;
        if (fast) {
            gathered = gather(tid, info.seccomp.args, reads, &captured);
            if (gathered < 0)
                goto error;
        }
        /* A read is judged even when its path needs the slow walk to be recorded. */
        int plain = fast && is_plain_read(&captured, info.seccomp.args, flag_arg, write_flags, &credential);
        if (!plain && !gathered)
            return Py_BuildValue("(Niin)", batch, tid, status, judged);
        if (plain) {
            ptrace(PTRACE_CONT, tid, 0, 0);
            /* Back to Python now and then all the same: its signal handlers (Ctrl-C) run there. */
            if (++judged >= JUDGED_LIMIT)
                break;
            continue;
        }
        PyObject *item = build(tid, &info, &captured);
        if (item == NULL)
            goto error;
        /* Resume at once; ESRCH (killed meanwhile) still records what it was about to do. */
        ptrace(PTRACE_CONT, tid, 0, 0);
        if (append_new(batch, item) < 0)
            goto error;
        if (PyList_GET_SIZE(batch) >= limit)
            break;
    }
    return Py_BuildValue("(Niin)", batch, 0, 0, judged);
error:
    Py_DECREF(batch);
    return NULL;
}

/* judged_path(joined, follow): the path the loop judges a read-only open of joined by (the
 * canonical path, else its landing()), None when it leaves the open to Python. For tests. */
static PyObject *judged_path(PyObject *self, PyObject *args) {
    const char *joined;
    int follow;
    if (!PyArg_ParseTuple(args, "yp", &joined, &follow))
        return NULL;
    if (strlen(joined) >= PATH_BUF || joined[0] != '/')
        Py_RETURN_NONE;
    static struct gathered g;
    snprintf(g.joined, sizeof g.joined, "%s", joined);
    g.follow = follow;
    if (canonical_fast(g.joined, follow, g.canonical, sizeof g.canonical))
        return PyUnicode_DecodeFSDefault(g.canonical);
    if (!landing(&g, g.canonical, sizeof g.canonical))
        Py_RETURN_NONE;
    return PyUnicode_DecodeFSDefault(g.canonical);
}

static PyMethodDef methods[] = {
    {"next_batch", next_batch, METH_VARARGS,
     "next_batch(rows, threads, limit, block, read_opens, write_flags, credential_prefixes, hold_ns=0) -> "
     "(batch, tid, status, judged): the fast stops read and resumed (waiting up to hold_ns for each next one "
     "once the batch holds one), then the first other stop (tid > 0, "
     "its raw wait status, unresumed), 0 when nothing is waiting, -1 when no tracee is left; judged: the "
     "read-only opens of paths under no credential prefix, resumed without an item."},
    {"judged_path", judged_path, METH_VARARGS,
     "judged_path(joined: bytes, follow) -> str | None: what a hook's read-only open of joined is judged by "
     "in the loop (None: left to Python)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_stoploop", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__stoploop(void) {
    page_size = sysconf(_SC_PAGESIZE);
    steps_syscalls_name = PyUnicode_InternFromString("steps_syscalls");
    if (steps_syscalls_name == NULL)
        return NULL;
    return PyModule_Create(&module);
}
