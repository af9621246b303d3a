/* The tracer's wait loop for the stops that need no judgement, in compiled code.
 *
 * next_batch() waits for the build's stops. A SECCOMP stop of a syscall in the fast set (the
 * table's file rows), by a thread the tracer knows and does not step, is read here: its
 * syscall info, the path strings its row names, the cwd or dirfd link a relative path is
 * resolved against, and the path made canonical the way ciwatch.trace.memory's fast path
 * does it (an openat2 of the directory that refuses magic links, then where the descriptor
 * landed). All of that can change once the tracee runs on (its memory, its cwd, its fds, and
 * the tree itself at its next syscall), so it is read first; then the tracee is resumed at
 * once and its item appended to the batch: the FileWrite itself, built here by the decoder's
 * twin (_stopdecode.c) when every path was resolved, else a compact tuple that Python decodes
 * later with the table's own decoder over what was read (ciwatch.trace.batch).
 *
 * Any other stop (exec, fork, exit, a signal, a network syscall, a thread the tracer steps,
 * a path the fast resolution can't settle) ends the batch unresumed: Python handles it as
 * it always has. Each event is complete before its tracee runs on, so a batch's order is
 * the order the stops happened in.
 *
 * A hook's read-only open (the hook filter stops at every open) whose canonical path starts
 * with none of the credential patterns' literal heads (ciwatch.facts.paths.credential_prefixes,
 * handed in by Python) can't be a credential: it is resumed and counted here, and nothing is
 * built for Python, since FileWatch.on_read would record nothing for it (_stopjudge.c).
 *
 * This file: the wait, the hold, the batch. What a stop's row asks for is read in _stopread.c;
 * the files share _stoploop.h.
 */
#include "_stoploop.h"

/* TracedThread.steps_syscalls's name, made once: asked at every stop. */
static PyObject *steps_syscalls_name;
/* TracedThread.tgid's: a decoded write's pid. */
static PyObject *tgid_name;

/* Append (key..., value) to list; steals nothing, returns -1 on error. */
static int append_new(PyObject *list, PyObject *item) {
    if (item == NULL)
        return -1;
    int failed = PyList_Append(list, item);
    Py_DECREF(item);
    return failed;
}

static struct capture captured;

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

/* Whether the stop's thread may take the fast path: known to the tracer, not stepped. The
 * thread (borrowed from threads) into *found. */
