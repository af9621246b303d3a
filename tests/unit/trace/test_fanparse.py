"""The decoding of a read of fanotify's group: what the kernel lays out (metadata, then info
records: a directory's handle and a name, the object's handle, the acting process's pidfd) is
made into events; an event of a process the tracer doesn't follow is not decoded, and its
pidfd is closed all the same."""

from __future__ import annotations

import os
import struct

import pytest

from ciwatch.trace.fanotify import FAN_CLOSE_WRITE, FAN_CREATE, FAN_MODIFY, METADATA, RawEvent, parse_events

_FAN_NOFD = -1


def _fid(fsid: int, handle: bytes) -> bytes:
    return struct.pack("<IIIi", fsid & 0xFFFFFFFF, fsid >> 32, len(handle), 1) + handle


def _info(kind: int, body: bytes) -> bytes:
    body += b"\0" * (-(len(body) + 4) % 4)
    return struct.pack("<BBH", kind, 0, len(body) + 4) + body


def _event(pid: int, mask: int, name: str, pidfd: int) -> bytes:
    infos = (
        _info(2, _fid(1 << 33 | 5, b"dir-handle") + name.encode() + b"\0")  # DFID_NAME
        + _info(1, _fid(1 << 33 | 5, b"file-handle"))  # FID
        + _info(4, struct.pack("<i", pidfd))  # PIDFD, last as the kernel puts it
    )
    return METADATA.pack(METADATA.size + len(infos), 3, 0, METADATA.size, mask, _FAN_NOFD, pid) + infos


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_an_event_is_decoded_and_another_process_s_only_has_its_pidfd_closed() -> None:
    ours, theirs = os.pidfd_open(os.getpid()), os.pidfd_open(os.getpid())
    data = _event(99, FAN_MODIFY, "not-ours.log", theirs) + _event(10, FAN_CREATE | FAN_CLOSE_WRITE, "été.txt", ours)
    events: list[RawEvent] = []
    count = parse_events(data, events, keep=lambda pid: pid == 10, wanted=lambda pid, mask: pid == 10)
    assert count == 2
    assert not _is_open(theirs)
    [event] = events
    assert (event.pid, event.mask, event.name, event.pidfd) == (10, FAN_CREATE | FAN_CLOSE_WRITE, "été.txt", ours)
    fsid = 1 << 33 | 5
    assert event.directory == (fsid, struct.pack("<Ii", 10, 1) + b"dir-handle")
    assert event.obj == (fsid, struct.pack("<Ii", 11, 1) + b"file-handle")
    os.close(ours)


@pytest.mark.parametrize("name", ["plain", "with space", "bad-\udcff-byte"])
def test_names_decode_as_the_filesystem_encoding_does(name: str) -> None:
    events: list[RawEvent] = []
    raw = os.fsencode(name)
    infos = _info(2, _fid(7, b"h") + raw + b"\0") + _info(4, struct.pack("<i", -2))
    data = METADATA.pack(METADATA.size + len(infos), 3, 0, METADATA.size, FAN_MODIFY, _FAN_NOFD, 10) + infos
    parse_events(data, events, keep=lambda pid: False)
    assert events[0].name == os.fsdecode(raw) == name
