"""The asyncio Streams page's examples, with ``asyncstreams`` in place of ``asyncio``.

They are written as the page writes them, with two changes that let the command line
reuse them: what they print goes to *out*, and host, port and timeouts are parameters.
The page's ``loop.call_soon(wsock.send, ...)`` becomes a plain ``wsock.send(...)``:
there is no event loop object on trio, and the bytes wait in the socket either way.
"""

from __future__ import annotations

import socket
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable

import asyncstreams

__all__ = [
    "Handler",
    "Out",
    "handle_echo",
    "print_http_headers",
    "tcp_echo_client",
    "wait_for_data",
]

Out = Callable[[str], None]
Handler = Callable[[asyncstreams.StreamReader, asyncstreams.StreamWriter], Awaitable[None]]


def handle_echo(out: Out) -> Handler:
    """The page's echo server handler: read up to 100 bytes, send them back, close."""

    async def handle(reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter) -> None:
        data = await reader.read(100)
        message = data.decode()
        addr = writer.get_extra_info("peername")
        out(f"Received {message!r} from {addr!r}")
        out(f"Send: {message!r}")
        writer.write(data)
        await writer.drain()
        out("Close the connection")
        writer.close()
        await writer.wait_closed()

    return handle


async def tcp_echo_client(out: Out, message: str, host: str, port: int) -> str:
    """The page's echo client; returns what came back.

    It reads until the whole message has come back (or EOF), so that a long message
    or a server that answers in pieces still shows the full echo.
    """
    reader, writer = await asyncstreams.open_connection(host, port)
    try:
        out(f"Send: {message!r}")
        sent = message.encode()
        writer.write(sent)
        await writer.drain()
        data = b""
        while len(data) < len(sent):
            chunk = await reader.read(100)
            if not chunk:
                break
            data += chunk
        out(f"Received: {data.decode(errors='replace')!r}")
        out("Close the connection")
    finally:
        writer.close()
        await writer.wait_closed()
    return data.decode(errors="replace")


async def print_http_headers(
    out: Out, url: str, *, ssl_context: ssl.SSLContext | None = None
) -> list[str]:
    """The page's "Get HTTP headers" example; returns the header lines it printed.

    *ssl_context* replaces ``ssl=True`` for https (e.g. to trust a private CA).
    """
    parts = urllib.parse.urlsplit(url)
    hostname = parts.hostname
    if parts.scheme not in ("http", "https") or not hostname:
        raise ValueError(f"not an http:// or https:// URL: {url!r}")
    port = parts.port  # ValueError for a port that is not a number in range
    if parts.scheme == "https":
        reader, writer = await asyncstreams.open_connection(
            hostname, port or 443, ssl=ssl_context or True
        )
    else:
        reader, writer = await asyncstreams.open_connection(hostname, port or 80)
    lines: list[str] = []
    try:
        query = f"HEAD {parts.path or '/'} HTTP/1.0\r\nHost: {hostname}\r\n\r\n"
        writer.write(query.encode("latin-1"))
        while True:
            raw = await reader.readline()
            if not raw:
                break
            line = raw.decode("latin1").rstrip()
            if line:
                out(f"HTTP header> {line}")
                lines.append(line)
    finally:
        # Ignore the body, close the socket
        writer.close()
        await writer.wait_closed()
    return lines


async def wait_for_data(out: Out) -> str:
    """The page's "register an open socket to wait for data using streams" example."""
    # Create a pair of connected sockets.
    rsock, wsock = socket.socketpair()
    try:
        # Register the open socket to wait for data.
        reader, writer = await asyncstreams.open_connection(sock=rsock)
        # Simulate the reception of data from the network
        wsock.send(b"abc")
        # Wait for data
        data = await reader.read(100)
        # Got data, we are done: close the socket
        out(f"Received: {data.decode()}")
        writer.close()
        await writer.wait_closed()
    finally:
        # Close the second socket
        wsock.close()
    return data.decode()
