"""The proxy's thread waits for the build to use a listener before it loads the proxy
(``Listeners.wait_for_use``): a connection in a backlog or a query in a DNS socket's queue
ends the wait at once. The wait's own bound is far beyond what these tests take, so a wait
that something didn't end shows as a thread still waiting, not as a slower test."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from ciwatch.egress.listeners import Listeners

#: Beyond any test's run: a wait still running after the use means the use didn't end it.
_BOUND_S = 600.0


@pytest.fixture
def listeners() -> Iterator[Listeners]:
    bound = Listeners.bind(["127.0.0.1"], ["127.0.0.1"])
    yield bound
    bound.close()


def _waiting(listeners: Listeners) -> tuple[threading.Thread, threading.Event]:
    started, done = threading.Event(), threading.Event()

    def wait() -> None:
        started.set()
        listeners.wait_for_use(_BOUND_S)
        done.set()

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    started.wait()
    return thread, done


def _connect(listeners: Listeners) -> socket.socket:
    return socket.create_connection(next(iter(listeners.tcp)))


def _query(listeners: Listeners) -> socket.socket:
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.sendto(b"\x12\x34", listeners.dns_addresses[0])
    return client


@pytest.mark.parametrize("use", [_connect, _query], ids=["tcp connection", "dns query"])
def test_a_use_of_a_listener_ends_the_wait(listeners: Listeners, use: Callable[[Listeners], socket.socket]) -> None:
    thread, done = _waiting(listeners)
    assert not done.is_set()
    client = use(listeners)
    try:
        # Bounded only to end the test should the wait not end: _BOUND_S is far beyond it.
        assert done.wait(_BOUND_S / 2)
    finally:
        client.close()
    thread.join()


def test_what_waited_is_still_there_for_the_proxy(listeners: Listeners) -> None:
    """The wait reads nothing: the connection is still in the backlog, the query in the queue."""
    tcp_client, dns_client = _connect(listeners), _query(listeners)
    try:
        listeners.wait_for_use(_BOUND_S)
        accepted, _ = next(iter(listeners.tcp.values())).accept()
        accepted.close()
        assert listeners.dns[0].recvfrom(512)[0] == b"\x12\x34"
    finally:
        tcp_client.close()
        dns_client.close()