static int thread_is_fast(PyObject *threads, pid_t tid, PyObject **found) {
    PyObject *key = PyLong_FromLong(tid);
    if (key == NULL)
        return -1;
    PyObject *thread = *found = PyDict_GetItemWithError(threads, key);
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
 * (a one-shot timer signal aimed at this thread interrupts the wait) and goes back to Python
 * only when the build has been quiet that long, when the batch is full, or at a stop it doesn't
 * handle. The record then trails the build by at most one such burst, as before.
 *
 * The timer is armed before each wait and disarmed only when the batch ends: arming it again
 * replaces the deadline, so it fires only when the build is quiet (a disarm after each wait,
 * and a look without waiting before it, were two of a stop's syscalls). A periodic timer,
 * armed once a batch, was tried and is dearer in a VM: each tick is a timer interrupt. The
 * loop's other syscalls retry on EINTR (_stoploop.h's RETRY), should the deadline pass while
 * it reads. */
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
 * left. The GIL is released while waiting; the timer is left armed (next_batch disarms it). */
static pid_t wait_held(int *status, long hold) {
    pid_t tid;
    hold_expired = 0;
    hold_arm(hold);
    int error;
    Py_BEGIN_ALLOW_THREADS;
    tid = waitpid(-1, status, __WALL | __WNOTHREAD); /* as wait_any */
    error = errno;
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

/* decoding: None, or (rows, FileWrite, its fields' setters, shared_int) for decoded_write. */
static int check_decoding(PyObject *decoding) {
    if (decoding == Py_None)
        return 0;
    if (!PyTuple_Check(decoding) || PyTuple_GET_SIZE(decoding) != 4 || !PyDict_Check(PyTuple_GET_ITEM(decoding, 0)) ||
        !PyType_Check(PyTuple_GET_ITEM(decoding, 1)) || !PyTuple_Check(PyTuple_GET_ITEM(decoding, 2)) ||
        PyTuple_GET_SIZE(PyTuple_GET_ITEM(decoding, 2)) != 7 || !PyCallable_Check(PyTuple_GET_ITEM(decoding, 3))) {
        PyErr_SetString(PyExc_TypeError, "decoding is (rows, FileWrite, its 7 fields' setters, shared_int)");
        return -1;
    }
    return 0;
}

/* The batch's item for a stop gather() read: (tid, number, FileWrite) when decoded_write
 * builds its event, else the tuple a Snapshot reads. */
static PyObject *item_of(PyObject *decoding, PyObject *thread, pid_t tid, const struct __ptrace_syscall_info *info,
                         const struct capture *c) {
    if (decoding != Py_None) {
        PyObject *number = PyLong_FromUnsignedLongLong(info->seccomp.nr);
        PyObject *pid = number ? PyObject_GetAttr(thread, tgid_name) : NULL;
        PyObject *event = pid ? decoded_write(decoding, pid, number, info->seccomp.args, c) : NULL;
        Py_XDECREF(pid);
        if (event == NULL) {
            Py_XDECREF(number);
            return NULL;
        }
        if (event != Py_None)
            return Py_BuildValue("(iNN)", tid, number, event);
        Py_DECREF(number);
        Py_DECREF(event);
    }
    return build(tid, info, c);
}

static PyObject *next_batch(PyObject *self, PyObject *args) {
    PyObject *rows, *threads, *read_opens, *prefix_tuple, *decoding = Py_None;
    Py_ssize_t limit;
    int block;
    unsigned long write_flags;
    struct prefixes credential;
    long hold = 0;
    if (!PyArg_ParseTuple(args, "O!O!npO!kO!|lO", &PyDict_Type, &rows, &PyDict_Type, &threads, &limit, &block,
                          &PyDict_Type, &read_opens, &write_flags, &PyTuple_Type, &prefix_tuple, &hold, &decoding))
        return NULL;
    if (check_decoding(decoding) < 0)
        return NULL;
    if (hold > 0 && !hold_ready())
        hold = 0;
    if (parse_prefixes(prefix_tuple, &credential) < 0)
        return NULL;
    PyObject *batch = PyList_New(0);
    if (batch == NULL)
        return NULL;
    Py_ssize_t judged = 0; /* plain reads resumed here, never handed to Python */
    int armed = 0;
    PyObject *result = NULL;
    for (;;) {
        int status = 0;
        pid_t tid;
        if (PyList_GET_SIZE(batch) == 0) {
            tid = wait_any(&status, __WALL | (block ? 0 : WNOHANG));
        } else if (hold > 0) {
            armed = 1;
            tid = wait_held(&status, hold);
        } else {
            tid = wait_any(&status, __WALL | WNOHANG);
        }
        if (tid == -2)
            goto error;
        if (tid <= 0) { /* 0: nothing waiting; -1 (ECHILD): no tracee left */
            result = Py_BuildValue("(Niin)", batch, tid < 0 ? -1 : 0, 0, judged);
            goto out;
        }
        int seccomp = WIFSTOPPED(status) && (status >> 8) == (SIGTRAP | (PTRACE_EVENT_SECCOMP << 8));
        PyObject *thread = NULL;
        int fast = seccomp ? thread_is_fast(threads, tid, &thread) : 0;
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
        if (!plain && !gathered) {
            result = Py_BuildValue("(Niin)", batch, tid, status, judged);
            goto out;
        }
        if (plain) {
            ptrace(PTRACE_CONT, tid, 0, 0);
            /* Back to Python now and then all the same: its signal handlers (Ctrl-C) run there. */
            if (++judged >= JUDGED_LIMIT)
                break;
            continue;
        }
        PyObject *item = item_of(decoding, thread, tid, &info, &captured);
        if (item == NULL)
            goto error;
        /* Resume at once; ESRCH (killed meanwhile) still records what it was about to do. */
        ptrace(PTRACE_CONT, tid, 0, 0);
        if (append_new(batch, item) < 0)
            goto error;
        if (PyList_GET_SIZE(batch) >= limit)
            break;
    }
    result = Py_BuildValue("(Niin)", batch, 0, 0, judged);
    goto out;
error:
    Py_DECREF(batch);
out:
    if (armed)
        hold_arm(0);
    return result;
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
     "next_batch(rows, threads, limit, block, read_opens, write_flags, credential_prefixes, hold_ns=0, "
     "decoding=None) -> (batch, tid, status, judged): the fast stops read and resumed (each as (tid, number, "
     "FileWrite) where decoding builds its event) (waiting up to hold_ns for each next one "
     "once the batch holds one), then the first other stop (tid > 0, "
     "its raw wait status, unresumed), 0 when nothing is waiting, -1 when no tracee is left; judged: the "
     "read-only opens of paths under no credential prefix, resumed without an item."},
    {"judged_path", judged_path, METH_VARARGS,
     "judged_path(joined: bytes, follow) -> str | None: what a hook's read-only open of joined is judged by "
     "in the loop (None: left to Python)."},
    {"decoded_write_of", decoded_write_of, METH_VARARGS,
     "decoded_write_of(decoding, pid, number, args, reads) -> FileWrite | None: the loop's event of a write "
     "stop over reads given as (kind, text, fd_link, canonical or None). For tests."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_stoploop", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__stoploop(void) {
    read_init();
    steps_syscalls_name = PyUnicode_InternFromString("steps_syscalls");
    tgid_name = PyUnicode_InternFromString("tgid");
    if (steps_syscalls_name == NULL || tgid_name == NULL)
        return NULL;
    return PyModule_Create(&module);
}
