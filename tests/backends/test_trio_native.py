"""asyncstreams inside plain trio code (pytest-trio): nurseries, cancel scopes, no asyncio.

These tests use trio directly (trio.open_nursery, trio.CancelScope, trio.move_on_after,
trio.testing) rather than the anyio backend matrix: they check that asyncstreams behaves
as trio users expect, not just as asyncio users do.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import socket
import struct
import sys
import warnings
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import anyio.abc
import pytest
import sniffio
import trio
import trio.testing

import asyncstreams

#: Bound on every wait: a hang fails the test, it does not stall the run.
WAIT = 10


def no_asyncio_loop() -> bool:
    """True if no asyncio event loop runs in this thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return True
    return False


def problems_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        f"{record.name} {record.levelname}: {record.getMessage()}"
        for record in caplog.records
        if record.levelno >= logging.WARNING
    ]


@pytest.fixture
def socketpair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """``(rsock, wsock)``: rsock is for asyncstreams (which will own it), wsock for the test."""
    rsock, wsock = socket.socketpair()
    yield rsock, wsock
    wsock.close()
    rsock.close()  # a no-op once the writer closed it


async def close(writer: asyncstreams.StreamWriter) -> None:
    writer.close()
    with trio.fail_after(WAIT):
        await writer.wait_closed()


# -- start_server(task_group=...) ---------------------------------------------------------


@pytest.mark.trio
async def test_handlers_run_as_children_of_the_task_group() -> None:
    main_task = trio.lowlevel.current_task()
    handler_parents: list[trio.lowlevel.Task] = []
    handler_cancelled: list[bool] = []
    two_started = trio.Event()

    async def handler(reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter) -> None:
        nursery = trio.lowlevel.current_task().parent_nursery
        assert nursery is not None
        handler_parents.append(nursery.parent_task)
        if len(handler_parents) == 2:
            two_started.set()
        try:
            await reader.read()  # the clients never send: only cancellation ends this
        except trio.Cancelled:
            handler_cancelled.append(True)
            raise

    with trio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            server = await asyncstreams.start_server(handler, "127.0.0.1", 0, task_group=tg)
            port = server.sockets[0].getsockname()[1]
            clients = [await asyncstreams.open_connection("127.0.0.1", port) for _ in range(2)]
            await two_started.wait()
            # The handlers are children of the group: of the task that opened it.
            assert handler_parents == [main_task, main_task]
            tg.cancel_scope.cancel()

    assert handler_cancelled == [True, True]
    # A cancelled handler's connection is closed: the clients see EOF.
    for reader, writer in clients:
        with trio.fail_after(WAIT):
            assert await reader.read() == b""
        await close(writer)
    # The accept loop ran in the group too: the listening socket is closed.
    with pytest.raises(ConnectionRefusedError), trio.fail_after(WAIT):
        await asyncstreams.open_connection("127.0.0.1", port)
    server.close()
    with trio.fail_after(WAIT):
        await server.wait_closed()
    assert server.sockets == ()


@pytest.mark.trio
async def test_task_group_waits_for_server_and_handlers_until_close() -> None:
    """The group's block ends once the server is closed and its handlers have finished."""
    echoed: list[bytes] = []

    async def handler(reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter) -> None:
        data = await reader.readline()
        echoed.append(data)
        writer.write(data)
        await writer.drain()
        await close(writer)

    with trio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            server = await asyncstreams.start_server(handler, "127.0.0.1", 0, task_group=tg)
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncstreams.open_connection("127.0.0.1", port)
            writer.write(b"ping\n")
            assert await reader.readline() == b"ping\n"
            assert await reader.read() == b""
            await close(writer)
            server.close()
        # Left on its own: nothing cancelled the group.
        assert not tg.cancel_scope.cancel_called
        await server.wait_closed()
    assert echoed == [b"ping\n"]


# -- cancellation in trio cancel scopes ---------------------------------------------------


READS: dict[str, Callable[[asyncstreams.StreamReader], Awaitable[bytes]]] = {
    "readexactly": lambda reader: reader.readexactly(12),
    "readuntil": lambda reader: reader.readuntil(b"\n"),
    "readline": lambda reader: reader.readline(),
    "read-all": lambda reader: reader.read(),
}


