"""The kernel's fanotify interface as the tracer uses it: one notification group that marks
every filesystem the build can write to, read in batches of raw events.

A raw event is what the kernel queued: the pid of the process that acted (its tgid), the
event mask (the kernel merges the events of one object queued back to back, so a mask may
hold CREATE|MODIFY|CLOSE_WRITE at once), the directory's file handle and the name in it
(``FAN_REPORT_DFID_NAME``; a rename has its old and new directory and name), the object's
own handle, and a pidfd of the acting process (``FAN_REPORT_PIDFD``: it says whether that
very process is still alive, which a reused pid can't fake). Paths are made from the handles
by :mod:`ciwatch.trace.fanpaths`.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import select
import struct
import sys
from collections.abc import Callable

from ciwatch.capabilities import user_namespace
from ciwatch.dataclass import dataclass

log = logging.getLogger(__name__)

FAN_CLASS_NOTIF = 0x0
FAN_CLOEXEC = 0x1
FAN_NONBLOCK = 0x2
FAN_UNLIMITED_QUEUE = 0x10
FAN_REPORT_PIDFD = 0x80
FAN_REPORT_FID = 0x200
FAN_REPORT_DIR_FID = 0x400
FAN_REPORT_NAME = 0x800
FAN_REPORT_TARGET_FID = 0x1000
FAN_REPORT_DFID_NAME = FAN_REPORT_DIR_FID | FAN_REPORT_NAME
INIT_FLAGS = (
    FAN_CLASS_NOTIF
    | FAN_CLOEXEC
    | FAN_NONBLOCK
    | FAN_UNLIMITED_QUEUE
    | FAN_REPORT_DFID_NAME
    | FAN_REPORT_FID
    | FAN_REPORT_TARGET_FID
    | FAN_REPORT_PIDFD
)

FAN_MARK_ADD = 0x1
FAN_MARK_REMOVE = 0x2
FAN_MARK_FILESYSTEM = 0x100

FAN_MODIFY = 0x2
FAN_CLOSE_WRITE = 0x8
FAN_OPEN = 0x20
FAN_CREATE = 0x100
FAN_DELETE = 0x200
FAN_RENAME = 0x10000000
FAN_ONDIR = 0x40000000
#: What the group asks for: the writes (a hook's reads come from the groups of fandescriptors.py).
WRITE_MASK = FAN_MODIFY | FAN_CLOSE_WRITE | FAN_CREATE | FAN_DELETE | FAN_RENAME | FAN_ONDIR

_INFO_FID = 1
_INFO_DFID_NAME = 2
_INFO_DFID = 3
_INFO_PIDFD = 4
_INFO_OLD_DFID_NAME = 10
_INFO_NEW_DFID_NAME = 12
METADATA = struct.Struct("<IBBHQii")
_INFO_HEADER = struct.Struct("<BBH")
_FSID = struct.Struct("<ii")
_HANDLE_HEADER = struct.Struct("<Ii")
#: Some hundred events a read: each brings a pidfd into this process until it is parsed.
_READ_SIZE = 1 << 15
AT_FDCWD = -100

#: Filesystems that hold no file a build writes (or whose handles mean nothing).
_NOT_MARKED = frozenset(
    {
        "proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue", "debugfs", "tracefs", "securityfs",
        "pstore", "bpf", "configfs", "fusectl", "nsfs", "autofs", "binfmt_misc", "efivarfs", "rpc_pipefs",
        "hugetlbfs", "selinuxfs",
    }
)  # fmt: skip

#: (fsid, file handle bytes): a directory or file, the same in every event that names it.
HandleKey = tuple[int, bytes]


@dataclass(slots=True)
class RawEvent:
    pid: int
    mask: int
    pidfd: int
    """The acting process's pidfd, kept open only for the pids ``read`` was asked to keep;
    else negative: closed once read, FAN_EPIDFD (-2) when the process had already exited
    when the event was read, FAN_NOPIDFD (-1) when the kernel could not make one."""
    directory: HandleKey | None = None
    name: str = ""
    old_directory: HandleKey | None = None
    old_name: str = ""
    new_directory: HandleKey | None = None
    new_name: str = ""
    obj: HandleKey | None = None
    """The object's own handle (the file, or the directory of an ONDIR event)."""


libc = ctypes.CDLL(None, use_errno=True)
libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]
libc.open_by_handle_at.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int]


