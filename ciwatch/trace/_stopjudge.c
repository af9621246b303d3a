/* A hook's read-only opens judged without Python: one whose canonical path (or, where the
 * fast resolution can't settle it, where it lands) starts with none of the credential
 * patterns' literal heads can't be a credential, and is resumed in the loop. */
#include "_stoploop.h"

/* Where the directory at path lands, refusing magic links, into out; 0 when it can't be opened
 * (errno says why) or lands in /proc. */
static int landed_directory(const char *path, char *out, size_t size, int *fd_out) {
    struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC, .resolve = RESOLVE_NO_MAGICLINKS};
    int fd = RETRY(syscall(SYS_openat2, AT_FDCWD_, path, &how, sizeof how));
    if (fd < 0)
        return 0;
    char self[64];
    snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
    ssize_t got = RETRY(readlink(self, out, size - 1));
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
int landing(const struct gathered *g, char *out, size_t size) {
    char found[PATH_BUF];
    int fd;
    if (g->follow) {
        struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_NO_MAGICLINKS};
        fd = RETRY(syscall(SYS_openat2, AT_FDCWD_, g->joined, &how, sizeof how));
        if (fd >= 0) {
            char self[64];
            snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
            ssize_t got = RETRY(readlink(self, found, sizeof found - 1));
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
        int is_link = RETRY(readlinkat(fd, parts[kept], &one, 1)) >= 0;
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

int parse_prefixes(PyObject *tuple, struct prefixes *out) {
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
int is_plain_read(const struct capture *c, const __uint64_t *args, long flag_arg, unsigned long write_flags,
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
