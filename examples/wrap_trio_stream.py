"""Handing a trio stream to asyncio-style code with ``asyncstreams.wrap()``.

``wrap()`` takes a trio ``Stream`` (from ``trio.open_tcp_stream``, ``trio.SSLStream``,
``trio.testing``...) or an anyio ``ByteStream`` and returns asyncio's
``(reader, writer)``; trio's errors come out as asyncio's::

    python examples/wrap_trio_stream.py
"""

from __future__ import annotations

import functools

import anyio
import anyio.abc
import trio

import asyncstreams


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

        # A trio stream handed to asyncio-style code:
        trio_stream = await trio.open_tcp_stream("127.0.0.1", port)
        print("trio.open_tcp_stream:", await greet(*asyncstreams.wrap(trio_stream)))

        # anyio's own streams work the same way:
        anyio_stream = await anyio.connect_tcp("127.0.0.1", port)
        print("anyio.connect_tcp:", await greet(*asyncstreams.wrap(anyio_stream)))

        nursery.cancel_scope.cancel()  # stop the trio server


# --8<-- [end:wrap]

if __name__ == "__main__":
    trio.run(main)
