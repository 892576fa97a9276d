"""Bad input: huge lines, slow clients, binary garbage and API misuse.

* A 100 MiB line without a newline is refused with asyncio's ValueError, line after
  line, while the memory in use stays bounded and the server keeps serving.
* Slowloris clients (one byte every 100 ms) do not hold up the other clients.
* Random binary garbage into a line-based server: every line within the limit comes
  out intact and in order, every longer one is refused, nothing crashes.
* API misuse (``write(str)``, negative sizes, empty separators, ``limit <= 0``, two
  readers at once, calls after ``close()``) raises what asyncio raises, with its
  message, and loses nothing that was buffered; compared with real asyncio.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import socket
import ssl
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from _reliability import (
    LOOPBACK,
    WAIT,
    both,
    close_writer,
    in_asyncio,
    no_background_errors,
    outcome_of,
    port_of,
    serving,
    until_blocked,
)

import asyncstreams
from asyncstreams import StreamReader, StreamWriter

pytestmark = pytest.mark.anyio


async def outcome(coro: Any) -> str:
    """How an awaitable ended: ``returned ...`` or the exception's type and args."""
    try:
        with anyio.fail_after(WAIT):
            result = await coro
    except Exception as exc:
        if isinstance(exc, TimeoutError):
            raise AssertionError("hung instead of failing") from exc
        return outcome_of(exc)
    return f"returned {result!r}"


def call(fn: Any, *args: Any) -> str:
    """How a plain call ended."""
    try:
        result = fn(*args)
    except Exception as exc:
        return outcome_of(exc)
    return f"returned {result!r}"


# -- a line far over the limit -----------------------------------------------------------

HUGE = 100 * 1024 * 1024
LIMIT = 64 * 1024
#: Every Python allocation while 100 MiB stream through: the reader's buffer (about
#: twice the limit, plus one receive), the writer's chunk, the machinery around them.
MEMORY_BOUND = 16 * 1024 * 1024


async def asyncio_readline_errors() -> set[str]:
    """The messages asyncio's readline() gives for an over-long line (the oracle)."""

    async def scenario() -> set[str]:
        messages = set()
        for data in (b"xxxxxx", b"xxxxxx\n"):
            reader = asyncio.StreamReader(limit=4)
            reader.feed_data(data)
            try:
                await reader.readline()
            except ValueError as exc:
                messages.add(str(exc))
        return messages

    return await in_asyncio(scenario)


