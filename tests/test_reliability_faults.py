"""Faults: peers that reset or half-close, servers closed under their clients, handlers
that fail, and a process that runs out of file descriptors.

The misbehaving peer is a plain non-blocking socket driven by the test, so that what
it does on the wire (a reset with ``SO_LINGER`` 0, a half close) does not depend on the
library under test. Where the scenario is the same code for both libraries it runs on
asyncstreams under the test's backend and on real asyncio in a worker thread, and the
two must agree; every wait is bounded, so "never a hang" is part of each assertion.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import struct
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from _reliability import (
    ASYNCIO_IS_REFERENCE,
    LOOPBACK,
    WAIT,
    assert_fds_released,
    backend_name,
    both,
    close_writer,
    no_background_errors,
    open_fds,
    outcome_of,
    port_of,
    serving,
    until_blocked,
)

import asyncstreams

pytestmark = pytest.mark.anyio

#: More than loopback's socket buffers hold, so a peer that does not read blocks us.
BIG = 32 * 1024 * 1024


# -- a raw peer ------------------------------------------------------------------------


@asynccontextmanager
async def raw_peer(streams: Any) -> AsyncIterator[tuple[Any, Any, socket.socket]]:
    """``(reader, writer, peer)``: a *streams* client connected to a raw socket."""
    with socket.create_server((LOOPBACK, 0)) as listener:
        listener.setblocking(False)
        with anyio.fail_after(WAIT):
            reader, writer = await streams.open_connection(*listener.getsockname())
            await anyio.wait_readable(listener)
        peer, _ = listener.accept()
    peer.setblocking(False)
    try:
        yield reader, writer, peer
    finally:
        peer.close()
        await close_writer(writer)


def reset(peer: socket.socket) -> None:
    """Close *peer* with an RST instead of a FIN."""
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()


async def recv_all(peer: socket.socket) -> bytes:
    """Everything *peer* receives until EOF."""
    data = bytearray()
    with anyio.fail_after(WAIT):
        while True:
            await anyio.wait_readable(peer)
            try:
                chunk = peer.recv(1 << 20)
            except BlockingIOError:
                continue
            if not chunk:
                return bytes(data)
            data += chunk


async def outcome(coro: Any) -> str:
    """How an awaitable ended: ``ok``/``returned b'...'`` or the exception's type and args."""
    try:
        with anyio.fail_after(WAIT):
            result = await coro
    except Exception as exc:
        if isinstance(exc, TimeoutError):
            raise AssertionError("hung instead of failing") from exc
        if isinstance(exc, OSError) and exc.errno is not None:
            return f"{type(exc).__name__} errno={exc.errno}"
        return outcome_of(exc)
    return "ok" if result is None else f"returned {result!r}"


# -- the peer resets the connection ------------------------------------------------------


async def scenario_reset_while_reading(streams: Any) -> list[str]:
    async with raw_peer(streams) as (reader, writer, peer):
        peer.send(b"partial line, no newline")
        results: list[str] = []
        async with anyio.create_task_group() as tg:

            async def read() -> None:
                results.append(await outcome(reader.readline()))

            tg.start_soon(read)
            await until_blocked()
            reset(peer)
        writer.write(b"after the reset")
        results.append(await outcome(writer.drain()))
        results.append(await outcome(reader.read()))
        writer.close()
        results.append(await outcome(writer.wait_closed()))
        return results


async def test_peer_reset_while_reading() -> None:
    ours, theirs = await both(scenario_reset_while_reading)
    reset_error = "ConnectionResetError errno=104"
    assert theirs == [reset_error] * 4
    assert ours == theirs


async def scenario_reset_while_draining(streams: Any) -> list[str]:
    async with raw_peer(streams) as (reader, writer, peer):
        writer.write(b"x" * BIG)  # the peer reads nothing: drain() must wait
        results: list[str] = []
        async with anyio.create_task_group() as tg:

            async def drain() -> None:
                results.append(await outcome(writer.drain()))

            tg.start_soon(drain)
            await until_blocked()
            reset(peer)
        results.append(await outcome(reader.read()))
        writer.close()
        results.append(await outcome(writer.wait_closed()))
        return results


