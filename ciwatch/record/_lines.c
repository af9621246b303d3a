/* A batch of record lines spelled in compiled code (ciwatch.record.lines.LineEncoder.lines).
 *
 * The tracer writes a line for every file write of the build; spelled in Python, field by
 * field, a line cost ~4 us, a fifth of the tracer's CPU per stop. Here the same bytes are
 * spelled in C: a line is {"seq":N,"t":T,"job":J,"kind":K,<"field":value>...} exactly as
 * json.dumps(..., separators=(",", ":")) writes it (ASCII only). The keys, their order and the
 * job's and time's spelling come from Python (the layouts lines.py makes once per event class);
 * C spells the values that are most of a line: None, str (and str enumerations: their value),
 * bool and plain ints. Anything else (lists, dicts, floats, int enumerations) is spelled by
 * Python's own json_value, called back: one spelling of every value. tests/unit/record/
 * test_lines.py holds both routes to json.dumps's bytes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdlib.h>
#include <string.h>

/* A growable byte buffer for one line. */
struct out {
    char *data;
    size_t length, size;
};

static int reserve(struct out *o, size_t more) {
    if (o->length + more <= o->size)
        return 0;
    size_t size = o->size ? o->size : 256;
    while (size < o->length + more)
        size *= 2;
    char *grown = realloc(o->data, size);
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    o->data = grown;
    o->size = size;
    return 0;
}

static int put(struct out *o, const char *text, size_t length) {
    if (reserve(o, length) < 0)
        return -1;
    memcpy(o->data + o->length, text, length);
    o->length += length;
    return 0;
}

/* An ASCII str (the layouts' keys, the job, Python's spelling of a value) as it is. */
static int put_ascii(struct out *o, PyObject *text) {
    if (!PyUnicode_Check(text) || !PyUnicode_IS_ASCII(text)) {
        PyErr_SetString(PyExc_TypeError, "a record line's parts are ASCII str");
        return -1;
    }
    return put(o, (const char *)PyUnicode_DATA(text), (size_t)PyUnicode_GET_LENGTH(text));
}

static const char hex_digits[] = "0123456789abcdef";

static char *put_u_escape(char *at, Py_UCS4 unit) {
    *at++ = '\\';
    *at++ = 'u';
    *at++ = hex_digits[(unit >> 12) & 0xF];
    *at++ = hex_digits[(unit >> 8) & 0xF];
    *at++ = hex_digits[(unit >> 4) & 0xF];
    *at++ = hex_digits[unit & 0xF];
    return at;
}

/* A str as json's encode_basestring_ascii spells it: printable ASCII but '"' and '\\' as it
 * is, the short escapes, everything else \\uXXXX (lower-case; beyond the BMP a surrogate
 * pair; a lone surrogate, an undecodable byte of a path, as itself). */
static int put_string(struct out *o, PyObject *text) {
    Py_ssize_t count = PyUnicode_GET_LENGTH(text);
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    if (reserve(o, 2 + 12 * (size_t)count) < 0) /* the worst case: a surrogate pair each */
        return -1;
    char *at = o->data + o->length;
    *at++ = '"';
    for (Py_ssize_t index = 0; index < count; index++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, index);
        if (c >= ' ' && c <= '~' && c != '\\' && c != '"') {
            *at++ = (char)c;
            continue;
        }
        *at++ = '\\';
        switch (c) {
        case '\\':
            *at++ = '\\';
            break;
        case '"':
            *at++ = '"';
            break;
        case '\b':
            *at++ = 'b';
            break;
        case '\f':
            *at++ = 'f';
            break;
        case '\n':
            *at++ = 'n';
            break;
        case '\r':
            *at++ = 'r';
            break;
        case '\t':
            *at++ = 't';
            break;
        default:
            at--; /* put_u_escape writes its own backslash */
            if (c >= 0x10000) {
                Py_UCS4 v = c - 0x10000;
                at = put_u_escape(at, 0xD800 | ((v >> 10) & 0x3FF));
                at = put_u_escape(at, 0xDC00 | (v & 0x3FF));
            } else {
                at = put_u_escape(at, c);
            }
        }
    }
    *at++ = '"';
    o->length = at - o->data;
    return 0;
}

/* A value: spelled here when it is one of the common kinds, else by json_value (Python). */
static int put_value(struct out *o, PyObject *value, PyObject *json_value) {
    if (value == Py_None)
        return put(o, "null", 4);
    if (PyUnicode_Check(value))
        return put_string(o, value);
    if (value == Py_True)
        return put(o, "true", 4);
    if (value == Py_False)
        return put(o, "false", 5);
    if (PyLong_CheckExact(value)) {
        long long number = PyLong_AsLongLong(value);
        if (!(number == -1 && PyErr_Occurred())) {
            char digits[32];
            int length = snprintf(digits, sizeof digits, "%lld", number);
            return put(o, digits, (size_t)length);
        }
        PyErr_Clear(); /* beyond 64 bits: Python spells it */
    }
    PyObject *spelled = PyObject_CallOneArg(json_value, value);
    if (spelled == NULL)
        return -1;
    int failed = put_ascii(o, spelled);
    Py_DECREF(spelled);
    return failed;
}

