"""The workloads on blocking sockets, one thread per connection: a rough ceiling.

Reads go through ``socket.makefile("rb")`` (a C ``BufferedReader``: ``readline`` and
exact ``read(n)``); a header block is read as lines up to the empty one. Writes use
``sendall``; batched small writes are joined and sent at each drain point.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from io import BufferedReader
from itertools import cycle, islice
from typing import cast

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


@dataclass
class Connection:
    sock: socket.socket
    reader: BufferedReader = field(init=False)

    def __post_init__(self) -> None:
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = cast(BufferedReader, self.sock.makefile("rb", buffering=65536))

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def _connect(port: int) -> Connection:
    return Connection(socket.create_connection((HOST, port)))


def _read_block(reader: BufferedReader) -> bytes:
    """One header block: lines up to and including the empty line."""
    lines = []
    while (line := reader.readline()) not in (b"\r\n", b""):
        lines.append(line)
    lines.append(line)
    return b"".join(lines)


# -- clients --------------------------------------------------------------------------------


def client_bulk(spec: Spec, port: int) -> ClientResult:
    conn = _connect(port)
    n = spec.bulk_writes
    start = time.perf_counter()
    for chunk in islice(cycle(spec.bulk_chunks), n):
        conn.sock.sendall(chunk)
    conn.sock.shutdown(socket.SHUT_WR)
    ack = conn.reader.readline()
    seconds = time.perf_counter() - start
    conn.close()
    if ack != b"ok\n":
        raise VerificationError(f"server did not confirm the bytes it received: {ack!r}")
    return ClientResult(seconds, n * spec.bulk_write_size)


def client_pingpong(spec: Spec, port: int) -> ClientResult:
    conn = _connect(port)
    n = spec.pingpong_rounds
    start = time.perf_counter()
    for line in islice(cycle(spec.pingpong_lines), n):
        conn.sock.sendall(line)
        if conn.reader.readline() != line:
            raise VerificationError("echoed line differs")
    seconds = time.perf_counter() - start
    conn.close()
    return ClientResult(seconds, n)


def _start_push(port: int) -> Connection:
    conn = _connect(port)
    conn.sock.sendall(b"go\n")
    return conn


def _expect_eof(conn: Connection) -> None:
    if conn.reader.read(1) != b"":
        raise VerificationError("more data than expected")
    conn.close()


def client_lines(spec: Spec, port: int) -> ClientResult:
    conn = _start_push(port)
    n = spec.lines_count
    readline = conn.reader.readline
    start = time.perf_counter()
    for expected in islice(cycle(spec.lines), n):
        if readline() != expected:
            raise VerificationError("wrong line")
    seconds = time.perf_counter() - start
    _expect_eof(conn)
    return ClientResult(seconds, n)


def client_headers(spec: Spec, port: int) -> ClientResult:
    conn = _start_push(port)
    n = spec.headers_count
    start = time.perf_counter()
    for expected in islice(cycle(spec.header_blocks), n):
        if _read_block(conn.reader) != expected:
            raise VerificationError("wrong header block")
    seconds = time.perf_counter() - start
    _expect_eof(conn)
    return ClientResult(seconds, n)


def client_frames(spec: Spec, port: int) -> ClientResult:
    conn = _start_push(port)
    n = spec.frames_count
    read = conn.reader.read
    start = time.perf_counter()
    for expected in islice(cycle(spec.frame_payloads), n):
        size = int.from_bytes(read(4), "big")
        if read(size) != expected:
            raise VerificationError("wrong frame")
    seconds = time.perf_counter() - start
    _expect_eof(conn)
    return ClientResult(seconds, n)


def client_fanin(spec: Spec, port: int) -> ClientResult:
    clients, rounds = spec.fanin_clients, spec.fanin_rounds
    messages, size = spec.fanin_messages, spec.fanin_message_size
    conns = [_connect(port) for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)
    errors: list[BaseException] = []

    def run_one(index: int, conn: Connection) -> None:
        barrier.wait()
        try:
            for r in range(rounds):
                message = messages[(index + r) % len(messages)]
                conn.sock.sendall(message)
                if conn.reader.read(size) != message:
                    raise VerificationError("echoed message differs")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run_one, args=(i, c)) for i, c in enumerate(conns)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    for conn in conns:
        conn.close()
    if errors:
        raise errors[0]
    return ClientResult(seconds, clients * rounds)


def client_smallwrites(spec: Spec, port: int) -> ClientResult:
    conn = _connect(port)
    n, every = spec.smallwrites_count, spec.smallwrites_drain_every
    pending: list[bytes] = []
    start = time.perf_counter()
    for i, chunk in enumerate(islice(cycle(spec.small_chunks), n), 1):
        pending.append(chunk)
        if i % every == 0:
            conn.sock.sendall(b"".join(pending))
            pending.clear()
    if pending:
        conn.sock.sendall(b"".join(pending))
    conn.sock.shutdown(socket.SHUT_WR)
    ack = conn.reader.readline()
    seconds = time.perf_counter() - start
    conn.close()
    if ack != b"ok\n":
        raise VerificationError(f"server did not confirm the bytes it received: {ack!r}")
    return ClientResult(seconds, n * spec.smallwrites_size)


def client_memory(spec: Spec, port: int) -> ClientResult:
    control = _connect(port)
    control.sock.sendall(b"control\n")
    if control.reader.readline() != b"ready\n":
        raise VerificationError("control connection failed")
    baseline = rss_bytes()
    n = spec.memory_connections
    idle = [_connect(port) for _ in range(n)]
    control.sock.sendall(b"measure\n")
    if control.reader.readline() != b"measured\n":
        raise VerificationError("control connection failed")
    delta = rss_bytes() - baseline
    for conn in idle:
        conn.close()
    control.close()
    return ClientResult(rss_delta=delta, note=spec.memory_note)


def client_slowreader(spec: Spec, port: int) -> ClientResult:
    conn = _start_push(port)
    check = spec.bulk_check()
    deadline = time.perf_counter() + spec.slowreader_seconds
    while time.perf_counter() < deadline:
        time.sleep(spec.slowreader_interval)
        check.feed(conn.sock.recv(spec.slowreader_read_size))  # nothing buffered in user space
    conn.close()
    return ClientResult(peak_read_buffer=0, note=f"read {check.received} bytes")


CLIENTS: dict[str, Callable[[Spec, int], ClientResult]] = {
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
    all_idle: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    idle: int = 0
    handlers: int = 0


def _verify_until_eof(conn: Connection, spec: Spec, workload: str) -> None:
    if workload == "bulk":
        check, expected = spec.bulk_check(), spec.bulk_writes * spec.bulk_write_size
    else:
        check, expected = spec.smallwrites_check(), spec.smallwrites_count * spec.smallwrites_size
    while data := conn.sock.recv(65536):
        check.feed(data)
    check.finish(expected)
    conn.sock.sendall(b"ok\n")


def serve_bulk(ctx: ServerContext, conn: Connection) -> None:
    _verify_until_eof(conn, ctx.spec, "bulk")


def serve_smallwrites(ctx: ServerContext, conn: Connection) -> None:
    _verify_until_eof(conn, ctx.spec, "smallwrites")


def serve_pingpong(ctx: ServerContext, conn: Connection) -> None:
    while line := conn.reader.readline():
        conn.sock.sendall(line)


def serve_fanin(ctx: ServerContext, conn: Connection) -> None:
    size = ctx.spec.fanin_message_size
    while message := conn.reader.read(size):
        if len(message) != size:
            raise VerificationError("stream ended within a message")
        conn.sock.sendall(message)


def _push(conn: Connection, items: Sequence[bytes], n: int) -> None:
    if conn.reader.readline() != b"go\n":
        raise VerificationError("expected go")
    batch = b"".join(items)
    full, rest = divmod(n, len(items))
    for _ in range(full):
        conn.sock.sendall(batch)
    if rest:
        conn.sock.sendall(b"".join(items[:rest]))


def serve_lines(ctx: ServerContext, conn: Connection) -> None:
    _push(conn, ctx.spec.lines, ctx.spec.lines_count)


def serve_headers(ctx: ServerContext, conn: Connection) -> None:
    _push(conn, ctx.spec.header_blocks, ctx.spec.headers_count)


def serve_frames(ctx: ServerContext, conn: Connection) -> None:
    _push(conn, ctx.spec.frames, ctx.spec.frames_count)


def serve_memory(ctx: ServerContext, conn: Connection) -> None:
    with ctx.lock:
        ctx.handlers += 1
        control = ctx.handlers == 1
        if not control:
            ctx.idle += 1
            if ctx.idle == ctx.spec.memory_connections:
                ctx.all_idle.set()
    if not control:
        if conn.reader.readline() != b"":
            raise VerificationError("idle connection received data")
        return
    separate = ctx.spec.separate_server
    if conn.reader.readline() != b"control\n":
        raise VerificationError("expected the control connection first")
    baseline = rss_bytes() if separate else 0
    conn.sock.sendall(b"ready\n")
    if conn.reader.readline() != b"measure\n":
        raise VerificationError("expected measure")
    ctx.all_idle.wait()
    time.sleep(0.1)
    ctx.stats.rss_delta = rss_bytes() - baseline if separate else 0
    conn.sock.sendall(b"measured\n")
    conn.reader.read(1)


def serve_slowreader(ctx: ServerContext, conn: Connection) -> None:
    if conn.reader.readline() != b"go\n":
        raise VerificationError("expected go")
    try:
        for chunk in cycle(ctx.spec.bulk_chunks):
            conn.sock.sendall(chunk)  # nothing is buffered beyond the kernel
    except OSError:
        pass


SERVERS: dict[str, Callable[[ServerContext, Connection], None]] = {
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


def serve(spec: Spec, workload: str, on_listening: Callable[[int], None]) -> ServerStats:
    """Accept the connections *workload* needs, a thread each; return when all are done."""
    ctx = ServerContext(spec, ServerStats())
    handle_workload = SERVERS[workload]

    def handle(conn: Connection) -> None:
        try:
            handle_workload(ctx, conn)
        except Exception as exc:
            server_error(ctx.stats, exc)
        finally:
            conn.close()

    with socket.create_server((HOST, 0), backlog=BACKLOG) as listener:
        on_listening(listener.getsockname()[1])
        threads = []
        for _ in range(spec.connections(workload)):
            sock, _ = listener.accept()
            thread = threading.Thread(target=handle, args=(Connection(sock),), daemon=True)
            thread.start()
            threads.append(thread)
    for thread in threads:
        thread.join()
    return ctx.stats


def both(impl: str, spec: Spec, workload: str) -> tuple[ClientResult, ServerStats]:
    listening = threading.Event()
    port = 0
    stats: list[ServerStats] = []

    def on_listening(p: int) -> None:
        nonlocal port
        port = p
        listening.set()

    server_thread = threading.Thread(
        target=lambda: stats.append(serve(spec, workload, on_listening)), daemon=True
    )
    server_thread.start()
    listening.wait()
    result = CLIENTS[workload](spec, port)
    server_thread.join()
    return result, stats[0]


def server(
    impl: str, spec: Spec, workload: str, on_listening: Callable[[int], None]
) -> ServerStats:
    return serve(spec, workload, on_listening)


def client(impl: str, spec: Spec, workload: str, port: int) -> ClientResult:
    return CLIENTS[workload](spec, port)
