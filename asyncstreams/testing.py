"""Helpers for testing asyncio-style stream code on every backend, without sockets."""

from __future__ import annotations

from ._memory import memory_byte_stream_pair
from ._reader import DEFAULT_LIMIT, StreamReader
from ._streams import wrap
from ._writer import StreamWriter

__all__ = ("memory_stream_pair",)

StreamPair = tuple[StreamReader, StreamWriter]


def memory_stream_pair(*, limit: int = DEFAULT_LIMIT) -> tuple[StreamPair, StreamPair]:
    """Return ``((reader_a, writer_a), (reader_b, writer_b))``, connected in memory.

    What ``writer_a`` writes, ``reader_b`` reads, and the other way round.
    ``write_eof()`` and ``close()`` reach the other end as EOF, and ``drain()`` applies
    back-pressure when the other end does not read. Call it inside a running event
    loop (asyncio or trio).
    """
    if limit <= 0:
        raise ValueError("Limit cannot be <= 0")
    stream_a, stream_b = memory_byte_stream_pair()
    return wrap(stream_a, limit=limit), wrap(stream_b, limit=limit)
