"""A process's only connection: on trio its reads wait on the socket itself.

With one connection, trio's engine lets a waiting read wait on its socket rather than
through the poller (one pass of the event loop less per message), and steps back into
the poller when the read ends. Everything that ends or holds up a read without the
socket (the reader set by hand, ``close()``, ``pause_reading()``, ``start_tls()``,
cancellation) must still work as on asyncio; these tests check it on every backend,
each with a plain socket at the other end so that the connection under test is the
only one. ``waits_on_its_socket()`` checks that on trio they take that path.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager

import anyio
import pytest
import trustme

import asyncstreams
from asyncstreams import StreamReader, StreamWriter
from asyncstreams._poller import poller
from asyncstreams._socket_engine import SocketEngine

pytestmark = pytest.mark.anyio

#: Bound on every wait.
WAIT = 10


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A socketpair: the test opens a connection on the first, and uses the second."""
    ours, peer = socket.socketpair()
    peer.settimeout(WAIT)
    with ours, peer:
        yield ours, peer


async def open_lone(ours: socket.socket) -> tuple[StreamReader, StreamWriter]:
    return await asyncstreams.open_connection(sock=ours)


def waits_on_its_socket(writer: StreamWriter) -> bool:
    """Whether a read of *writer*'s connection is waiting on its socket itself (on trio);
    always True on asyncio, whose engines have no such wait."""
    engine = writer.transport._engine
    if not isinstance(engine, SocketEngine):
        return True
    return engine._direct_wait is not None


def in_the_poller(writer: StreamWriter) -> bool:
    """Whether the poller watches *writer*'s socket through its selector (on trio)."""
    engine = writer.transport._engine
    if not isinstance(engine, SocketEngine):
        return True
    selector = poller()._selector
    return selector is not None and engine._fd in selector.get_map()


@asynccontextmanager
async def waiting(
    writer: StreamWriter, read: Callable[[], Awaitable[object]]
) -> AsyncIterator[list[object]]:
    """Run *read* in a task until it waits (on trio, on its socket); leaving the block
    waits for it to end. The list yielded gets what it returned, or the OSError it
    raised."""
    outcome: list[object] = []

    async def run() -> None:
        try:
            outcome.append(await read())
        except OSError as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await anyio.wait_all_tasks_blocked()
        assert waits_on_its_socket(writer)
        yield outcome


async def close(writer: StreamWriter) -> None:
    writer.close()
    with anyio.fail_after(WAIT):
        await writer.wait_closed()


