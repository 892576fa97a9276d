"""An in-memory, connected pair of anyio byte streams (the engine of ``testing``)."""

from __future__ import annotations

from typing import Any

import anyio
from anyio.abc import ByteStream
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = ["MemoryByteStream", "memory_byte_stream_pair"]

_CHUNK = 64 * 1024


class MemoryByteStream(ByteStream):
    """One end of an in-memory byte pipe pair.

    ``send()`` hands its bytes over only when the other end receives them (the
    underlying object stream has no buffer), so a peer that does not read applies
    back-pressure, like a full socket. ``send_eof()`` ends the other end's reading;
    ``aclose()`` also makes the other end's sends fail, as a closed socket would.
    """

    def __init__(
        self, send: MemoryObjectSendStream[bytes], receive: MemoryObjectReceiveStream[bytes]
    ) -> None:
        self._send_stream = send
        self._receive_stream = receive
        self._pending = b""
        self._offset = 0

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if self._offset >= len(self._pending):
            self._pending = await self._receive_stream.receive()
            self._offset = 0
        start = self._offset
        self._offset = start + max_bytes
        if start == 0 and max_bytes >= len(self._pending):
            return self._pending
        return self._pending[start : start + max_bytes]

    async def send(self, item: bytes) -> None:
        # In pieces no larger than a socket would take at once, so that a peer that
        # stops receiving stops the sender soon.
        data = bytes(item)
        for start in range(0, len(data), _CHUNK):
            await self._send_stream.send(data[start : start + _CHUNK])

    async def send_eof(self) -> None:
        await self._send_stream.aclose()

    async def aclose(self) -> None:
        await self._send_stream.aclose()
        await self._receive_stream.aclose()

    @property
    def extra_attributes(self) -> Any:
        return {}


def memory_byte_stream_pair() -> tuple[MemoryByteStream, MemoryByteStream]:
    a_to_b_send, a_to_b_receive = anyio.create_memory_object_stream[bytes](0)
    b_to_a_send, b_to_a_receive = anyio.create_memory_object_stream[bytes](0)
    return (
        MemoryByteStream(a_to_b_send, b_to_a_receive),
        MemoryByteStream(b_to_a_send, a_to_b_receive),
    )
