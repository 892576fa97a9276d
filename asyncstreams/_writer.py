"""StreamWriter: asyncio's writer API over a :class:`StreamTransport`."""

from __future__ import annotations

import ssl
import warnings
from collections.abc import Iterable
from typing import Any

from anyio.lowlevel import checkpoint

from ._backend import current_backend
from ._reader import StreamReader
from ._transport import StreamTransport

__all__ = ["StreamWriter"]


class StreamWriter:
    """asyncio's :class:`asyncio.StreamWriter`, on any anyio backend.

    ``write()`` and ``writelines()`` only buffer; a background task sends the data, so
    it is delivered even if the program never calls :meth:`drain` (on :meth:`close`, or
    while the program awaits anything else). :meth:`drain` waits while more than the
    high-water mark (64 KiB unless changed with
    ``transport.set_write_buffer_limits()``) is unsent.

    Differs from asyncio: there is no event loop object, so ``get_loop()`` and the
    *loop* argument do not exist.
    """

    __slots__ = (
        "__weakref__",
        "_reader",
        "_transport",
    )

    def __init__(self, transport: StreamTransport, reader: StreamReader | None) -> None:
        self._transport = transport
        self._reader = reader

    def __repr__(self) -> str:
        info = [type(self).__name__, f"transport={self._transport!r}"]
        if self._reader is not None:
            info.append(f"reader={self._reader!r}")
        return "<{}>".format(" ".join(info))

    @property
    def transport(self) -> StreamTransport:
        """The connection's transport; it stays the same object across ``start_tls()``."""
        return self._transport

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer *data* for sending; pair it with ``await drain()``.

        After :meth:`close`, as with asyncio's socket transports, *data* is still sent
        while earlier data is; once nothing is left to send it is dropped, with
        asyncio's warning from the fifth such write on (over TLS it is always dropped).
        """
        # StreamTransport.write()'s fast path, inline (keep the two alike): one call
        # less per write, ~20 ns of the ~130-140 a write costs on trio.
        transport = self._transport
        if type(data) is bytes and transport._write_through and data:
            transport._engine.write(data)
        else:
            transport._write_slow(data)

    def writelines(self, data: Iterable[bytes | bytearray | memoryview]) -> None:
        """Buffer each item of *data* for sending; pair it with ``await drain()``."""
        self._transport.writelines(data)

    def write_eof(self) -> None:
        """Close the write end once buffered data is sent (a TCP half-close)."""
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        """True if :meth:`write_eof` works: plain TCP and UNIX sockets, not TLS."""
        return self._transport.can_write_eof()

    def close(self) -> None:
        """Close the connection once buffered data is sent; see :meth:`wait_closed`."""
        self._transport.close()

    def is_closing(self) -> bool:
        """True once :meth:`close` was called or the connection was lost."""
        return self._transport.is_closing()

    async def wait_closed(self) -> None:
        """Wait until the connection is closed; raise the error that ended it, if any."""
        await self._transport._wait_closed()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """Return transport information: 'peername', 'sockname', 'socket', TLS details."""
        return self._transport.get_extra_info(name, default)

    async def drain(self) -> None:
        """Wait until it is appropriate to write more.

        Sends what ``write()`` joined (asyncio's ``write()`` has sent it by then), then
        returns at once unless more than the high-water mark is unsent. Raises the
        error that broke the connection, or ConnectionResetError once it is closed.

        Differs from asyncio: once 64 KiB have been written since it last did, it lets
        the event loop run (a checkpoint) even when there is nothing to wait for. On
        asyncio's loops a TCP client whose server is not on the same loop does not,
        as asyncio's ``drain()`` does not.
        """
        reader = self._reader
        if reader is not None and reader._exception is not None:
            raise reader._exception
        transport = self._transport
        # What asyncio's write() has sent by now goes out first: a send that fails here
        # leaves the connection closing, as it would have in asyncio's write().
        transport._engine.flush()
        if transport._closing:
            # As asyncio does, give the closing connection a chance to finish so that a
            # write()+drain() loop notices the close. asyncio's write() has already
            # sent anything below the high-water mark by now, so its close() has lost
            # the connection; only a paused writer still waits for the flush.
            await checkpoint()
            # asyncio has reported a failed send by now, whatever ran first.
            transport._report_write_error()
            if not transport._paused:
                raise ConnectionResetError("Connection lost")
        # asyncio's _drain_helper(), inline: no coroutine when there is nothing to wait for.
        if transport._lost:
            raise ConnectionResetError("Connection lost")
        written = transport._engine.written
        if transport._paused:
            transport._yield_mark = written
            await transport._wait_for_drain()
        elif written - transport._yield_mark >= transport._yield_every:
            # asyncio's drain() returns without yielding until the kernel's buffer is
            # full, so a write loop runs megabytes ahead of its reader. Letting the loop
            # run once per 64 KiB keeps the bytes in the CPU cache between writer and
            # reader (twice the throughput when both ends share a loop), and gives a
            # write loop a checkpoint, where trio delivers cancellation. Where neither
            # can matter, the transport never gets here (_yield_every, see _peers).
            transport._yield_mark = written
            await checkpoint()

    async def start_tls(
        self,
        sslcontext: ssl.SSLContext,
        *,
        server_hostname: str | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
    ) -> None:
        """Upgrade the connection to TLS; the same reader and writer go on working.

        The server side of a connection (one accepted by :func:`start_server`) acts
        as the TLS server, any other as the client. Raises what the handshake raises
        (``ssl.SSLCertVerificationError``, ``ConnectionAbortedError`` after
        *ssl_handshake_timeout*, 60 s by default) and closes the connection then.

        Differs from asyncio: bytes received before the upgrade that the application
        had not read are handed to TLS, never lost (asyncio before 3.13.12 and uvloop
        lose them and the handshake hangs); the writer keeps its transport object.
        """
        if not isinstance(sslcontext, ssl.SSLContext):
            raise TypeError(
                f"sslcontext is expected to be an instance of ssl.SSLContext, got {sslcontext!r}"
            )
        await self.drain()
        await self._transport._start_tls(
            sslcontext,
            server_hostname=server_hostname,
            handshake_timeout=ssl_handshake_timeout,
            shutdown_timeout=ssl_shutdown_timeout,
        )

    def __del__(self, warnings: Any = warnings) -> None:
        transport = getattr(self, "_transport", None)
        if transport is None or transport.is_closing():
            return
        if current_backend() is None:
            warnings.warn(f"unclosed {self!r} (no running event loop)", ResourceWarning)
            return
        self.close()
        warnings.warn(f"unclosed {self!r}", ResourceWarning, source=self)
