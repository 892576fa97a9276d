"""What the workloads are: their sizes at a given scale, their payloads, how results are judged.

Every implementation family (asyncio-style, hand-written trio, anyio, threads) imports this
module and writes each workload once against it. Nothing here depends on an event loop.

Each workload has one connection direction that matters and verifies every byte the
receiving side gets: a receiver compares each parsed message with the one that was sent
(``lines``, ``headers``, ``frames``, the echo workloads) or each received chunk with the
position it should occupy in a periodic random byte stream (:class:`StreamCheck`, for
``bulk``, ``smallwrites`` and ``slowreader``).
"""

from __future__ import annotations

import gc
import math
import os
import random
import resource
import struct
import sys
from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar, Final

__all__ = [
    "BACKLOG",
    "HOST",
    "METRICS",
    "WORKLOADS",
    "ClientResult",
    "Metric",
    "ServerStats",
    "Spec",
    "StreamCheck",
    "VerificationError",
    "metrics",
    "queued_in_anyio_stream",
    "raise_nofile_limit",
    "rss_bytes",
    "server_error",
]

HOST: Final = "127.0.0.1"
BACKLOG: Final = 4096
MiB: Final = 1 << 20

WORKLOADS: Final = (
    "bulk",
    "pingpong",
    "lines",
    "headers",
    "fanin",
    "frames",
    "smallwrites",
    "memory",
    "slowreader",
)


@dataclass(frozen=True)
class Metric:
    """One number a workload reports, e.g. ``bulk``'s MiB/s."""

    name: str
    unit: str
    higher_is_better: bool = True


METRICS: Final[dict[str, tuple[Metric, ...]]] = {
    "bulk": (Metric("throughput", "MiB/s"),),
    "pingpong": (Metric("round trips", "rt/s"),),
    "lines": (Metric("lines", "lines/s"),),
    "headers": (Metric("blocks", "blocks/s"),),
    "fanin": (Metric("round trips", "rt/s"),),
    "frames": (Metric("frames", "frames/s"),),
    "smallwrites": (Metric("throughput", "MiB/s"),),
    "memory": (Metric("per connection", "B/conn", higher_is_better=False),),
    "slowreader": (
        Metric("read-side peak", "B", higher_is_better=False),
        Metric("write-side peak", "B", higher_is_better=False),
    ),
}


class VerificationError(Exception):
    """Received bytes differ from what was sent."""


def _printable(rng: random.Random, n: int) -> bytes:
    """*n* random letters and digits (no separators, so lines and blocks stay intact)."""
    alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return bytes(rng.choices(alphabet, k=n))


class StreamCheck:
    """Verify a byte stream chunk by chunk against a periodic pattern.

    The sender sends ``cycle`` over and over (as whatever write sizes it likes); the
    receiver feeds each chunk it gets, wherever the chunk boundaries fall. Each chunk is
    compared (one ``memcmp``, no copy) with the cycle repeated far enough to hold it.
    """

    def __init__(self, cycle: bytes, max_chunk: int = 1 << 18) -> None:
        self._period = len(cycle)
        self._max_chunk = max_chunk
        reps = 1 + math.ceil(max_chunk / self._period)
        self._ring = (cycle * (reps + 1))[: self._period + max_chunk]
        self.received = 0

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        n = len(view)
        step = self._max_chunk
        for start in range(0, n, step):
            piece = view[start : start + step]
            if not self._ring.startswith(piece, self.received % self._period):
                raise VerificationError(f"wrong bytes at stream offset {self.received}")
            self.received += len(piece)

    def finish(self, expected: int) -> None:
        if self.received != expected:
            raise VerificationError(f"received {self.received} bytes, expected {expected}")


