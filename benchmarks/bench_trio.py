"""The workloads as a trio user writes them by hand: a bytearray in front of a trio stream.

``trio.open_tcp_stream`` and ``trio.serve_tcp``, with :class:`BufferedStream` doing the
line, separator and exact reads. Writes go straight to ``send_all``; where asyncio code
calls ``write()`` many times per ``drain()`` (``smallwrites``), the trio code collects
the writes in a bytearray and sends it at each drain point.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import cycle, islice

import trio
from bench_spec import (
    BACKLOG,
    HOST,
    ClientResult,
    ServerStats,
    Spec,
    VerificationError,
    rss_bytes,
    server_error,
)

__all__ = ["both", "client", "server"]

RECEIVE_SIZE = 65536


class BufferedStream:
    """readline / readuntil / readexactly / read over a ``trio.abc.Stream``."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def _fill(self) -> bool:
        data = await self.stream.receive_some(RECEIVE_SIZE)
        self.buffer += data
        return bool(data)

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        """Up to and including *separator*; b"" at the end of the stream."""
        buffer, start = self.buffer, 0
        while (index := buffer.find(separator, start)) < 0:
            start = max(0, len(buffer) - len(separator) + 1)
            if not await self._fill():
                if buffer:
                    raise EOFError("stream ended within a message")
                return b""
        end = index + len(separator)
        data = bytes(buffer[:end])
        del buffer[:end]
        return data

    async def readline(self) -> bytes:
        return await self.readuntil(b"\n")

    async def readexactly(self, n: int) -> bytes:
        """Exactly *n* bytes; b"" at the end of the stream."""
        buffer = self.buffer
        while len(buffer) < n:
            if not await self._fill():
                if buffer:
                    raise EOFError("stream ended within a message")
                return b""
        data = bytes(buffer[:n])
        del buffer[:n]
        return data

    async def read(self, n: int) -> bytes | bytearray:
        """Up to *n* bytes; b"" at the end of the stream."""
        if not self.buffer:
            return await self.stream.receive_some(n)
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data


# -- clients --------------------------------------------------------------------------------


async def client_bulk(spec: Spec, port: int) -> ClientResult:
    stream = await trio.open_tcp_stream(HOST, port)
    reader = BufferedStream(stream)
    n = spec.bulk_writes
    start = time.perf_counter()
    for chunk in islice(cycle(spec.bulk_chunks), n):
        await stream.send_all(chunk)
    await stream.send_eof()
    ack = await reader.readline()
    seconds = time.perf_counter() - start
    await stream.aclose()
    if ack != b"ok\n":
        raise VerificationError(f"server did not confirm the bytes it received: {ack!r}")
    return ClientResult(seconds, n * spec.bulk_write_size)


async def client_pingpong(spec: Spec, port: int) -> ClientResult:
    stream = await trio.open_tcp_stream(HOST, port)
    reader = BufferedStream(stream)
    n = spec.pingpong_rounds
    start = time.perf_counter()
    for line in islice(cycle(spec.pingpong_lines), n):
        await stream.send_all(line)
        if await reader.readline() != line:
            raise VerificationError("echoed line differs")
    seconds = time.perf_counter() - start
    await stream.aclose()
    return ClientResult(seconds, n)


async def _start_push(port: int) -> BufferedStream:
    stream = await trio.open_tcp_stream(HOST, port)
    await stream.send_all(b"go\n")
    return BufferedStream(stream)


async def _expect_eof(reader: BufferedStream) -> None:
    if await reader.read(1) != b"":
        raise VerificationError("more data than expected")
    await reader.stream.aclose()


async def client_lines(spec: Spec, port: int) -> ClientResult:
    reader = await _start_push(port)
    n = spec.lines_count
    start = time.perf_counter()
    for expected in islice(cycle(spec.lines), n):
        if await reader.readline() != expected:
            raise VerificationError("wrong line")
    seconds = time.perf_counter() - start
    await _expect_eof(reader)
    return ClientResult(seconds, n)


async def client_headers(spec: Spec, port: int) -> ClientResult:
    reader = await _start_push(port)
    n = spec.headers_count
    start = time.perf_counter()
    for expected in islice(cycle(spec.header_blocks), n):
        if await reader.readuntil(b"\r\n\r\n") != expected:
            raise VerificationError("wrong header block")
    seconds = time.perf_counter() - start
    await _expect_eof(reader)
    return ClientResult(seconds, n)


