/* A write stop's FileWrite built in the loop, from what gather() read, without Python.
 *
 * The table's decoders (ciwatch.trace.decode.files) are what a file syscall means; over a
 * batch of 256 stops, decoding each in Python (a Snapshot, the decoder, the dataclass's
 * __init__) was a third of the tracer's Python time a stop. For the rows whose reads the loop
 * settled, this is their twin: the shape of each row (ciwatch.trace.batch.DECODED: which read
 * is the path, the target, the flags argument and its mask) comes from Python, the event is
 * the decoder's (canonical path, the spelling as written when it differs, flags masked), and
 * tests/test_stoploop.py holds the two to the same events (unit: every row, awkward paths;
 * whole runs: both loops' records). A stop whose path the loop left unresolved (a dirfd that is
 * no directory) goes to the decoder as before.
 */
#include "_stoploop.h"

/* The shapes of ciwatch.trace.batch.DECODED. */
enum { SHAPE_ONE = 0, SHAPE_TWO = 1, SHAPE_SYMLINK = 2, SHAPE_FD = 3, SHAPE_MEMFD = 4 };
/* FileWrite's fields, in the order of the setters handed in. */
enum { F_PID, F_OP, F_PATH, F_TARGET, F_FLAGS, F_AS_WRITTEN, F_TARGET_AS_WRITTEN, F_COUNT };

/* A tracee's string as the decoders' string() makes it: UTF-8, undecodable bytes kept as
 * lone surrogates. */
static PyObject *as_text(const struct gathered *g) {
    return PyUnicode_DecodeUTF8(g->text, (Py_ssize_t)g->length, "surrogateescape");
}

/* canonical_at's (path, as_written) of a path read: new references into path and written (None
 * when the spelling is the path's). 0 when the loop did not resolve it. */
static int path_of(const struct gathered *g, PyObject **path, PyObject **written) {
    *path = *written = NULL;
    if (g->kind != READ_PATH || !g->canonicalised)
        return 0;
    *path = PyUnicode_DecodeFSDefault(g->canonical);
    PyObject *text = *path ? as_text(g) : NULL;
    if (text == NULL) {
        Py_CLEAR(*path);
        return -1;
    }
    int same = PyUnicode_Compare(text, *path) == 0;
    if (same) {
        Py_DECREF(text);
        Py_INCREF(Py_None);
        text = Py_None;
    }
    *written = text;
    return 1;
}

static int set_field(PyObject *event, PyObject *setters, int field, PyObject *value) {
    PyObject *setter = PyTuple_GET_ITEM(setters, field);
    descrsetfunc set = Py_TYPE(setter)->tp_descr_set;
    if (value == NULL || set == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "a FileWrite field's setter is a slot descriptor");
        return -1;
    }
    return set(setter, event, value);
}

/* The decoded event, or Py_None (a new reference) when the row isn't decoded here or its
 * reads weren't settled. decoding = (rows, FileWrite, setters, shared_int), rows: number ->
 * (op, shape, flags_arg, flags_mask). */