async def test_reads_of_every_kind(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, peer = pair
    reader, writer = await open_lone(ours)
    big = bytes(range(256)) * 1024  # a read(n) this big receives for itself
    results: list[bytes] = []

    async def read_all() -> None:
        results.append(await reader.readline())
        results.append(await reader.readexactly(4))
        results.append(await reader.readuntil(b"!"))
        results.append(await reader.read(len(big)))
        results.append(await reader.read())

    with anyio.fail_after(WAIT):
        async with waiting(writer, read_all):
            for chunk in (b"line\n", b"four", b"bang!", big):
                await anyio.to_thread.run_sync(peer.sendall, chunk)
                await anyio.wait_all_tasks_blocked()
            peer.shutdown(socket.SHUT_WR)
    assert results[:3] == [b"line\n", b"four", b"bang!"]
    assert b"".join(results[3:]) == big  # read(n) returns what is there, read() the rest
    assert await reader.read() == b""
    assert reader.at_eof()
    writer.write(b"reply")
    await writer.drain()
    assert peer.recv(100) == b"reply"
    await close(writer)


async def test_round_trips_leave_the_socket_in_the_poller(
    pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    ours, peer = pair
    reader, writer = await open_lone(ours)
    woken: list[object] = []
    notify_closing = anyio.notify_closing

    def counting_notify_closing(obj: socket.socket) -> None:
        woken.append(obj)
        notify_closing(obj)

    # A read that its own receive ends needs no wake-up from elsewhere.
    monkeypatch.setattr(anyio, "notify_closing", counting_notify_closing)
    with anyio.fail_after(WAIT):
        for i in range(50):
            peer.sendall(b"ping %d\n" % i)
            assert await reader.readline() == b"ping %d\n" % i
            assert in_the_poller(writer)
            writer.write(b"pong\n")
            await writer.drain()
            assert peer.recv(100) == b"pong\n"
    assert woken == []
    await close(writer)


@pytest.mark.parametrize("how", ["set_exception", "feed_eof"])
async def test_reader_set_from_another_task_wakes_the_read(
    pair: tuple[socket.socket, socket.socket], how: str
) -> None:
    ours, _ = pair
    reader, writer = await open_lone(ours)
    error = ConnectionResetError("set by hand")
    with anyio.fail_after(WAIT):
        async with waiting(writer, functools.partial(reader.read, 100)) as outcome:
            if how == "set_exception":
                reader.set_exception(error)
            else:
                reader.feed_eof()
    assert outcome == ([error] if how == "set_exception" else [b""])
    await close(writer)


async def test_feed_eof_by_hand_with_bytes_arriving(
    pair: tuple[socket.socket, socket.socket], backend_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The read ends with EOF. Bytes that arrive after it cannot be fed: asyncio reports
    # that to the loop as its protocol's fatal error, the trio engine's poller logs it;
    # neither reaches the read.
    ours, peer = pair
    reader, writer = await open_lone(ours)
    errors: list[BaseException] = []
    loop = asyncio.get_running_loop() if backend_id != "trio" else None
    if loop is not None:
        handler = loop.get_exception_handler()
        loop.set_exception_handler(lambda _, context: errors.append(context["exception"]))
    try:
        with anyio.fail_after(WAIT):
            async with waiting(writer, functools.partial(reader.read, 100)) as outcome:
                peer.sendall(b"late")
                reader.feed_eof()
            assert outcome == [b""]
            while not errors:  # reported elsewhere, with no event to wait on
                errors.extend(r.exc_info[1] for r in caplog.records if r.exc_info and r.exc_info[1])
                await anyio.sleep(0.01)
        assert isinstance(errors[0], AssertionError)
    finally:
        if loop is not None:
            loop.set_exception_handler(handler)
        writer.transport.abort()


@pytest.mark.parametrize("method", ["read", "readexactly"])
async def test_cancel_and_set_exception_in_one_pass(
    pair: tuple[socket.socket, socket.socket], method: str
) -> None:
    ours, peer = pair
    reader, writer = await open_lone(ours)
    error = ConnectionResetError("set by hand")
    scopes: list[anyio.CancelScope] = []
    cancelled: list[bool] = []

    async def read() -> None:
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            await getattr(reader, method)(100)
        cancelled.append(scope.cancelled_caught)

    with anyio.fail_after(WAIT):
        async with waiting(writer, read):
            scopes[0].cancel()
            reader.set_exception(error)
        assert cancelled == [True]
        assert reader._wake_exception is None  # nothing left for the next wait
        with pytest.raises(ConnectionResetError, match="by hand"):
            await reader.read(100)
    peer.sendall(b"x")
    writer.transport.abort()


async def test_failed_send_while_a_read_waits(pair: tuple[socket.socket, socket.socket]) -> None:
    # As asyncio: the connection closes at once and the read raises the send's error.
    ours, peer = pair
    reader, writer = await open_lone(ours)
    peer.shutdown(socket.SHUT_RD)  # our sends fail with EPIPE; nothing to read
    with anyio.fail_after(WAIT):
        async with waiting(writer, functools.partial(reader.read, 100)) as outcome:
            writer.write(b"x")
            assert writer.is_closing()
    assert [type(exc) for exc in outcome] == [BrokenPipeError]
    with pytest.raises(BrokenPipeError):
        await writer.wait_closed()


async def test_what_a_read_leaves_in_the_kernel_is_received_in_the_background(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = pair
    reader, writer = await open_lone(ours)
    data = bytes(range(256)) * 400  # 100 KiB: more than one receive
    with anyio.fail_after(WAIT):
        async with waiting(writer, functools.partial(reader.read, 100)) as outcome:
            await anyio.to_thread.run_sync(peer.sendall, data)
        first = outcome[0]
        assert isinstance(first, bytes)
        assert in_the_poller(writer)
        while len(reader._buffer) < len(data) - len(first):  # noqa: ASYNC110 (no event)
            await anyio.sleep(0.01)
    assert first + await reader.read(len(data)) == data
    await close(writer)


async def test_close_while_a_read_waits(pair: tuple[socket.socket, socket.socket]) -> None:
    # As asyncio: the read ends with EOF once the connection is closed.
    ours, peer = pair
    reader, writer = await open_lone(ours)
    with anyio.fail_after(WAIT):
        async with waiting(writer, functools.partial(reader.read, 100)) as outcome:
            writer.close()
        await writer.wait_closed()
    assert outcome == [b""]
    assert peer.recv(100) == b""


async def test_close_with_unsent_data_while_a_read_waits(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    # close() stops receiving at once, as asyncio's: what the peer sends after it is
    # not read; the read ends with EOF once the unsent data is out and the socket closed.
    ours, peer = pair
    reader, writer = await open_lone(ours)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    data = b"x" * 2**20
    with anyio.fail_after(WAIT):
        async with waiting(writer, functools.partial(reader.read, 100)) as outcome:
            writer.write(data)
            writer.close()
            peer.sendall(b"too late")
            received = bytearray()
            while len(received) < len(data):
                received += await anyio.to_thread.run_sync(peer.recv, 2**16)
        await writer.wait_closed()
    assert received == data
    assert outcome == [b""]


async def test_read_of_more_than_the_limit(pair: tuple[socket.socket, socket.socket]) -> None:
    # Fed more than twice its limit, the reader pauses receiving; the waiting read
    # resumes it before it waits again (as in asyncio, readexactly(n) may exceed it).
    ours, peer = pair
    reader, writer = await asyncstreams.open_connection(sock=ours, limit=64)
    data = bytes(range(256)) * 40

    def send() -> None:
        for i in range(0, len(data), 100):
            peer.sendall(data[i : i + 100])

    with anyio.fail_after(WAIT):
        async with waiting(writer, functools.partial(reader.readexactly, len(data))) as outcome:
            await anyio.to_thread.run_sync(send)
    assert outcome == [data]
    assert in_the_poller(writer)
    await close(writer)


async def test_cancelled_read_leaves_nothing_behind(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = pair
    reader, writer = await open_lone(ours)
    with anyio.move_on_after(0.05):
        await reader.readline()
    assert in_the_poller(writer)  # it receives in the background again
    peer.sendall(b"after\n")
    with anyio.fail_after(WAIT):
        while not reader._buffer:  # noqa: ASYNC110 (received with no read: no event)
            await anyio.sleep(0.01)
        assert await reader.readline() == b"after\n"
    await close(writer)


async def test_peer_reset_while_a_read_waits(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, peer = pair
    reader, writer = await open_lone(ours)
    writer.write(b"never read")  # closing with it unread resets the connection
    await writer.drain()
    with anyio.fail_after(WAIT):
        async with waiting(writer, functools.partial(reader.read, 100)) as outcome:
            peer.close()
    assert [type(exc) for exc in outcome] == [ConnectionResetError]
    writer.close()


async def test_a_second_connection_while_a_read_waits(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = pair
    reader, writer = await open_lone(ours)
    other_ours, other_peer = socket.socketpair()
    with other_peer, anyio.fail_after(WAIT):
        async with waiting(writer, reader.readline) as outcome:
            other_reader, other_writer = await asyncstreams.open_connection(sock=other_ours)
            other_peer.sendall(b"second\n")
            assert await other_reader.readline() == b"second\n"
            peer.sendall(b"first\n")
        assert outcome == [b"first\n"]
        peer.sendall(b"again\n")
        assert await reader.readline() == b"again\n"  # through the poller now
        await close(other_writer)
    await close(writer)


async def test_sending_task_waiting_for_room_survives_a_woken_read(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    # Waking a read waiting on the socket also wakes what waits to send on it: the
    # sending task must go on sending.
    ours, peer = pair
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    reader, writer = await open_lone(ours)
    data = bytes(range(256)) * 2**12  # 1 MiB, more than the kernel takes at once

    async def read() -> None:
        with pytest.raises(ValueError, match="by hand"):
            await reader.read(100)

    with anyio.fail_after(WAIT):
        async with waiting(writer, read):
            writer.write(data)
            await anyio.wait_all_tasks_blocked()  # the sending task waits for room
            assert writer.transport.get_write_buffer_size() > 0
            reader.set_exception(ValueError("set by hand"))
        received = bytearray()
        while len(received) < len(data):
            received += await anyio.to_thread.run_sync(peer.recv, 2**16)
    assert received == data
    writer.close()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def test_start_tls_while_a_read_waits(ca: trustme.CA) -> None:
    # asyncio lets a read wait through start_tls(): it gets what comes over TLS.
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(WAIT)

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(WAIT)
            assert conn.recv(100) == b"STARTTLS\n"
            conn.sendall(b"go ahead\n")
            with server_context.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"secret\n")
                assert tls.recv(100) == b"thanks\n"

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        reader, writer = await asyncstreams.open_connection(*listener.getsockname())
        with anyio.fail_after(WAIT):
            writer.write(b"STARTTLS\n")
            assert await reader.readline() == b"go ahead\n"
            async with waiting(writer, reader.readline) as outcome:
                await writer.start_tls(client_context, server_hostname="localhost")
            assert outcome == [b"secret\n"]
            writer.write(b"thanks\n")
            await writer.drain()
        await close(writer)
    finally:
        thread.join(WAIT)
        listener.close()
