"""The workloads on anyio's own buffered stream (``anyio.streams.buffered``), on asyncio.

``anyio.connect_tcp`` / ``anyio.create_tcp_listener`` with :class:`BufferedByteStream`:
``receive_until`` for lines and header blocks (it returns them without the delimiter),
``receive_exactly`` for frames, ``receive`` for bulk data. As with trio, writes that
asyncio code batches between drains are collected and sent at each drain point.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from itertools import cycle, islice

import anyio
from anyio.abc import SocketAttribute, SocketStream
from anyio.streams.buffered import BufferedByteStream
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

LIMIT = 65536  # the longest line or block receive_until looks through


async def _connect(port: int) -> BufferedByteStream:
    return BufferedByteStream(await anyio.connect_tcp(HOST, port))


async def _receive_line(stream: BufferedByteStream) -> bytes | None:
    """The next line without its newline; None at the end of the stream."""
    try:
        return await stream.receive_until(b"\n", LIMIT)
    except anyio.IncompleteRead:
        if stream.buffer:
            raise
        return None


# -- clients --------------------------------------------------------------------------------


async def client_bulk(spec: Spec, port: int) -> ClientResult:
    stream = await _connect(port)
    n = spec.bulk_writes
    start = time.perf_counter()
    for chunk in islice(cycle(spec.bulk_chunks), n):
        await stream.send(chunk)
    await stream.send_eof()
    ack = await _receive_line(stream)
    seconds = time.perf_counter() - start
    await stream.aclose()
    if ack != b"ok":
        raise VerificationError(f"server did not confirm the bytes it received: {ack!r}")
    return ClientResult(seconds, n * spec.bulk_write_size)


async def client_pingpong(spec: Spec, port: int) -> ClientResult:
    stream = await _connect(port)
    n = spec.pingpong_rounds
    start = time.perf_counter()
    for line in islice(cycle(spec.pingpong_lines), n):
        await stream.send(line)
        if await stream.receive_until(b"\n", LIMIT) != line[:-1]:
            raise VerificationError("echoed line differs")
    seconds = time.perf_counter() - start
    await stream.aclose()
    return ClientResult(seconds, n)


async def _start_push(port: int) -> BufferedByteStream:
    stream = await _connect(port)
    await stream.send(b"go\n")
    return stream


async def _expect_eof(stream: BufferedByteStream) -> None:
    try:
        await stream.receive(1)
    except anyio.EndOfStream:
        await stream.aclose()
    else:
        raise VerificationError("more data than expected")


async def client_lines(spec: Spec, port: int) -> ClientResult:
    stream = await _start_push(port)
    n = spec.lines_count
    expected_lines = [line[:-1] for line in spec.lines]  # receive_until drops the newline
    start = time.perf_counter()
    for expected in islice(cycle(expected_lines), n):
        if await stream.receive_until(b"\n", LIMIT) != expected:
            raise VerificationError("wrong line")
    seconds = time.perf_counter() - start
    await _expect_eof(stream)
    return ClientResult(seconds, n)


async def client_headers(spec: Spec, port: int) -> ClientResult:
    stream = await _start_push(port)
    n = spec.headers_count
    expected_blocks = [block[:-4] for block in spec.header_blocks]
    start = time.perf_counter()
    for expected in islice(cycle(expected_blocks), n):
        if await stream.receive_until(b"\r\n\r\n", LIMIT) != expected:
            raise VerificationError("wrong header block")
    seconds = time.perf_counter() - start
    await _expect_eof(stream)
    return ClientResult(seconds, n)


async def client_frames(spec: Spec, port: int) -> ClientResult:
    stream = await _start_push(port)
    n = spec.frames_count
    start = time.perf_counter()
    for expected in islice(cycle(spec.frame_payloads), n):
        size = int.from_bytes(await stream.receive_exactly(4), "big")
        if await stream.receive_exactly(size) != expected:
            raise VerificationError("wrong frame")
    seconds = time.perf_counter() - start
    await _expect_eof(stream)
    return ClientResult(seconds, n)


async def client_fanin(spec: Spec, port: int) -> ClientResult:
    clients, rounds = spec.fanin_clients, spec.fanin_rounds
    messages, size = spec.fanin_messages, spec.fanin_message_size
    streams = [await _connect(port) for _ in range(clients)]

    async def run_one(index: int, stream: BufferedByteStream) -> None:
        for r in range(rounds):
            message = messages[(index + r) % len(messages)]
            await stream.send(message)
            if await stream.receive_exactly(size) != message:
                raise VerificationError("echoed message differs")

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i, stream in enumerate(streams):
            tg.start_soon(run_one, i, stream)
    seconds = time.perf_counter() - start
    for stream in streams:
        await stream.aclose()
    return ClientResult(seconds, clients * rounds)


async def client_smallwrites(spec: Spec, port: int) -> ClientResult:
    stream = await _connect(port)
    n, every = spec.smallwrites_count, spec.smallwrites_drain_every
    pending: list[bytes] = []
    start = time.perf_counter()
    for i, chunk in enumerate(islice(cycle(spec.small_chunks), n), 1):
        pending.append(chunk)
        if i % every == 0:
            await stream.send(b"".join(pending))
            pending.clear()
    if pending:
        await stream.send(b"".join(pending))
    await stream.send_eof()
    ack = await _receive_line(stream)
    seconds = time.perf_counter() - start
    await stream.aclose()
    if ack != b"ok":
        raise VerificationError(f"server did not confirm the bytes it received: {ack!r}")
    return ClientResult(seconds, n * spec.smallwrites_size)


async def client_memory(spec: Spec, port: int) -> ClientResult:
    control = await _connect(port)
    await control.send(b"control\n")
    if await _receive_line(control) != b"ready":
        raise VerificationError("control connection failed")
    baseline = rss_bytes()
    n = spec.memory_connections
    idle = [await _connect(port) for _ in range(n)]
    await control.send(b"measure\n")
    if await _receive_line(control) != b"measured":
        raise VerificationError("control connection failed")
    delta = rss_bytes() - baseline
    for stream in idle:
        await stream.aclose()
    await control.aclose()
    return ClientResult(rss_delta=delta, note=spec.memory_note)


async def client_slowreader(spec: Spec, port: int) -> ClientResult:
    stream = await _start_push(port)
    check = spec.bulk_check()
    peak = 0
    deadline = time.perf_counter() + spec.slowreader_seconds
    while time.perf_counter() < deadline:
        await anyio.sleep(spec.slowreader_interval)
        peak = max(peak, len(stream.buffer) + queued_in_anyio_stream(stream.receive_stream))
        check.feed(await stream.receive(spec.slowreader_read_size))
    await stream.aclose()
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
    all_idle: anyio.Event
    idle: int = 0
    handlers: int = 0


async def _verify_until_eof(stream: BufferedByteStream, spec: Spec, workload: str) -> None:
    if workload == "bulk":
        check, expected = spec.bulk_check(), spec.bulk_writes * spec.bulk_write_size
    else:
        check, expected = spec.smallwrites_check(), spec.smallwrites_count * spec.smallwrites_size
    try:
        while True:
            check.feed(await stream.receive(65536))
    except anyio.EndOfStream:
        pass
    check.finish(expected)
    await stream.send(b"ok\n")


async def serve_bulk(ctx: ServerContext, stream: BufferedByteStream) -> None:
    await _verify_until_eof(stream, ctx.spec, "bulk")


async def serve_smallwrites(ctx: ServerContext, stream: BufferedByteStream) -> None:
    await _verify_until_eof(stream, ctx.spec, "smallwrites")


async def serve_pingpong(ctx: ServerContext, stream: BufferedByteStream) -> None:
    while (line := await _receive_line(stream)) is not None:
        await stream.send(line + b"\n")


async def serve_fanin(ctx: ServerContext, stream: BufferedByteStream) -> None:
    size = ctx.spec.fanin_message_size
    while True:
        try:
            message = await stream.receive_exactly(size)
        except anyio.IncompleteRead:
            if stream.buffer:
                raise
            return
        await stream.send(message)


async def _push(stream: BufferedByteStream, items: Sequence[bytes], n: int) -> None:
    if await _receive_line(stream) != b"go":
        raise VerificationError("expected go")
    batch = b"".join(items)
    full, rest = divmod(n, len(items))
    for _ in range(full):
        await stream.send(batch)
    if rest:
        await stream.send(b"".join(items[:rest]))


async def serve_lines(ctx: ServerContext, stream: BufferedByteStream) -> None:
    await _push(stream, ctx.spec.lines, ctx.spec.lines_count)


async def serve_headers(ctx: ServerContext, stream: BufferedByteStream) -> None:
    await _push(stream, ctx.spec.header_blocks, ctx.spec.headers_count)


async def serve_frames(ctx: ServerContext, stream: BufferedByteStream) -> None:
    await _push(stream, ctx.spec.frames, ctx.spec.frames_count)


async def serve_memory(ctx: ServerContext, stream: BufferedByteStream) -> None:
    ctx.handlers += 1
    if ctx.handlers > 1:
        ctx.idle += 1
        if ctx.idle == ctx.spec.memory_connections:
            ctx.all_idle.set()
        if await _receive_line(stream) is not None:
            raise VerificationError("idle connection received data")
        return
    separate = ctx.spec.separate_server
    if await _receive_line(stream) != b"control":
        raise VerificationError("expected the control connection first")
    baseline = rss_bytes() if separate else 0
    await stream.send(b"ready\n")
    if await _receive_line(stream) != b"measure":
        raise VerificationError("expected measure")
    await ctx.all_idle.wait()
    await anyio.sleep(0.1)
    ctx.stats.rss_delta = rss_bytes() - baseline if separate else 0
    await stream.send(b"measured\n")
    await _receive_line(stream)


async def serve_slowreader(ctx: ServerContext, stream: BufferedByteStream) -> None:
    if await _receive_line(stream) != b"go":
        raise VerificationError("expected go")
    # send() waits inside until the asyncio transport underneath is below its high-water
    # mark, so the peak is sampled from the side while the writer is blocked.
    transport = getattr(stream.receive_stream, "_transport", None)
    stats = ctx.stats

    async def sample() -> None:
        while transport is not None:
            size: int = transport.get_write_buffer_size()
            stats.peak_write_buffer = max(stats.peak_write_buffer, size)
            await anyio.sleep(0.002)

    async with anyio.create_task_group() as tg:
        tg.start_soon(sample)
        try:
            for chunk in cycle(ctx.spec.bulk_chunks):
                await stream.send(chunk)
        except anyio.BrokenResourceError:
            pass
        tg.cancel_scope.cancel()


SERVERS: dict[str, Callable[[ServerContext, BufferedByteStream], Awaitable[None]]] = {
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
    ctx = ServerContext(spec, ServerStats(), anyio.Event())
    expected, finished = spec.connections(workload), 0
    done = anyio.Event()
    handle_workload = SERVERS[workload]

    async def handle(socket_stream: SocketStream) -> None:
        nonlocal finished
        stream = BufferedByteStream(socket_stream)
        try:
            await handle_workload(ctx, stream)
        except Exception as exc:
            server_error(ctx.stats, exc)
        finally:
            await stream.aclose()
            finished += 1
            if finished == expected:
                done.set()

    listener = await anyio.create_tcp_listener(local_host=HOST, local_port=0, backlog=BACKLOG)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        on_listening(listener.extra(SocketAttribute.local_port))
        await done.wait()
        tg.cancel_scope.cancel()
    return ctx.stats


async def serve_and_run_client(spec: Spec, workload: str) -> tuple[ClientResult, ServerStats]:
    listening = anyio.Event()
    port = 0
    stats: ServerStats | None = None

    def on_listening(p: int) -> None:
        nonlocal port
        port = p
        listening.set()

    async def run_server() -> None:
        nonlocal stats
        stats = await serve(spec, workload, on_listening)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_server)
        await listening.wait()
        result = await CLIENTS[workload](spec, port)
    assert stats is not None
    return result, stats


def both(impl: str, spec: Spec, workload: str) -> tuple[ClientResult, ServerStats]:
    return anyio.run(serve_and_run_client, spec, workload, backend="asyncio")


def server(
    impl: str, spec: Spec, workload: str, on_listening: Callable[[int], None]
) -> ServerStats:
    return anyio.run(serve, spec, workload, on_listening, backend="asyncio")


def client(impl: str, spec: Spec, workload: str, port: int) -> ClientResult:
    return anyio.run(CLIENTS[workload], spec, port, backend="asyncio")
