"""TLS on a connection, with asyncio's parameters, built on anyio's TLSStream."""

from __future__ import annotations

import ssl as _ssl

import anyio
from anyio.abc import ByteStream
from anyio.streams.tls import TLSStream

__all__ = [
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "client_context",
    "wrap",
]

DEFAULT_HANDSHAKE_TIMEOUT = 60.0
DEFAULT_SHUTDOWN_TIMEOUT = 30.0


def client_context(ssl: bool | _ssl.SSLContext, server_hostname: str | None) -> _ssl.SSLContext:
    """The context asyncio would use for ``ssl=`` on the client side."""
    if isinstance(ssl, _ssl.SSLContext):
        return ssl
    context = _ssl.create_default_context()
    if not server_hostname:
        context.check_hostname = False
    return context


async def wrap(
    stream: ByteStream,
    context: _ssl.SSLContext,
    *,
    server_side: bool,
    server_hostname: str | None,
    handshake_timeout: float | None,
) -> TLSStream:
    """Do the TLS handshake over *stream*; close it if the handshake fails.

    A handshake that outlasts *handshake_timeout* (60 s by default) raises
    ConnectionAbortedError, as asyncio's does.
    """
    timeout = DEFAULT_HANDSHAKE_TIMEOUT if handshake_timeout is None else handshake_timeout
    if timeout <= 0:
        raise ValueError(f"ssl_handshake_timeout should be a positive number, got {timeout}")
    try:
        with anyio.fail_after(timeout):
            return await TLSStream.wrap(
                stream,
                server_side=server_side,
                hostname=server_hostname or None,
                ssl_context=context,
                standard_compatible=True,
            )
    except TimeoutError:
        await anyio.aclose_forcefully(stream)
        raise ConnectionAbortedError(
            f"SSL handshake is taking longer than {timeout} seconds: aborting the connection"
        ) from None
    except anyio.BrokenResourceError as exc:
        await anyio.aclose_forcefully(stream)
        if isinstance(exc.__cause__, OSError):
            raise exc.__cause__ from None
        raise ConnectionResetError("Connection lost during the TLS handshake") from exc
    except BaseException:
        await anyio.aclose_forcefully(stream)
        raise
