"""start_server / start_unix_server / Server against asyncio 3.13's semantics.

Where the scenario is the same code for both libraries, it is written once against a
*streams* module and run twice: on asyncstreams under the test's backend, and on real
asyncio in a worker thread (the oracle). The expectations also come from CPython 3.13's
``base_events.Server``, ``BaseEventLoop.create_server``, ``create_unix_server`` and
``StreamReaderProtocol``.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import ssl
import stat
import struct
import sys
import time
from asyncio import trsock
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
import trustme
from anyio import wait_all_tasks_blocked

import asyncstreams

pytestmark = pytest.mark.anyio

T = TypeVar("T")

LOOPBACK = "127.0.0.1"


# --------------------------------------------------------------------------- helpers


async def in_asyncio(scenario: Callable[[], Awaitable[T]]) -> T:
    """Run *scenario* with real asyncio, in a worker thread: the oracle."""

    async def main() -> T:
        return await scenario()

    return await anyio.to_thread.run_sync(lambda: asyncio.run(main()))


#: The oracle is asyncio 3.13 (close_clients(), keep_alive=, 3.12's wait_closed()). On
#: older Pythons the written-out expectations in each test stand in for it.
ASYNCIO_IS_REFERENCE = sys.version_info >= (3, 13)


async def both(scenario: Callable[[Any], Awaitable[T]]) -> tuple[T, T]:
    """``(asyncstreams result, asyncio result)`` of the same scenario.

    Before Python 3.13 the asyncio result is asyncstreams' own, so only the test's
    written-out expectations check it.
    """
    ours = await scenario(asyncstreams)
    if not ASYNCIO_IS_REFERENCE:
        return ours, ours
    theirs = await in_asyncio(lambda: scenario(asyncio))
    return ours, theirs


def port_of(server: Any, family: int = socket.AF_INET) -> int:
    for sock in server.sockets:
        if sock.family == family:
            port: int = sock.getsockname()[1]
            return port
    raise AssertionError(f"no {family!r} socket in {server.sockets!r}")


async def close_writer(writer: Any) -> None:
    writer.close()
    with anyio.fail_after(10):
        try:
            await writer.wait_closed()
        except ConnectionError:
            pass  # the connection was reset: it is closed all the same


async def echo_lines(reader: Any, writer: Any) -> None:
    """Echo every line until EOF, then close (works with asyncio's streams too)."""
    try:
        async for line in reader:
            writer.write(line)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        await close_writer(writer)


async def round_trip(reader: Any, writer: Any, line: bytes) -> bytes:
    writer.write(line)
    await writer.drain()
    with anyio.fail_after(10):
        data: bytes = await reader.readline()
        return data


async def check_echo(streams: Any, port: int, host: str = LOOPBACK) -> bytes:
    """Connect, echo one line, close; return the echoed line."""
    with anyio.fail_after(10):
        reader, writer = await streams.open_connection(host, port)
    try:
        return await round_trip(reader, writer, b"echo\n")
    finally:
        await close_writer(writer)


async def connect_outcome(streams: Any, port: int) -> str:
    """'refused', or 'connected' (then the connection is closed again)."""
    try:
        with anyio.fail_after(10):
            _reader, writer = await streams.open_connection(LOOPBACK, port)
    except ConnectionRefusedError:
        return "refused"
    await close_writer(writer)
    return "connected"


@asynccontextmanager
async def serving(server: Any) -> AsyncIterator[Any]:
    """Close the server and wait for its clients on the way out, bounded."""
    try:
        yield server
    finally:
        server.close()
        with anyio.fail_after(10):
            await server.wait_closed()


async def until_blocked() -> None:
    with anyio.fail_after(10):
        await wait_all_tasks_blocked()


def _listen_info(sock: Any) -> tuple[int, int]:
    """A listening TCP socket's (accept queue length, backlog): Linux's tcp_info
    reports them as tcpi_unacked and tcpi_sacked."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    fields = struct.unpack_from("8B6I", info)
    assert fields[0] == 10  # TCP_LISTEN
    return fields[12], fields[13]


def listen_backlog(sock: Any) -> int:
    return _listen_info(sock)[1]


async def until_accepted(listener: Any) -> None:
    """Wait until the server has accept()ed the one connection queued on *listener*."""
    # Not yielding, the server cannot accept it: first see it queued, then see it go.
    deadline = time.monotonic() + 10
    while _listen_info(listener)[0] == 0:
        assert time.monotonic() < deadline, "the connection never reached the accept queue"
        time.sleep(0.001)
    with anyio.fail_after(10):
        while True:
            if _listen_info(listener)[0] == 0:
                break
            await anyio.sleep(0.01)  # polled: nothing signals an accept()
        await wait_all_tasks_blocked()  # and has done what it does with it


# --------------------------------------------------------------------------- basics


async def test_start_server_on_port_zero() -> None:
    server = await asyncstreams.start_server(echo_lines, LOOPBACK, 0)
    async with serving(server):
        assert isinstance(server, asyncstreams.Server)
        assert server.is_serving()
        sockets = server.sockets
        assert isinstance(sockets, tuple)
        assert len(sockets) == 1
        assert isinstance(sockets[0], trsock.TransportSocket)
        assert sockets[0].family == socket.AF_INET
        assert sockets[0].type == socket.SOCK_STREAM
        host, port = sockets[0].getsockname()
        assert host == LOOPBACK
        assert port != 0
        assert sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        assert repr(server) == f"<Server sockets={sockets!r}>"
        assert await check_echo(asyncstreams, port) == b"echo\n"
    assert not server.is_serving()
    assert server.sockets == ()


async def test_start_serving_false_then_start_serving_then_serve_forever() -> None:
    server = await asyncstreams.start_server(echo_lines, LOOPBACK, 0, start_serving=False)
    async with serving(server):
        port = port_of(server)
        assert not server.is_serving()
        # asyncio calls listen() only when serving starts: until then connects are refused.
        assert await connect_outcome(asyncstreams, port) == "refused"
        await server.start_serving()
        assert server.is_serving()
        assert await check_echo(asyncstreams, port) == b"echo\n"
        await server.start_serving()  # a no-op when serving already
        assert server.is_serving()
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve_forever)
            await until_blocked()
            assert server.is_serving()
            assert await check_echo(asyncstreams, port) == b"echo\n"
            with pytest.raises(
                RuntimeError, match=r"is already being awaited on serve_forever\(\)"
            ):
                await server.serve_forever()
            assert server.is_serving()  # the failed second call changed nothing
            tg.cancel_scope.cancel()
        # Cancelling serve_forever() closes the server, as in asyncio.
        assert not server.is_serving()
        assert server.sockets == ()
        assert await connect_outcome(asyncstreams, port) == "refused"


async def test_serve_forever_starts_serving() -> None:
    server = await asyncstreams.start_server(echo_lines, LOOPBACK, 0, start_serving=False)
    async with serving(server):
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(server.serve_forever)
                await until_blocked()
                assert server.is_serving()
                assert await check_echo(asyncstreams, port_of(server)) == b"echo\n"
                tg.cancel_scope.cancel()
        assert not server.is_serving()


async def test_serve_forever_on_closed_server_is_runtime_error() -> None:
    server = await asyncstreams.start_server(echo_lines, LOOPBACK, 0)
    server.close()
    with anyio.fail_after(10):
        await server.wait_closed()
        with pytest.raises(RuntimeError, match=r"^server <Server sockets=\(\)> is closed$"):
            await server.serve_forever()


async def test_serve_forever_cancelled_closes_server_and_waits_for_nothing_else() -> None:
    server = await asyncstreams.start_server(echo_lines, LOOPBACK, 0)
    port = port_of(server)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve_forever)
            await until_blocked()
            tg.cancel_scope.cancel()
        assert not server.is_serving()
        assert server.sockets == ()
        await server.wait_closed()  # no clients: fully closed
    assert await connect_outcome(asyncstreams, port) == "refused"
    # A cancelled serve_forever() can be followed by... nothing: the server is closed.
    with pytest.raises(RuntimeError, match="is closed"):
        await server.serve_forever()


async def test_close_ends_serve_forever(backend_id: str) -> None:
    # asyncio cancels serve_forever()'s future in close(): the awaiting task sees
    # CancelledError. On trio there is no such thing and serve_forever() returns.
    server = await asyncstreams.start_server(echo_lines, LOOPBACK, 0)
    outcome: list[str] = []

    async def serve() -> None:
        try:
            await server.serve_forever()
        except asyncio.CancelledError:
            outcome.append("CancelledError")
        else:
            outcome.append("returned")

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve)
            await until_blocked()
            server.close()
        await server.wait_closed()
    assert outcome == ["returned" if backend_id == "trio" else "CancelledError"]


# --------------------------------------------------------------------------- handlers


async def test_coroutine_function_handler() -> None:
    seen: list[tuple[type, type]] = []

    async def handler(reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter) -> None:
        seen.append((type(reader), type(writer)))
        await echo_lines(reader, writer)

    server = await asyncstreams.start_server(handler, LOOPBACK, 0)
    async with serving(server):
        assert await check_echo(asyncstreams, port_of(server)) == b"echo\n"
    assert seen == [(asyncstreams.StreamReader, asyncstreams.StreamWriter)]


async def test_plain_function_handler() -> None:
    # A plain callback returning None is called with (reader, writer), as asyncio does;
    # the connection is then the program's to use.
    connected: list[tuple[asyncstreams.StreamReader, asyncstreams.StreamWriter]] = []
    arrived = anyio.Event()

    def handler(reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter) -> None:
        connected.append((reader, writer))
        arrived.set()

    server = await asyncstreams.start_server(handler, LOOPBACK, 0)
    async with serving(server):
        with anyio.fail_after(10):
            reader, writer = await asyncstreams.open_connection(LOOPBACK, port_of(server))
        try:
            with anyio.fail_after(10):
                await arrived.wait()
            (server_reader, server_writer), *rest = connected
            assert rest == []
            try:
                writer.write(b"from client\n")
                with anyio.fail_after(10):
                    assert await server_reader.readline() == b"from client\n"
                server_writer.write(b"from server\n")
                with anyio.fail_after(10):
                    assert await reader.readline() == b"from server\n"
            finally:
                await close_writer(server_writer)
            with anyio.fail_after(10):
                assert await reader.read() == b""
        finally:
            await close_writer(writer)


class ExceptionHandlerLogs:
    """On asyncio, send the loop's exception handler calls to its default handler.

    anyio's test runner collects them to re-raise them at the end of the test; asyncio
    itself logs them to the 'asyncio' logger, which is what these tests look at.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: Any = None

    def __enter__(self) -> None:
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # trio
        self._previous = self._loop.get_exception_handler()
        self._loop.set_exception_handler(
            lambda loop, context: loop.default_exception_handler(context)
        )

    def __exit__(self, *exc_info: object) -> None:
        if self._loop is not None:
            self._loop.set_exception_handler(self._previous)


async def test_handler_exception_is_logged_and_closes_only_its_connection(
    backend_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    calls = 0

    async def handler(reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await reader.readline()
            raise RuntimeError("boom")
        await echo_lines(reader, writer)

    with ExceptionHandlerLogs():
        server = await asyncstreams.start_server(handler, LOOPBACK, 0)
        async with serving(server):
            port = port_of(server)
            with anyio.fail_after(10):
                reader, writer = await asyncstreams.open_connection(LOOPBACK, port)
            try:
                writer.write(b"trigger\n")
                with anyio.fail_after(10):
                    assert await reader.read() == b""  # asyncio closes the transport
            finally:
                await close_writer(writer)
            # The server keeps serving the next client.
            assert server.is_serving()
            assert await check_echo(asyncstreams, port) == b"echo\n"
    records = [
        r
        for r in caplog.records
        if r.getMessage().startswith("Unhandled exception in client_connected_cb")
    ]
    assert len(records) == 1
    record = records[0]
    assert record.levelno == logging.ERROR
    assert record.name == ("asyncstreams" if backend_id == "trio" else "asyncio")
    assert record.exc_info is not None
    exc = record.exc_info[1]
    assert isinstance(exc, RuntimeError)
    assert exc.args == ("boom",)


# --------------------------------------------------------------------------- close & co


async def scenario_close_keeps_clients(streams: Any) -> list[object]:
    """close() stops listening at once; connected clients keep working."""
    server = await streams.start_server(echo_lines, LOOPBACK, 0)
    port = port_of(server)
    with anyio.fail_after(10):
        reader, writer = await streams.open_connection(LOOPBACK, port)
    try:
        out: list[object] = [await round_trip(reader, writer, b"before\n")]
        server.close()
        out += [server.is_serving(), server.sockets]
        out.append(await connect_outcome(streams, port))
        out.append(await round_trip(reader, writer, b"after\n"))
    finally:
        await close_writer(writer)
    with anyio.fail_after(10):
        await server.wait_closed()
    return out


async def test_close_refuses_new_clients_and_keeps_old_ones() -> None:
    ours, theirs = await both(scenario_close_keeps_clients)
    assert theirs == [b"before\n", False, (), "refused", b"after\n"]
    assert ours == theirs


async def scenario_close_clients(streams: Any) -> list[object]:
    """close_clients(): the client and the handler see EOF; wait_closed() then returns."""
    arrived = anyio.Event()
    handler_done = anyio.Event()
    handler_read: list[bytes] = []

    async def handler(reader: Any, writer: Any) -> None:
        arrived.set()
        try:
            handler_read.append(await reader.read(100))
        finally:
            writer.close()
            handler_done.set()

    server = await streams.start_server(handler, LOOPBACK, 0)
    with anyio.fail_after(10):
        reader, writer = await streams.open_connection(LOOPBACK, port_of(server))
    try:
        with anyio.fail_after(10):
            await arrived.wait()
            server.close()
            server.close_clients()
            client_read = await reader.read(100)
            await handler_done.wait()
            await server.wait_closed()
    finally:
        await close_writer(writer)
    return [client_read, handler_read]


async def test_close_clients() -> None:
    ours, theirs = await both(scenario_close_clients)
    assert theirs == [b"", [b""]]
    assert ours == theirs


async def scenario_abort_clients(streams: Any) -> list[object]:
    """abort_clients(): unsent data is dropped, the connection ends without a flush."""
    payload = b"x" * (32 * 1024 * 1024)
    arrived = anyio.Event()
    handler_done = anyio.Event()

    async def handler(reader: Any, writer: Any) -> None:
        writer.write(payload)  # far more than the kernel buffers: the rest waits in ours
        arrived.set()
        try:
            await writer.drain()  # paused until the connection ends
        except ConnectionError:
            pass
        finally:
            writer.close()
            handler_done.set()

    server = await streams.start_server(handler, LOOPBACK, 0)
    with anyio.fail_after(10):
        reader, writer = await streams.open_connection(LOOPBACK, port_of(server))
    try:
        with anyio.fail_after(10):
            await arrived.wait()
            server.close()
            server.abort_clients()
            # The client is not reading: only an abort lets these finish.
            await handler_done.wait()
            await server.wait_closed()
            received = 0
            try:
                while data := await reader.read(1 << 20):
                    received += len(data)
                end = "eof"
            except ConnectionResetError:
                end = "reset"
    finally:
        await close_writer(writer)
    return [received < len(payload), end in ("eof", "reset")]


async def test_abort_clients() -> None:
    ours, theirs = await both(scenario_abort_clients)
    assert theirs == [True, True]
    assert ours == theirs


async def scenario_wait_closed(streams: Any) -> list[str]:
    """wait_closed() returns once closed *and* every client connection has ended."""
    events: list[str] = []
    arrived = anyio.Event()
    release = anyio.Event()

    async def handler(reader: Any, writer: Any) -> None:
        await reader.readline()
        arrived.set()
        await release.wait()
        events.append("handler closes its writer")
        writer.close()
        await writer.wait_closed()

    async def wait_closed(server: Any) -> None:
        await server.wait_closed()
        events.append("wait_closed returned")

    server = await streams.start_server(handler, LOOPBACK, 0)
    with anyio.fail_after(10):
        reader, writer = await streams.open_connection(LOOPBACK, port_of(server))
    try:
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                # Serving with no clients: wait_closed() waits (3.12.1+).
                tg.start_soon(wait_closed, server)
                writer.write(b"hello\n")
                await arrived.wait()
                await wait_all_tasks_blocked()
                events.append("close")
                server.close()
                await wait_all_tasks_blocked()
                events.append("release")
                release.set()
            assert await reader.read() == b""
            await server.wait_closed()  # once fully closed it returns at once
    finally:
        await close_writer(writer)
    return events


async def test_wait_closed_waits_for_client_connections() -> None:
    ours, theirs = await both(scenario_wait_closed)
    assert theirs == ["close", "release", "handler closes its writer", "wait_closed returned"]
    assert ours == theirs


@pytest.fixture(scope="session")
def server_tls_context() -> ssl.SSLContext:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(LOOPBACK).configure_cert(context)
    return context


async def scenario_wait_closed_during_handshake(streams: Any, context: ssl.SSLContext) -> list[str]:
    """A client still in its TLS handshake is a client: wait_closed() waits for it."""
    events: list[str] = []

    async def handler(reader: Any, writer: Any) -> None:
        events.append("handler called")  # never: the handshake does not complete
        writer.close()

    async def wait_closed(server: Any) -> None:
        await server.wait_closed()
        events.append("wait_closed returned")

    server = await streams.start_server(handler, LOOPBACK, 0, ssl=context)
    # A client that connects and never says hello.
    silent = socket.create_connection((LOOPBACK, port_of(server)), timeout=10)
    try:
        await until_accepted(server.sockets[0])
        with anyio.fail_after(20):
            server.close()
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait_closed, server)
                await wait_all_tasks_blocked()
                events.append("client leaves")
                silent.close()
    finally:
        silent.close()
    return events


@pytest.mark.skipif(sys.platform != "linux", reason="watches Linux's accept queue")
async def test_wait_closed_waits_for_clients_in_the_tls_handshake(
    server_tls_context: ssl.SSLContext,
) -> None:
    ours, theirs = await both(
        lambda streams: scenario_wait_closed_during_handshake(streams, server_tls_context)
    )
    assert theirs == ["client leaves", "wait_closed returned"]
    assert ours == theirs


async def scenario_async_with(streams: Any) -> list[object]:
    server = await streams.start_server(echo_lines, LOOPBACK, 0)
    async with server as entered:
        same = entered is server
        port = port_of(server)
        with anyio.fail_after(10):
            reader, writer = await streams.open_connection(LOOPBACK, port)
        writer.write(b"one\n")
        assert await reader.readline() == b"one\n"
        writer.write_eof()  # the handler's loop ends at EOF and closes its writer
        with anyio.fail_after(10):
            assert await reader.read() == b""
        await close_writer(writer)
    return [same, server.is_serving(), server.sockets, await connect_outcome(streams, port)]


async def test_async_with_closes_and_waits() -> None:
    ours, theirs = await both(scenario_async_with)
    assert theirs == [True, False, (), "refused"]
    assert ours == theirs


async def test_async_with_waits_for_handlers() -> None:
    release = anyio.Event()
    events: list[str] = []

    async def handler(reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter) -> None:
        await release.wait()
        events.append("handler closing")
        await close_writer(writer)

    async def exit_server(server: asyncstreams.Server) -> None:
        async with server:
            pass
        events.append("exited")

    server = await asyncstreams.start_server(handler, LOOPBACK, 0)
    with anyio.fail_after(10):
        reader, writer = await asyncstreams.open_connection(LOOPBACK, port_of(server))
    try:
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(exit_server, server)
                await wait_all_tasks_blocked()
                assert events == []
                release.set()
            assert await reader.read() == b""
    finally:
        await close_writer(writer)
    assert events == ["handler closing", "exited"]


# --------------------------------------------------------------------------- start_server options


async def scenario_all_interfaces(streams: Any, host: str | None) -> list[object]:
    server = await streams.start_server(echo_lines, host, 0)
    async with server:
        names = sorted((s.family, s.getsockname()[0]) for s in server.sockets)
        echoed = await check_echo(streams, port_of(server, socket.AF_INET))
    return [names, echoed]


@pytest.mark.parametrize("host", [None, ""], ids=["None", "empty"])
async def test_host_none_or_empty_binds_all_interfaces(host: str | None) -> None:
    ours, theirs = await both(lambda streams: scenario_all_interfaces(streams, host))
    assert ours == theirs
    names, echoed = ours
    assert (socket.AF_INET, "0.0.0.0") in names  # type: ignore[operator]
    assert echoed == b"echo\n"


async def test_host_list() -> None:
    server = await asyncstreams.start_server(echo_lines, [LOOPBACK, "::1"], 0)
    async with serving(server):
        hosts = sorted(s.getsockname()[0] for s in server.sockets)
        assert hosts == ["127.0.0.1", "::1"]
        v6 = [s for s in server.sockets if s.family == socket.AF_INET6]
        # One socket per family: no dual-stack socket (asyncio sets IPV6_V6ONLY).
        assert v6[0].getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
        assert await check_echo(asyncstreams, port_of(server, socket.AF_INET)) == b"echo\n"
        assert await check_echo(asyncstreams, port_of(server, socket.AF_INET6), "::1") == b"echo\n"


async def test_host_list_duplicates_bind_once() -> None:
    server = await asyncstreams.start_server(echo_lines, [LOOPBACK, LOOPBACK], 0)
    async with serving(server):
        assert len(server.sockets) == 1


async def test_family_inet() -> None:
    server = await asyncstreams.start_server(echo_lines, None, 0, family=socket.AF_INET)
    async with serving(server):
        assert [(s.family, s.getsockname()[0]) for s in server.sockets] == [
            (socket.AF_INET, "0.0.0.0")
        ]
        assert await check_echo(asyncstreams, port_of(server)) == b"echo\n"


async def test_pre_bound_sock() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((LOOPBACK, 0))
    try:
        server = await asyncstreams.start_server(echo_lines, sock=sock)
    except BaseException:
        sock.close()
        raise
    async with serving(server):
        assert [s.fileno() for s in server.sockets] == [sock.fileno()]
        assert server.sockets[0].getsockname() == sock.getsockname()
        assert await check_echo(asyncstreams, sock.getsockname()[1]) == b"echo\n"
        assert not sock.getblocking()  # asyncio makes it non-blocking
    # The server owned it: close() closed it, as asyncio's _stop_serving does.
    assert sock.fileno() == -1


@pytest.mark.skipif(sys.platform != "linux", reason="reads the backlog from Linux's tcp_info")
async def test_backlog() -> None:
    async def scenario(streams: Any) -> list[int]:
        server = await streams.start_server(echo_lines, LOOPBACK, 0, backlog=3)
        async with server:
            return [listen_backlog(server.sockets[0])]

    ours, theirs = await both(scenario)
    assert theirs == [3]
    assert ours == theirs
    default = await asyncstreams.start_server(echo_lines, LOOPBACK, 0)
    async with serving(default):
        assert listen_backlog(default.sockets[0]) == 100


async def test_small_backlog_still_serves_many_clients() -> None:
    # The accept loop takes at most `backlog` connections per wake-up, as asyncio's.
    server = await asyncstreams.start_server(echo_lines, LOOPBACK, 0, backlog=1)
    async with serving(server):
        port = port_of(server)
        results: list[bytes] = []
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for _ in range(10):

                    async def one() -> None:
                        results.append(await check_echo(asyncstreams, port))

                    tg.start_soon(one)
        assert results == [b"echo\n"] * 10


@pytest.mark.parametrize(
    ("reuse_address", "expected"), [(None, True), (True, True), (False, False)]
)
async def test_reuse_address(reuse_address: bool | None, expected: bool) -> None:
    # asyncio's default is True on POSIX (but not cygwin).
    server = await asyncstreams.start_server(echo_lines, LOOPBACK, 0, reuse_address=reuse_address)
    async with serving(server):
        value = server.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        assert bool(value) is expected


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="needs SO_REUSEPORT")
async def test_reuse_port_two_servers_on_one_port() -> None:
    first = await asyncstreams.start_server(echo_lines, LOOPBACK, 0, reuse_port=True)
    async with serving(first):
        port = port_of(first)
        assert first.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        second = await asyncstreams.start_server(echo_lines, LOOPBACK, port, reuse_port=True)
        async with serving(second):
            assert port_of(second) == port
            assert second.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
            for _ in range(4):
                assert await check_echo(asyncstreams, port) == b"echo\n"
        # Without reuse_port on the newcomer, the port is taken.
        with pytest.raises(OSError) as excinfo:
            await asyncstreams.start_server(echo_lines, LOOPBACK, port)
        assert excinfo.value.errno == errno.EADDRINUSE


async def scenario_keep_alive(
    streams: Any, keep_alive: bool | None, given_sock: bool
) -> list[bool]:
    options: list[bool] = []
    arrived = anyio.Event()

    async def handler(reader: Any, writer: Any) -> None:
        sock = writer.get_extra_info("socket")
        options.append(bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)))
        arrived.set()
        await echo_lines(reader, writer)

    if given_sock:
        sock = socket.socket()
        sock.bind((LOOPBACK, 0))
        server = await streams.start_server(handler, sock=sock, keep_alive=keep_alive)
    else:
        server = await streams.start_server(handler, LOOPBACK, 0, keep_alive=keep_alive)
    async with server:
        listening = bool(server.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE))
        with anyio.fail_after(10):
            _reader, writer = await streams.open_connection(LOOPBACK, port_of(server))
            await arrived.wait()
            await close_writer(writer)
    return [listening, *options]