def open_write_group() -> FanotifyGroup | str:
    """The run's write group, marked on every writable filesystem, or why it can't be.

    ``--file-events auto`` decides by opening it, before the build, and the run keeps it: the
    tracer process, forked afterwards, reads it (the front then drops its copy,
    :meth:`FanotifyGroup.drop_copy`). A trial group closed again would cost the close of a group
    with marks, which waits for the kernel's grace period (~15 ms, half a second on a busy
    machine), on the way to the build's exec."""
    if user_namespace():
        return "inside a user namespace (a rootless container): fanotify's filesystem marks need the initial one"
    try:
        group = FanotifyGroup(WRITE_MASK)
    except OSError as error:
        if error.errno == errno.EPERM:
            return "fanotify needs CAP_SYS_ADMIN in the initial user namespace (root outside a container)"
        return f"fanotify with FAN_REPORT_DFID_NAME is not available: {os.strerror(error.errno or 0)}"
    if group.unmarked:
        # Writes there would go unseen: the stops see every filesystem.
        unmarked = ", ".join(f"{point} ({why})" for point, why in sorted(group.unmarked.items()))
        group.close()
        return f"fanotify can't watch every writable filesystem: {unmarked}"
    return group


def unavailable_reason() -> str | None:
    """None when this process can open the group ciwatch needs; else why not (``doctor``)."""
    found = open_write_group()
    if isinstance(found, str):
        return found
    found.close()
    return None


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (``\\040``)."""
    return field.encode().decode("unicode_escape").encode("latin-1").decode(errors="surrogateescape")


def writable_mounts(mountinfo: str) -> list[str]:
    """One mount point per filesystem a build may write to, the one showing its whole tree
    (root ``/``) with the shortest path; read-only mounts and pseudo-filesystems left out."""
    best: dict[str, str] = {}
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        dash = fields.index("-")
        device, root, point, options = fields[2], _unescape(fields[3]), _unescape(fields[4]), fields[5]
        fstype = fields[dash + 1] if dash + 1 < len(fields) else ""
        if fstype in _NOT_MARKED or "ro" in options.split(",") or root != "/":
            continue
        if device not in best or len(point) < len(best[device]):
            best[device] = point
    return sorted(best.values())


def _wanted_by_default(pid: int, mask: int) -> bool:
    return True


class FanotifyGroup:
    """The group: opened and marked once per run, read in batches, closed at the end."""

    def __init__(self, mask: int) -> None:
        fd = libc.fanotify_init(INIT_FLAGS, os.O_RDONLY | os.O_LARGEFILE)
        if fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"fanotify_init: {os.strerror(code)}")
        self.fd = fd
        self.mask = mask
        self.mounts: dict[int, str] = {}
        """The marked filesystems: fsid -> a mount point showing all of it."""
        self.events_read = 0
        """Every event read, every process's on the machine: what the watch cost."""
        self.unmarked: dict[str, str] = {}
        """Writable mount points that could not be marked (overlayfs without file handles, a
        FUSE filesystem...), with why: writes there would be missed."""
        self._open_mounts: dict[int, int] = {}
        """Mount points opened for open_by_handle_at during one drain: not held longer, since
        an open directory would keep the build from unmounting its filesystem."""
        # Kept open: poll() says when the mount table changes (a filesystem mounted during the
        # build, which is then marked too).
        self._mountinfo = open("/proc/self/mountinfo", "rb", buffering=0)  # noqa: SIM115 - closed in close()
        self._mount_changes = select.poll()
        self._mount_changes.register(self._mountinfo.fileno(), select.POLLPRI | select.POLLERR)
        self._mark_mounts()

    def _mark_mounts(self) -> None:
        self._mountinfo.seek(0)
        text = b"".join(iter(lambda: self._mountinfo.read(1 << 16), b"")).decode(errors="surrogateescape")
        for point in writable_mounts(text):
            self._mark(point, self.mask)

    def _mark(self, point: str, mask: int) -> None:
        try:
            mount_fd = os.open(point, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            fsid = os.fstatvfs(mount_fd).f_fsid
        except OSError as error:
            self.unmarked[point] = error.strerror or str(error)
            return
        os.close(mount_fd)
        if fsid in self.mounts:
            return
        if fsid == 0:
            self.unmarked[point] = "no filesystem id, so no file handles"
            return
        if libc.fanotify_mark(self.fd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, mask, AT_FDCWD, os.fsencode(point)):
            self.unmarked[point] = os.strerror(ctypes.get_errno())
            log.debug("fanotify: cannot mark %s: %s", point, self.unmarked[point])
            return
        self.mounts[fsid] = point

    def read(
        self, keep: Callable[[int], bool] = lambda pid: False, wanted: Callable[[int, int], bool] = _wanted_by_default
    ) -> list[RawEvent]:
        """Every event queued now (none when the queue is empty) that ``wanted(pid, mask)``
        accepts, their pidfds closed but for the pids ``keep`` names."""
        if self._mount_changes.poll(0):
            self._mark_mounts()
        events: list[RawEvent] = []
        while True:
            try:
                data = os.read(self.fd, _READ_SIZE)
            except BlockingIOError:
                return events
            if not data:
                return events
            self.events_read += parse_events(data, events, keep, wanted)

    def open_handle(self, key: HandleKey) -> int:
        """An O_PATH descriptor of the object, or -1 (gone, or on a filesystem not marked)."""
        mount_fd = self._open_mounts.get(key[0])
        if mount_fd is None:
            point = self.mounts.get(key[0])
            if point is None:
                return -1
            try:
                mount_fd = os.open(point, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError:
                return -1
            self._open_mounts[key[0]] = mount_fd
        flags = os.O_PATH | os.O_CLOEXEC | os.O_NOFOLLOW
        return int(libc.open_by_handle_at(mount_fd, key[1], flags))

    def release_mounts(self) -> None:
        """Close the mount points opened since the last call (at the end of each drain)."""
        for fd in self._open_mounts.values():
            os.close(fd)
        self._open_mounts.clear()

    def drop_copy(self) -> None:
        """Close this process's descriptors of a group that a process forked after it was
        opened reads from now on: not the last reference, so nothing waits for the kernel."""
        self._mountinfo.close()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def close(self) -> None:
        self._mountinfo.close()
        self.release_mounts()
        self.mounts.clear()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


_FID_HEADER = struct.Struct("<IIIi")
"""An info record's fsid (two 32-bit words) and its handle's size and type."""
_PIDFD = struct.Struct("<i")
_FS_ENCODING = sys.getfilesystemencoding()
_FS_ERRORS = sys.getfilesystemencodeerrors()


def _fid(data: bytes, offset: int, end: int) -> tuple[HandleKey, int]:
    """The (fsid, handle) at ``offset``; returns it and the offset just past the handle."""
    low, high, size, _ = _FID_HEADER.unpack_from(data, offset)
    stop = min(offset + 16 + size, end)
    return (low | (high << 32), data[offset + 8 : stop]), stop


def _name(data: bytes, offset: int, end: int) -> str:
    nul = data.find(b"\0", offset, end)
    return data[offset : end if nul < 0 else nul].decode(_FS_ENCODING, _FS_ERRORS)


def parse_events(
    data: bytes,
    into: list[RawEvent],
    keep: Callable[[int], bool],
    wanted: Callable[[int, int], bool] = _wanted_by_default,
) -> int:
    """Append the events of one read() to ``into``; close their pidfds but ``keep``'s. An
    event ``wanted(pid, mask)`` refuses is not decoded at all (its pidfd is closed): with every
    filesystem marked, most of a busy machine's events are other processes'. Returns how many
    events the read held."""
    offset = count = 0
    metadata, header, pidfd_info = METADATA.unpack_from, _INFO_HEADER.unpack_from, _PIDFD.unpack_from
    while offset + METADATA.size <= len(data):
        event_len, _version, _reserved, metadata_len, mask, _fd, pid = metadata(data, offset)
        if event_len < metadata_len:
            return count
        end = offset + event_len
        count += 1
        if not wanted(pid, mask):
            _close_pidfd(data, offset + metadata_len, end)
            offset = end
            continue
        event = RawEvent(pid=pid, mask=mask, pidfd=-1)
        info = offset + metadata_len
        while info + _INFO_HEADER.size <= end:
            kind, _, length = header(data, info)
            if length == 0:
                break
            stop = info + length
            body = info + _INFO_HEADER.size
            if kind == _INFO_PIDFD:
                (event.pidfd,) = pidfd_info(data, body)
            elif kind == _INFO_FID:
                event.obj, _ = _fid(data, body, stop)
            elif kind == _INFO_DFID_NAME:
                event.directory, after = _fid(data, body, stop)
                event.name = _name(data, after, stop)
            elif kind == _INFO_DFID:
                event.directory, _ = _fid(data, body, stop)
            elif kind == _INFO_OLD_DFID_NAME:
                event.old_directory, after = _fid(data, body, stop)
                event.old_name = _name(data, after, stop)
            elif kind == _INFO_NEW_DFID_NAME:
                event.new_directory, after = _fid(data, body, stop)
                event.new_name = _name(data, after, stop)
            info = stop
        if event.pidfd >= 0 and not keep(pid):
            os.close(event.pidfd)
            event.pidfd = -1
        into.append(event)
        offset = end
    return count


def _close_pidfd(data: bytes, info: int, end: int) -> None:
    """Close the pidfd of an event not decoded (its info records walked for it alone)."""
    while info + _INFO_HEADER.size <= end:
        kind, _, length = _INFO_HEADER.unpack_from(data, info)
        if length == 0:
            return
        if kind == _INFO_PIDFD:
            (pidfd,) = _PIDFD.unpack_from(data, info + _INFO_HEADER.size)
            if pidfd >= 0:
                os.close(pidfd)
            return
        info += length


def has_exited(pidfd: int) -> bool:
    """A pidfd is readable once its process has exited."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(0))