@pytest.mark.trio
@pytest.mark.parametrize("method", list(READS))
async def test_read_cancelled_by_move_on_after_loses_no_bytes(
    method: str,
    socketpair: tuple[socket.socket, socket.socket],
    autojump_clock: trio.testing.MockClock,
) -> None:
    rsock, wsock = socketpair
    reader, writer = await asyncstreams.open_connection(sock=rsock)
    read = READS[method]
    wsock.sendall(b"hello ")
    # Runs until the read, having received b"hello ", waits for more; then times out.
    with trio.move_on_after(5) as scope:
        await read(reader)
    assert scope.cancelled_caught
    wsock.sendall(b"world\n")
    if method == "read-all":
        wsock.shutdown(socket.SHUT_WR)
    with trio.fail_after(5):
        assert await read(reader) == b"hello world\n"
    await close(writer)


@pytest.mark.trio
async def test_read_cancelled_by_cancel_scope_loses_no_bytes(
    socketpair: tuple[socket.socket, socket.socket],
) -> None:
    rsock, wsock = socketpair
    reader, writer = await asyncstreams.open_connection(sock=rsock)
    outcome: list[bytes] = []
    async with trio.open_nursery() as nursery:
        scope = trio.CancelScope()

        async def read_in_scope() -> None:
            with scope:
                outcome.append(await reader.readexactly(10))

        nursery.start_soon(read_in_scope)
        wsock.sendall(b"01234")
        # Every task is blocked: the read has taken b"01234" and waits for the rest.
        await trio.testing.wait_all_tasks_blocked()
        scope.cancel()
    assert scope.cancelled_caught
    assert outcome == []
    wsock.sendall(b"56789")
    with trio.fail_after(WAIT):
        assert await reader.readexactly(10) == b"0123456789"
    await close(writer)