async def client_frames(spec: Spec, port: int) -> ClientResult:
    reader = await _start_push(port)
    n = spec.frames_count
    start = time.perf_counter()
    for expected in islice(cycle(spec.frame_payloads), n):
        size = int.from_bytes(await reader.readexactly(4), "big")
        if await reader.readexactly(size) != expected:
            raise VerificationError("wrong frame")
    seconds = time.perf_counter() - start
    await _expect_eof(reader)
    return ClientResult(seconds, n)


async def client_fanin(spec: Spec, port: int) -> ClientResult:
    clients, rounds = spec.fanin_clients, spec.fanin_rounds
    messages, size = spec.fanin_messages, spec.fanin_message_size
    streams = [BufferedStream(await trio.open_tcp_stream(HOST, port)) for _ in range(clients)]

    async def run_one(index: int, reader: BufferedStream) -> None:
        for r in range(rounds):
            message = messages[(index + r) % len(messages)]
            await reader.stream.send_all(message)
            if await reader.readexactly(size) != message:
                raise VerificationError("echoed message differs")

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i, reader in enumerate(streams):
            nursery.start_soon(run_one, i, reader)
    seconds = time.perf_counter() - start
    for reader in streams:
        await reader.stream.aclose()
    return ClientResult(seconds, clients * rounds)


async def client_smallwrites(spec: Spec, port: int) -> ClientResult:
    stream = await trio.open_tcp_stream(HOST, port)
    reader = BufferedStream(stream)
    n, every = spec.smallwrites_count, spec.smallwrites_drain_every
    pending = bytearray()
    start = time.perf_counter()
    for i, chunk in enumerate(islice(cycle(spec.small_chunks), n), 1):
        pending += chunk
        if i % every == 0:
            await stream.send_all(pending)
            pending.clear()
    if pending:
        await stream.send_all(pending)
    await stream.send_eof()
    ack = await reader.readline()
    seconds = time.perf_counter() - start
    await stream.aclose()
    if ack != b"ok\n":
        raise VerificationError(f"server did not confirm the bytes it received: {ack!r}")
    return ClientResult(seconds, n * spec.smallwrites_size)


async def client_memory(spec: Spec, port: int) -> ClientResult:
    control = BufferedStream(await trio.open_tcp_stream(HOST, port))
    await control.stream.send_all(b"control\n")
    if await control.readline() != b"ready\n":
        raise VerificationError("control connection failed")
    baseline = rss_bytes()
    n = spec.memory_connections
    idle = [BufferedStream(await trio.open_tcp_stream(HOST, port)) for _ in range(n)]
    await control.stream.send_all(b"measure\n")
    if await control.readline() != b"measured\n":
        raise VerificationError("control connection failed")
    delta = rss_bytes() - baseline
    for reader in idle:
        await reader.stream.aclose()
    await control.stream.aclose()
    return ClientResult(rss_delta=delta, note=spec.memory_note)


async def client_slowreader(spec: Spec, port: int) -> ClientResult:
    reader = await _start_push(port)
    check = spec.bulk_check()
    peak = 0
    deadline = time.perf_counter() + spec.slowreader_seconds
    while time.perf_counter() < deadline:
        await trio.sleep(spec.slowreader_interval)
        peak = max(peak, len(reader.buffer))
        check.feed(await reader.read(spec.slowreader_read_size))
    await reader.stream.aclose()
    return ClientResult(peak_read_buffer=peak, note=f"read {check.received} bytes")


