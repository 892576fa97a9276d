"""Cancellation at every await point, the way each backend's users cancel.

On asyncio (and uvloop) an operation is cancelled with ``task.cancel()`` once it is
blocked, or by ``asyncio.wait_for`` timing out; on trio with ``CancelScope.cancel()``
or ``trio.move_on_after``. Each test checks the guarantees of docs/reliability.md:
no byte lost from the reader or the writer, no descriptor left open, nothing logged
in the background (no "Task exception was never retrieved"; unraisable exceptions fail
the test through ``filterwarnings = error``), and the connection still usable where
asyncio leaves it usable.
"""

from __future__ import annotations

import asyncio
import random
import socket
import ssl
from collections.abc import Awaitable, Callable

import anyio
import anyio.lowlevel
import pytest
import trustme
from _reliability import (
    CANCEL_STYLES,
    LOOPBACK,
    WAIT,
    assert_fds_released,
    backend_name,
    cancel_when_blocked,
    close_writer,
    no_background_errors,
    open_fds,
    port_of,
    serving,
    until_blocked,
)

import asyncstreams
from asyncstreams import StreamReader, StreamWriter

pytestmark = pytest.mark.anyio


@pytest.fixture(params=CANCEL_STYLES)
def style(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


def buffered(reader: StreamReader) -> int:
    """Bytes received and not yet read (the reader's private buffer)."""
    return len(reader._buffer)


async def until_buffered(reader: StreamReader, n: int) -> None:
    """Wait until the background receiver has put *n* bytes in the reader."""
    with anyio.fail_after(WAIT):
        while True:  # polled: nothing signals that the receiver fed the reader
            if buffered(reader) >= n:
                return
            await anyio.sleep(0.001)


# -- connect ---------------------------------------------------------------------------


async def test_cancelled_connect_leaks_nothing(
    style: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A listener whose accept queue is full: Linux drops the SYN, so connect() waits.
    listener = socket.socket()
    listener.bind((LOOPBACK, 0))
    listener.listen(0)
    filler = socket.create_connection(listener.getsockname())
    try:
        with no_background_errors(caplog):
            baseline = open_fds()
            await cancel_when_blocked(
                lambda: asyncstreams.open_connection(*listener.getsockname()), style
            )
            await assert_fds_released(baseline, "cancelled open_connection()")
    finally:
        filler.close()
        listener.close()


@pytest.fixture(scope="module")
def client_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    trustme.CA().configure_trust(context)
    return context


async def test_cancelled_tls_handshake_in_open_connection_leaks_nothing(
    style: str, client_context: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    async def silent(reader: StreamReader, writer: StreamWriter) -> None:
        await reader.read()  # never answers the ClientHello
        await close_writer(writer)

    with no_background_errors(caplog):
        baseline = open_fds()
        server = await asyncstreams.start_server(silent, LOOPBACK, 0)
        async with serving(server):
            await cancel_when_blocked(
                lambda: asyncstreams.open_connection(
                    LOOPBACK, port_of(server), ssl=client_context, server_hostname=LOOPBACK
                ),
                style,
            )
        await assert_fds_released(baseline, "open_connection(ssl=) cancelled in the handshake")


# -- reads -----------------------------------------------------------------------------

ReadOp = Callable[[StreamReader], Awaitable[bytes]]

#: name: (the read, what the peer sends before the cancellation, what it sends after,
#: what the read then returns). Everything sent must then be read, in order.
READS: dict[str, tuple[ReadOp, bytes, bytes, bytes]] = {
    "read(n)": (lambda r: r.read(100), b"", b"data", b"data"),
    "read()": (lambda r: r.read(), b"gathered ", b"then EOF", b"gathered then EOF"),
    "readline": (lambda r: r.readline(), b"no newline ", b"yet\nnext\n", b"no newline yet\n"),
    "readuntil": (lambda r: r.readuntil(b"<END>"), b"abc<EN", b"D>rest", b"abc<END>"),
    "readuntil(tuple)": (
        lambda r: r.readuntil((b"<END>", b"|")),
        b"abc<EN",
        b"D>|rest",
        b"abc<END>",
    ),
    "readexactly": (lambda r: r.readexactly(12), b"1234567", b"89abcdef", b"123456789abc"),
    "__anext__": (lambda r: r.__anext__(), b"partial ", b"line\n", b"partial line\n"),
}


@pytest.mark.parametrize("name", list(READS))
async def test_cancelled_read_loses_no_byte(
    name: str, style: str, caplog: pytest.LogCaptureFixture
) -> None:
    op, before, after, expected = READS[name]
    go = anyio.Event()

    async def handler(reader: StreamReader, writer: StreamWriter) -> None:
        writer.write(before)
        await writer.drain()
        await go.wait()
        writer.write(after)
        await close_writer(writer)

    with no_background_errors(caplog):
        baseline = open_fds()
        server = await asyncstreams.start_server(handler, LOOPBACK, 0)
        async with serving(server):
            reader, writer = await asyncstreams.open_connection(LOOPBACK, port_of(server))
            try:
                await until_buffered(reader, len(before))
                await cancel_when_blocked(lambda: op(reader), style)
                assert buffered(reader) == len(before)  # the cancelled read took nothing
                go.set()
                with anyio.fail_after(WAIT):
                    first = await op(reader)  # the same read again: it gets it all
                    rest = await reader.read()
                assert first == expected
                assert first + rest == before + after
            finally:
                await close_writer(writer)
        await assert_fds_released(baseline, f"cancelled {name}")


# -- drain -----------------------------------------------------------------------------


#: More than loopback's socket buffers can hold (Linux autotunes them up to ~10 MiB
#: per connection), so a peer that does not read makes drain() and close() wait.
BIG = 32 * 1024 * 1024


def pattern(n: int, seed: int = 0) -> bytes:
    """*n* bytes that show any loss, duplication or reordering."""
    return random.Random(seed).randbytes(n)


async def test_cancelled_drain_loses_no_byte(style: str, caplog: pytest.LogCaptureFixture) -> None:
    payload = pattern(BIG)
    go = anyio.Event()
    received: list[bytes] = []
    done = anyio.Event()

    async def handler(reader: StreamReader, writer: StreamWriter) -> None:
        await go.wait()  # not reading: the client's drain() blocks
        received.append(await reader.read())
        done.set()
        await close_writer(writer)

    with no_background_errors(caplog):
        baseline = open_fds()
        server = await asyncstreams.start_server(handler, LOOPBACK, 0)
        async with serving(server):
            _reader, writer = await asyncstreams.open_connection(LOOPBACK, port_of(server))
            try:
                writer.write(payload)
                await cancel_when_blocked(writer.drain, style)
                go.set()
                # The writer goes on working: more data, a drain, a half close.
                writer.write(b"after")
                with anyio.fail_after(WAIT):
                    await writer.drain()
                writer.write_eof()
                with anyio.fail_after(WAIT):
                    await done.wait()
            finally:
                await close_writer(writer)
        await assert_fds_released(baseline, "cancelled drain()")
    assert received == [payload + b"after"]


# -- wait_closed ------------------------------------------------------------------------


async def test_cancelled_wait_closed_still_closes_and_delivers(
    style: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Differs from asyncio: there, cancelling wait_closed() cancels the connection's
    # shared close future, so every later wait_closed() raises CancelledError.
    payload = pattern(BIG, seed=1)
    go = anyio.Event()
    received: list[bytes] = []
    done = anyio.Event()

    async def handler(reader: StreamReader, writer: StreamWriter) -> None:
        await go.wait()
        received.append(await reader.read())
        done.set()
        await close_writer(writer)

    with no_background_errors(caplog):
        baseline = open_fds()
        server = await asyncstreams.start_server(handler, LOOPBACK, 0)
        async with serving(server):
            _reader, writer = await asyncstreams.open_connection(LOOPBACK, port_of(server))
            writer.write(payload)
            writer.close()  # flushing 32 MiB the peer does not read: wait_closed() waits
            await cancel_when_blocked(writer.wait_closed, style)
            go.set()
            with anyio.fail_after(WAIT):
                await writer.wait_closed()  # the close went on without its waiter
                await done.wait()
        await assert_fds_released(baseline, "cancelled wait_closed()")
    assert received == [payload]


# -- start_tls -------------------------------------------------------------------------


async def test_cancelled_start_tls_closes_the_connection(
    style: str, client_context: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    # As in asyncio (loop.start_tls closes the transport when its waiter is cancelled),
    # the connection is closed. Differs from asyncio: there, the stream protocol never
    # hears of it, so the reader never sees EOF and wait_closed() never returns.
    handler_saw: list[bytes] = []
    hello = anyio.Event()

    async def handler(reader: StreamReader, writer: StreamWriter) -> None:
        handler_saw.append(await reader.readline())
        handler_saw.append(await reader.read(5))  # a TLS record header, or EOF
        hello.set()
        handler_saw.append(await reader.read())  # the rest of it, then EOF
        await close_writer(writer)

    with no_background_errors(caplog):
        baseline = open_fds()
        server = await asyncstreams.start_server(handler, LOOPBACK, 0)
        async with serving(server):
            reader, writer = await asyncstreams.open_connection(LOOPBACK, port_of(server))
            writer.write(b"STARTTLS\n")
            await cancel_when_blocked(
                lambda: writer.start_tls(client_context, server_hostname=LOOPBACK),
                style,
                ready=hello,  # the explicit style cancels in mid-handshake
            )
            assert writer.is_closing()
            with anyio.fail_after(WAIT):
                assert await reader.read() == b""
                assert await close_writer(writer) == "ok"
        await assert_fds_released(baseline, "cancelled start_tls()")
    assert handler_saw[0] == b"STARTTLS\n"
    if style == "explicit":
        assert handler_saw[1].startswith(b"\x16\x03")  # a TLS handshake record


# -- serve_forever ---------------------------------------------------------------------


async def test_cancelled_serve_forever_closes_the_server_and_keeps_clients(
    style: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The server closes; its client's connection outlives it.

    On asyncio the cancelled serve_forever() then waits for the clients to leave
    (3.12+); on trio the cancel scope ends it at once (see Server.serve_forever).
    """

    async def echo(reader: StreamReader, writer: StreamWriter) -> None:
        async for line in reader:
            writer.write(line)
            await writer.drain()
        await close_writer(writer)

    async def client_leaves_after_close(reader: StreamReader, writer: StreamWriter) -> None:
        with anyio.fail_after(WAIT):
            while True:  # polled: nothing signals the end of serve_forever()
                if not server.is_serving():
                    break
                await anyio.sleep(0.01)
            writer.write(b"after\n")
            assert await reader.readline() == b"after\n"
        await close_writer(writer)

    with no_background_errors(caplog):
        baseline = open_fds()
        server = await asyncstreams.start_server(echo, LOOPBACK, 0)
        port = port_of(server)
        reader, writer = await asyncstreams.open_connection(LOOPBACK, port)
        writer.write(b"before\n")
        with anyio.fail_after(WAIT):
            assert await reader.readline() == b"before\n"
        async with anyio.create_task_group() as tg:
            tg.start_soon(client_leaves_after_close, reader, writer)
            await cancel_when_blocked(server.serve_forever, style)
        assert not server.is_serving()
        assert server.sockets == ()
        with anyio.fail_after(WAIT):
            await server.wait_closed()
        with pytest.raises(ConnectionRefusedError):
            await asyncstreams.open_connection(LOOPBACK, port)
        await assert_fds_released(baseline, "cancelled serve_forever()")


# -- a storm of cancellations ----------------------------------------------------------


def records(seed: int, total: int) -> bytes:
    """Lines and ``<END>``-terminated records of random bytes, about *total* long."""
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < total:
        body = bytes(rng.choice(b"abcxyz \r\t") for _ in range(rng.randrange(0, 300)))
        out += body + rng.choice([b"\n", b"<END>"])
    return bytes(out)


async def test_storm_of_cancelled_reads_loses_no_byte(
    backend_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Random reads, each cancelled after a random number of scheduler turns.

    Whatever each read returned (or, at EOF, carried in ``partial``) is kept: put
    together it must be exactly the stream the server sent. A read that was cancelled
    may have returned its data first (cancellation came too late) or taken nothing.
    """
    rng = random.Random(backend_id)
    data = records(7, 64 * 1024)

    async def trickle(reader: StreamReader, writer: StreamWriter) -> None:
        # Small pieces with pauses, so that reads often have to wait (only a read
        # that waits can be cancelled: one that finds its data returns at once).
        pos = 0
        while pos < len(data):
            size = rng.choice([1, 7, 100, 1500, 5000])
            writer.write(data[pos : pos + size])
            pos += size
            await writer.drain()
            await anyio.sleep(rng.choice([0, 0, 0.001]))
        await close_writer(writer)

    reads: list[Callable[[StreamReader], Awaitable[bytes]]] = [
        lambda r: r.read(rng.randrange(1, 5000)),
        lambda r: r.readexactly(rng.randrange(0, 5000)),
        lambda r: r.readline(),
        lambda r: r.readuntil(b"<END>"),
        lambda r: r.readuntil((b"<END>", b"\n")),
    ]
    got = bytearray()
    cancelled = completed = 0
    with no_background_errors(caplog):
        baseline = open_fds()
        server = await asyncstreams.start_server(trickle, LOOPBACK, 0)
        async with serving(server):
            reader, writer = await asyncstreams.open_connection(LOOPBACK, port_of(server))
            try:
                with anyio.fail_after(60):
                    while not reader.at_eof():
                        outcome = await read_cancelled_after(
                            rng.choice(reads), reader, rng.randrange(0, 12)
                        )
                        if outcome is None:
                            cancelled += 1
                        else:
                            completed += 1
                            got += outcome
            finally:
                await close_writer(writer)
        await assert_fds_released(baseline, "the storm")
    assert bytes(got) == data
    assert cancelled > 10
    assert completed > 10


async def read_cancelled_after(
    fn: Callable[[StreamReader], Awaitable[bytes]], reader: StreamReader, turns: int
) -> bytes | None:
    """Run ``fn(reader)``; cancel it natively after *turns* scheduler turns.

    Return the bytes it consumed (its result, or ``partial`` at EOF), or None if it
    was cancelled.
    """

    async def consume() -> bytes:
        try:
            return await fn(reader)
        except asyncio.IncompleteReadError as exc:
            return exc.partial

    if backend_name() == "trio":
        import trio

        result: list[bytes] = []
        async with trio.open_nursery() as nursery:
            scope = trio.CancelScope()

            async def run() -> None:
                with scope:
                    result.append(await consume())

            nursery.start_soon(run)
            for _ in range(turns):
                await trio.lowlevel.checkpoint()
            scope.cancel()
        return result[0] if result else None
    task = asyncio.get_running_loop().create_task(consume())
    for _ in range(turns):
        await asyncio.sleep(0)
    task.cancel()
    try:
        return await task
    except asyncio.CancelledError:
        if not task.cancelled():
            raise  # we were cancelled ourselves
        return None


# -- handlers --------------------------------------------------------------------------


async def test_cancelled_handlers_close_their_connections(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Handlers run in ``task_group=``; cancelling it cancels them: each connection is
    closed after what was written is sent (the client sees the data, then EOF),
    nothing is logged, and the listener is closed too (the accept loop ran there)."""
    started = 0
    all_started = anyio.Event()

    async def handler(reader: StreamReader, writer: StreamWriter) -> None:
        nonlocal started
        writer.write(b"hello\n")
        started += 1
        if started == 5:
            all_started.set()
        await reader.read()  # until cancelled

    with no_background_errors(caplog):
        baseline = open_fds()
        clients: list[tuple[StreamReader, StreamWriter]] = []
        async with anyio.create_task_group() as tg:
            server = await asyncstreams.start_server(handler, LOOPBACK, 0, task_group=tg)
            port = port_of(server)
            clients += [await asyncstreams.open_connection(LOOPBACK, port) for _ in range(5)]
            with anyio.fail_after(WAIT):
                await all_started.wait()
            await until_blocked()
            tg.cancel_scope.cancel()
        for reader, writer in clients:
            with anyio.fail_after(WAIT):
                # What the handler wrote before it was cancelled is delivered, then EOF.
                assert await reader.read() == b"hello\n"
                assert await reader.read() == b""
            await close_writer(writer)
        with pytest.raises(ConnectionRefusedError):
            await asyncstreams.open_connection(LOOPBACK, port)
        server.close()
        with anyio.fail_after(WAIT):
            await server.wait_closed()
        await assert_fds_released(baseline, "cancelled handlers")
