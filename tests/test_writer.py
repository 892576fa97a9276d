"""StreamWriter and its transport against asyncio 3.13's semantics.

The peer is a plain blocking socket driven from worker threads, so its reading (or not
reading) is under the test's control. Expectations were checked against CPython 3.13's
asyncio (streams.StreamWriter, selector_events._SelectorSocketTransport,
transports._FlowControlMixin); uvloop's deviations are noted where they exist.
"""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import struct
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
from _write_loop import ticks_during_write_loop

import asyncstreams
from asyncstreams._backend import current_backend

pytestmark = pytest.mark.anyio

Client = tuple[asyncstreams.StreamReader, asyncstreams.StreamWriter, socket.socket]


@contextlib.asynccontextmanager
async def connected(kind: str, tmp_path: Path | None = None) -> AsyncIterator[Client]:
    """An asyncstreams client connected to a raw, blocking peer socket (timeout 10 s)."""
    if kind == "tcp":
        listener = socket.create_server(("127.0.0.1", 0))
    else:
        assert tmp_path is not None
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(tmp_path / "peer.sock"))
        listener.listen()
    with listener:
        listener.settimeout(10)
        with anyio.fail_after(10):
            if kind == "tcp":
                port = listener.getsockname()[1]
                reader, writer = await asyncstreams.open_connection("127.0.0.1", port)
            else:
                reader, writer = await asyncstreams.open_unix_connection(listener.getsockname())
        try:
            peer, _ = await anyio.to_thread.run_sync(listener.accept)
            peer.settimeout(10)
            with peer:
                yield reader, writer, peer
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError), anyio.fail_after(10):
                await writer.wait_closed()


