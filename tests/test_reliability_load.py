"""Under load: many connections at once, and flow control between a fast and a slow end.

* Concurrent clients against one ``start_server`` (or ``start_unix_server``) in the
  same process, each doing request/response round trips: every byte checked, no
  error, and the process's open descriptors back to the baseline once the clients are
  closed and the server's ``close()`` + ``wait_closed()`` returned. The everyday run
  uses 50 clients x 20 round trips; the ``slow`` run, 1,000 clients x 100 round trips.
* A slow reader (1 KiB every 10 ms) against a fast writer: ``drain()`` holds the
  writer's unsent data near its high-water mark, and the reader side never buffers much
  more than twice its limit.
"""

from __future__ import annotations

import hashlib
import random
import resource
import tracemalloc
from pathlib import Path

import anyio
import pytest
from _reliability import (
    LOOPBACK,
    WAIT,
    close_writer,
    new_fds,
    no_background_errors,
    open_fds,
    port_of,
)

import asyncstreams
from asyncstreams import StreamReader, StreamWriter

pytestmark = pytest.mark.anyio


# -- many connections ------------------------------------------------------------------


def request(client: int, i: int) -> bytes:
    """Round trip *i* of *client*: a header line and a body of 0 to 4 KiB."""
    rng = random.Random(client * 1_000_003 + i)
    body = rng.randbytes(rng.choice([0, 1, 17, 1000, 4096]))
    return b"%d %d %d\n" % (client, i, len(body)) + body


def response(req: bytes) -> bytes:
    """What the server answers: the header, the body's SHA-256, and the body reversed."""
    header, _, body = req.partition(b"\n")
    return header + b" " + hashlib.sha256(body).hexdigest().encode() + b"\n" + body[::-1]


async def serve_requests(reader: StreamReader, writer: StreamWriter) -> None:
    try:
        while header := await reader.readline():
            size = int(header.split()[2])
            body = await reader.readexactly(size)
            writer.write(response(header + body))
            await writer.drain()
    finally:
        await close_writer(writer)


async def connect(address: int | Path) -> tuple[StreamReader, StreamWriter]:
    if isinstance(address, Path):
        return await asyncstreams.open_unix_connection(address)
    return await asyncstreams.open_connection(LOOPBACK, address)


async def client_session(address: int | Path, client: int, round_trips: int) -> int:
    """Connect, make the round trips, close; return the number of bytes checked."""
    reader, writer = await connect(address)
    checked = 0
    try:
        for i in range(round_trips):
            req = request(client, i)
            expected = response(req)
            writer.write(req)
            await writer.drain()
            header = await reader.readline()
            got = header + await reader.readexactly(len(expected) - len(header))
            assert got == expected, f"client {client}, round trip {i}: wrong response"
            checked += len(req) + len(got)
        writer.write_eof()
        assert await reader.read() == b""  # the server closes after our EOF
    finally:
        assert await close_writer(writer) == "ok"
    return checked


def ensure_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"needs {needed} file descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


async def run_load(
    clients: int, round_trips: int, caplog: pytest.LogCaptureFixture, unix_path: Path | None = None
) -> None:
    ensure_fd_limit(2 * clients + 256)
    with no_background_errors(caplog):
        baseline = open_fds()
        backlog = min(clients, 4096)
        address: int | Path
        if unix_path is None:
            server = await asyncstreams.start_server(serve_requests, LOOPBACK, 0, backlog=backlog)
            address = port_of(server)
        else:
            server = await asyncstreams.start_unix_server(
                serve_requests, unix_path, backlog=backlog
            )
            address = unix_path
        checked: list[int] = []

        async def one(client: int) -> None:
            checked.append(await client_session(address, client, round_trips))

        with anyio.fail_after(WAIT + clients * round_trips / 200):
            async with anyio.create_task_group() as tg:
                for client in range(clients):
                    tg.start_soon(one, client)
        assert server.is_serving()
        server.close()
        with anyio.fail_after(WAIT):
            await server.wait_closed()
        # Clients closed and server closed: nothing of theirs is left open, right away.
        leaked = new_fds(baseline)
        assert not leaked, f"descriptors left open: {leaked}"
    assert len(checked) == clients
    expected_total = sum(
        len(request(c, i)) + len(response(request(c, i)))
        for c in range(clients)
        for i in range(round_trips)
    )
    assert sum(checked) == expected_total