@pytest.mark.parametrize("keep_alive", [True, False, None])
async def test_keep_alive(keep_alive: bool | None) -> None:
    ours, theirs = await both(lambda streams: scenario_keep_alive(streams, keep_alive, False))
    assert theirs == [bool(keep_alive)] * 2
    assert ours == theirs


async def test_keep_alive_is_ignored_with_sock() -> None:
    # asyncio sets SO_KEEPALIVE on the sockets it binds, never on a sock= it is given.
    ours, theirs = await both(lambda streams: scenario_keep_alive(streams, True, True))
    assert theirs == [False, False]
    assert ours == theirs


async def test_address_in_use_is_oserror_with_asyncios_message() -> None:
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen(1)
        port = taken.getsockname()[1]

        async def scenario(streams: Any) -> tuple[int | None, str]:
            try:
                server = await streams.start_server(echo_lines, LOOPBACK, port)
            except OSError as exc:
                return exc.errno, str(exc)
            server.close()
            raise AssertionError("bound an address in use")

        ours, theirs = await both(scenario)
    assert theirs[0] == errno.EADDRINUSE
    assert theirs[1].startswith(f"[Errno {errno.EADDRINUSE}] error while attempting to bind on")
    assert ours == theirs


async def scenario_limit(streams: Any) -> list[object]:
    results: list[object] = []
    done = anyio.Event()

    async def handler(reader: Any, writer: Any) -> None:
        try:
            results.append(await reader.readline())
            try:
                await reader.readline()
            except ValueError as exc:
                results.append(str(exc))
        finally:
            await close_writer(writer)
            done.set()

    server = await streams.start_server(handler, LOOPBACK, 0, limit=10)
    async with server:
        with anyio.fail_after(10):
            _reader, writer = await streams.open_connection(LOOPBACK, port_of(server))
            writer.write(b"short\n" + b"y" * 30 + b"\n")
            await done.wait()
            await close_writer(writer)
    return results


