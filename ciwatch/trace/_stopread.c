/* What a stop's row asks for, read while the tracee is stopped (ciwatch.trace.batch.READS):
 * the path strings, the cwd or dirfd link a relative path is resolved against, and the path
 * made canonical the way ciwatch.trace.memory's fast path does it. */
#include "_stoploop.h"

static long page_size;

void read_init(void) { page_size = sysconf(_SC_PAGESIZE); }

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
        ssize_t got = RETRY(process_vm_readv(tid, &local, 1, &remote, 1, 0));
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
    ssize_t got = RETRY(readlink(path, out, size - 1));
    out[got < 0 ? 0 : got] = 0;
}

/* ciwatch.trace.memory.TraceeMemory.canonical's fast path: the directory resolved by the
 * kernel, refusing magic links; 0 when it can't settle it (Python's slow walk then). */
int canonical_fast(const char *joined, int follow, char *out, size_t size) {
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
    int fd = RETRY(syscall(SYS_openat2, AT_FDCWD_, directory, &how, sizeof how));
    if (fd < 0)
        return 0;
    char one;
    if (!whole && follow && RETRY(readlinkat(fd, last, &one, 1)) >= 0) {
        close(fd);
        return 0; /* the last component is a symlink the syscall follows */
    }
    char self[64], found[PATH_BUF];
    snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
    ssize_t got = RETRY(readlink(self, found, sizeof found - 1));
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
        if (RETRY(readlink(link, &one, 1)) >= 0)
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

static char string_buffers[MAX_READS][STRING_LIMIT + 1];

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
int gather(pid_t tid, const __uint64_t *args, PyObject *reads, struct capture *c) {
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