PyObject *decoded_write(PyObject *decoding, PyObject *pid, PyObject *number, const __uint64_t *args,
                        const struct capture *c) {
    PyObject *rows = PyTuple_GET_ITEM(decoding, 0), *type = PyTuple_GET_ITEM(decoding, 1);
    PyObject *setters = PyTuple_GET_ITEM(decoding, 2), *shared_int = PyTuple_GET_ITEM(decoding, 3);
    PyObject *row = PyDict_GetItemWithError(rows, number);
    if (row == NULL)
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    PyObject *op;
    int shape, flags_arg;
    unsigned long long mask;
    if (!PyArg_ParseTuple(row, "OiiK", &op, &shape, &flags_arg, &mask))
        return NULL;
    PyObject *values[F_COUNT] = {NULL};
    int settled = 0;
    const struct gathered *first = &c->reads[0], *second = &c->reads[1];
    switch (shape) {
    case SHAPE_ONE:
        settled = c->count == 1 ? path_of(first, &values[F_PATH], &values[F_AS_WRITTEN]) : 0;
        break;
    case SHAPE_TWO:
        settled = c->count == 2 ? path_of(first, &values[F_PATH], &values[F_AS_WRITTEN]) : 0;
        if (settled > 0)
            settled = path_of(second, &values[F_TARGET], &values[F_TARGET_AS_WRITTEN]);
        break;
    case SHAPE_SYMLINK: /* the link is a path; its target, text recorded as written */
        settled = c->count == 2 && first->kind == READ_STRING ? path_of(second, &values[F_PATH], &values[F_AS_WRITTEN])
                                                               : 0;
        if (settled > 0 && (values[F_TARGET] = as_text(first)) == NULL)
            settled = -1;
        break;
    case SHAPE_FD:
        if (c->count == 1 && first->kind == READ_FD) {
            values[F_PATH] = PyUnicode_DecodeFSDefault(first->fd_link);
            settled = values[F_PATH] != NULL ? 1 : -1;
        }
        break;
    case SHAPE_MEMFD:
        if (c->count == 1 && first->kind == READ_STRING) {
            PyObject *name = as_text(first);
            values[F_PATH] = name ? PyUnicode_FromFormat("memfd:%U", name) : NULL;
            Py_XDECREF(name);
            settled = values[F_PATH] != NULL ? 1 : -1;
        }
        break;
    default:
        PyErr_SetString(PyExc_ValueError, "a decoded row's shape is unknown");
        settled = -1;
    }
    PyObject *event = NULL;
    if (settled <= 0)
        goto done;
    if (flags_arg >= 0) {
        if (flags_arg > 5) {
            PyErr_SetString(PyExc_ValueError, "a decoded row's flags argument is beyond the sixth");
            settled = -1;
            goto done;
        }
        PyObject *flags = PyLong_FromUnsignedLongLong(args[flags_arg] & mask);
        values[F_FLAGS] = flags ? PyObject_CallOneArg(shared_int, flags) : NULL; /* as __post_init__ */
        Py_XDECREF(flags);
        if (values[F_FLAGS] == NULL) {
            settled = -1;
            goto done;
        }
    }
    values[F_PID] = PyObject_CallOneArg(shared_int, pid);
    if (values[F_PID] == NULL) {
        settled = -1;
        goto done;
    }
    values[F_OP] = Py_NewRef(op);
    /* A frozen dataclass with slots: made as object.__new__ does, its slots set by their
     * descriptors (what its __init__ does through object.__setattr__). */
    PyTypeObject *cls = (PyTypeObject *)type;
    event = cls->tp_alloc(cls, 0);
    for (int field = 0; event != NULL && field < F_COUNT; field++) {
        if (set_field(event, setters, field, values[field] ? values[field] : Py_None) < 0)
            Py_CLEAR(event);
    }
    if (event == NULL)
        settled = -1;
done:
    for (int field = 0; field < F_COUNT; field++)
        Py_XDECREF(values[field]);
    if (settled < 0)
        return NULL;
    return settled ? event : Py_NewRef(Py_None);
}

/* decoded_write_of(decoding, pid, number, args, reads) -> FileWrite | None: decoded_write over
 * reads given as (kind, text, fd_link, canonical or None) instead of read from a tracee, so
 * that tests hold it to the decoders over any bytes. */
PyObject *decoded_write_of(PyObject *self, PyObject *call) {
    static struct capture c;
    static char texts[MAX_READS][STRING_LIMIT + 1];
    PyObject *decoding, *pid, *number, *reads;
    __uint64_t args[6];
    if (!PyArg_ParseTuple(call, "O!OO(KKKKKK)O!", &PyTuple_Type, &decoding, &pid, &number, &args[0], &args[1],
                          &args[2], &args[3], &args[4], &args[5], &PyTuple_Type, &reads))
        return NULL;
    if (PyTuple_GET_SIZE(decoding) != 4 || PyTuple_GET_SIZE(reads) > MAX_READS) {
        PyErr_SetString(PyExc_ValueError, "decoding is a 4-tuple, reads at most two");
        return NULL;
    }
    c.count = PyTuple_GET_SIZE(reads);
    for (Py_ssize_t index = 0; index < c.count; index++) {
        struct gathered *g = &c.reads[index];
        const char *text, *fd_link, *canonical = NULL;
        Py_ssize_t length;
        PyObject *resolved;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(reads, index), "iy#yO", &g->kind, &text, &length, &fd_link,
                              &resolved))
            return NULL;
        if (resolved != Py_None && (canonical = PyBytes_AsString(resolved)) == NULL)
            return NULL;
        if (length > STRING_LIMIT || strlen(fd_link) >= PATH_BUF || (canonical && strlen(canonical) >= PATH_BUF)) {
            PyErr_SetString(PyExc_ValueError, "longer than the loop reads");
            return NULL;
        }
        g->text = texts[index];
        memcpy(g->text, text, length);
        g->text[length] = 0;
        g->length = (size_t)length;
        snprintf(g->fd_link, sizeof g->fd_link, "%s", fd_link);
        g->canonicalised = canonical != NULL;
        snprintf(g->canonical, sizeof g->canonical, "%s", canonical ? canonical : "");
    }
    return decoded_write(decoding, pid, number, args, &c);
}
