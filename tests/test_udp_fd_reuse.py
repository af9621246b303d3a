"""A connected UDP socket closed by another thread, unseen, and its number reused: a write on
the new file (Go's netpoller writes to an eventfd) is not a datagram to the old peer."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ciwatch.record import read_record
from ciwatch.record.events import NetSend
from tests.support.internet import EVIL, TestInternet
from tests.test_egress import run_watched

pytestmark = [pytest.mark.root]

_SCRIPT = textwrap.dedent(
    """\
    import os, socket, sys, threading
    go, numbers = threading.Event(), []
    def closer():  # started before the connect: the tracer doesn't follow its syscalls
        go.wait()
        os.close(numbers[0])
    thread = threading.Thread(target=closer)
    thread.start()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.connect((sys.argv[1], 9))  # a connect sends nothing (what address selection does)
    numbers.append(udp.detach())
    go.set()
    thread.join()
    event = os.eventfd(0)
    assert event == numbers[0], (event, numbers)
    os.eventfd_write(event, 1)
    """
)


def test_a_write_on_a_reused_number_is_not_a_datagram(internet: TestInternet, tmp_path: Path) -> None:
    address = internet.address_of(EVIL).ipv4
    out = tmp_path / "out"
    done = run_watched(internet, tmp_path, ["--out", str(out), "--", "python3", "-c", _SCRIPT, address], tmp_path)
    assert done.returncode == 0, done.stderr
    sends = [item.event for item in read_record(out).events if isinstance(item.event, NetSend)]
    assert not [s for s in sends if s.address == address], sends
    assert "proxy-bypass" not in done.stderr, done.stderr
