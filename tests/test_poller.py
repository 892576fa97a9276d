"""The readiness poller behind trio connections (``asyncstreams._poller``).

It is backend-neutral, so it is tested on every backend; what it spares trio (a task
per idle connection) is tested in ``tests/backends/test_trio_native.py``.
"""

from __future__ import annotations

import errno
import logging
import selectors
import socket
from collections.abc import Callable, Iterator

import anyio
import pytest

from asyncstreams import _poller
from asyncstreams._poller import Poller

pytestmark = pytest.mark.anyio

WAIT = 10


@pytest.fixture(params=["one selector", "a task per socket"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The selector's way (Linux, macOS) and the task per socket (Windows, or no
    descriptor left for a selector)."""
    if request.param == "a task per socket":
        monkeypatch.setattr(_poller, "_ONE_SELECTOR", False)
    return str(request.param)


@pytest.fixture
def pairs() -> Iterator[Callable[[], tuple[socket.socket, socket.socket]]]:
    made: list[socket.socket] = []

    def make() -> tuple[socket.socket, socket.socket]:
        a, b = socket.socketpair()
        a.setblocking(False)
        made.extend((a, b))
        return a, b

    yield make
    for sock in made:
        sock.close()


class Receiver:
    """A callback that receives what is there and records it, as an engine's does."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.received = bytearray()
        self.calls = 0
        self.got = anyio.Event()

    def __call__(self) -> bool:
        self.calls += 1
        try:
            data = self.sock.recv(4)
        except BlockingIOError:
            return False
        self.received += data
        self.got.set()
        return len(data) == 4  # filled: more may be queued

    async def wait_for(self, data: bytes) -> None:
        await self.wait_until(lambda: bytes(self.received) == data)

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        with anyio.fail_after(WAIT):
            while not condition():
                self.got = anyio.Event()
                await self.got.wait()


async def settle() -> None:
    with anyio.fail_after(WAIT):
        await anyio.wait_all_tasks_blocked()


async def test_calls_back_while_watched(
    mode: str, pairs: Callable[[], tuple[socket.socket, socket.socket]]
) -> None:
    poller = Poller()
    a, b = pairs()
    receiver = Receiver(a)
    poller.watch(a.fileno(), receiver)
    b.send(b"hello, world")  # more than one receive: the rest comes without a new event
    await receiver.wait_for(b"hello, world")
    poller.unwatch(a.fileno())
    calls = receiver.calls
    b.send(b"more")
    await settle()
    await anyio.sleep(0.01)
    assert receiver.calls == calls  # never called after unwatch()
    poller.watch(a.fileno(), receiver)  # watched again, it sees what is waiting
    await receiver.wait_for(b"hello, worldmore")
    poller.unwatch(a.fileno())


async def test_many_sockets_each_get_their_bytes(
    mode: str, pairs: Callable[[], tuple[socket.socket, socket.socket]]
) -> None:
    poller = Poller()
    sockets = [pairs() for _ in range(20)]
    receivers = [Receiver(a) for a, _ in sockets]
    for (a, _), receiver in zip(sockets, receivers, strict=True):
        poller.watch(a.fileno(), receiver)
    for i, (_, b) in enumerate(sockets):
        b.send(b"socket %d" % i)
    for i, receiver in enumerate(receivers):
        await receiver.wait_for(b"socket %d" % i)
    for a, _ in sockets:
        poller.unwatch(a.fileno())


async def test_a_socket_that_keeps_streaming_does_not_starve_the_others(
    mode: str, pairs: Callable[[], tuple[socket.socket, socket.socket]]
) -> None:
    poller = Poller()
    (a, b), (c, d) = pairs(), pairs()
    streaming = Receiver(a)
    quiet = Receiver(c)
    poller.watch(a.fileno(), streaming)
    poller.watch(c.fileno(), quiet)
    b.send(b"x" * 100_000)  # takes 25,000 receives of 4 bytes
    # Streaming, with nothing else to see:
    await streaming.wait_until(lambda: len(streaming.received) >= 400)
    d.send(b"ping")
    await quiet.wait_for(b"ping")
    assert len(streaming.received) < 100_000
    poller.unwatch(a.fileno())
    poller.unwatch(c.fileno())


async def test_one_watched_socket_is_called_without_asking_the_selector(
    pairs: Callable[[], tuple[socket.socket, socket.socket]],
) -> None:
    # The selector woke us and watches one socket: that socket is the ready one (a
    # system call less per wake-up, which is every message of a lone connection).
    poller = Poller()
    (a, b), (c, d) = pairs(), pairs()
    receiver = Receiver(a)
    poller.watch(a.fileno(), receiver)
    selector = poller._selector
    assert selector is not None
    asked = 0
    select = selector.select

    def counting_select(timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        nonlocal asked
        asked += 1
        return select(timeout)

    selector.select = counting_select  # type: ignore[method-assign]
    for i in range(3):
        b.send(b"msg%d" % i)
        await receiver.wait_for(b"".join(b"msg%d" % j for j in range(i + 1)))
    assert asked == 0
    other = Receiver(c)
    poller.watch(c.fileno(), other)  # two sockets: the selector says which is ready
    d.send(b"ping")
    await other.wait_for(b"ping")
    assert asked > 0
    assert receiver.received == b"msg0msg1msg2"
    poller.unwatch(a.fileno())
    poller.unwatch(c.fileno())


async def test_a_socket_stepped_aside_is_not_called_back(
    pairs: Callable[[], tuple[socket.socket, socket.socket]],
) -> None:
    # A read waiting on its socket itself takes it out of the selector meanwhile.
    poller = Poller()
    (a, b), (c, _) = pairs(), pairs()
    receiver = Receiver(a)
    poller.watch(a.fileno(), receiver)
    assert poller.alone(a.fileno())
    assert not poller.alone(c.fileno())
    b.send(b"x" * 400)  # streaming: called again after a pass, without the selector
    await receiver.wait_until(lambda: len(receiver.received) >= 8)
    poller.step_aside(a.fileno(), receiver)
    calls = receiver.calls
    await settle()
    b.send(b"more")
    await settle()
    await anyio.sleep(0.01)
    assert receiver.calls == calls
    assert poller.alone(a.fileno())  # still watched
    poller.step_back(a.fileno(), receiver)
    await receiver.wait_for(b"x" * 400 + b"more")
    poller.watch(c.fileno(), Receiver(c))
    assert not poller.alone(a.fileno())
    poller.unwatch(c.fileno())
    poller.step_aside(a.fileno(), receiver)
    poller.unwatch(a.fileno())  # while aside
    poller.step_back(a.fileno(), receiver)  # no longer watched: nothing to put back
    assert poller._selector is None  # nothing watched: the selector is gone
    assert not poller.alone(a.fileno())


async def test_a_held_poller_keeps_a_socket_stepped_aside(
    pairs: Callable[[], tuple[socket.socket, socket.socket]],
) -> None:
    poller = Poller()
    a, b = pairs()
    receiver = Receiver(a)
    poller.watch(a.fileno(), receiver)
    poller.step_aside(a.fileno(), receiver)
    selector = poller._selector
    poller.hold()
    poller.release()  # the selector holds nothing now, but a socket is still watched
    assert poller._selector is selector
    poller.step_back(a.fileno(), receiver)
    b.send(b"back")
    await receiver.wait_for(b"back")
    poller.unwatch(a.fileno())


async def test_stepping_back_is_for_the_wait_that_stepped_aside(
    pairs: Callable[[], tuple[socket.socket, socket.socket]],
) -> None:
    poller = Poller()
    a, _ = pairs()
    fd = a.fileno()
    first, second = object(), object()
    poller.hold()  # as a connection does: the selector stays while nothing is watched
    poller.watch(fd, Receiver(a))
    selector = poller._selector
    assert selector is not None
    poller.step_aside(fd, first)
    poller.step_aside(fd, second)  # a later wait takes over one not stepped back yet
    poller.step_back(fd, first)
    assert fd not in selector.get_map()
    poller.step_back(fd, second)
    assert fd in selector.get_map()
    # The descriptor closed and reused by another socket before a wait stepped back:
    poller.step_aside(fd, first)
    poller.unwatch(fd)
    poller.watch(fd, Receiver(a))  # "another socket"
    poller.step_aside(fd, second)
    poller.step_back(fd, first)
    assert fd not in selector.get_map()  # not put back under the second wait
    poller.step_back(fd, second)
    assert fd in selector.get_map()
    poller.unwatch(fd)
    poller.release()


async def test_a_task_per_socket_is_never_alone(
    monkeypatch: pytest.MonkeyPatch, pairs: Callable[[], tuple[socket.socket, socket.socket]]
) -> None:
    # Without a selector each socket has a task waiting on it: none to step aside.
    monkeypatch.setattr(_poller, "_ONE_SELECTOR", False)
    poller = Poller()
    a, _ = pairs()
    poller.watch(a.fileno(), Receiver(a))
    assert not poller.alone(a.fileno())
    poller.unwatch(a.fileno())


async def test_selector_exists_only_while_a_socket_is_watched(
    pairs: Callable[[], tuple[socket.socket, socket.socket]],
) -> None:
    poller = Poller()
    a, b = pairs()
    c, _ = pairs()
    receiver = Receiver(a)
    poller.watch(a.fileno(), receiver)
    poller.watch(c.fileno(), Receiver(c))
    selector = poller._selector
    assert selector is not None
    poller.unwatch(c.fileno())
    assert poller._selector is selector
    b.send(b"data")
    await receiver.wait_for(b"data")
    poller.unwatch(a.fileno())
    assert poller._selector is None  # its descriptor is closed, its task ends
    await settle()
    poller.watch(a.fileno(), receiver)  # a new one, with a new task
    b.send(b"more")
    await receiver.wait_for(b"datamore")
    poller.unwatch(a.fileno())


async def test_a_held_poller_keeps_its_selector_while_nothing_is_watched(
    pairs: Callable[[], tuple[socket.socket, socket.socket]],
) -> None:
    # A connection holds it: pausing its reads (unwatch, watch) makes no new selector.
    poller = Poller()
    a, b = pairs()
    receiver = Receiver(a)
    poller.hold()
    poller.watch(a.fileno(), receiver)
    selector = poller._selector
    for i in range(3):
        poller.unwatch(a.fileno())
        assert poller._selector is selector
        b.send(b"%d" % i)
        poller.watch(a.fileno(), receiver)
        await receiver.wait_for(b"012"[: i + 1])
    poller.unwatch(a.fileno())
    assert poller._selector is selector
    poller.release()
    assert poller._selector is None


async def test_watch_and_unwatch_before_the_task_starts(
    pairs: Callable[[], tuple[socket.socket, socket.socket]],
) -> None:
    poller = Poller()
    a, b = pairs()
    receiver = Receiver(a)
    b.send(b"data")
    for _ in range(3):
        poller.watch(a.fileno(), receiver)
        poller.unwatch(a.fileno())
    await settle()
    assert receiver.calls == 0
    poller.watch(a.fileno(), receiver)
    await receiver.wait_for(b"data")
    poller.unwatch(a.fileno())


async def test_last_socket_unwatched_by_a_callback(
    mode: str, pairs: Callable[[], tuple[socket.socket, socket.socket]]
) -> None:
    # An engine's callback sees EOF and stops watching; the poller must cope.
    poller = Poller()
    a, b = pairs()
    seen = anyio.Event()

    def at_eof() -> bool:
        assert a.recv(10) == b""
        poller.unwatch(a.fileno())
        seen.set()
        return False

    poller.watch(a.fileno(), at_eof)
    b.shutdown(socket.SHUT_WR)
    with anyio.fail_after(WAIT):
        await seen.wait()
    assert poller._selector is None


async def test_watching_twice_is_an_error(
    mode: str, pairs: Callable[[], tuple[socket.socket, socket.socket]]
) -> None:
    poller = Poller()
    a, _ = pairs()
    poller.watch(a.fileno(), Receiver(a))
    with pytest.raises(RuntimeError, match="already watched"):
        poller.watch(a.fileno(), Receiver(a))
    poller.unwatch(a.fileno())
    poller.unwatch(a.fileno())  # a second unwatch() does nothing


async def test_a_callback_that_raises_is_logged_and_the_others_go_on(
    mode: str,
    pairs: Callable[[], tuple[socket.socket, socket.socket]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    poller = Poller()
    (a, b), (c, d) = pairs(), pairs()

    def broken() -> bool:
        a.recv(100)
        raise ValueError("boom")

    receiver = Receiver(c)
    poller.watch(a.fileno(), broken)
    poller.watch(c.fileno(), receiver)
    with caplog.at_level(logging.ERROR, logger="asyncstreams"):
        b.send(b"x")
        d.send(b"y")
        await receiver.wait_for(b"y")
        await settle()
    assert "Unhandled exception in a socket's readiness callback" in caplog.text
    assert "boom" in caplog.text
    d.send(b"z")
    await receiver.wait_for(b"yz")
    poller.unwatch(a.fileno())
    poller.unwatch(c.fileno())


async def test_no_descriptor_for_a_selector_falls_back_to_a_task(
    pairs: Callable[[], tuple[socket.socket, socket.socket]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A process out of descriptors still serves the sockets it has (see the accept
    # loop's EMFILE test): the poller then waits for each in a task.
    def no_descriptors() -> selectors.BaseSelector:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(selectors, "DefaultSelector", no_descriptors)
    poller = Poller()
    a, b = pairs()
    receiver = Receiver(a)
    poller.watch(a.fileno(), receiver)
    assert poller._selector is None
    b.send(b"data")
    await receiver.wait_for(b"data")
    poller.unwatch(a.fileno())


async def test_one_poller_per_event_loop() -> None:
    assert _poller.poller() is _poller.poller()