async def test_limit_reaches_the_handlers_reader() -> None:
    ours, theirs = await both(scenario_limit)
    assert theirs == [b"short\n", "Separator is found, but chunk is longer than limit"]
    assert ours == theirs


@pytest.mark.parametrize("limit", [0, -1])
async def test_non_positive_limit_is_value_error(limit: int) -> None:
    # asyncio raises it from the protocol factory, for each connection; we raise it early.
    with pytest.raises(ValueError, match=r"^Limit cannot be <= 0$"):
        await asyncstreams.start_server(echo_lines, LOOPBACK, 0, limit=limit)
    with pytest.raises(ValueError, match=r"^Limit cannot be <= 0$"):
        await asyncstreams.start_unix_server(echo_lines, sock=None, limit=limit)


def exists(path: str | Path) -> bool:
    # A quick local stat, kept out of the async functions on purpose.
    return os.path.exists(path)


def make_socket(kind: str) -> socket.socket:
    kinds = {
        "tcp": (socket.AF_INET, socket.SOCK_STREAM),
        "udp": (socket.AF_INET, socket.SOCK_DGRAM),
        "unix": (socket.AF_UNIX, socket.SOCK_STREAM),
        "unix-dgram": (socket.AF_UNIX, socket.SOCK_DGRAM),
    }
    return socket.socket(*kinds[kind])