CLIENTS: dict[str, Callable[[Spec, int], Awaitable[ClientResult]]] = {
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

# -- servers --------------------------------------------------------------------------------


@dataclass
class ServerContext:
    spec: Spec
    stats: ServerStats
    all_idle: trio.Event
    idle: int = 0
    handlers: int = 0


async def serve_bulk(ctx: ServerContext, reader: BufferedStream) -> None:
    check = ctx.spec.bulk_check()
    while data := await reader.read(65536):
        check.feed(data)
    check.finish(ctx.spec.bulk_writes * ctx.spec.bulk_write_size)
    await reader.stream.send_all(b"ok\n")


async def serve_smallwrites(ctx: ServerContext, reader: BufferedStream) -> None:
    check = ctx.spec.smallwrites_check()
    while data := await reader.read(65536):
        check.feed(data)
    check.finish(ctx.spec.smallwrites_count * ctx.spec.smallwrites_size)
    await reader.stream.send_all(b"ok\n")


async def serve_pingpong(ctx: ServerContext, reader: BufferedStream) -> None:
    while line := await reader.readline():
        await reader.stream.send_all(line)


async def serve_fanin(ctx: ServerContext, reader: BufferedStream) -> None:
    size = ctx.spec.fanin_message_size
    while message := await reader.readexactly(size):
        await reader.stream.send_all(message)


async def _push(reader: BufferedStream, items: Sequence[bytes], n: int) -> None:
    if await reader.readline() != b"go\n":
        raise VerificationError("expected go")
    batch = b"".join(items)
    full, rest = divmod(n, len(items))
    for _ in range(full):
        await reader.stream.send_all(batch)
    if rest:
        await reader.stream.send_all(b"".join(items[:rest]))


async def serve_lines(ctx: ServerContext, reader: BufferedStream) -> None:
    await _push(reader, ctx.spec.lines, ctx.spec.lines_count)


async def serve_headers(ctx: ServerContext, reader: BufferedStream) -> None:
    await _push(reader, ctx.spec.header_blocks, ctx.spec.headers_count)


async def serve_frames(ctx: ServerContext, reader: BufferedStream) -> None:
    await _push(reader, ctx.spec.frames, ctx.spec.frames_count)


async def serve_memory(ctx: ServerContext, reader: BufferedStream) -> None:
    ctx.handlers += 1
    if ctx.handlers > 1:
        ctx.idle += 1
        if ctx.idle == ctx.spec.memory_connections:
            ctx.all_idle.set()
        if await reader.readline() != b"":
            raise VerificationError("idle connection received data")
        return
    separate = ctx.spec.separate_server
    if await reader.readline() != b"control\n":
        raise VerificationError("expected the control connection first")
    baseline = rss_bytes() if separate else 0
    await reader.stream.send_all(b"ready\n")
    if await reader.readline() != b"measure\n":
        raise VerificationError("expected measure")
    await ctx.all_idle.wait()
    await trio.sleep(0.1)
    ctx.stats.rss_delta = rss_bytes() - baseline if separate else 0
    await reader.stream.send_all(b"measured\n")
    await reader.read(1)


async def serve_slowreader(ctx: ServerContext, reader: BufferedStream) -> None:
    if await reader.readline() != b"go\n":
        raise VerificationError("expected go")
    try:
        for chunk in cycle(ctx.spec.bulk_chunks):
            await reader.stream.send_all(chunk)  # nothing is buffered beyond the kernel
    except trio.BrokenResourceError:
        pass


SERVERS: dict[str, Callable[[ServerContext, BufferedStream], Awaitable[None]]] = {
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


async def serve(spec: Spec, workload: str, on_listening: Callable[[int], None]) -> ServerStats:
    ctx = ServerContext(spec, ServerStats(), trio.Event())
    expected, finished = spec.connections(workload), 0
    done = trio.Event()
    handle_workload = SERVERS[workload]

    async def handle(stream: trio.SocketStream) -> None:
        nonlocal finished
        try:
            await handle_workload(ctx, BufferedStream(stream))
        except Exception as exc:
            server_error(ctx.stats, exc)
        finally:
            await stream.aclose()
            finished += 1
            if finished == expected:
                done.set()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            partial(trio.serve_tcp, handle, 0, host=HOST, backlog=BACKLOG)
        )
        on_listening(listeners[0].socket.getsockname()[1])
        await done.wait()
        nursery.cancel_scope.cancel()
    return ctx.stats


async def serve_and_run_client(spec: Spec, workload: str) -> tuple[ClientResult, ServerStats]:
    listening = trio.Event()
    port = 0
    stats: ServerStats | None = None

    def on_listening(p: int) -> None:
        nonlocal port
        port = p
        listening.set()

    async def run_server() -> None:
        nonlocal stats
        stats = await serve(spec, workload, on_listening)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_server)
        await listening.wait()
        result = await CLIENTS[workload](spec, port)
    assert stats is not None
    return result, stats


def both(impl: str, spec: Spec, workload: str) -> tuple[ClientResult, ServerStats]:
    return trio.run(serve_and_run_client, spec, workload)


def server(
    impl: str, spec: Spec, workload: str, on_listening: Callable[[int], None]
) -> ServerStats:
    return trio.run(serve, spec, workload, on_listening)


def client(impl: str, spec: Spec, workload: str, port: int) -> ClientResult:
    return trio.run(CLIENTS[workload], spec, port)
