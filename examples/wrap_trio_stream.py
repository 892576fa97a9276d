"""Handing a trio stream to asyncio-style code with ``asyncstreams.wrap()``.

``wrap()`` takes an anyio ``ByteStream`` and returns asyncio's ``(reader, writer)``.
On trio, a stream from ``anyio.connect_tcp()`` is a trio socket underneath and can be
wrapped directly. A trio ``Stream`` (from ``trio.open_tcp_stream``, ``trio.SSLStream``,
``trio.testing``...) needs the small adapter below, which turns trio's stream methods
and errors into anyio's::

    python examples/wrap_trio_stream.py
"""

from __future__ import annotations

import functools

import anyio
import anyio.abc
import trio

import asyncstreams


# --8<-- [start:adapter]
class TrioByteStream(anyio.abc.ByteStream):
    """A trio ``HalfCloseableStream`` as an anyio ``ByteStream``."""

    def __init__(self, stream: trio.abc.HalfCloseableStream) -> None:
        self._stream = stream

    async def receive(self, max_bytes: int = 65536) -> bytes:
        try:
            data = await self._stream.receive_some(max_bytes)
        except trio.ClosedResourceError as exc:
            raise anyio.ClosedResourceError from exc
        except trio.BrokenResourceError as exc:
            raise anyio.BrokenResourceError from exc
        if not data:
            raise anyio.EndOfStream
        return bytes(data)

    async def send(self, item: bytes) -> None:
        try:
            await self._stream.send_all(item)
        except trio.ClosedResourceError as exc:
            raise anyio.ClosedResourceError from exc
        except trio.BrokenResourceError as exc:
            raise anyio.BrokenResourceError from exc

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()


# --8<-- [end:adapter]


# --8<-- [start:asyncio_style]
async def greet(reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter) -> str:
    """asyncio-style protocol code, written against asyncio's reader and writer API."""
    banner = await reader.readuntil(b"\n")
    writer.write(b"NAME asyncstreams\n")
    await writer.drain()
    reply = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return f"{banner.decode().strip()} / {reply.decode().strip()}"


# --8<-- [end:asyncio_style]


async def trio_server(stream: trio.SocketStream) -> None:
    """A plain trio server: a banner, then greets whoever sends ``NAME x``."""
    async with stream:
        await stream.send_all(b"WELCOME\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = await stream.receive_some()
            if not chunk:
                return
            data += chunk
        name = data.decode().strip().removeprefix("NAME ")
        await stream.send_all(f"HELLO {name}\n".encode())


# --8<-- [start:wrap]
async def main() -> None:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, trio_server, 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]

        # A trio stream, adapted to anyio, handed to asyncio-style code:
        trio_stream = await trio.open_tcp_stream("127.0.0.1", port)
        print("trio.open_tcp_stream:", await greet(*asyncstreams.wrap(TrioByteStream(trio_stream))))

        # anyio's own TCP stream needs no adapter (on trio it is a trio socket inside):
        anyio_stream = await anyio.connect_tcp("127.0.0.1", port)
        print("anyio.connect_tcp:", await greet(*asyncstreams.wrap(anyio_stream)))

        nursery.cancel_scope.cancel()  # stop the trio server


# --8<-- [end:wrap]

if __name__ == "__main__":
    trio.run(main)