@dataclass(frozen=True)
class Spec:
    """Every workload's sizes at ``scale`` (1.0 is the full suite), and its payloads.

    ``separate_server`` is true when the server runs in a process of its own, which the
    ``memory`` workload needs to know (each process then measures itself).
    """

    scale: float = 1.0
    separate_server: bool = False
    nofile_limit: int = 1024

    def _n(self, full: int, minimum: int = 1) -> int:
        return max(minimum, round(full * self.scale))

    # -- bulk: 1 GiB in 64 KiB writes, each followed by drain(); server read(65536) -----
    bulk_write_size: ClassVar[int] = 65536

    @property
    def bulk_writes(self) -> int:
        return self._n((1 << 30) // self.bulk_write_size)

    @cached_property
    def bulk_chunks(self) -> tuple[bytes, ...]:
        """Seven distinct 64 KiB writes, sent round-robin."""
        rng = random.Random(1)
        return tuple(rng.randbytes(self.bulk_write_size) for _ in range(7))

    def bulk_check(self) -> StreamCheck:
        return StreamCheck(b"".join(self.bulk_chunks))

    # -- pingpong: 20k round trips of a 64-byte line, readline() on both ends -----------
    @property
    def pingpong_rounds(self) -> int:
        return self._n(20_000)

    @cached_property
    def pingpong_lines(self) -> tuple[bytes, ...]:
        rng = random.Random(2)
        return tuple(_printable(rng, 63) + b"\n" for _ in range(16))

    # -- lines: 1M 80-byte lines written 100 to a write(); client readline() loop -------
    lines_batch: ClassVar[int] = 100

    @property
    def lines_count(self) -> int:
        return self._n(1_000_000)

    @cached_property
    def lines(self) -> tuple[bytes, ...]:
        """``lines_batch`` distinct lines: line *i* of the stream is ``lines[i % 100]``."""
        rng = random.Random(3)
        return tuple(_printable(rng, 79) + b"\n" for _ in range(self.lines_batch))

    # -- headers: 400k 500-byte blocks ending in CRLFCRLF; client readuntil() ----------
    headers_batch: ClassVar[int] = 16
    header_block_size: ClassVar[int] = 500

    @property
    def headers_count(self) -> int:
        return self._n(400_000)

    @cached_property
    def header_blocks(self) -> tuple[bytes, ...]:
        """``headers_batch`` distinct HTTP-like response heads of exactly 500 bytes."""
        rng = random.Random(4)
        blocks = []
        for i in range(self.headers_batch):
            head = b"HTTP/1.1 200 OK\r\nServer: bench\r\nContent-Type: text/plain\r\n"
            tail = b"Connection: keep-alive\r\n\r\n"
            pad = self.header_block_size - len(head) - len(tail) - len(b"X-Pad-00: \r\n")
            block = head + b"X-Pad-%02d: " % i + _printable(rng, pad) + b"\r\n" + tail
            assert len(block) == self.header_block_size
            blocks.append(block)
        return tuple(blocks)

    # -- fanin: 200 clients x 200 round trips of 32 bytes with readexactly() -----------
    fanin_message_size: ClassVar[int] = 32

    @property
    def fanin_clients(self) -> int:
        """Both factors shrink with the square root of the scale, the product with it."""
        return max(2, round(200 * math.sqrt(self.scale)))

    @property
    def fanin_rounds(self) -> int:
        return max(1, round(200 * math.sqrt(self.scale)))

    @cached_property
    def fanin_messages(self) -> tuple[bytes, ...]:
        """Client *c* sends ``fanin_messages[(c + r) % 64]`` in round *r*."""
        rng = random.Random(5)
        return tuple(rng.randbytes(self.fanin_message_size) for _ in range(64))

    # -- frames: 500k frames of a 4-byte length + 100 bytes; readexactly() x 2 ---------
    frames_batch: ClassVar[int] = 80
    frame_payload_size: ClassVar[int] = 100

    @property
    def frames_count(self) -> int:
        return self._n(500_000)

    @cached_property
    def frame_payloads(self) -> tuple[bytes, ...]:
        rng = random.Random(6)
        return tuple(rng.randbytes(self.frame_payload_size) for _ in range(self.frames_batch))

    @cached_property
    def frames(self) -> tuple[bytes, ...]:
        """Each payload with its big-endian 4-byte length in front."""
        return tuple(struct.pack("!I", len(p)) + p for p in self.frame_payloads)

    # -- smallwrites: 1M 100-byte write() calls, drain() after every 100 ---------------
    smallwrites_size: ClassVar[int] = 100
    smallwrites_drain_every: ClassVar[int] = 100

    @property
    def smallwrites_count(self) -> int:
        return self._n(1_000_000, minimum=self.smallwrites_drain_every)

    @cached_property
    def small_chunks(self) -> tuple[bytes, ...]:
        """101 distinct writes, so the stream's period does not line up with the drains."""
        rng = random.Random(7)
        return tuple(rng.randbytes(self.smallwrites_size) for _ in range(101))

    def smallwrites_check(self) -> StreamCheck:
        return StreamCheck(b"".join(self.small_chunks))

    # -- memory: 10,000 idle connections, as many as the descriptor limit allows -------
    @property
    def memory_connections(self) -> int:
        # One descriptor per end and process; keep some for the loop, the listener, etc.
        per_connection = 1 if self.separate_server else 2
        fit = (self.nofile_limit - 100) // per_connection
        return max(1, min(self._n(10_000, minimum=10), fit))

    @property
    def memory_note(self) -> str:
        n = self.memory_connections
        if n < self._n(10_000, minimum=10):
            return f"{n} connections (all that RLIMIT_NOFILE {self.nofile_limit} allows)"
        return f"{n} connections"

    # -- slowreader: a fast writer against read(1024) every 10 ms ----------------------
    slowreader_read_size: ClassVar[int] = 1024
    slowreader_interval: ClassVar[float] = 0.01

    @property
    def slowreader_seconds(self) -> float:
        return max(0.1, 2.0 * self.scale)

    # -- per-workload expectations -----------------------------------------------------
    def connections(self, workload: str) -> int:
        """How many connections the server accepts for *workload* before it is done."""
        if workload == "fanin":
            return self.fanin_clients
        if workload == "memory":
            return self.memory_connections + 1  # plus the control connection
        return 1


@dataclass
class ServerStats:
    """What a server reports when it is done (printed as JSON by a server process)."""

    errors: list[str] = field(default_factory=list)
    peak_write_buffer: int = 0
    rss_delta: int = 0


@dataclass
class ClientResult:
    """What a client measured: ``amount`` units in ``seconds`` (or a memory figure)."""

    seconds: float = 0.0
    amount: float = 0.0
    peak_read_buffer: int = 0
    rss_delta: int = 0
    note: str = ""


def server_error(stats: ServerStats, exc: BaseException) -> None:
    """Record an exception that ended a server's handler, and show it at once on stderr."""
    message = f"server: {exc!r}"
    stats.errors.append(message)
    print(f"error: {message}", file=sys.stderr, flush=True)


def metrics(workload: str, spec: Spec, client: ClientResult, server: ServerStats) -> list[float]:
    """The values of ``METRICS[workload]``, in that order."""
    if workload == "memory":
        n = spec.memory_connections
        return [(client.rss_delta + server.rss_delta) / n]
    if workload == "slowreader":
        return [float(client.peak_read_buffer), float(server.peak_write_buffer)]
    rate = client.amount / client.seconds if client.seconds > 0 else math.inf
    if workload in ("bulk", "smallwrites"):
        rate /= MiB
    return [rate]


def queued_in_anyio_stream(stream: object) -> int:
    """Bytes an anyio asyncio ``SocketStream`` holds received but not yet returned.

    anyio's asyncio protocol queues what the transport delivers until ``receive()`` takes
    it; the read side of anything built on such a stream holds those bytes too. Returns 0
    for any other stream (best effort: it reads anyio's private attributes).
    """
    queue = getattr(getattr(stream, "_protocol", None), "read_queue", None)
    if queue is None:
        return 0
    return sum(len(item) for item in queue if isinstance(item, (bytes, bytearray)))


def rss_bytes() -> int:
    """This process's resident set size, after a full garbage collection."""
    gc.collect()
    with open("/proc/self/statm", "rb") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def raise_nofile_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to the hard limit; return the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft
