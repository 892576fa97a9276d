"""StreamTransport: one object per connection, shared by its reader and writer.

It plays the part of asyncio's transport *and* of ``StreamReaderProtocol``: the public
transport methods, flow control for ``drain()``, and the end of the connection as the
reader, ``wait_closed()`` and the server that accepted it see it. The bytes themselves
are moved by an engine (see ``_engine``); ``start_tls()`` swaps the engine for one over
a TLS stream, so the reader and writer never change.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import ByteStream, SocketAttribute
from anyio.lowlevel import checkpoint
from anyio.streams.buffered import BufferedByteStream
from anyio.streams.tls import TLSAttribute

from . import _tls
from ._asyncio_engine import AsyncioEngine
from ._backend import call_soon, current_backend
from ._connect import stream_from_socket
from ._engine import DEFAULT_HIGH_WATER, YIELD_EVERY, Engine
from ._peers import NEVER, client_yields
from ._socket_engine import SocketEngine
from ._task_engine import TaskEngine

if TYPE_CHECKING:
    from ._reader import StreamReader
    from ._server import Server

__all__ = ["StreamTransport", "transport_from_socket"]

logger = logging.getLogger("asyncstreams")

# As asyncio does, warn once writes keep arriving on a lost connection.
_LOG_THRESHOLD_FOR_CONNLOST_WRITES = 5

_MISSING: Any = object()

_TLS_NAMES = frozenset({"sslcontext", "ssl_object", "peercert", "cipher", "compression"})


def _tls_info(engine: Engine, name: str) -> Any:
    ssl_object = engine.extra(TLSAttribute.ssl_object, None)
    if ssl_object is None:
        return _MISSING
    if name == "sslcontext":
        return ssl_object.context
    if name == "ssl_object":
        return ssl_object
    if name == "peercert":
        return ssl_object.getpeercert()
    if name == "cipher":
        return ssl_object.cipher()
    return ssl_object.compression()


class StreamTransport:
    """The subset of :class:`asyncio.Transport` that stream code uses.

    As asyncio's transport does, it receives in the background (pausing while the
    reader holds more than twice its limit) and sends what ``write()`` buffers.

    Differs from asyncio: ``pause_reading``/``resume_reading`` belong to the reader
    (flow control is automatic); ``write()`` joins small writes made in a row into
    one send, so it may send a moment later than asyncio would.
    """

    __slots__ = (
        "__weakref__",
        "_closed_event",
        "_closing",
        "_data_received",
        "_drain_event",
        "_engine",
        "_eof_requested",
        "_extra",
        "_high",
        "_lost",
        "_lost_exc",
        "_lost_writes",
        "_low",
        "_paused",
        "_reader",
        "_server",
        "_server_side",
        "_upgrade_backlog",
        "_write_error",
        "_write_through",
        "_yield_every",
        "_yield_mark",
    )

    def __init__(
        self,
        stream: ByteStream | Engine,
        reader: StreamReader | None,
        *,
        server: Server | None = None,
        server_side: bool = False,
        ssl_shutdown_timeout: float | None = None,
    ) -> None:
        engine: Engine = (
            TaskEngine(stream, shutdown_timeout=ssl_shutdown_timeout)
            if isinstance(stream, ByteStream)
            else stream
        )
        self._engine = engine
        self._reader = reader
        self._server = server
        self._server_side = server_side
        self._extra: dict[str, Any] | None = None  # the engine's socket_info(), when asked
        self._high = DEFAULT_HIGH_WATER
        self._low = DEFAULT_HIGH_WATER // 4
        self._paused = False  # writing paused: drain() must wait
        self._drain_event: anyio.Event | None = None  # what paused drain() calls wait on
        self._eof_requested = False
        self._closing = False
        self._lost = False
        self._lost_exc: BaseException | None = None
        self._lost_writes = 0
        self._write_error: BaseException | None = None  # to report (see _write_failed)
        # The engine's count of bytes written when drain() last let the event loop
        # run, and how many it lets through between two such passes (see drain()
        # and _peers).
        self._yield_mark = 0
        self._yield_every = YIELD_EVERY
        self._closed_event: anyio.Event | None = None
        # Writes made while start_tls() swaps the engine, for the new one.
        self._upgrade_backlog: list[bytes] | None = None
        # write()'s one check for its common case; see _update_write_through().
        self._write_through = True
        if server is not None:
            server._attach(self)
        # Engines feed the reader directly: this is the hot path of every receive.
        self._data_received: Callable[[bytes | bytearray | memoryview], None] = (
            self._drop_data if reader is None else reader.feed_data
        )
        if reader is not None:
            reader._transport = self
            if isinstance(engine, SocketEngine):
                reader._new_waiter = engine.read_waiter
        engine.start(self)
        if not server_side:
            sock = engine.extra(SocketAttribute.raw_socket, None)
            if sock is not None and not client_yields(sock):
                self._yield_every = NEVER  # its server is elsewhere: see _peers

    def __repr__(self) -> str:
        state = "closed" if self._lost else "closing" if self._closing else "open"
        info = [type(self).__name__, state]
        peer = self.get_extra_info("peername")
        if peer:
            info.append(f"peer={peer!r}")
        size = self.get_write_buffer_size()
        if size:
            info.append(f"write_buffer={size}")
        return "<{}>".format(" ".join(info))

    # -- asyncio.BaseTransport ---------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        extra = self._extra
        if extra is None:
            extra = self._extra = self._engine.socket_info()
        value = extra.get(name, _MISSING)
        if value is _MISSING and name in _TLS_NAMES:
            value = _tls_info(self._engine, name)
        return default if value is _MISSING else value

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Stop receiving, send what is buffered, then close the connection."""
        if self._closing:
            return
        self._closing = True
        self._update_write_through()
        if self._upgrade_backlog is None:
            self._engine.close()
        # else: start_tls() closes the new engine once it is in place.

    def abort(self) -> None:
        """Close the connection at once, discarding unsent data."""
        if self._lost:
            return
        self._closing = True
        self._update_write_through()
        if self._upgrade_backlog is not None:
            self._upgrade_backlog.clear()
        self._engine.abort()

    # -- asyncio.WriteTransport --------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        # Every write's case in one check: bytes, on a connection open for writing.
        # _write_slow() makes asyncio's checks, in asyncio's order, for the others.
        # StreamWriter.write() has a copy of these lines.
        if type(data) is bytes and self._write_through and data:
            self._engine.write(data)
            return
        self._write_slow(data)

    def _write_slow(self, data: bytes | bytearray | memoryview) -> None:
        if type(data) is not bytes and not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"data argument must be a bytes-like object, not {type(data).__name__!r}"
            )
        if self._eof_requested:
            raise RuntimeError("Cannot call write() after write_eof()")
        if not data:
            return
        if self._closing and not (
            # As asyncio's socket transport: sent before it closes if it still sends.
            self._upgrade_backlog is None and self._engine.takes_writes_while_closing()
        ):
            self._lost_writes += 1
            if self._lost_writes >= _LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                logger.warning("socket.send() raised exception.")
            return
        if type(data) is not bytes:
            data = bytes(data)  # a snapshot: the caller may reuse its buffer at once
        if self._upgrade_backlog is not None:
            self._upgrade_backlog.append(data)
            # No engine counts it: counted here for drain()'s yield, which lets the
            # upgrade go on while a write loop fills the backlog.
            self._yield_mark -= len(data)
        elif self._closing:
            # A write the closing engine still sends: on its way at once, not joined
            # with later ones for a pass that may come after the connection closed.
            self._engine.write(data)
            self._engine.flush()
        else:
            self._engine.write(data)

    def _update_write_through(self) -> None:
        """Call after any of ``_closing``, ``_eof_requested``, ``_upgrade_backlog``
        changes: write() then checks one attribute instead of three (~20 ns per call,
        which is much of what a write costs)."""
        self._write_through = self._upgrade_backlog is None and not (
            self._closing or self._eof_requested
        )

    def writelines(self, list_of_data: Any) -> None:
        # As asyncio 3.13: every item is checked (with memoryview's own TypeError)
        # before anything is written, and the list goes out as one write.
        if self._eof_requested:
            raise RuntimeError("Cannot call writelines() after write_eof()")
        views = [memoryview(data) for data in list_of_data]
        if views:
            self.write(b"".join(views))

    def write_eof(self) -> None:
        if self._closing or self._eof_requested:
            return
        if not self.can_write_eof():
            raise NotImplementedError("write_eof() is not supported on this transport")
        self._eof_requested = True
        self._update_write_through()
        if self._upgrade_backlog is None:
            self._engine.write_eof()

    def can_write_eof(self) -> bool:
        return self._engine.can_write_eof()

    def get_write_buffer_size(self) -> int:
        backlog = self._upgrade_backlog
        pending = sum(map(len, backlog)) if backlog else 0
        return pending + self._engine.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low, self._high)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = DEFAULT_HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high = high
        self._low = low
        self._engine.set_write_buffer_limits(high, low)

    # -- what the engine reports (asyncio's protocol callbacks) -------------------------

    def _drop_data(self, data: bytes | bytearray | memoryview) -> None:
        pass  # no reader: asyncio's StreamReaderProtocol drops it too

    def _read_size(self) -> int:
        reader = self._reader
        return 0 if reader is None else reader._handoff_size

    def _eof_received(self) -> None:
        reader = self._reader
        if reader is not None:
            reader.feed_eof()
        if not self.can_write_eof():
            # Over TLS, asyncio closes the connection at EOF; over TCP it stays half-open.
            self.close()

    def _write_failed(self, exc: BaseException | None) -> None:
        # As asyncio's transport: closing at once, the error reported a pass later (so
        # drain() raises "Connection lost", and the reader then the error itself).
        self._closing = True
        self._update_write_through()
        if exc is not None and self._write_error is None:
            self._write_error = exc
            call_soon(self._report_write_error)

    def _report_write_error(self) -> None:
        """Report the error of a failed send, if that is still to be done."""
        exc = self._write_error
        if exc is not None:
            self._write_error = None
            self._connection_lost(exc)

    def _pause_writing(self) -> None:
        self._paused = True

    def _resume_writing(self) -> None:
        self._paused = False
        event = self._drain_event
        if event is not None:
            self._drain_event = None
            event.set()

    def _connection_lost(self, exc: BaseException | None) -> None:
        """The connection is gone: tell the reader, drain(), wait_closed() and the server."""
        if self._lost:
            return
        self._lost = True
        self._lost_exc = exc
        self._closing = True
        self._update_write_through()
        reader = self._reader
        if reader is not None:
            if exc is None:
                reader.feed_eof()
            else:
                reader.set_exception(exc)
        self._resume_writing()
        if self._closed_event is not None:
            self._closed_event.set()
        if self._server is not None:
            self._server._detach(self)

    # -- what StreamReader and StreamWriter need ----------------------------------------

    def _pause_reading(self) -> None:
        self._engine.pause_reading()

    def _resume_reading(self) -> None:
        self._engine.resume_reading()

    async def _wait_for_drain(self) -> None:
        """Wait until writing resumes (StreamWriter.drain() calls it when paused)."""
        event = self._drain_event
        if event is None:
            event = self._drain_event = anyio.Event()
        await event.wait()
        if self._lost_exc is not None:
            raise self._lost_exc

    async def _wait_closed(self) -> None:
        if not self._lost:
            if self._closed_event is None:
                self._closed_event = anyio.Event()
            await self._closed_event.wait()
        if self._lost_exc is not None:
            raise self._lost_exc

    async def _start_tls(
        self,
        context: ssl.SSLContext,
        *,
        server_hostname: str | None,
        handshake_timeout: float | None,
        shutdown_timeout: float | None,
    ) -> None:
        """Upgrade the connection to TLS in place, as ``loop.start_tls()`` does.

        What was written before is sent first, in plain text; bytes the reader had
        received but the application had not read go to the TLS layer.
        """
        if not self.can_write_eof() or self._upgrade_backlog is not None:
            raise TypeError(f"transport {self!r} is not supported by start_tls()")
        if self._closing:
            raise ConnectionResetError("Connection lost")
        backlog: list[bytes] = []
        self._upgrade_backlog = backlog
        self._update_write_through()
        try:
            stream = await self._engine.detach()
            reader = self._reader
            if reader is not None and reader._buffer:
                # Received but unread, these bytes start the TLS conversation (a
                # pipelined ClientHello, say): losing them would stall the handshake
                # (python/cpython#142352). anyio's buffered stream hands them over first.
                buffered = BufferedByteStream(stream)
                buffered.feed_data(reader._buffer.take_all())
                stream = buffered
                reader._paused = False
            try:
                tls_stream = await _tls.wrap(
                    stream,
                    context,
                    server_side=self._server_side,
                    server_hostname=server_hostname,
                    handshake_timeout=handshake_timeout,
                )
            except BaseException as exc:
                # _tls.wrap() has closed the stream; asyncio closes the transport.
                self._connection_lost(exc if isinstance(exc, OSError) else None)
                raise
        except BaseException:
            self._upgrade_backlog = None
            self._update_write_through()
            if not self._lost:
                self._connection_lost(None)
            raise
        engine = TaskEngine(tls_stream, shutdown_timeout=shutdown_timeout)
        engine.set_write_buffer_limits(self._high, self._low)
        self._engine = engine
        if self._reader is not None:
            self._reader._new_waiter = None  # the loop's own kind from now on
        self._yield_mark = 0  # the new engine counts from zero
        self._extra = None  # the new engine's (the asyncio engine hands over a duplicate)
        self._upgrade_backlog = None
        self._update_write_through()
        engine.start(self)
        for chunk in backlog:
            engine.write(chunk)
        if self._closing:
            engine.close()