@pytest.fixture(params=["tcp", "unix"])
def kind(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


def recv_until_eof(peer: socket.socket) -> bytes:
    buf = bytearray()
    while data := peer.recv(1 << 20):
        buf += data
    return bytes(buf)


def recv_exactly(peer: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        data = peer.recv(min(1 << 20, n - len(buf)))
        if not data:
            break
        buf += data
    return bytes(buf)


async def fill_until_drain_blocks(writer: asyncstreams.StreamWriter, chunk: bytes) -> int:
    """Write *chunk* repeatedly (the peer is not reading) until drain() stops returning.

    drain() returning while the buffer is under the high-water mark, and blocking once
    the peer's kernel buffers are full and ours is above the mark, is what's tested.
    """
    total = 0
    while True:
        writer.write(chunk)
        total += len(chunk)
        with anyio.move_on_after(0.25) as scope:
            await writer.drain()
        if scope.cancelled_caught:
            return total
        assert total < 512 * 1024 * 1024, "drain() never blocked with a non-reading peer"


# --------------------------------------------------------------------------- write / writelines


async def test_write_and_writelines_preserve_order(kind: str, tmp_path: Path) -> None:
    async with connected(kind, tmp_path) as (_, writer, peer):
        writer.write(b"one ")
        writer.writelines([b"two ", bytearray(b"three "), memoryview(b"four ")])
        writer.write(b"")  # an empty write is a no-op
        writer.writelines([])
        writer.write(bytearray(b"five "))
        writer.write(memoryview(b"xsix ")[1:])
        writer.writelines(iter([b"seven"]))
        writer.close()
        received = await anyio.to_thread.run_sync(recv_until_eof, peer)
    assert received == b"one two three four five six seven"


async def test_write_str_is_type_error() -> None:
    async with connected("tcp") as (_, writer, peer):
        with pytest.raises(TypeError):
            writer.write("text")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            writer.writelines(["text"])  # type: ignore[list-item]
        with pytest.raises(TypeError):
            writer.transport.write("text")  # type: ignore[arg-type]
        # The connection is still usable, and nothing of the rejected data was sent.
        writer.write(b"ok")
        writer.close()
        assert await anyio.to_thread.run_sync(recv_until_eof, peer) == b"ok"


async def test_writelines_many_small_buffers(kind: str, tmp_path: Path) -> None:
    parts = [os.urandom(i % 97 + 1) for i in range(5000)]
    received = b""

    async def peer_reads(peer: socket.socket) -> None:
        nonlocal received
        received = await anyio.to_thread.run_sync(recv_until_eof, peer)

    async with connected(kind, tmp_path) as (_, writer, peer), anyio.create_task_group() as tg:
        # ~250 KB is more than a unix socket holds: the peer must read while we drain.
        tg.start_soon(peer_reads, peer)
        writer.writelines(parts)
        with anyio.fail_after(10):
            await writer.drain()
        writer.close()
    assert received == b"".join(parts)


# --------------------------------------------------------------------------- delivery without drain


async def test_write_then_close_delivers_everything(kind: str, tmp_path: Path) -> None:
    data = os.urandom(8 << 20)  # larger than the kernel buffers: needs flushing after close()
    async with connected(kind, tmp_path) as (_, writer, peer):
        writer.write(data)
        writer.close()
        assert writer.is_closing()
        with anyio.fail_after(30):
            received = await anyio.to_thread.run_sync(recv_until_eof, peer)
            await writer.wait_closed()
    assert len(received) == len(data)
    assert received == data


async def test_write_then_await_unrelated_delivers(kind: str, tmp_path: Path) -> None:
    data = os.urandom(8 << 20)
    async with connected(kind, tmp_path) as (_, writer, peer):
        got = anyio.Event()
        received = b""

        async def peer_reads() -> None:
            nonlocal received
            received = await anyio.to_thread.run_sync(recv_exactly, peer, len(data))
            got.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(peer_reads)
            writer.write(data)  # no drain(): the data must flow while we wait below
            with anyio.fail_after(30):
                await got.wait()
    assert received == data


async def test_small_write_then_sleep_delivers() -> None:
    async with connected("tcp") as (_, writer, peer):
        writer.write(b"ping")
        received = b""

        async def peer_reads() -> None:
            nonlocal received
            received = await anyio.to_thread.run_sync(recv_exactly, peer, 4)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(peer_reads)
                await anyio.sleep(0.05)
    assert received == b"ping"


# --------------------------------------------------------------------------- flow control


async def test_default_write_buffer_limits() -> None:
    async with connected("tcp") as (_, writer, _peer):
        transport = writer.transport
        # asyncio's _FlowControlMixin default: high 64 KiB, low = high // 4.
        # (uvloop reports (16, 65536); we promise asyncio's.)
        assert transport.get_write_buffer_limits() == (16384, 65536)
        transport.set_write_buffer_limits(high=100)
        assert transport.get_write_buffer_limits() == (25, 100)
        transport.set_write_buffer_limits(low=10)
        assert transport.get_write_buffer_limits() == (10, 40)
        transport.set_write_buffer_limits(high=0)
        assert transport.get_write_buffer_limits() == (0, 0)
        transport.set_write_buffer_limits(high=1000, low=1000)
        assert transport.get_write_buffer_limits() == (1000, 1000)
        transport.set_write_buffer_limits()
        assert transport.get_write_buffer_limits() == (16384, 65536)
        with pytest.raises(ValueError, match=r"high \(1\) must be >= low \(2\) must be >= 0"):
            transport.set_write_buffer_limits(high=1, low=2)
        with pytest.raises(ValueError, match=r"must be >= 0"):
            transport.set_write_buffer_limits(high=10, low=-1)
        # A rejected call leaves the limits unchanged.
        assert transport.get_write_buffer_limits() == (16384, 65536)


async def test_drain_below_high_water_returns_with_idle_peer() -> None:
    async with connected("tcp") as (_, writer, peer):
        # The peer reads nothing, but a small write fits in the kernel buffers.
        writer.write(b"x" * 1000)
        with anyio.fail_after(10):
            await writer.drain()
        assert writer.transport.get_write_buffer_size() <= 65536
        writer.close()
        assert await anyio.to_thread.run_sync(recv_until_eof, peer) == b"x" * 1000


async def test_write_loop_lets_other_tasks_run() -> None:
    # asyncio's drain() yields only once the kernel's buffer is full; asyncstreams' also
    # lets the loop run once per 64 KiB written, so a write loop neither starves the
    # other tasks nor runs past trio's cancellation. The kernel takes all 192 KiB here.
    ours, peer = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    _reader, writer = await asyncstreams.open_connection(sock=ours)
    try:
        # Three yields; on trio (which runs each batch of ready tasks in random order)
        # the ticker may run twice in one and not in another. Without them: at most once.
        assert await ticks_during_write_loop(writer, unpaused=True) >= 2
    finally:
        writer.close()
        peer.close()


async def test_small_writes_between_drains_count_toward_the_yield() -> None:
    # 128-byte writes with a drain() every 64 of them: every 64 KiB of them let the
    # loop run, as one big write per drain() does. drain() never waits for the peer.
    ours, peer = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    _reader, writer = await asyncstreams.open_connection(sock=ours)
    writer.transport.set_write_buffer_limits(high=1 << 20)
    try:
        ticks = await ticks_during_write_loop(writer, unpaused=False, size=128, drain_every=64)
        assert ticks >= 2
    finally:
        writer.close()
        peer.close()


async def test_tcp_client_of_a_server_on_this_loop_lets_it_run() -> None:
    # The reader is on this loop: it takes each 64 KiB while they are in the CPU cache.
    received = 0
    done = anyio.Event()

    async def handler(reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter) -> None:
        nonlocal received
        while data := await reader.read(65536):
            received += len(data)
        done.set()
        writer.close()

    async with await asyncstreams.start_server(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        _reader, writer = await asyncstreams.open_connection("127.0.0.1", port)
        try:
            # On trio the kernel takes at most 16 KiB beyond what is in flight
            # (TCP_NOTSENT_LOWAT), so some writes wait a little: ticks either way.
            assert await ticks_during_write_loop(writer, unpaused=False) >= 2
        finally:
            writer.close()
        with anyio.fail_after(10):
            await done.wait()
    assert received == 12 * 16384


async def test_tcp_client_of_a_server_elsewhere_yields_as_asyncio_on_asyncio() -> None:
    # No reader on this loop to let run: on asyncio's loops drain() returns at once, as
    # asyncio's does; on trio it stays a write loop's checkpoint.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        sock.connect(listener.getsockname())
        peer, _ = listener.accept()
    _reader, writer = await asyncstreams.open_connection(sock=sock)
    try:
        if current_backend() == "trio":
            assert await ticks_during_write_loop(writer, unpaused=False) >= 2
        else:
            assert await ticks_during_write_loop(writer, unpaused=True) <= 1
    finally:
        writer.close()
        peer.close()


@pytest.mark.parametrize(
    "limits",
    [
        pytest.param(None, id="default-limits"),
        pytest.param((1 << 20, 1 << 10), id="high-1MiB-low-1KiB"),
        pytest.param((0, 0), id="high-0"),
    ],
)
async def test_drain_blocks_above_high_water_until_peer_reads(
    limits: tuple[int, int] | None,
) -> None:
    async with connected("tcp") as (_, writer, peer):
        transport = writer.transport
        if limits is not None:
            transport.set_write_buffer_limits(high=limits[0], low=limits[1])
        low, high = transport.get_write_buffer_limits()
        chunk = os.urandom(64 * 1024)
        total = await fill_until_drain_blocks(writer, chunk)
        # drain() only waits while the unsent data is above the high-water mark.
        assert transport.get_write_buffer_size() > high

        # Still blocked a moment later: nothing moves while the peer does not read.
        drained = anyio.Event()

        async def drain() -> None:
            await writer.drain()
            drained.set()

        received = b""

        async def peer_reads() -> None:
            nonlocal received
            received = await anyio.to_thread.run_sync(recv_exactly, peer, total)

        async with anyio.create_task_group() as tg:
            tg.start_soon(drain)
            await anyio.sleep(0.2)
            assert not drained.is_set()
            tg.start_soon(peer_reads)
            with anyio.fail_after(30):
                await drained.wait()
            # Resumed at or below the low-water mark; nothing was written since.
            assert transport.get_write_buffer_size() <= low
        assert len(received) == total
        assert received == chunk * (total // len(chunk))
        with anyio.fail_after(10):
            await writer.drain()
        assert transport.get_write_buffer_size() == 0


async def test_several_drain_waiters_all_resume() -> None:
    async with connected("tcp") as (_, writer, peer):
        chunk = b"w" * (64 * 1024)
        total = await fill_until_drain_blocks(writer, chunk)
        resumed: list[int] = []
        all_resumed = anyio.Event()

        async def drain(i: int) -> None:
            await writer.drain()
            resumed.append(i)
            if len(resumed) == 3:
                all_resumed.set()

        async with anyio.create_task_group() as tg:
            for i in range(3):
                tg.start_soon(drain, i)
            await anyio.sleep(0.1)
            assert resumed == []
            data = await anyio.to_thread.run_sync(recv_exactly, peer, total)
            with anyio.fail_after(30):
                await all_resumed.wait()
        assert sorted(resumed) == [0, 1, 2]
        assert len(data) == total


async def test_cancelled_drain_leaves_writer_usable() -> None:
    async with connected("tcp") as (_, writer, peer):
        chunk = b"c" * (64 * 1024)
        total = await fill_until_drain_blocks(writer, chunk)  # cancels a blocked drain()
        with anyio.move_on_after(0.05):
            await writer.drain()
        data = b""

        async def peer_reads() -> None:
            nonlocal data
            data = await anyio.to_thread.run_sync(recv_exactly, peer, total + 3)

        async with anyio.create_task_group() as tg:
            tg.start_soon(peer_reads)
            writer.write(b"end")
            with anyio.fail_after(30):
                await writer.drain()
        assert data == chunk * (total // len(chunk)) + b"end"


# --------------------------------------------------------------------------- write_eof


async def test_write_eof_half_close(kind: str, tmp_path: Path) -> None:
    async with connected(kind, tmp_path) as (reader, writer, peer):
        assert writer.can_write_eof()
        writer.write(b"request")
        writer.write_eof()
        writer.write_eof()  # a second write_eof() is a no-op
        assert not writer.is_closing()
        # The peer reads our data, then EOF...
        assert await anyio.to_thread.run_sync(recv_until_eof, peer) == b"request"
        # ...and can still answer: our read side is open.
        await anyio.to_thread.run_sync(peer.sendall, b"response")
        await anyio.to_thread.run_sync(peer.shutdown, socket.SHUT_WR)
        with anyio.fail_after(10):
            assert await reader.read() == b"response"
        assert reader.at_eof()


async def test_write_eof_after_large_write_flushes_first() -> None:
    data = os.urandom(8 << 20)
    async with connected("tcp") as (_, writer, peer):
        writer.write(data)
        writer.write_eof()
        with anyio.fail_after(30):
            received = await anyio.to_thread.run_sync(recv_until_eof, peer)
        assert received == data


async def test_write_after_write_eof_is_runtime_error() -> None:
    async with connected("tcp") as (_, writer, _peer):
        writer.write_eof()
        # selector_events: RuntimeError('Cannot call write() after write_eof()'); uvloop agrees.
        with pytest.raises(RuntimeError, match=r"Cannot call write\(\) after write_eof\(\)"):
            writer.write(b"late")


# --------------------------------------------------------------------------- transport


async def test_transport_methods(kind: str, tmp_path: Path) -> None:
    async with connected(kind, tmp_path) as (reader, writer, peer):
        transport = writer.transport
        assert writer.transport is transport
        assert not transport.is_closing()
        assert transport.can_write_eof()
        assert transport.get_extra_info("peername") == writer.get_extra_info("peername")
        assert transport.get_extra_info("nope", "default") == "default"
        transport.write(b"a")
        transport.writelines([b"b", b"c"])
        with anyio.fail_after(10):
            await writer.drain()
        assert transport.get_write_buffer_size() >= 0
        assert await anyio.to_thread.run_sync(recv_exactly, peer, 3) == b"abc"
        transport.write_eof()
        assert await anyio.to_thread.run_sync(recv_until_eof, peer) == b""
        await anyio.to_thread.run_sync(peer.sendall, b"back")
        with anyio.fail_after(10):
            assert await reader.readexactly(4) == b"back"
        transport.close()
        assert transport.is_closing()
        assert writer.is_closing()
        with anyio.fail_after(10):
            await writer.wait_closed()
        assert transport.get_write_buffer_size() == 0


async def test_transport_close_flushes_then_peer_sees_eof() -> None:
    async with connected("tcp") as (_, writer, peer):
        writer.transport.write(b"flushed")
        writer.transport.close()
        assert await anyio.to_thread.run_sync(recv_until_eof, peer) == b"flushed"


async def test_transport_abort_discards_buffer() -> None:
    async with connected("tcp") as (_, writer, peer):
        chunk = b"a" * (64 * 1024)
        await fill_until_drain_blocks(writer, chunk)
        assert writer.transport.get_write_buffer_size() > 0
        writer.transport.abort()
        # _force_close() clears the buffer at once.
        assert writer.transport.get_write_buffer_size() == 0
        assert writer.is_closing()
        with anyio.fail_after(10):
            await writer.wait_closed()  # connection_lost(None): no exception
        with anyio.fail_after(10), pytest.raises(ConnectionResetError):
            await writer.drain()

        def drain_peer() -> bytes | OSError:
            try:
                return recv_until_eof(peer)
            except OSError as exc:
                return exc

        # The peer's connection ends (EOF, or a reset) without waiting for the rest.
        outcome = await anyio.to_thread.run_sync(drain_peer)
        assert isinstance(outcome, (bytes, ConnectionResetError))


async def test_abort_on_idle_connection() -> None:
    async with connected("tcp") as (reader, writer, peer):
        writer.transport.abort()
        assert writer.is_closing()
        with anyio.fail_after(10):
            await writer.wait_closed()
            assert await reader.read() == b""
        assert await anyio.to_thread.run_sync(recv_until_eof, peer) == b""


# --------------------------------------------------------------------------- after close


async def test_write_after_close_is_dropped_and_drain_raises(kind: str, tmp_path: Path) -> None:
    async with connected(kind, tmp_path) as (_, writer, peer):
        writer.write(b"before")
        writer.close()
        writer.close()  # idempotent
        writer.write(b"after")  # silently dropped
        with anyio.fail_after(10), pytest.raises(ConnectionResetError):
            await writer.drain()
        with anyio.fail_after(10):
            await writer.wait_closed()
            await writer.wait_closed()
        writer.write(b"later still")  # dropped after the connection is gone, too
        with anyio.fail_after(10), pytest.raises(ConnectionResetError):
            await writer.drain()
        assert await anyio.to_thread.run_sync(recv_until_eof, peer) == b"before"


async def test_drain_after_close_without_writes_raises() -> None:
    async with connected("tcp") as (_, writer, _peer):
        writer.close()
        with anyio.fail_after(10), pytest.raises(ConnectionResetError):
            await writer.drain()


async def test_reader_sees_eof_after_own_close() -> None:
    async with connected("tcp") as (reader, writer, _peer):
        writer.close()
        with anyio.fail_after(10):
            await writer.wait_closed()
            # connection_lost(None) feeds EOF to the reader.
            assert await reader.read() == b""
        assert reader.at_eof()


# --------------------------------------------------------------------------- peer reset


def reset(peer: socket.socket) -> None:
    """Close *peer* with SO_LINGER 0, so the other side gets a RST."""
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()


async def write_and_drain_until_error(writer: asyncstreams.StreamWriter) -> BaseException:
    with anyio.fail_after(20):
        for _ in range(200):
            try:
                writer.write(b"x" * 1024)
                await writer.drain()
            except Exception as exc:
                return exc
            await anyio.sleep(0.01)
    raise AssertionError("drain() kept succeeding after the peer reset the connection")


async def test_drain_after_peer_reset_raises_connection_error() -> None:
    async with connected("tcp") as (_, writer, peer):
        reset(peer)
        exc = await write_and_drain_until_error(writer)
        # asyncio raises ConnectionResetError here (either the recv() error stored on the
        # reader or _drain_helper's 'Connection lost'); EPIPE would be BrokenPipeError.
        # uvloop may raise RuntimeError('unable to perform operation ...; the handler is
        # closed') on write; we promise asyncio's.
        assert isinstance(exc, (ConnectionResetError, BrokenPipeError)), repr(exc)


async def test_read_then_drain_after_peer_reset() -> None:
    async with connected("tcp") as (reader, writer, peer):
        reset(peer)
        # asyncio: recv() fails with ECONNRESET, the reader gets the exception...
        with anyio.fail_after(10), pytest.raises(ConnectionResetError):
            await reader.read()
        # ...write() is then dropped and drain() re-raises the reader's exception.
        writer.write(b"x")
        with anyio.fail_after(10), pytest.raises(ConnectionResetError):
            await writer.drain()
        writer.close()
        # The close waiter carries the connection's error as well.
        with anyio.fail_after(10), pytest.raises(ConnectionResetError):
            await writer.wait_closed()


# --------------------------------------------------------------------------- garbage collection


async def test_unclosed_writer_warns_on_gc_and_closes() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(10)
        port = listener.getsockname()[1]
        with anyio.fail_after(10):
            reader, writer = await asyncstreams.open_connection("127.0.0.1", port)
        peer, _ = await anyio.to_thread.run_sync(listener.accept)
        with peer:
            peer.settimeout(10)
            with pytest.warns(ResourceWarning, match="unclosed"):
                del writer  # the last reference: collected at once
            await anyio.sleep(0.05)
            # StreamWriter.__del__ closed the transport: the peer sees EOF, and so do we.
            assert await anyio.to_thread.run_sync(recv_until_eof, peer) == b""
            with anyio.fail_after(10):
                assert await reader.read() == b""


async def test_closed_writer_does_not_warn_on_gc() -> None:
    async with connected("tcp") as (_, writer, _peer):
        writer.close()
        with anyio.fail_after(10):
            await writer.wait_closed()
    # filterwarnings=error turns any ResourceWarning from here into a failure.
    del writer
    gc.collect()
    await anyio.lowlevel.checkpoint()
    gc.collect()


async def test_writes_stay_in_order_while_data_arrives(kind: str, tmp_path: Path) -> None:
    """Writes sent at once and writes joined for later never overtake each other.

    The peer keeps sending while several tasks, woken together each round, write in
    turn: receives (after which a write may go out at once) land between writes that
    still wait to be joined.
    """
    rounds, writers = 400, 3
    parts = [
        [f"<{r:04d}.{w}>".encode() * (1 + (r * 7 + w) % 13) for w in range(writers)]
        for r in range(rounds)
    ]
    expected_size = sum(len(part) for row in parts for part in row)
    stop = threading.Event()

    def chatter(peer: socket.socket) -> None:
        while not stop.is_set():
            try:
                peer.send(b"x" * 64)
            except OSError:
                return
            stop.wait(0.0002)

    async with connected(kind, tmp_path) as (reader, writer, peer), anyio.create_task_group() as tg:
        received = bytearray()

        def collect() -> None:
            while len(received) < expected_size:
                data = peer.recv(1 << 16)
                if not data:
                    return
                received.extend(data)

        async def drain_incoming() -> None:
            with contextlib.suppress(ConnectionError):
                while await reader.read(1 << 16):
                    pass

        tg.start_soon(anyio.to_thread.run_sync, chatter, peer)
        tg.start_soon(drain_incoming)
        go = [anyio.Event() for _ in range(rounds)]
        done = [anyio.Event() for _ in range(rounds)]

        async def write_in_turn(w: int) -> None:
            for r in range(rounds):
                await go[r].wait()
                # Each writer writes its part of the round twice over: once sent at
                # once, once joined for later (the halves are split at random places).
                part = parts[r][w]
                writer.write(part[: len(part) // 2])
                writer.write(part[len(part) // 2 :])
                if w == writers - 1:
                    done[r].set()
                else:
                    await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as inner:
            inner.start_soon(anyio.to_thread.run_sync, collect)
            for w in range(writers):
                inner.start_soon(write_in_turn, w)
            with anyio.fail_after(30):
                for r in range(rounds):
                    go[r].set()
                    await done[r].wait()
                    if r % 7 == 0:
                        await anyio.sleep(0.001)
                await writer.drain()
        stop.set()
        tg.cancel_scope.cancel()
    # Which writer runs first in a round is the scheduler's business; that each part's
    # two halves arrive together, and every part exactly once, is ours.
    stream = bytes(received)
    assert len(stream) == expected_size
    seen = set()
    pos = 0
    while pos < len(stream):
        token = stream[pos : pos + 8]  # b"<rrrr.w>"
        r, w = int(token[1:5]), int(token[6:7])
        part = parts[r][w]
        assert stream[pos : pos + len(part)] == part, f"part {r}.{w} was split at {pos}"
        assert (r, w) not in seen
        seen.add((r, w))
        pos += len(part)
    assert len(seen) == rounds * writers