@pytest.mark.trio
async def test_many_cancelled_reads_over_tcp_lose_no_bytes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A sender trickles bytes; reads keep timing out mid-way; the data arrives whole."""
    payload = bytes(range(256)) * 8

    async def trickle(reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter) -> None:
        for i in range(0, len(payload), 3):
            writer.write(payload[i : i + 3])
            await writer.drain()
            await trio.sleep(0.001)
        await close(writer)

    server = await asyncstreams.start_server(trickle, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncstreams.open_connection("127.0.0.1", port)
        received = bytearray()
        timeouts = 0
        with trio.fail_after(60):
            while not reader.at_eof():
                with trio.move_on_after(0.0025) as scope:
                    try:
                        received += await reader.readexactly(7)
                    except asyncstreams.IncompleteReadError as exc:
                        received += exc.partial
                timeouts += scope.cancelled_caught
        await close(writer)
    assert bytes(received) == payload
    assert timeouts > 10  # the test did cancel reads part-way


# -- no asyncio underneath ----------------------------------------------------------------


@pytest.mark.trio
async def test_no_asyncio_event_loop_is_running() -> None:
    seen_in_handler: list[tuple[bool, str]] = []

    async def handler(reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter) -> None:
        seen_in_handler.append((no_asyncio_loop(), sniffio.current_async_library()))
        writer.write(await reader.readline())
        await close(writer)

    assert no_asyncio_loop()
    server = await asyncstreams.start_server(handler, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncstreams.open_connection("127.0.0.1", port)
        writer.write(b"hello\n")
        await writer.drain()
        with trio.fail_after(WAIT):
            assert await reader.readline() == b"hello\n"
            assert await reader.read() == b""
        assert no_asyncio_loop()
        await close(writer)
    assert seen_in_handler == [(True, "trio")]
    assert no_asyncio_loop()
    with pytest.raises(RuntimeError, match="no running event loop"):
        asyncio.get_running_loop()


# -- wrap() over trio streams -------------------------------------------------------------


@pytest.mark.trio
@pytest.mark.parametrize("pair", ["memory", "lockstep"])
async def test_wrap_a_trio_testing_stream(pair: str) -> None:
    ours: trio.abc.HalfCloseableStream
    theirs: trio.abc.HalfCloseableStream
    if pair == "memory":
        ours, theirs = trio.testing.memory_stream_pair()
    else:
        ours, theirs = trio.testing.lockstep_stream_pair()
    reader, writer = asyncstreams.wrap(ours)  # a trio Stream, wrapped as it is
    async with trio.open_nursery() as nursery:
        # Written without drain(): the background sender still delivers it, even over
        # the lockstep stream, where a send waits for the peer to receive.
        writer.write(b"one\n")
        writer.writelines([b"two\n", b"three\n"])
        got = b""
        with trio.fail_after(WAIT):
            while got.count(b"\n") < 3:
                got += await theirs.receive_some()
        assert got == b"one\ntwo\nthree\n"

        nursery.start_soon(theirs.send_all, b"line 1\nline 2\npartial")
        with trio.fail_after(WAIT):
            assert await reader.readline() == b"line 1\n"
            assert await reader.readuntil(b"\n") == b"line 2\n"
            assert await reader.readexactly(4) == b"part"

        writer.write_eof()
        with trio.fail_after(WAIT):
            assert await theirs.receive_some() == b""
        await theirs.send_eof()
        with trio.fail_after(WAIT):
            assert await reader.read() == b"ial"
            assert reader.at_eof()
    await close(writer)
    await theirs.aclose()


@pytest.mark.trio
async def test_wrap_a_trio_tcp_stream_and_see_its_errors_as_asyncios() -> None:
    received: list[bytes] = []

    async def handler(stream: trio.SocketStream) -> None:
        received.append(await stream.receive_some())
        # Reset the connection: the wrapped side must see asyncio's error, not trio's.
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        (listener,) = await nursery.start(
            functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1")
        )
        port = listener.socket.getsockname()[1]
        reader, writer = asyncstreams.wrap(await trio.open_tcp_stream("127.0.0.1", port))
        writer.write(b"hello")
        with trio.fail_after(WAIT), pytest.raises(ConnectionResetError):
            await reader.read()
        nursery.cancel_scope.cancel()
    assert received == [b"hello"]
    writer.close()
    with trio.fail_after(WAIT), contextlib.suppress(ConnectionError):
        await writer.wait_closed()


@pytest.mark.trio
async def test_wrap_refuses_what_is_not_a_stream() -> None:
    with pytest.raises(TypeError, match="anyio ByteStream or a trio Stream"):
        asyncstreams.wrap(object())  # type: ignore[arg-type]


async def _trio_echo_server(
    nursery: trio.Nursery,
) -> tuple[int, list[tuple[str, int]]]:
    peers: list[tuple[str, int]] = []

    async def echo(stream: trio.SocketStream) -> None:
        peers.append(stream.socket.getpeername())
        async with stream:
            async for data in stream:
                await stream.send_all(data)

    listeners = await nursery.start(functools.partial(trio.serve_tcp, echo, 0, host="127.0.0.1"))
    return listeners[0].socket.getsockname()[1], peers


async def _anyio_connect_tcp(port: int) -> anyio.abc.ByteStream:
    return await anyio.connect_tcp("127.0.0.1", port)


async def _anyio_from_trio_socket(port: int) -> anyio.abc.ByteStream:
    trio_sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    await trio_sock.connect(("127.0.0.1", port))
    return await anyio.abc.SocketStream.from_socket(trio_sock.detach())


async def _trio_tcp_stream(port: int) -> trio.SocketStream:
    return await trio.open_tcp_stream("127.0.0.1", port)


CONNECTORS: dict[str, Callable[[int], Awaitable[anyio.abc.ByteStream | trio.abc.Stream]]] = {
    "anyio.connect_tcp": _anyio_connect_tcp,
    "SocketStream.from_socket(trio.socket)": _anyio_from_trio_socket,
    "trio.open_tcp_stream": _trio_tcp_stream,
}


@pytest.mark.trio
@pytest.mark.parametrize("connector", list(CONNECTORS))
async def test_wrap_a_tcp_stream_to_a_trio_server(connector: str) -> None:
    async with trio.open_nursery() as nursery:
        port, peers = await _trio_echo_server(nursery)
        stream = await CONNECTORS[connector](port)
        reader, writer = asyncstreams.wrap(stream, limit=16)
        writer.write(b"hello\nworld\n")
        await writer.drain()
        with trio.fail_after(WAIT):
            assert await reader.readline() == b"hello\n"
            assert [line async for line in _lines(reader, 1)] == [b"world\n"]
        writer.write(b"x" * 20 + b"\n")
        with pytest.raises(ValueError), trio.fail_after(WAIT):
            await reader.readline()  # past limit=16
        if connector != "trio.open_tcp_stream":  # a socket underneath: its details show
            assert writer.get_extra_info("peername") == ("127.0.0.1", port)
            assert writer.get_extra_info("sockname") == peers[0]
        writer.write_eof()
        with trio.fail_after(WAIT):
            await reader.read()
            assert reader.at_eof()
        await close(writer)
        nursery.cancel_scope.cancel()


async def _lines(reader: asyncstreams.StreamReader, n: int) -> Any:
    async for line in reader:
        yield line
        n -= 1
        if n == 0:
            return


@pytest.mark.trio
async def test_pure_trio_client_against_asyncstreams_server() -> None:
    async def upper(reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter) -> None:
        async for line in reader:
            writer.write(line.upper())
            await writer.drain()
        await close(writer)

    server = await asyncstreams.start_server(upper, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(b"abc\ndef\n")
            await stream.send_eof()
            got = b""
            with trio.fail_after(WAIT):
                async for data in stream:
                    got += data
        assert got == b"ABC\nDEF\n"


# -- what an idle connection costs ------------------------------------------------------


def all_tasks() -> int:
    """How many tasks the trio run has, system tasks included."""
    count = 0
    root = trio.lowlevel.current_root_task()
    assert root is not None
    todo = [root]
    while todo:
        task = todo.pop()
        count += 1
        for nursery in task.child_nurseries:
            todo.extend(nursery.child_tasks)
    return count


@pytest.mark.trio
async def test_idle_connections_cost_no_task_but_the_handler() -> None:
    # As an asyncio connection costs no task but its handler's: receiving in the
    # background is a callback of one poller per run, not a task per connection end.
    handlers = 0
    started = {1: trio.Event(), 21: trio.Event()}

    async def idle(reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter) -> None:
        nonlocal handlers
        handlers += 1
        if handlers in started:
            started[handlers].set()
        await trio.sleep_forever()

    server = await asyncstreams.start_server(idle, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        first = await asyncstreams.open_connection("127.0.0.1", port)
        with trio.fail_after(WAIT):
            await started[1].wait()
        before = all_tasks()
        more = [await asyncstreams.open_connection("127.0.0.1", port) for _ in range(20)]
        with trio.fail_after(WAIT):
            await started[21].wait()
        grown = all_tasks() - before
        # Every connection still receives in the background: it sees the close.
        server.close_clients()
        for reader, writer in [first, *more]:
            with trio.fail_after(WAIT):
                assert await reader.read() == b""
            writer.close()
    assert grown == 20  # the handlers


@pytest.mark.trio
@pytest.mark.parametrize("one_selector", [True, False], ids=["one selector", "task per socket"])
async def test_connections_work_either_way_the_poller_waits(
    one_selector: bool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Without a selector descriptor to wait on (Windows), each socket waits in a task.
    from asyncstreams import _poller

    monkeypatch.setattr(_poller, "_ONE_SELECTOR", one_selector)

    async def echo(reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter) -> None:
        while line := await reader.readline():
            writer.write(line)
            await writer.drain()
        await close(writer)

    server = await asyncstreams.start_server(echo, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        for _ in range(3):
            pairs = [await asyncstreams.open_connection("127.0.0.1", port) for _ in range(5)]
            for i, (_, writer) in enumerate(pairs):
                writer.write(b"line %d\n" % i * 10_000)  # more than one receive
            for i, (reader, writer) in enumerate(pairs):
                with trio.fail_after(WAIT):
                    assert await reader.readexactly(70_000) == b"line %d\n" % i * 10_000
                writer.write_eof()
                with trio.fail_after(WAIT):
                    assert await reader.read() == b""
                await close(writer)
    assert problems_logged(caplog) == []


# -- handler exceptions -------------------------------------------------------------------


@pytest.mark.trio
@pytest.mark.parametrize("in_task_group", [False, True], ids=["detached", "task_group"])
async def test_handler_exception_is_logged_and_does_not_crash_the_run(
    in_task_group: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="asyncstreams")

    async def handler(reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter) -> None:
        line = await reader.readline()
        if line == b"boom\n":
            raise ValueError("boom")
        writer.write(b"ok\n")
        await close(writer)

    async with anyio.create_task_group() as tg:
        server = await asyncstreams.start_server(
            handler, "127.0.0.1", 0, task_group=tg if in_task_group else None
        )
        async with server:
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncstreams.open_connection("127.0.0.1", port)
            writer.write(b"boom\n")
            with trio.fail_after(WAIT):
                # The failed handler's connection is closed.
                assert await reader.read() == b""
            await close(writer)

            records = [r for r in caplog.records if r.name == "asyncstreams"]
            assert len(records) == 1, problems_logged(caplog)
            (record,) = records
            assert record.levelno == logging.ERROR
            assert record.getMessage().startswith("Unhandled exception in client_connected_cb")
            assert record.exc_info is not None
            exc = record.exc_info[1]
            assert isinstance(exc, ValueError)
            assert exc.args == ("boom",)

            # The server (and the task group) carry on.
            reader, writer = await asyncstreams.open_connection("127.0.0.1", port)
            writer.write(b"hi\n")
            with trio.fail_after(WAIT):
                assert await reader.read() == b"ok\n"
            await close(writer)
    assert not tg.cancel_scope.cancel_called


@pytest.mark.trio
async def test_plain_function_handler_exception_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def handler(reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter) -> None:
        raise KeyError("plain")

    server = await asyncstreams.start_server(handler, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncstreams.open_connection("127.0.0.1", port)
        with trio.fail_after(WAIT):
            assert await reader.read() == b""
        await close(writer)
    messages = [r.getMessage() for r in caplog.records if r.name == "asyncstreams"]
    assert len(messages) == 1
    assert messages[0].startswith("Unhandled exception in client_connected_cb")


# -- a server left open when the main task ends -------------------------------------------


def test_server_left_open_does_not_hang_trio_run(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``trio.run`` returns with a server still listening and a handler still waiting.

    The handler is cancelled, its connection and the listening socket are closed, and
    nothing leaks or warns afterwards.
    """
    unraisable: list[str] = []
    monkeypatch.setattr(
        sys, "unraisablehook", lambda info: unraisable.append(f"{info.exc_type}: {info.exc_value}")
    )
    handler_ended: list[str] = []
    client = socket.socket()
    client.settimeout(WAIT)

    async def main() -> int:
        started = trio.Event()

        async def handler(
            reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter
        ) -> None:
            started.set()
            try:
                await reader.read()  # the client never closes while trio runs
            except trio.Cancelled:
                handler_ended.append("cancelled")
                raise
            handler_ended.append("returned")

        server = await asyncstreams.start_server(handler, "127.0.0.1", 0)
        port: int = server.sockets[0].getsockname()[1]
        client.connect(("127.0.0.1", port))
        with trio.fail_after(WAIT):
            await started.wait()
        assert server.is_serving()
        return port  # the server stays open

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            port = trio.run(main)
            assert handler_ended == ["cancelled"]
            assert client.recv(100) == b""  # the server closed the connection
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=WAIT).close()
            gc.collect()
    finally:
        client.close()
    assert [str(w.message) for w in caught] == []
    assert unraisable == []
    assert problems_logged(caplog) == []


@pytest.mark.trio
async def test_server_left_open_at_test_end() -> None:
    """The same, under pytest-trio: the test returns with the server serving."""
    server = await asyncstreams.start_server(lambda r, w: None, "127.0.0.1", 0)
    assert server.is_serving()
