"""The workloads in asyncio's Streams API, written once for every implementation of it.

The same coroutines run with asyncio's own streams (on the default loop, on uvloop and
under trio via trio-asyncio) and with asyncstreams (on asyncio, uvloop and trio): a
:class:`Toolkit` carries the streams module and the three things the workloads need
besides streams (sleep, an event, running coroutines concurrently).
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from itertools import cycle, islice
from typing import Any, Protocol

from bench_spec import (
    BACKLOG,
    HOST,
    ClientResult,
    ServerStats,
    Spec,
    VerificationError,
    queued_in_anyio_stream,
    rss_bytes,
    server_error,
)

__all__ = ["both", "client", "server"]


class Reader(Protocol):
    async def read(self, n: int = ...) -> bytes: ...
    async def readline(self) -> bytes: ...
    async def readuntil(self, separator: bytes = ...) -> bytes: ...
    async def readexactly(self, n: int) -> bytes: ...


class Transport(Protocol):
    def get_write_buffer_size(self) -> int: ...


class Writer(Protocol):
    @property
    def transport(self) -> Transport: ...
    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def write_eof(self) -> None: ...
    def close(self) -> None: ...
    async def wait_closed(self) -> None: ...


class Server(Protocol):
    @property
    def sockets(self) -> Sequence[Any]: ...
    def close(self) -> None: ...
    async def wait_closed(self) -> None: ...


Handler = Callable[[Any, Any], Coroutine[Any, Any, None]]


class Streams(Protocol):
    """The part of the ``asyncio`` (or ``asyncstreams``) module the workloads use."""

    async def open_connection(self, host: str, port: int) -> tuple[Reader, Writer]: ...
    async def start_server(
        self, client_connected_cb: Handler, host: str, port: int, *, backlog: int
    ) -> Server: ...


class Event(Protocol):
    def set(self) -> None: ...
    async def wait(self) -> Any: ...


@dataclass(frozen=True)
class Toolkit:
    streams: Streams
    sleep: Callable[[float], Awaitable[object]]
    event: Callable[[], Event]
    # Run the coroutines concurrently; return once all have, raise if one fails.
    gather: Callable[[Sequence[Coroutine[Any, Any, None]]], Awaitable[object]]


def _buffered(reader: Reader) -> int:
    """Bytes received and not yet read: the reader's buffer (asyncio's and asyncstreams'
    readers both have ``_buffer``), plus what an anyio stream underneath has queued."""
    stream = getattr(getattr(reader, "_transport", None), "_stream", None)
    return len(getattr(reader, "_buffer", b"")) + queued_in_anyio_stream(stream)


async def _close(writer: Writer) -> None:
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:  # the peer went first
        pass


# -- the client side of each workload: returns what it measured ---------------------------


async def client_bulk(tk: Toolkit, spec: Spec, port: int) -> ClientResult:
    reader, writer = await tk.streams.open_connection(HOST, port)
    n = spec.bulk_writes
    start = time.perf_counter()
    for chunk in islice(cycle(spec.bulk_chunks), n):
        writer.write(chunk)
        await writer.drain()
    writer.write_eof()
    ack = await reader.readline()
    seconds = time.perf_counter() - start
    await _close(writer)
    if ack != b"ok\n":
        raise VerificationError(f"server did not confirm the bytes it received: {ack!r}")
    return ClientResult(seconds, n * spec.bulk_write_size)


async def client_pingpong(tk: Toolkit, spec: Spec, port: int) -> ClientResult:
    reader, writer = await tk.streams.open_connection(HOST, port)
    n = spec.pingpong_rounds
    start = time.perf_counter()
    for line in islice(cycle(spec.pingpong_lines), n):
        writer.write(line)
        await writer.drain()
        if await reader.readline() != line:
            raise VerificationError("echoed line differs")
    seconds = time.perf_counter() - start
    await _close(writer)
    return ClientResult(seconds, n)


async def _start_push(tk: Toolkit, port: int) -> tuple[Reader, Writer]:
    """Connect and ask the server to start sending (for the server-to-client workloads)."""
    reader, writer = await tk.streams.open_connection(HOST, port)
    writer.write(b"go\n")
    await writer.drain()
    return reader, writer


async def _expect_eof(reader: Reader, writer: Writer) -> None:
    if await reader.read(1) != b"":
        raise VerificationError("more data than expected")
    await _close(writer)


async def client_lines(tk: Toolkit, spec: Spec, port: int) -> ClientResult:
    reader, writer = await _start_push(tk, port)
    n = spec.lines_count
    start = time.perf_counter()
    for expected in islice(cycle(spec.lines), n):
        if await reader.readline() != expected:
            raise VerificationError("wrong line")
    seconds = time.perf_counter() - start
    await _expect_eof(reader, writer)
    return ClientResult(seconds, n)


async def client_headers(tk: Toolkit, spec: Spec, port: int) -> ClientResult:
    reader, writer = await _start_push(tk, port)
    n = spec.headers_count
    start = time.perf_counter()
    for expected in islice(cycle(spec.header_blocks), n):
        if await reader.readuntil(b"\r\n\r\n") != expected:
            raise VerificationError("wrong header block")
    seconds = time.perf_counter() - start
    await _expect_eof(reader, writer)
    return ClientResult(seconds, n)


async def client_frames(tk: Toolkit, spec: Spec, port: int) -> ClientResult:
    reader, writer = await _start_push(tk, port)
    n = spec.frames_count
    start = time.perf_counter()
    for expected in islice(cycle(spec.frame_payloads), n):
        size = int.from_bytes(await reader.readexactly(4), "big")
        if await reader.readexactly(size) != expected:
            raise VerificationError("wrong frame")
    seconds = time.perf_counter() - start
    await _expect_eof(reader, writer)
    return ClientResult(seconds, n)


async def client_fanin(tk: Toolkit, spec: Spec, port: int) -> ClientResult:
    clients, rounds = spec.fanin_clients, spec.fanin_rounds
    messages, size = spec.fanin_messages, spec.fanin_message_size
    connections = [await tk.streams.open_connection(HOST, port) for _ in range(clients)]

    async def run_one(index: int, reader: Reader, writer: Writer) -> None:
        for r in range(rounds):
            message = messages[(index + r) % len(messages)]
            writer.write(message)
            await writer.drain()
            if await reader.readexactly(size) != message:
                raise VerificationError("echoed message differs")

    start = time.perf_counter()
    await tk.gather([run_one(i, r, w) for i, (r, w) in enumerate(connections)])
    seconds = time.perf_counter() - start
    for _, writer in connections:
        await _close(writer)
    return ClientResult(seconds, clients * rounds)


async def client_smallwrites(tk: Toolkit, spec: Spec, port: int) -> ClientResult:
    reader, writer = await tk.streams.open_connection(HOST, port)
    n, every = spec.smallwrites_count, spec.smallwrites_drain_every
    start = time.perf_counter()
    for i, chunk in enumerate(islice(cycle(spec.small_chunks), n), 1):
        writer.write(chunk)
        if i % every == 0:
            await writer.drain()
    await writer.drain()
    writer.write_eof()
    ack = await reader.readline()
    seconds = time.perf_counter() - start
    await _close(writer)
    if ack != b"ok\n":
        raise VerificationError(f"server did not confirm the bytes it received: {ack!r}")
    return ClientResult(seconds, n * spec.smallwrites_size)


async def client_memory(tk: Toolkit, spec: Spec, port: int) -> ClientResult:
    # The control connection first: the server's baseline includes one connection.
    control_reader, control_writer = await tk.streams.open_connection(HOST, port)
    control_writer.write(b"control\n")
    await control_writer.drain()
    if await control_reader.readline() != b"ready\n":
        raise VerificationError("control connection failed")
    baseline = rss_bytes()
    n = spec.memory_connections
    idle = [await tk.streams.open_connection(HOST, port) for _ in range(n)]
    # The server answers once every idle connection has a handler waiting in readline().
    control_writer.write(b"measure\n")
    await control_writer.drain()
    if await control_reader.readline() != b"measured\n":
        raise VerificationError("control connection failed")
    delta = rss_bytes() - baseline
    for _, writer in idle:
        await _close(writer)
    await _close(control_writer)
    return ClientResult(rss_delta=delta, note=spec.memory_note)


async def client_slowreader(tk: Toolkit, spec: Spec, port: int) -> ClientResult:
    reader, writer = await _start_push(tk, port)
    check = spec.bulk_check()
    peak = 0
    deadline = time.perf_counter() + spec.slowreader_seconds
    while time.perf_counter() < deadline:
        await tk.sleep(spec.slowreader_interval)
        peak = max(peak, _buffered(reader))
        check.feed(await reader.read(spec.slowreader_read_size))
    # Hanging up with unread data ends the writer's loop with a connection error.
    await _close(writer)
    return ClientResult(peak_read_buffer=peak, note=f"read {check.received} bytes")


CLIENTS: dict[str, Callable[[Toolkit, Spec, int], Coroutine[Any, Any, ClientResult]]] = {
    "bulk": client_bulk,
    "pingpong": client_pingpong,
    "lines": client_lines,
    "headers": client_headers,
    "fanin": client_fanin,
    "frames": client_frames,
    "smallwrites": client_smallwrites,
    "memory": client_memory,
    "slowreader": client_slowreader,
}

# -- the server side: one handler per connection --------------------------------------------


@dataclass
class ServerContext:
    tk: Toolkit
    spec: Spec
    stats: ServerStats
    all_idle: Event
    idle: int = 0
    handlers: int = 0


async def serve_bulk(ctx: ServerContext, reader: Reader, writer: Writer) -> None:
    check = ctx.spec.bulk_check()
    while data := await reader.read(65536):
        check.feed(data)
    check.finish(ctx.spec.bulk_writes * ctx.spec.bulk_write_size)
    writer.write(b"ok\n")
    await writer.drain()


async def serve_smallwrites(ctx: ServerContext, reader: Reader, writer: Writer) -> None:
    check = ctx.spec.smallwrites_check()
    while data := await reader.read(65536):
        check.feed(data)
    check.finish(ctx.spec.smallwrites_count * ctx.spec.smallwrites_size)
    writer.write(b"ok\n")
    await writer.drain()


async def serve_pingpong(ctx: ServerContext, reader: Reader, writer: Writer) -> None:
    while line := await reader.readline():
        writer.write(line)
        await writer.drain()


async def serve_fanin(ctx: ServerContext, reader: Reader, writer: Writer) -> None:
    size = ctx.spec.fanin_message_size
    while True:
        try:
            message = await reader.readexactly(size)
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise
            return
        writer.write(message)
        await writer.drain()


async def _push(reader: Reader, writer: Writer, items: Sequence[bytes], n: int) -> None:
    """Wait for the client's go, then send *n* items cyclically, one write per cycle."""
    if await reader.readline() != b"go\n":
        raise VerificationError("expected go")
    batch = b"".join(items)
    full, rest = divmod(n, len(items))
    for _ in range(full):
        writer.write(batch)
        await writer.drain()
    if rest:
        writer.write(b"".join(items[:rest]))
        await writer.drain()