async def test_peer_reset_while_draining_a_full_buffer() -> None:
    ours, theirs = await both(scenario_reset_while_draining)
    # recv() or send() sees the reset first: ECONNRESET either way on Linux.
    assert theirs == ["ConnectionResetError errno=104"] * 3
    assert ours == theirs


async def scenario_reset_while_not_reading(streams: Any, *, batched: bool) -> list[str]:
    async with raw_peer(streams) as (reader, writer, peer):
        # More than twice the reader's limit: the transport stops receiving, so the
        # reset is first seen by the next send, not by a receive.
        unsent = memoryview(b"x" * 256 * 1024)
        with anyio.fail_after(WAIT):
            while unsent:
                await anyio.wait_writable(peer)
                unsent = unsent[peer.send(unsent) :]
            # No event tells when the reader holds it all, on either library: poll.
            while len(reader._buffer) <= 2 * 2**16:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        await anyio.sleep(0.05)
        if batched:
            # Writes made in a row and drained: asyncstreams joins the next ones from
            # the first, so the failing send is drain()'s, not write()'s. Nothing may
            # run in between (the loop's next pass ends the batch): the reset arrives
            # while the thread sleeps.
            writer.write(b"a")
            writer.write(b"b")
            await writer.drain()
            reset(peer)
            time.sleep(0.05)
            writer.write(b"after ")
            writer.write(b"the reset")
        else:
            reset(peer)
            await anyio.sleep(0.05)
            writer.write(b"after the reset")
        results = [await outcome(writer.drain())]
        results.append(await outcome(reader.read(10)))
        writer.close()
        results.append(await outcome(writer.wait_closed()))
        return results


@pytest.mark.parametrize("batched", [False, True], ids=["one-write", "writes-in-a-row"])
async def test_peer_reset_seen_by_send(batched: bool) -> None:
    ours, theirs = await both(functools.partial(scenario_reset_while_not_reading, batched=batched))
    # The send fails inside write(): the connection is closing at once, and the error
    # reaches the reader a loop pass later, so drain() reports the lost connection.
    assert theirs == [
        "ConnectionResetError('Connection lost',)",
        "ConnectionResetError errno=104",
        "ConnectionResetError errno=104",
    ]
    assert ours == theirs


async def scenario_reset_during_wait_closed(streams: Any) -> list[str]:
    async with raw_peer(streams) as (_reader, writer, peer):
        writer.write(b"x" * BIG)
        writer.close()  # the flush cannot finish: wait_closed() waits
        results: list[str] = []
        async with anyio.create_task_group() as tg:

            async def wait_closed() -> None:
                results.append(await outcome(writer.wait_closed()))

            tg.start_soon(wait_closed)
            await until_blocked()
            reset(peer)
        return results


async def test_peer_reset_during_wait_closed() -> None:
    ours, theirs = await both(scenario_reset_during_wait_closed)
    # The send fails: wait_closed() raises the connection's error, as drain() does.
    assert theirs == ["ConnectionResetError errno=104"]
    assert ours == theirs