async def test_hundred_mib_line_is_refused_with_bounded_memory(
    caplog: pytest.LogCaptureFixture,
) -> None:
    errors: list[str] = []
    lines: list[bytes] = []
    done = anyio.Event()

    async def line_server(reader: StreamReader, writer: StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError as exc:
                    errors.append(str(exc))
                    continue
                if not line:
                    break
                lines.append(line)
            writer.write(b"%d lines\n" % len(lines))
        finally:
            await close_writer(writer)
            done.set()

    chunk = b"x" * (1024 * 1024)
    with no_background_errors(caplog):
        server = await asyncstreams.start_server(line_server, LOOPBACK, 0, limit=LIMIT)
        async with serving(server):
            reader, writer = await asyncstreams.open_connection(LOOPBACK, port_of(server))
            tracemalloc.start()
            try:
                with anyio.fail_after(60):
                    for _ in range(HUGE // len(chunk)):
                        writer.write(chunk)
                        await writer.drain()
                    writer.write(b"\nok\n")
                    writer.write_eof()
                    answer = await reader.read()
                    await done.wait()
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
                await close_writer(writer)
    assert answer == b"%d lines\n" % len(lines)
    assert peak <= MEMORY_BOUND, f"{peak} bytes allocated at the peak"
    # Refused again and again (each refusal drops about a limit's worth), with
    # asyncio's words; what survives is at most the line's last piece, then 'ok'.
    assert len(errors) >= HUGE // (2 * LIMIT + 256 * 1024)
    assert set(errors) <= await asyncio_readline_errors()
    assert lines[-1] == b"ok\n"
    assert len(lines) <= 2
    assert all(set(line) <= set(b"x\n") and len(line) <= LIMIT + 1 for line in lines[:-1])


# -- slowloris -------------------------------------------------------------------------


async def test_slowloris_clients_do_not_hold_up_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Ten clients dribble a line one byte per 100 ms; ten others make 20 round trips each.

    The fast clients must all finish while every slow line is still incomplete (a
    slow client gives up, failing the test, after 5 s); the slow lines then arrive
    whole.
    """

    async def echo(reader: StreamReader, writer: StreamWriter) -> None:
        async for line in reader:
            writer.write(line)
            await writer.drain()
        await close_writer(writer)

    fast_done = anyio.Event()
    started = 0
    all_started = anyio.Event()
    slow_echoes: list[bool] = []

    async def slowloris(port: int) -> None:
        nonlocal started
        reader, writer = await asyncstreams.open_connection(LOOPBACK, port)
        try:
            sent = b""
            while not fast_done.is_set():
                assert len(sent) < 50, "the slow clients held up the fast ones"
                byte = b"%d" % (len(sent) % 10)
                writer.write(byte)
                await writer.drain()
                sent += byte
                if len(sent) == 2:
                    started += 1
                    if started == 10:
                        all_started.set()
                await anyio.sleep(0.1)
            writer.write(b"\n")
            with anyio.fail_after(WAIT):
                slow_echoes.append(await reader.readline() == sent + b"\n")
        finally:
            await close_writer(writer)

    async def fast(port: int, number: int) -> None:
        reader, writer = await asyncstreams.open_connection(LOOPBACK, port)
        try:
            for i in range(20):
                line = b"fast %d %d\n" % (number, i)
                writer.write(line)
                assert await reader.readline() == line
        finally:
            await close_writer(writer)

    with no_background_errors(caplog):
        server = await asyncstreams.start_server(echo, LOOPBACK, 0)
        async with serving(server):
            port = port_of(server)
            with anyio.fail_after(WAIT):
                async with anyio.create_task_group() as tg:
                    for _ in range(10):
                        tg.start_soon(slowloris, port)
                    await all_started.wait()
                    async with anyio.create_task_group() as fast_clients:
                        for number in range(10):
                            fast_clients.start_soon(fast, port, number)
                    fast_done.set()
    assert slow_echoes == [True] * 10


# -- binary garbage into a line server ------------------------------------------------------

GARBAGE_LIMIT = 256


def garbage(seed: int) -> list[bytes]:
    """Random binary "lines" (any byte but newline), short and long, the last unterminated."""
    rng = random.Random(seed)
    alphabet = bytes(b for b in range(256) if b != ord("\n"))
    lines = []
    for _ in range(rng.randrange(20, 80)):
        size = rng.choice(
            [
                rng.randrange(0, 8),
                rng.randrange(0, GARBAGE_LIMIT + 1),
                GARBAGE_LIMIT,
                GARBAGE_LIMIT + 1,
                rng.randrange(GARBAGE_LIMIT, 10 * GARBAGE_LIMIT),
            ]
        )
        lines.append(bytes(rng.choice(alphabet) for _ in range(size)) + b"\n")
    lines.append(bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 3 * GARBAGE_LIMIT))))
    return lines


def explained(lines: list[bytes], replies: list[bytes | None], limit: int) -> bool:
    """Whether asyncio's readline() rules explain *replies* (None: a ValueError).

    A line within the limit comes out as it is. A longer one gives one or more
    ValueErrors (each drops more than *limit* bytes), then possibly the line's last
    piece (what was left after the last refusal), as readline() leaves it.
    """

    @functools.cache
    def match(i: int, j: int) -> bool:
        if i == len(lines):
            return j == len(replies)
        line = lines[i]
        content = len(line) - line.endswith(b"\n")
        if content <= limit:
            if content == 0 and not line:
                return match(i + 1, j)  # an empty last piece: readline() gives b"" (EOF)
            return j < len(replies) and replies[j] == line and match(i + 1, j + 1)
        k = j
        while k < len(replies) and replies[k] is None and k - j < content // (limit + 1):
            k += 1
            if match(i + 1, k):
                return True
            piece = replies[k] if k < len(replies) else None
            if (
                piece is not None
                and line.endswith(piece)
                and len(piece) - piece.endswith(b"\n") <= limit
                and match(i + 1, k + 1)
            ):
                return True
        return False

    return match(0, 0)


@pytest.mark.parametrize("seed", range(4))
async def test_binary_garbage_into_a_line_server(
    seed: int, caplog: pytest.LogCaptureFixture
) -> None:
    async def line_server(reader: StreamReader, writer: StreamWriter) -> None:
        while True:
            try:
                line = await reader.readline()
            except ValueError:
                writer.write(b"E\n")
                continue
            if not line:
                break
            writer.write(b"L%d\n" % len(line) + line)
            await writer.drain()
        await close_writer(writer)

    lines = garbage(seed)
    data = b"".join(lines)
    rng = random.Random(seed)
    with no_background_errors(caplog):
        server = await asyncstreams.start_server(line_server, LOOPBACK, 0, limit=GARBAGE_LIMIT)
        async with serving(server):
            reader, writer = await asyncstreams.open_connection(LOOPBACK, port_of(server))
            replies: list[bytes | None] = []

            async def send() -> None:
                pos = 0
                while pos < len(data):
                    size = rng.choice([1, 3, 50, 300, 2000])
                    writer.write(data[pos : pos + size])
                    pos += size
                    if rng.random() < 0.3:
                        await writer.drain()
                        await anyio.lowlevel.checkpoint()
                writer.write_eof()

            try:
                with anyio.fail_after(WAIT):
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(send)
                        while header := await reader.readline():
                            if header == b"E\n":
                                replies.append(None)
                            else:
                                replies.append(await reader.readexactly(int(header[1:])))
            finally:
                await close_writer(writer)
            # The server is still there for the next client.
            reader, writer = await asyncstreams.open_connection(LOOPBACK, port_of(server))
            writer.write(b"still serving\n")
            with anyio.fail_after(WAIT):
                assert await reader.readline() == b"L14\n"
                assert await reader.readline() == b"still serving\n"
            await close_writer(writer)
    assert None in replies, "no line was refused: the test lost its point"
    assert explained(lines, replies, GARBAGE_LIMIT), (lines, replies)


def test_explained_rejects_what_readline_never_does() -> None:
    """The checker itself: it must refuse a lost line, a changed one, a missing error."""
    limit = 4
    lines = [b"ab\n", b"x" * 10 + b"\n", b"cd\n"]
    assert explained(lines, [b"ab\n", None, b"cd\n"], limit)
    assert explained(lines, [b"ab\n", None, b"xxx\n", b"cd\n"], limit)
    assert not explained(lines, [b"ab\n", b"cd\n"], limit)  # the long line not refused
    assert not explained(lines, [b"ab\n", None], limit)  # a short line lost
    assert not explained(lines, [b"ab\n", None, b"cD\n"], limit)  # a short line changed
    assert not explained(lines, [b"ab\n", None, None, None, b"cd\n"], limit)  # too many
    assert not explained(lines, [b"ab\n", None, b"xxxxx\n", b"cd\n"], limit)  # piece too long


# -- API misuse, compared with asyncio ------------------------------------------------------


@asynccontextmanager
async def raw_peer(streams: Any) -> AsyncIterator[tuple[Any, Any, socket.socket]]:
    """``(reader, writer, peer)``: a *streams* client connected to a raw socket."""
    with socket.create_server((LOOPBACK, 0)) as listener:
        listener.setblocking(False)
        with anyio.fail_after(WAIT):
            reader, writer = await streams.open_connection(*listener.getsockname())
            await anyio.wait_readable(listener)
        peer, _ = listener.accept()
    try:
        peer.settimeout(WAIT)
        yield reader, writer, peer
    finally:
        peer.close()
        await close_writer(writer)


async def recv_available(peer: socket.socket) -> bytes:
    """What *peer* has received so far (after letting the other end's writes out)."""
    for _ in range(5):
        await anyio.sleep(0.01)
    peer.setblocking(False)
    data = bytearray()
    try:
        while chunk := peer.recv(1 << 20):
            data += chunk
    except BlockingIOError:
        pass
    finally:
        peer.settimeout(WAIT)
    return bytes(data)


async def scenario_misuse(streams: Any) -> list[object]:
    """Misuse on a live connection: each error as asyncio's, and nothing lost."""
    results: list[object] = []
    results.append(await outcome(streams.open_connection(LOOPBACK, 1, limit=0)))
    results.append(await outcome(streams.open_connection(LOOPBACK, 1, limit=-1)))
    async with raw_peer(streams) as (reader, writer, peer):
        peer.sendall(b"first\nsecond\nthird\n")
        results.append(await outcome(reader.readline()))
        results.append(await outcome(reader.readuntil(b"")))
        results.append(await outcome(reader.readexactly(-1)))
        results.append(await outcome(reader.read(0)))
        results.append(await outcome(reader.readexactly(0)))
        results.append(await outcome(reader.readexactly("4")))
        results.append(await outcome(reader.readexactly(2.5)))
        results.append(call(writer.write, "text"))
        results.append(call(writer.write, 42))
        results.append(await outcome(reader.readline()))
        results.append(await outcome(reader.readline()))
        # Two reads waiting at once: the second is refused, the first unharmed.
        async with anyio.create_task_group() as tg:
            first: list[str] = []

            async def wait_for_a_line() -> None:
                first.append(await outcome(reader.readline()))

            tg.start_soon(wait_for_a_line)
            await until_blocked()
            results.append(await outcome(reader.read(10)))
            results.append(await outcome(reader.readuntil(b"!")))
            peer.sendall(b"fourth\n")
        results += first
        writer.write(b"still writing")
        results.append(await outcome(writer.drain()))
        results.append(await recv_available(peer))
        # write() after write_eof() is refused; what was written before got through.
        writer.write(b" before eof")
        writer.write_eof()
        results.append(call(writer.write, b"after eof"))
        peer.sendall(b"last")
        peer.shutdown(socket.SHUT_WR)
        results.append(await outcome(reader.read(-2)))  # any negative n: until EOF
        results.append(await recv_available(peer))
    return results


async def test_misuse_on_a_live_connection_matches_asyncio() -> None:
    ours, theirs = await both(scenario_misuse)
    assert theirs == [
        "ValueError('Limit cannot be <= 0',)",
        "ValueError('Limit cannot be <= 0',)",
        "returned b'first\\n'",
        "ValueError('Separator should be at least one-byte string',)",
        "ValueError('readexactly size can not be less than zero',)",
        "returned b''",
        "returned b''",
        "TypeError(\"'<' not supported between instances of 'str' and 'int'\",)",
        "TypeError('slice indices must be integers or None or have an __index__ method',)",
        "TypeError(\"data argument must be a bytes-like object, not 'str'\",)",
        "TypeError(\"data argument must be a bytes-like object, not 'int'\",)",
        "returned b'second\\n'",
        "returned b'third\\n'",
        (
            "RuntimeError('read() called while another coroutine is already waiting for "
            "incoming data',)"
        ),
        (
            "RuntimeError('readuntil() called while another coroutine is already waiting "
            "for incoming data',)"
        ),
        "returned b'fourth\\n'",
        "returned None",
        b"still writing",
        "RuntimeError('Cannot call write() after write_eof()',)",
        "returned b'last'",
        b" before eof",
    ]
    assert ours == theirs


async def scenario_writelines_with_a_bad_item(streams: Any) -> list[object]:
    async with raw_peer(streams) as (_reader, writer, peer):
        results: list[object] = [call(writer.writelines, [b"good ", "bad", b"good"])]
        writer.write(b"after")
        await writer.drain()
        results.append(await recv_available(peer))
        return results


async def test_writelines_with_a_non_bytes_item_writes_nothing() -> None:
    ours, theirs = await both(scenario_writelines_with_a_bad_item)
    assert theirs[1] == b"after"
    assert ours == theirs


async def scenario_after_close(streams: Any, context: ssl.SSLContext) -> list[object]:
    """Calls after our own close(): asyncio's outcomes, and buffered data still readable."""
    async with raw_peer(streams) as (reader, writer, peer):
        peer.sendall(b"first\nsecond\n")
        results: list[object] = [await outcome(reader.readline())]
        peername = writer.get_extra_info("peername")
        writer.close()
        results.append(writer.is_closing())
        results.append(call(writer.write, b"dropped"))
        results.append(call(writer.write_eof))
        results.append(await outcome(writer.drain()))
        results.append(await outcome(reader.readline()))  # received before close: kept
        results.append(await outcome(reader.read()))
        results.append(reader.at_eof())
        results.append(await outcome(writer.wait_closed()))
        results.append(await outcome(writer.wait_closed()))
        results.append(writer.get_extra_info("peername") == peername)
        results.append(await outcome(writer.start_tls(context)))
        results.append(await outcome(anyio.to_thread.run_sync(peer.recv, 100)))
        return results


async def test_calls_after_close_match_asyncio() -> None:
    context = ssl.create_default_context()
    ours, theirs = await both(lambda streams: scenario_after_close(streams, context))
    assert theirs == [
        "returned b'first\\n'",
        True,
        "returned None",
        "returned None",
        "ConnectionResetError('Connection lost',)",
        "returned b'second\\n'",
        "returned b''",
        True,
        "returned None",
        "returned None",
        True,
        "ConnectionResetError('Connection lost',)",
        "returned b''",
    ]
    assert ours == theirs


#: More than the kernel takes at once, so close() still has bytes to send.
UNSENT = 8 * 1024 * 1024
LOST_WRITE_WARNING = "socket.send() raised exception."


async def scenario_writes_after_close(
    streams: Any, caplog: pytest.LogCaptureFixture
) -> list[object]:
    """A write after close() is sent while close() still flushes; once the connection
    is closed, writes are dropped, with asyncio's warning from the fifth on."""
    results: list[object] = []
    async with raw_peer(streams) as (_reader, writer, peer):
        writer.write(b"x" * UNSENT)
        writer.close()
        results.append(call(writer.write, b"la"))
        results.append(call(writer.write, b"te"))  # a second one is not held back
        received = bytearray()
        with anyio.fail_after(WAIT):
            while chunk := await anyio.to_thread.run_sync(peer.recv, 1 << 20):
                received += chunk
        results.append(len(received))
        results.append(bytes(received[-4:]))
    async with raw_peer(streams) as (_reader, writer, peer):
        writer.close()
        logged = len(caplog.records)
        for _ in range(6):
            writer.write(b"lost")
        warnings = [r for r in caplog.records[logged:] if r.getMessage() == LOST_WRITE_WARNING]
        results.append(len(warnings))
        results.append(await outcome(writer.wait_closed()))
        results.append(await outcome(anyio.to_thread.run_sync(peer.recv, 100)))
    return results


async def test_writes_after_close_match_asyncio(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    ours, theirs = await both(lambda streams: scenario_writes_after_close(streams, caplog))
    assert theirs == [
        "returned None",
        "returned None",
        UNSENT + 4,
        b"late",
        2,
        "returned None",
        "returned b''",
    ]
    assert ours == theirs


async def scenario_drain_sends_what_was_written(streams: Any) -> list[object]:
    """After drain() the kernel holds every byte written before it, written alone or
    in a row: asyncio's write() sends at once, asyncstreams' joins writes made in a row
    and drain() sends them. The peer reads without the writer's loop running again."""
    results: list[object] = []
    ours, peer = socket.socketpair()  # what a UNIX socket's sender sends, it has
    with peer:
        peer.setblocking(False)
        _reader, writer = await streams.open_connection(sock=ours)
        try:
            batches = [[b"one"], [b"a", b"b", b"c"], [b"d", b"e"], [b"alone"], [b"y" * 100] * 100]
            for pieces in batches:
                for piece in pieces:
                    writer.write(piece)
                await writer.drain()
                results.append(writer.transport.get_write_buffer_size())
                results.append(_recv_now(peer))
            # After a lone write and drain(), a write goes out inside write() again.
            writer.write(b"lone")
            await writer.drain()
            results.append(_recv_now(peer))
            writer.write(b"at once")
            results.append(_recv_now(peer))
            await writer.drain()
        finally:
            await close_writer(writer)
    return results


def _recv_now(peer: socket.socket) -> object:
    try:
        return peer.recv(1 << 20)
    except BlockingIOError:
        return "nothing yet"


async def test_drain_sends_what_was_written_like_asyncio() -> None:
    ours, theirs = await both(scenario_drain_sends_what_was_written)
    assert theirs == [
        *(0, b"one", 0, b"abc", 0, b"de", 0, b"alone", 0, b"y" * 10_000),
        *(b"lone", b"at once"),
    ]
    assert ours == theirs


async def test_writelines_after_close_is_dropped_like_write() -> None:
    # asyncio 3.13.0 raises TypeError("'NoneType' object is not callable") from deep in
    # its selector transport here; write() after close() is silently dropped, and so
    # is writelines() in asyncstreams.
    async with raw_peer(asyncstreams) as (_reader, writer, peer):
        writer.close()
        assert call(writer.writelines, [b"dropped"]) == "returned None"
        assert await outcome(writer.wait_closed()) == "returned None"
        assert await outcome(anyio.to_thread.run_sync(peer.recv, 100)) == "returned b''"