async def serve_lines(ctx: ServerContext, reader: Reader, writer: Writer) -> None:
    await _push(reader, writer, ctx.spec.lines, ctx.spec.lines_count)


async def serve_headers(ctx: ServerContext, reader: Reader, writer: Writer) -> None:
    await _push(reader, writer, ctx.spec.header_blocks, ctx.spec.headers_count)


async def serve_frames(ctx: ServerContext, reader: Reader, writer: Writer) -> None:
    await _push(reader, writer, ctx.spec.frames, ctx.spec.frames_count)


async def serve_memory(ctx: ServerContext, reader: Reader, writer: Writer) -> None:
    ctx.handlers += 1
    if ctx.handlers > 1:  # an idle connection: wait for a request that never comes
        ctx.idle += 1
        if ctx.idle == ctx.spec.memory_connections:
            ctx.all_idle.set()
        if await reader.readline() != b"":
            raise VerificationError("idle connection received data")
        return
    # The control connection, which the client opens first.
    separate = ctx.spec.separate_server
    if await reader.readline() != b"control\n":
        raise VerificationError("expected the control connection first")
    baseline = rss_bytes() if separate else 0
    writer.write(b"ready\n")
    await writer.drain()
    if await reader.readline() != b"measure\n":
        raise VerificationError("expected measure")
    await ctx.all_idle.wait()
    await ctx.tk.sleep(0.1)  # let every handler reach its readline()
    # In one process the client's measurement covers both ends.
    ctx.stats.rss_delta = rss_bytes() - baseline if separate else 0
    writer.write(b"measured\n")
    await writer.drain()
    await reader.read()