/* The layout of event's class: (kind_part, ((key_part, name), ...)), made by layout_of on a miss. */
static PyObject *layout_for(PyObject *event, PyObject *layouts, PyObject *layout_of) {
    PyObject *cls = (PyObject *)Py_TYPE(event);
    PyObject *layout = PyDict_GetItemWithError(layouts, cls);
    if (layout != NULL) {
        Py_INCREF(layout);
    } else {
        if (PyErr_Occurred())
            return NULL;
        layout = PyObject_CallOneArg(layout_of, cls);
        if (layout == NULL)
            return NULL;
    }
    if (!PyTuple_Check(layout) || PyTuple_GET_SIZE(layout) != 2 || !PyTuple_Check(PyTuple_GET_ITEM(layout, 1))) {
        Py_DECREF(layout);
        PyErr_SetString(PyExc_TypeError, "a layout is (kind_part, ((key_part, name), ...))");
        return NULL;
    }
    return layout;
}

/* One line of event into o (emptied first). */
static int spell(struct out *o, PyObject *event, long long seq, PyObject *head_tail, PyObject *layouts,
                 PyObject *layout_of, PyObject *json_value) {
    PyObject *layout = layout_for(event, layouts, layout_of);
    if (layout == NULL)
        return -1;
    char seq_text[40];
    int length = snprintf(seq_text, sizeof seq_text, "{\"seq\":%lld", seq);
    o->length = 0;
    int failed = put(o, seq_text, (size_t)length) < 0 || put_ascii(o, head_tail) < 0 ||
                 put_ascii(o, PyTuple_GET_ITEM(layout, 0)) < 0;
    PyObject *fields = PyTuple_GET_ITEM(layout, 1);
    for (Py_ssize_t index = 0; !failed && index < PyTuple_GET_SIZE(fields); index++) {
        PyObject *field = PyTuple_GET_ITEM(fields, index);
        if (!PyTuple_Check(field) || PyTuple_GET_SIZE(field) != 2) {
            PyErr_SetString(PyExc_TypeError, "a layout's field is (key_part, name)");
            failed = 1;
            break;
        }
        PyObject *value = PyObject_GetAttr(event, PyTuple_GET_ITEM(field, 1));
        failed = value == NULL || put_ascii(o, PyTuple_GET_ITEM(field, 0)) < 0 || put_value(o, value, json_value) < 0;
        Py_XDECREF(value);
    }
    Py_DECREF(layout);
    if (!failed)
        failed = put(o, "}\n", 2) < 0;
    return failed ? -1 : 0;
}

/* lines(events, first_seq, head_tail, layouts, layout_of, json_value) -> list[bytes] */
static PyObject *lines(PyObject *self, PyObject *args) {
    PyObject *events, *head_tail, *layouts, *layout_of, *json_value;
    long long seq;
    if (!PyArg_ParseTuple(args, "O!LUO!OO", &PyList_Type, &events, &seq, &head_tail, &PyDict_Type, &layouts,
                          &layout_of, &json_value))
        return NULL;
    Py_ssize_t count = PyList_GET_SIZE(events);
    PyObject *result = PyList_New(count);
    if (result == NULL)
        return NULL;
    struct out o = {NULL, 0, 0};
    for (Py_ssize_t index = 0; index < count; index++) {
        if (spell(&o, PyList_GET_ITEM(events, index), seq + index, head_tail, layouts, layout_of, json_value) < 0)
            goto error;
        PyObject *line = PyBytes_FromStringAndSize(o.data, (Py_ssize_t)o.length);
        if (line == NULL)
            goto error;
        PyList_SET_ITEM(result, index, line);
    }
    free(o.data);
    return result;
error:
    free(o.data);
    Py_DECREF(result);
    return NULL;
}

static PyMethodDef methods[] = {
    {"lines", lines, METH_VARARGS,
     "lines(events, first_seq, head_tail, layouts, layout_of, json_value) -> list[bytes]: each event's record "
     "line, numbered from first_seq; head_tail is what follows the seq (',\"t\":T,\"job\":J'), layouts maps an "
     "event class to (kind_part, ((key_part, name), ...)), layout_of makes a missing one, json_value spells "
     "a value C doesn't."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_lines", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__lines(void) { return PyModule_Create(&module); }
