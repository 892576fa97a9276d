"""The client side: ``open_connection``, ``open_unix_connection`` and ``wrap``."""

from __future__ import annotations

import os
import socket
import ssl as _ssl
from typing import TYPE_CHECKING

from anyio.abc import ByteStream

from . import _tls
from ._connect import connect_tcp_socket, connect_unix_socket
from ._reader import DEFAULT_LIMIT, StreamReader
from ._transport import StreamTransport, transport_from_socket
from ._trio_stream import adapt

if TYPE_CHECKING:
    import trio
from ._writer import StreamWriter

__all__ = ["open_connection", "open_unix_connection", "wrap"]

SSLArg = bool | _ssl.SSLContext | None


def wrap(
    stream: ByteStream | trio.abc.Stream, *, limit: int = DEFAULT_LIMIT
) -> tuple[StreamReader, StreamWriter]:
    """Return asyncio-style ``(reader, writer)`` over an anyio byte stream or a trio stream.

    Anything anyio calls a ``ByteStream`` works (its socket and TLS streams, memory
    pipes, your own), and so does any ``trio.abc.Stream`` (``trio.open_tcp_stream()``,
    ``trio.SSLStream``, ``trio.testing`` streams). The pair takes ownership of
    *stream*: ``writer.close()`` closes it. Call it inside a running event loop.

    Beyond asyncio, which has no such function.
    """
    reader = StreamReader(limit=limit)
    transport = StreamTransport(adapt(stream), reader)
    return reader, StreamWriter(transport, reader)


def _check_ssl_args(
    ssl: SSLArg,
    server_hostname: str | None,
    ssl_handshake_timeout: float | None,
    ssl_shutdown_timeout: float | None,
) -> None:
    if not ssl:
        if server_hostname is not None:
            raise ValueError("server_hostname is only meaningful with ssl")
        if ssl_handshake_timeout is not None:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")


def _check_sock(sock: socket.socket, family: int | None) -> None:
    if isinstance(sock, _ssl.SSLSocket):
        raise TypeError("Socket cannot be of type SSLSocket")
    if family is not None and (sock.family != family or sock.type != socket.SOCK_STREAM):
        raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")
    if sock.type != socket.SOCK_STREAM:
        raise ValueError(f"A Stream Socket was expected, got {sock!r}")


async def _finish(
    sock: socket.socket,
    *,
    limit: int,
    ssl: SSLArg,
    server_hostname: str | None,
    ssl_handshake_timeout: float | None,
    ssl_shutdown_timeout: float | None,
) -> tuple[StreamReader, StreamWriter]:
    reader = StreamReader(limit=limit)  # validates limit before anything is opened
    try:
        transport = await transport_from_socket(
            sock,
            reader,
            ssl_context=_tls.client_context(ssl, server_hostname) if ssl else None,
            server_hostname=server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
    except BaseException:
        sock.close()
        raise
    return reader, StreamWriter(transport, reader)


async def open_connection(
    host: str | None = None,
    port: int | str | None = None,
    *,
    limit: int = DEFAULT_LIMIT,
    ssl: SSLArg = None,
    family: int = 0,
    proto: int = 0,
    flags: int = 0,
    sock: socket.socket | None = None,
    local_addr: tuple[str, int] | None = None,
    server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
    happy_eyeballs_delay: float | None = None,
    interleave: int | None = None,
    all_errors: bool = False,
) -> tuple[StreamReader, StreamWriter]:
    """Open a TCP connection and return ``(reader, writer)``, as :func:`asyncio.open_connection`.

    Every parameter means what it means to :meth:`asyncio.loop.create_connection`,
    and the errors are the same (``ConnectionRefusedError``, ``socket.gaierror``,
    ``OSError('Multiple exceptions: ...')``, the ``ValueError``\\ s for bad combinations).
    """
    _check_ssl_args(ssl, server_hostname, ssl_handshake_timeout, ssl_shutdown_timeout)
    if ssl and server_hostname is None:
        if not host:
            raise ValueError("You must set server_hostname when using ssl without a host")
        server_hostname = host
    if limit <= 0:
        raise ValueError("Limit cannot be <= 0")
    if host is not None or port is not None:
        if sock is not None:
            raise ValueError("host/port and sock can not be specified at the same time")
        sock = await connect_tcp_socket(
            host,
            port,
            family=family,
            proto=proto,
            flags=flags,
            local_addr=local_addr,
            happy_eyeballs_delay=happy_eyeballs_delay,
            interleave=interleave,
            all_errors=all_errors,
        )
    else:
        if sock is None:
            raise ValueError("host and port was not specified and no sock specified")
        _check_sock(sock, None)
    return await _finish(
        sock,
        limit=limit,
        ssl=ssl,
        server_hostname=server_hostname,
        ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout,
    )


async def open_unix_connection(
    path: str | bytes | os.PathLike[str] | None = None,
    *,
    limit: int = DEFAULT_LIMIT,
    ssl: SSLArg = None,
    sock: socket.socket | None = None,
    server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
) -> tuple[StreamReader, StreamWriter]:
    """Open a UNIX socket connection, as :func:`asyncio.open_unix_connection`."""
    if ssl:
        if server_hostname is None:
            raise ValueError("you have to pass server_hostname when using ssl")
    else:
        _check_ssl_args(ssl, server_hostname, ssl_handshake_timeout, ssl_shutdown_timeout)
    if limit <= 0:
        raise ValueError("Limit cannot be <= 0")
    if path is not None:
        if sock is not None:
            raise ValueError("path and sock can not be specified at the same time")
        sock = await connect_unix_socket(path)
    else:
        if sock is None:
            raise ValueError("no path and sock were specified")
        _check_sock(sock, socket.AF_UNIX)
    return await _finish(
        sock,
        limit=limit,
        ssl=ssl,
        server_hostname=server_hostname,
        ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout,
    )