async def test_client_reset_does_not_disturb_the_server(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A client resets mid-line: its handler gets ConnectionResetError, others carry on."""
    seen: list[str] = []
    got_partial = anyio.Event()

    async def handler(reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter) -> None:
        first = await reader.read(1)
        if first == b"r":
            got_partial.set()
            seen.append(await outcome(reader.readline()))
        else:
            writer.write(first + await reader.readline())
            await writer.drain()
        await close_writer(writer)

    with no_background_errors(caplog):
        baseline = open_fds()
        server = await asyncstreams.start_server(handler, LOOPBACK, 0)
        async with serving(server):
            victim = socket.create_connection((LOOPBACK, port_of(server)))
            victim.send(b"reset me")
            with anyio.fail_after(WAIT):
                await got_partial.wait()
            await until_blocked()
            reset(victim)
            for i in range(3):
                reader, writer = await asyncstreams.open_connection(LOOPBACK, port_of(server))
                writer.write(b"ping %d\n" % i)
                with anyio.fail_after(WAIT):
                    assert await reader.readline() == b"ping %d\n" % i
                await close_writer(writer)
        await assert_fds_released(baseline, "server after a client reset")
    assert seen == ["ConnectionResetError errno=104"]


# -- the peer half-closes ----------------------------------------------------------------


async def scenario_peer_half_closes(streams: Any) -> list[object]:
    async with raw_peer(streams) as (reader, writer, peer):
        peer.send(b"request without a newline")
        peer.shutdown(socket.SHUT_WR)
        results: list[object] = [await outcome(reader.readexactly(100))]
        results += [reader.at_eof(), await outcome(reader.readline())]
        results.append(await outcome(reader.read()))
        # Our side is still open for writing: the answer gets through, then our EOF.
        writer.write(b"response")
        results.append(await outcome(writer.drain()))
        writer.close()
        results.append(await outcome(writer.wait_closed()))
        results.append(await recv_all(peer))
        return results


async def test_peer_half_closes() -> None:
    ours, theirs = await both(scenario_peer_half_closes)
    assert theirs == [
        "IncompleteReadError('25 bytes read on a total of 100 expected bytes',)",
        True,
        "returned b''",
        "returned b''",
        "ok",
        "ok",
        b"response",
    ]
    assert ours == theirs


async def scenario_we_half_close(streams: Any) -> list[object]:
    async with raw_peer(streams) as (reader, writer, peer):
        writer.write(b"request")
        writer.write_eof()
        results: list[object] = [await recv_all(peer), writer.is_closing()]
        peer.send(b"answer after your EOF")
        peer.shutdown(socket.SHUT_WR)
        results.append(await outcome(reader.read()))
        writer.close()
        results.append(await outcome(writer.wait_closed()))
        return results


async def test_we_half_close_and_still_read() -> None:
    ours, theirs = await both(scenario_we_half_close)
    assert theirs == [b"request", False, "returned b'answer after your EOF'", "ok"]
    assert ours == theirs


# -- the server is closed with clients connected ------------------------------------------

RESPONSE = 24 * 1024 * 1024  # more than the kernel buffers: part of it waits in ours


async def scenario_close_with_clients(streams: Any, how: str) -> list[object]:
    """Two clients each have a big response on its way; then the server is closed *how*."""
    answered = 0
    all_answered = anyio.Event()

    async def handler(reader: Any, writer: Any) -> None:
        nonlocal answered
        await reader.readline()
        writer.write(b"r" * RESPONSE)
        answered += 1
        if answered == 2:
            all_answered.set()
        try:
            await writer.drain()
            await reader.read()  # until the client's EOF
        except ConnectionError:
            pass
        finally:
            await close_writer(writer)

    async def client_reads(reader: Any, writer: Any, results: list[object]) -> None:
        received = 0
        try:
            with anyio.fail_after(WAIT):
                while data := await reader.read(1 << 20):
                    received += len(data)
                    if received == RESPONSE:
                        writer.write_eof()  # done: the handler may close
            end = "eof"
        except ConnectionResetError:
            end = "reset"
        results.append(("all" if received == RESPONSE else "part", end))

    server = await streams.start_server(handler, LOOPBACK, 0)
    port = port_of(server)
    clients = []
    for _ in range(2):
        with anyio.fail_after(WAIT):
            clients.append(await streams.open_connection(LOOPBACK, port))
    for _, writer in clients:
        writer.write(b"hello\n")
    with anyio.fail_after(WAIT):
        await all_answered.wait()
    results: list[object] = []
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            if how == "async with":
                # Only the clients' reading lets the handlers finish and the exit return.
                for reader, writer in clients:
                    tg.start_soon(client_reads, reader, writer, results)
                async with server:
                    pass
            else:
                server.close()
                if how == "close_clients":
                    server.close_clients()
                elif how == "abort_clients":
                    server.abort_clients()
                for reader, writer in clients:
                    tg.start_soon(client_reads, reader, writer, results)
                await server.wait_closed()
        results.append(await outcome(streams.open_connection(LOOPBACK, port)))
    for _, writer in clients:
        await close_writer(writer)
    return sorted(results[:2], key=str) + results[2:]


CLOSE_EXPECTED = {
    # close(): the clients are untouched; wait_closed() returns once they have left.
    "close": [("all", "eof"), ("all", "eof")],
    # close_clients(): each connection is closed after its buffered data is sent.
    "close_clients": [("all", "eof"), ("all", "eof")],
    # abort_clients(): the buffered data is dropped.
    "abort_clients": [("part", "eof"), ("part", "eof")],
    "async with": [("all", "eof"), ("all", "eof")],
}


@pytest.mark.parametrize("how", list(CLOSE_EXPECTED))
async def test_server_closed_with_clients_connected(
    how: str, caplog: pytest.LogCaptureFixture
) -> None:
    with no_background_errors(caplog):
        baseline = open_fds()
        ours, theirs = await both(lambda streams: scenario_close_with_clients(streams, how))
        await assert_fds_released(baseline, f"server closed with {how}")
    refused = "ConnectionRefusedError errno=111"
    if ASYNCIO_IS_REFERENCE:
        assert theirs[:2] in (CLOSE_EXPECTED[how], [("part", "reset")] * 2)
        assert theirs[2] == refused
    assert ours == [*CLOSE_EXPECTED[how], refused]


# -- handlers that fail --------------------------------------------------------------------


def handler_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.getMessage().startswith("Unhandled exception in client_connected_cb")
    ]


async def test_failing_handlers_are_isolated(caplog: pytest.LogCaptureFixture) -> None:
    """Of twelve concurrent clients, every third handler raises in mid-conversation.

    Each failure is reported once (asyncio: the loop's exception handler, logged here
    by asyncio's default one; trio: the ``asyncstreams`` logger) and closes only its
    own connection; the other clients, and later ones, are served.
    """
    caplog.set_level(logging.WARNING)
    loop = asyncio.get_running_loop() if backend_name() == "asyncio" else None
    if loop is not None:
        previous = loop.get_exception_handler()
        loop.set_exception_handler(lambda loop, context: loop.default_exception_handler(context))

    async def handler(reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter) -> None:
        number = int(await reader.readline())
        writer.write(b"first answer\n")
        await writer.drain()
        await reader.readline()
        if number % 3 == 0:
            raise ValueError(f"handler {number} fails")
        writer.write(b"second answer\n")
        await close_writer(writer)

    results: dict[int, list[bytes]] = {}

    async def client(port: int, number: int) -> None:
        reader, writer = await asyncstreams.open_connection(LOOPBACK, port)
        writer.write(b"%d\n" % number)
        first = await reader.readline()
        writer.write(b"go on\n")
        results[number] = [first, await reader.readline(), await reader.read()]
        await close_writer(writer)

    try:
        baseline = open_fds()
        server = await asyncstreams.start_server(handler, LOOPBACK, 0)
        async with serving(server):
            with anyio.fail_after(WAIT):
                async with anyio.create_task_group() as tg:
                    for number in range(12):
                        tg.start_soon(client, port_of(server), number)
                assert server.is_serving()
                await client(port_of(server), 100)
        await assert_fds_released(baseline, "failing handlers")
    finally:
        if loop is not None:
            loop.set_exception_handler(previous)
    for number, got in results.items():
        second = b"" if number % 3 == 0 else b"second answer\n"
        assert got == [b"first answer\n", second, b""], number
    errors = handler_errors(caplog)
    assert sorted(str(r.exc_info[1]) for r in errors if r.exc_info) == [
        f"handler {n} fails" for n in (0, 3, 6, 9)
    ]
    assert all(r.levelno == logging.ERROR for r in errors)
    others = [r for r in caplog.records if r not in errors]
    assert not others, [r.getMessage() for r in others]


async def scenario_handler_cancels_itself(streams: Any) -> list[object]:
    """asyncio: a handler task that is cancelled; its connection is closed, silently."""

    async def handler(reader: Any, writer: Any) -> None:
        await reader.readline()
        writer.write(b"bye\n")
        asyncio.current_task().cancel()  # type: ignore[union-attr]
        await asyncio.sleep(WAIT)

    server = await streams.start_server(handler, LOOPBACK, 0)
    async with serving(server):
        reader, writer = await streams.open_connection(LOOPBACK, port_of(server))
        writer.write(b"hi\n")
        results: list[object] = [await outcome(reader.read())]
        await close_writer(writer)
        results.append(server.is_serving())
    return results


async def test_cancelled_handler_closes_its_connection(
    backend_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    if backend_id == "trio":
        pytest.skip("asyncio tasks only: on trio see test_cancelled_handlers_close_...")
    with no_background_errors(caplog):
        ours, theirs = await both(scenario_handler_cancels_itself)
    assert theirs == ["returned b'bye\\n'", True]
    assert ours == theirs


# -- out of file descriptors ----------------------------------------------------------------

SPARE_FDS = 5
CLIENTS = SPARE_FDS + 3


@pytest.mark.skipif(sys.platform != "linux", reason="counts descriptors in /proc")
@pytest.mark.parametrize("start", ["warm", "cold"])
async def test_accept_loop_backs_off_and_recovers_when_out_of_descriptors(
    start: str, backend_id: str, request: pytest.FixtureRequest
) -> None:
    """A server process with room for five more descriptors gets eight clients.

    The accept loop hits EMFILE, logs it and backs off instead of spinning or dying;
    once the first clients leave and free their descriptors, it accepts the others.
    No client is dropped on the way: asyncio's own server serves all eight too.
    ``warm``: the server has served a connection before; ``cold``: it finds the eight
    waiting when it starts, before it has set up any connection.
    """
    script = Path(__file__).with_name("_fd_limit_server.py")
    process = await anyio.open_process(
        [sys.executable, str(script), backend_id, str(SPARE_FDS), start], stderr=None
    )
    assert process.stdin is not None
    assert process.stdout is not None
    lines: list[str] = []
    backoff = anyio.Event()
    ready: list[int] = []
    ready_event = anyio.Event()

    async def read_output() -> None:
        assert process.stdout is not None
        buffered = b""
        async for chunk in process.stdout:
            buffered += chunk
            *complete, buffered = buffered.split(b"\n")
            for raw in complete:
                line = raw.decode()
                lines.append(line)
                if line.startswith("READY "):
                    ready.append(int(line.split()[1]))
                    ready_event.set()
                if "out of system resource" in line:
                    backoff.set()

    echoed: list[int] = []
    release = anyio.Event()
    connected = 0
    all_connected = anyio.Event()

    async def client(port: int, number: int) -> None:
        nonlocal connected
        reader, writer = await asyncstreams.open_connection(LOOPBACK, port)
        connected += 1
        if connected == CLIENTS:
            all_connected.set()
        try:
            writer.write(b"client %d\n" % number)
            with anyio.fail_after(WAIT):
                assert await reader.readline() == b"client %d\n" % number
            echoed.append(number)
            await release.wait()
            writer.write_eof()
            with anyio.fail_after(WAIT):
                assert await reader.read() == b""
        finally:
            await close_writer(writer)

    try:
        with anyio.fail_after(3 * WAIT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(read_output)
                await ready_event.wait()
                async with anyio.create_task_group() as clients:
                    for number in range(CLIENTS):
                        clients.start_soon(client, ready[0], number)
                    await all_connected.wait()  # all in the backlog: then start serving
                    if start == "cold":
                        await process.stdin.send(b"serve\n")
                    await backoff.wait()
                    # Out of descriptors, nobody leaving: at most SPARE_FDS are served.
                    await anyio.sleep(0.2)
                    served_while_full = len(echoed)
                    release.set()
                await process.stdin.aclose()
                await process.wait()
                tg.cancel_scope.cancel()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert 1 <= served_while_full <= SPARE_FDS < CLIENTS
    assert sorted(echoed) == list(range(CLIENTS))  # ... and then it recovered
    assert process.returncode == 0, lines
    assert lines[-1] == "CLOSED"
    assert "SERVING" in lines
    logged = [line for line in lines if line.startswith("LOG ")]
    assert logged, lines
    assert all("out of system resource" in line for line in logged), logged