START_SERVER_ERRORS: list[Any] = [
    pytest.param({"host": LOOPBACK, "port": 0, "sock": "tcp"}, id="host+port+sock"),
    pytest.param({"port": 0, "sock": "tcp"}, id="port+sock"),
    pytest.param({"host": LOOPBACK, "sock": "tcp"}, id="host+sock"),
    pytest.param({}, id="nothing"),
    pytest.param({"sock": "udp"}, id="datagram-sock"),
    pytest.param({"host": LOOPBACK, "port": 0, "ssl": True}, id="ssl-True"),
    pytest.param({"host": LOOPBACK, "port": 0, "ssl": False}, id="ssl-False"),
    pytest.param(
        {"host": LOOPBACK, "port": 0, "ssl_handshake_timeout": 1.0}, id="handshake-timeout"
    ),
    pytest.param({"host": LOOPBACK, "port": 0, "ssl_shutdown_timeout": 1.0}, id="shutdown-timeout"),
]


async def argument_error(start: Callable[..., Awaitable[Any]], kwargs: dict[str, Any]) -> str:
    kwargs = dict(kwargs)
    sock = None
    if "sock" in kwargs:
        sock = kwargs["sock"] = make_socket(kwargs["sock"])
    try:
        with pytest.raises((ValueError, TypeError)) as excinfo:
            await start(echo_lines, **kwargs)
    finally:
        if sock is not None:
            sock.close()
    # A socket's repr names its file descriptor: compare up to it.
    return f"{type(excinfo.value).__name__}: {str(excinfo.value).partition(' fd=')[0]}"