@pytest.mark.parametrize("kind", ["tcp", "unix"])
async def test_concurrent_clients(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "server.sock" if kind == "unix" else None
    await run_load(clients=50, round_trips=20, caplog=caplog, unix_path=path)
    if path is not None:
        assert not path.exists()  # close() removed the socket file


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_thousand_concurrent_clients_hundred_round_trips(
    caplog: pytest.LogCaptureFixture,
) -> None:
    await run_load(clients=1000, round_trips=100, caplog=caplog)


# -- a slow reader against a fast writer ------------------------------------------------

LIMIT = 64 * 1024
#: What one receive may add past the point where the reader asks to pause. The
#: engines receive at most 256 KiB at a time (asyncio's own transport does the same).
RECEIVE_SLACK = 256 * 1024
CHUNK = 64 * 1024
#: All Python allocations during the slow phase: the reader's buffer, the writer's
#: unsent chunks, and what the machinery around them needs (about 1.5 MiB measured).
#: Without flow control, the writer produces hundreds of MiB in that second.
MEMORY_BOUND = 6 * 1024 * 1024


def stream_bytes(start: int, n: int) -> bytes:
    """Bytes *start* to *start + n* of an endless stream that shows loss or reordering:
    the big-endian offset of every 8-byte word."""
    first = start // 8
    words = b"".join((k * 8).to_bytes(8, "big") for k in range(first, first + n // 8 + 2))
    offset = start - first * 8
    return words[offset : offset + n]


async def test_slow_reader_fast_writer_memory_stays_bounded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The server writes as fast as drain() lets it; the client reads 1 KiB every 10 ms.

    The writer's unsent data stays near the high-water mark (drain() blocks above it),
    and the reader never holds much more than twice its limit: without flow control on
    both ends, one of the two would swallow everything the writer can produce.
    """
    slow_reads = 100
    writer_samples: list[tuple[int, int]] = []  # (buffer size before, after drain())
    stop_writing = anyio.Event()
    written = 0

    async def fast_writer(reader: StreamReader, writer: StreamWriter) -> None:
        nonlocal written
        high = writer.transport.get_write_buffer_limits()[1]
        assert high == 64 * 1024
        try:
            while not stop_writing.is_set():
                writer.write(stream_bytes(written, CHUNK))
                written += CHUNK
                before = writer.transport.get_write_buffer_size()
                await writer.drain()
                writer_samples.append((before, writer.transport.get_write_buffer_size()))
            writer.write_eof()
            await reader.read()
        finally:
            await close_writer(writer)

    with no_background_errors(caplog):
        server = await asyncstreams.start_server(fast_writer, LOOPBACK, 0)
        reader, writer = await asyncstreams.open_connection(LOOPBACK, port_of(server), limit=LIMIT)
        received = 0
        reader_peak = 0
        tracemalloc.start()
        try:
            with anyio.fail_after(WAIT + slow_reads * 0.01):
                for _ in range(slow_reads):
                    data = await reader.read(1024)
                    assert data == stream_bytes(received, len(data))
                    received += len(data)
                    reader_peak = max(reader_peak, len(reader._buffer))
                    await anyio.sleep(0.01)
            memory_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            stop_writing.set()
            with anyio.fail_after(WAIT):
                while data := await reader.read(1 << 20):
                    assert data == stream_bytes(received, len(data))
                    received += len(data)
        finally:
            tracemalloc.stop()
            await close_writer(writer)
            server.close()
            with anyio.fail_after(WAIT):
                await server.wait_closed()
    assert received == written
    # The reader's side: never much more than twice the limit ...
    assert reader_peak <= 2 * LIMIT + RECEIVE_SLACK, reader_peak
    # ... and nothing else in the process (a transport's own queue, say) took up the
    # slack: everything Python allocated meanwhile stayed small.
    assert memory_peak <= MEMORY_BOUND, memory_peak
    # The writer's side: drain() held it back (it did block above the mark) ...
    assert any(before > 64 * 1024 for before, _ in writer_samples)
    # ... and after drain() returns, at most the high-water mark is left unsent.
    assert max(after for _, after in writer_samples) <= 64 * 1024
    assert max(before for before, _ in writer_samples) <= 64 * 1024 + CHUNK