async def serve_slowreader(ctx: ServerContext, reader: Reader, writer: Writer) -> None:
    if await reader.readline() != b"go\n":
        raise VerificationError("expected go")
    stats = ctx.stats
    try:
        for chunk in cycle(ctx.spec.bulk_chunks):
            writer.write(chunk)
            stats.peak_write_buffer = max(
                stats.peak_write_buffer, writer.transport.get_write_buffer_size()
            )
            await writer.drain()
    except ConnectionError:
        pass  # the reader hung up: the normal end


SERVERS: dict[str, Callable[[ServerContext, Reader, Writer], Awaitable[None]]] = {
    "bulk": serve_bulk,
    "pingpong": serve_pingpong,
    "lines": serve_lines,
    "headers": serve_headers,
    "fanin": serve_fanin,
    "frames": serve_frames,
    "smallwrites": serve_smallwrites,
    "memory": serve_memory,
    "slowreader": serve_slowreader,
}


async def serve(
    tk: Toolkit, spec: Spec, workload: str, on_listening: Callable[[int], None]
) -> ServerStats:
    """Serve *workload* until the connections it needs have come and gone."""
    ctx = ServerContext(tk, spec, ServerStats(), tk.event())
    expected, finished = spec.connections(workload), 0
    done = tk.event()
    handle_workload = SERVERS[workload]

    async def handle(reader: Reader, writer: Writer) -> None:
        nonlocal finished
        try:
            await handle_workload(ctx, reader, writer)
        except Exception as exc:
            server_error(ctx.stats, exc)
        finally:
            await _close(writer)
            finished += 1
            if finished == expected:
                done.set()

    server = await tk.streams.start_server(handle, HOST, 0, backlog=BACKLOG)
    on_listening(server.sockets[0].getsockname()[1])
    await done.wait()
    server.close()
    await server.wait_closed()
    return ctx.stats