@pytest.mark.parametrize("kwargs", START_SERVER_ERRORS)
async def test_start_server_argument_errors(kwargs: dict[str, Any]) -> None:
    ours, theirs = await both(lambda streams: argument_error(streams.start_server, kwargs))
    assert ours == theirs


async def test_start_server_argument_error_messages() -> None:
    cases: dict[str, tuple[dict[str, Any], str]] = {
        "host+sock": (
            {"host": LOOPBACK, "sock": "tcp"},
            "ValueError: host/port and sock can not be specified at the same time",
        ),
        "nothing": ({}, "ValueError: Neither host/port nor sock were specified"),
        "ssl": (
            {"host": LOOPBACK, "port": 0, "ssl": True},
            "TypeError: ssl argument must be an SSLContext or None",
        ),
    }
    for kwargs, expected in cases.values():
        assert await argument_error(asyncstreams.start_server, kwargs) == expected


# --------------------------------------------------------------------------- UNIX servers


async def test_unix_server_round_trip(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    seen: list[tuple[Any, Any]] = []

    async def handler(reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter) -> None:
        seen.append((writer.get_extra_info("sockname"), writer.get_extra_info("peername")))
        await echo_lines(reader, writer)

    server = await asyncstreams.start_unix_server(handler, tmp_path / "s.sock")
    async with serving(server):
        assert server.is_serving()
        (sock,) = server.sockets
        assert isinstance(sock, trsock.TransportSocket)
        assert sock.family == socket.AF_UNIX
        assert sock.getsockname() == path
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        with anyio.fail_after(10):
            reader, writer = await asyncstreams.open_unix_connection(path)
        try:
            assert await round_trip(reader, writer, b"unix\n") == b"unix\n"
            assert writer.get_extra_info("peername") == path
        finally:
            await close_writer(writer)
    assert seen == [(path, "")]


async def scenario_unix_cleanup(streams: Any, path: str, cleanup: bool) -> list[bool]:
    server = await streams.start_unix_server(echo_lines, path, cleanup_socket=cleanup)
    seen = [exists(path)]
    server.close()
    seen.append(exists(path))  # asyncio unlinks it in close() itself
    with anyio.fail_after(10):
        await server.wait_closed()
    seen.append(exists(path))
    if exists(path):
        os.unlink(path)
    return seen


@pytest.mark.parametrize("cleanup", [True, False])
async def test_unix_cleanup_socket(tmp_path: Path, cleanup: bool) -> None:
    path = str(tmp_path / "c.sock")
    ours, theirs = await both(lambda streams: scenario_unix_cleanup(streams, path, cleanup))
    assert theirs == ([True, False, False] if cleanup else [True, True, True])
    assert ours == theirs


async def test_unix_cleanup_spares_a_replaced_socket_file(tmp_path: Path) -> None:
    path = str(tmp_path / "r.sock")
    server = await asyncstreams.start_unix_server(echo_lines, path)
    os.unlink(path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
        other.bind(path)  # someone else's socket now lives at that path
        server.close()
        with anyio.fail_after(10):
            await server.wait_closed()
        assert exists(path)  # different inode: left alone


async def test_unix_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    path = str(tmp_path / "stale.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(path)  # leaves the file behind, nobody listening
    assert exists(path)
    server = await asyncstreams.start_unix_server(echo_lines, path)
    async with serving(server):
        with anyio.fail_after(10):
            reader, writer = await asyncstreams.open_unix_connection(path)
        try:
            assert await round_trip(reader, writer, b"fresh\n") == b"fresh\n"
        finally:
            await close_writer(writer)


async def test_unix_path_taken_by_a_regular_file(tmp_path: Path) -> None:
    path = str(tmp_path / "file")
    await anyio.Path(path).write_text("not a socket")

    async def scenario(streams: Any) -> tuple[int | None, str]:
        with pytest.raises(OSError) as excinfo:
            await streams.start_unix_server(echo_lines, path)
        return excinfo.value.errno, str(excinfo.value)

    ours, theirs = await both(scenario)
    assert theirs == (
        errno.EADDRINUSE,
        f"[Errno {errno.EADDRINUSE}] Address {path!r} is already in use",
    )
    assert ours == theirs
    assert await anyio.Path(path).read_text() == "not a socket"


@pytest.mark.skipif(sys.platform != "linux", reason="abstract UNIX sockets are Linux's")
async def test_unix_abstract_socket(tmp_path: Path) -> None:
    name = f"\0asyncstreams-test-{os.getpid()}-{id(tmp_path)}"
    server = await asyncstreams.start_unix_server(echo_lines, name)
    async with serving(server):
        assert server.sockets[0].getsockname() == name.encode()
        with anyio.fail_after(10):
            reader, writer = await asyncstreams.open_unix_connection(name)
        try:
            assert await round_trip(reader, writer, b"abstract\n") == b"abstract\n"
        finally:
            await close_writer(writer)
    assert server.sockets == ()


async def test_unix_sock_given(tmp_path: Path) -> None:
    path = str(tmp_path / "given.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    try:
        server = await asyncstreams.start_unix_server(echo_lines, sock=sock)
    except BaseException:
        sock.close()
        raise
    async with serving(server):
        assert [s.fileno() for s in server.sockets] == [sock.fileno()]
        with anyio.fail_after(10):
            reader, writer = await asyncstreams.open_unix_connection(path)
        try:
            assert await round_trip(reader, writer, b"given\n") == b"given\n"
        finally:
            await close_writer(writer)
    assert sock.fileno() == -1
    assert not exists(path)  # cleanup_socket applies to a given socket too


UNIX_SERVER_ERRORS: list[Any] = [
    pytest.param({"path": "PATH", "sock": "unix"}, id="path+sock"),
    pytest.param({}, id="nothing"),
    pytest.param({"sock": "tcp"}, id="tcp-sock"),
    pytest.param({"sock": "unix-dgram"}, id="unix-datagram-sock"),
    pytest.param({"path": "PATH", "ssl": True}, id="ssl-True"),
    pytest.param({"path": "PATH", "ssl_handshake_timeout": 1.0}, id="handshake-timeout"),
]


@pytest.mark.parametrize("kwargs", UNIX_SERVER_ERRORS)
async def test_start_unix_server_argument_errors(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    kwargs = dict(kwargs)
    if kwargs.get("path") == "PATH":
        kwargs["path"] = str(tmp_path / "e.sock")
    ours, theirs = await both(lambda streams: argument_error(streams.start_unix_server, kwargs))
    assert ours == theirs
    assert not exists(tmp_path / "e.sock")


async def test_start_unix_server_wrong_family_message() -> None:
    assert await argument_error(asyncstreams.start_unix_server, {"sock": "tcp"}) == (
        "ValueError: A UNIX Domain Stream Socket was expected, got <socket.socket"
    )


# --------------------------------------------------------------------------- load, addresses


async def test_many_concurrent_clients() -> None:
    server = await asyncstreams.start_server(echo_lines, LOOPBACK, 0)
    async with serving(server):
        port = port_of(server)
        results: dict[int, list[bytes]] = {}

        async def client(n: int) -> None:
            reader, writer = await asyncstreams.open_connection(LOOPBACK, port)
            try:
                lines = [f"client {n} line {i}\n".encode() for i in range(5)]
                got = [await round_trip(reader, writer, line) for line in lines]
                writer.write_eof()
                assert await reader.read() == b""
                results[n] = got
            finally:
                await close_writer(writer)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for n in range(50):
                    tg.start_soon(client, n)
        assert results == {
            n: [f"client {n} line {i}\n".encode() for i in range(5)] for n in range(50)
        }


@pytest.mark.parametrize("host", [LOOPBACK, "::1"])
async def test_server_side_extra_info_matches_the_client(host: str) -> None:
    seen: list[dict[str, Any]] = []
    arrived = anyio.Event()

    async def handler(reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter) -> None:
        seen.append(
            {
                "peername": writer.get_extra_info("peername"),
                "sockname": writer.get_extra_info("sockname"),
                "socket": writer.get_extra_info("socket"),
            }
        )
        arrived.set()
        await echo_lines(reader, writer)

    server = await asyncstreams.start_server(handler, host, 0)
    async with serving(server):
        family = socket.AF_INET if host == LOOPBACK else socket.AF_INET6
        with anyio.fail_after(10):
            reader, writer = await asyncstreams.open_connection(host, port_of(server, family))
        try:
            with anyio.fail_after(10):
                await arrived.wait()
            (info,) = seen
            assert info["peername"] == writer.get_extra_info("sockname")
            assert info["sockname"] == writer.get_extra_info("peername")
            assert info["sockname"] == server.sockets[0].getsockname()
            assert isinstance(info["socket"], trsock.TransportSocket)
            assert info["socket"].getpeername() == info["peername"]
            assert await round_trip(reader, writer, b"x\n") == b"x\n"
        finally:
            await close_writer(writer)