def _set_nodelay(sock: socket.socket) -> None:
    """Turn Nagle's algorithm off for TCP, as every asyncio socket transport does.

    The same test as asyncio's ``base_events._set_nodelay()``: a socket made with
    ``proto=0`` by hand keeps the system's default there too.
    """
    if (
        sock.family in (socket.AF_INET, socket.AF_INET6)
        and sock.type == socket.SOCK_STREAM
        and sock.proto == socket.IPPROTO_TCP
    ):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def transport_from_socket(
    sock: socket.socket,
    reader: StreamReader,
    *,
    ssl_context: ssl.SSLContext | None = None,
    server: Server | None = None,
    server_side: bool = False,
    server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
) -> StreamTransport:
    """The transport for a connected socket, with the fastest engine the loop allows.

    Plain connections run on the loop's own socket transport on asyncio (and uvloop)
    and on the socket itself on trio; TLS connections on anyio's TLS stream.
    """
    _set_nodelay(sock)
    if ssl_context is None:
        if current_backend() == "asyncio":
            engine: Engine = await AsyncioEngine.connect(sock)
        else:
            engine = SocketEngine(sock)
            await checkpoint()
        return StreamTransport(engine, reader, server=server, server_side=server_side)
    stream: ByteStream = await stream_from_socket(sock)
    if ssl_context is not None:
        stream = await _tls.wrap(
            stream,
            ssl_context,
            server_side=server_side,
            server_hostname=server_hostname,
            handshake_timeout=ssl_handshake_timeout,
        )
    return StreamTransport(
        stream,
        reader,
        server=server,
        server_side=server_side,
        ssl_shutdown_timeout=ssl_shutdown_timeout,
    )