async def serve_and_run_client(
    tk: Toolkit, spec: Spec, workload: str
) -> tuple[ClientResult, ServerStats]:
    """Server and client of *workload* in this one event loop."""
    listening = tk.event()
    port = 0
    results: list[Any] = [None, None]

    def on_listening(p: int) -> None:
        nonlocal port
        port = p
        listening.set()

    async def run_server() -> None:
        results[1] = await serve(tk, spec, workload, on_listening)

    async def run_client() -> None:
        await listening.wait()
        results[0] = await CLIENTS[workload](tk, spec, port)

    await tk.gather([run_server(), run_client()])
    return results[0], results[1]


# -- the implementations: which streams module, on which event loop -------------------------


def _native_toolkit() -> Toolkit:
    async def gather(coros: Sequence[Coroutine[Any, Any, None]]) -> None:
        await asyncio.gather(*coros)

    streams: Streams = asyncio
    return Toolkit(streams, asyncio.sleep, asyncio.Event, gather)


def _asyncstreams_toolkit() -> Toolkit:
    import anyio

    import asyncstreams

    async def gather(coros: Sequence[Coroutine[Any, Any, None]]) -> None:
        async def run(coro: Coroutine[Any, Any, None]) -> None:
            await coro

        async with anyio.create_task_group() as tg:
            for coro in coros:
                tg.start_soon(run, coro)

    streams: Streams = asyncstreams
    return Toolkit(streams, anyio.sleep, anyio.Event, gather)


def _run(impl: str, fn: Callable[[Toolkit], Coroutine[Any, Any, Any]]) -> Any:
    """Run ``fn(toolkit)`` the way *impl* runs: its streams module on its event loop."""
    if impl == "asyncio":
        return asyncio.run(fn(_native_toolkit()))
    if impl == "uvloop":
        import uvloop

        return uvloop.run(fn(_native_toolkit()))
    if impl == "asyncstreams-asyncio":
        return asyncio.run(fn(_asyncstreams_toolkit()))
    if impl == "asyncstreams-uvloop":
        import uvloop

        return uvloop.run(fn(_asyncstreams_toolkit()))
    if impl == "asyncstreams-trio":
        import trio

        async def main_trio() -> Any:
            return await fn(_asyncstreams_toolkit())

        return trio.run(main_trio)
    if impl == "trio-asyncio":
        import trio

        with warnings.catch_warnings():  # it subclasses the deprecated child watcher
            warnings.simplefilter("ignore", DeprecationWarning)
            import trio_asyncio  # type: ignore[import-untyped]

        async def main_trio_asyncio() -> Any:
            async with trio_asyncio.open_loop():
                return await trio_asyncio.aio_as_trio(fn)(_native_toolkit())

        return trio.run(main_trio_asyncio)
    raise ValueError(f"not an asyncio-style implementation: {impl}")


def both(impl: str, spec: Spec, workload: str) -> tuple[ClientResult, ServerStats]:
    result: tuple[ClientResult, ServerStats] = _run(
        impl, lambda tk: serve_and_run_client(tk, spec, workload)
    )
    return result


def server(
    impl: str, spec: Spec, workload: str, on_listening: Callable[[int], None]
) -> ServerStats:
    stats: ServerStats = _run(impl, lambda tk: serve(tk, spec, workload, on_listening))
    return stats


def client(impl: str, spec: Spec, workload: str, port: int) -> ClientResult:
    result: ClientResult = _run(impl, lambda tk: CLIENTS[workload](tk, spec, port))
    return result
