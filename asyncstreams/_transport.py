"""StreamTransport: one object per connection, shared by its reader and writer.

It plays the part of asyncio's transport *and* of ``StreamReaderProtocol``: it owns the
anyio byte stream, buffers what ``write()`` hands it and sends it from a background task,
tracks flow control for ``drain()``, and reports the end of the connection to the reader,
to ``wait_closed()`` and to the server that accepted it. Swapping ``_stream`` is all a TLS
upgrade will need.
"""

from __future__ import annotations

import logging
import socket
import ssl
from asyncio import trsock
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import ByteStream, SocketAttribute
from anyio.streams.tls import TLSAttribute

from . import _tls
from ._backend import spawn_detached
from ._errors import connection_error

if TYPE_CHECKING:
    from ._reader import StreamReader
    from ._server import Server

__all__ = ["StreamTransport"]

logger = logging.getLogger("asyncstreams")

_DEFAULT_HIGH_WATER = 64 * 1024
_RECEIVE_SIZE = 64 * 1024
_DEFAULT_SHUTDOWN_TIMEOUT = 30.0
# As asyncio does, warn once writes keep arriving on a lost connection.
_LOG_THRESHOLD_FOR_CONNLOST_WRITES = 5

_MISSING: Any = object()


def _tls_info(stream: ByteStream, name: str) -> Any:
    ssl_object = stream.extra(TLSAttribute.ssl_object, None)
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
    if name == "compression":
        return ssl_object.compression()
    return _MISSING


def _is_ragged_tls_eof(exc: BaseException) -> bool:
    cause = exc.__cause__ if isinstance(exc, anyio.BrokenResourceError) else exc
    return isinstance(cause, ssl.SSLEOFError) or (
        isinstance(cause, ssl.SSLError) and "UNEXPECTED_EOF_WHILE_READING" in str(cause)
    )


_TLS_NAMES = frozenset({"sslcontext", "ssl_object", "peercert", "cipher", "compression"})


def _socket_info(stream: ByteStream) -> dict[str, Any]:
    sock: socket.socket | None = stream.extra(SocketAttribute.raw_socket, None)
    if sock is None:
        return {}
    extra: dict[str, Any] = {"socket": trsock.TransportSocket(sock)}
    try:
        extra["sockname"] = sock.getsockname()
    except OSError:
        extra["sockname"] = None
    try:
        extra["peername"] = sock.getpeername()
    except OSError:
        extra["peername"] = None
    return extra


class StreamTransport:
    """The subset of :class:`asyncio.Transport` that stream code uses, over an anyio stream.

    A background task receives into the reader, as asyncio's transport does, and
    stops while the reader holds more than twice its limit.

    Differs from asyncio: ``pause_reading``/``resume_reading`` belong to the reader
    (flow control is automatic), and ``write()`` never sends synchronously: a
    background task sends what was written, joining small writes into one send.
    """

    def __init__(
        self,
        stream: ByteStream,
        reader: StreamReader | None,
        *,
        server: Server | None = None,
        server_side: bool = False,
        ssl_shutdown_timeout: float | None = None,
    ) -> None:
        self._stream = stream
        self._reader = reader
        self._server = server
        self._server_side = server_side
        self._shutdown_timeout = (
            _DEFAULT_SHUTDOWN_TIMEOUT if ssl_shutdown_timeout is None else ssl_shutdown_timeout
        )
        self._extra = _socket_info(stream)
        # Unsent data: chunks not yet handed to the stream, plus the one being sent.
        self._chunks: list[bytes] = []
        self._size = 0
        self._high = _DEFAULT_HIGH_WATER
        self._low = _DEFAULT_HIGH_WATER // 4
        self._paused = False  # above the high-water mark: drain() must wait
        self._drain_waiters: list[anyio.Event] = []
        self._sender_running = False
        self._sender_scope: anyio.CancelScope | None = None
        self._eof_requested = False
        self._closing = False
        self._aborted = False
        self._lost = False
        self._lost_exc: BaseException | None = None
        self._lost_writes = 0
        self._closed_event: anyio.Event | None = None
        self._receiver_scope: anyio.CancelScope | None = None
        self._receiver_done: anyio.Event | None = None
        self._reading_paused = False
        self._resume_event: anyio.Event | None = None
        self._upgrading = False  # start_tls() in progress: nothing may touch the stream
        self._sender_idle: anyio.Event | None = None
        if server is not None:
            server._attach(self)
        if reader is not None:
            reader._transport = self
            self._start_receiver()

    def __repr__(self) -> str:
        state = "closed" if self._lost else "closing" if self._closing else "open"
        info = [type(self).__name__, state]
        peer = self._extra.get("peername")
        if peer:
            info.append(f"peer={peer!r}")
        if self._size:
            info.append(f"write_buffer={self._size}")
        return "<{}>".format(" ".join(info))

    # -- asyncio.BaseTransport ---------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        value = self._extra.get(name, _MISSING)
        if value is _MISSING and name in _TLS_NAMES:
            value = _tls_info(self._stream, name)
        return default if value is _MISSING else value

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Stop receiving, send what is buffered, then close the connection."""
        if self._closing:
            return
        self._closing = True
        self._stop_receiver()
        self._ensure_sender()

    def abort(self) -> None:
        """Close the connection at once, discarding unsent data."""
        if self._lost:
            return
        self._closing = True
        self._aborted = True
        self._stop_receiver()
        self._chunks.clear()
        self._size = 0
        if self._sender_scope is not None:
            self._sender_scope.cancel()
        self._ensure_sender()

    # -- asyncio.WriteTransport --------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"data argument must be a bytes-like object, not {type(data).__name__!r}"
            )
        if self._eof_requested:
            raise RuntimeError("Cannot call write() after write_eof()")
        if not data:
            return
        if self._closing:
            self._lost_writes += 1
            if self._lost_writes >= _LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                logger.warning("socket.send() raised exception.")
            return
        # Snapshot: the caller may reuse a bytearray or memoryview right away.
        chunk = data if type(data) is bytes else bytes(data)
        self._chunks.append(chunk)
        self._size += len(chunk)
        if self._size > self._high:
            self._paused = True
        if not self._sender_running:
            self._ensure_sender()

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def write_eof(self) -> None:
        if self._closing or self._eof_requested:
            return
        if not self.can_write_eof():
            raise NotImplementedError("write_eof() is not supported on this transport")
        self._eof_requested = True
        self._ensure_sender()

    def can_write_eof(self) -> bool:
        return self._stream.extra(TLSAttribute.ssl_object, None) is None

    def get_write_buffer_size(self) -> int:
        return self._size

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low, self._high)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = 64 * 1024 if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high = high
        self._low = low
        self._update_flow_control()

    # -- what StreamWriter and StreamReader need ----------------------------------------

    async def _drain_helper(self) -> None:
        if self._lost:
            raise ConnectionResetError("Connection lost")
        if not self._paused:
            return
        waiter = anyio.Event()
        self._drain_waiters.append(waiter)
        try:
            await waiter.wait()
        finally:
            self._drain_waiters.remove(waiter)
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
        if not self.can_write_eof() or self._upgrading:
            raise TypeError(f"transport {self!r} is not supported by start_tls()")
        if self._closing:
            raise ConnectionResetError("Connection lost")
        self._upgrading = True
        reader = self._reader
        try:
            while self._sender_running:
                idle = self._sender_idle = anyio.Event()
                await idle.wait()
            if self._lost:
                raise self._lost_exc or ConnectionResetError("Connection lost")
            await self._stop_receiver_and_wait()
            stream = self._stream
            if reader is not None and reader._buffer:
                stream = _tls.PrefixedStream(stream, reader._buffer.take_all())
                reader._paused = self._reading_paused = False
            try:
                self._stream = await _tls.wrap(
                    stream,
                    context,
                    server_side=self._server_side,
                    server_hostname=server_hostname,
                    handshake_timeout=handshake_timeout,
                )
            except BaseException as exc:
                # _tls.wrap() has closed the stream; asyncio closes the transport.
                self._closing = True
                self._connection_lost(exc if isinstance(exc, OSError) else None)
                raise
            if shutdown_timeout is not None:
                self._shutdown_timeout = shutdown_timeout
        finally:
            self._upgrading = False
        if reader is not None and not self._closing:
            self._start_receiver()
        if self._chunks or self._closing or self._eof_requested:
            self._ensure_sender()

    async def _stop_receiver_and_wait(self) -> None:
        done = self._receiver_done
        self._stop_receiver()
        if done is not None:
            await done.wait()

    def _pause_reading(self) -> None:
        self._reading_paused = True

    def _resume_reading(self) -> None:
        self._reading_paused = False
        event = self._resume_event
        if event is not None:
            self._resume_event = None
            event.set()

    # -- internals ---------------------------------------------------------------------

    def _update_flow_control(self) -> None:
        if self._size > self._high:
            self._paused = True
        elif self._paused and self._size <= self._low:
            self._paused = False
            for waiter in self._drain_waiters:
                waiter.set()

    def _start_receiver(self) -> None:
        scope = self._receiver_scope = anyio.CancelScope()
        done = self._receiver_done = anyio.Event()
        spawn_detached(
            lambda: self._run_receiver(scope, done), name=f"asyncstreams receiver {self!r}"
        )

    def _stop_receiver(self) -> None:
        scope = self._receiver_scope
        if scope is not None:
            self._receiver_scope = None
            scope.cancel()

    async def _run_receiver(self, scope: anyio.CancelScope, done: anyio.Event) -> None:
        """Receive into the reader until EOF, an error, or our own close()."""
        try:
            await self._receive_loop(scope)
        finally:
            done.set()

    async def _receive_loop(self, scope: anyio.CancelScope) -> None:
        reader = self._reader
        assert reader is not None
        stream = self._stream
        with scope:
            try:
                while True:
                    if self._reading_paused:
                        event = self._resume_event = anyio.Event()
                        await event.wait()
                    reader.feed_data(await stream.receive(_RECEIVE_SIZE))
            except anyio.EndOfStream:
                self._eof_received(reader)
            except anyio.ClosedResourceError:
                pass  # closed by us: _connection_lost() feeds the EOF
            except (anyio.BrokenResourceError, OSError) as exc:
                if _is_ragged_tls_eof(exc):
                    # A TLS peer that closes without close_notify reads as EOF, as in asyncio.
                    self._eof_received(reader)
                else:
                    self._connection_lost(connection_error(exc))
        if self._receiver_scope is scope:
            self._receiver_scope = None

    def _eof_received(self, reader: StreamReader) -> None:
        reader.feed_eof()
        if not self.can_write_eof():
            # Over TLS, asyncio closes the connection at EOF; over TCP it stays half-open.
            self.close()

    def _ensure_sender(self) -> None:
        if not self._sender_running and not self._upgrading:
            self._sender_running = True
            spawn_detached(self._run_sender, name=f"asyncstreams sender {self!r}")

    async def _run_sender(self) -> None:
        """Send everything written; then write EOF or close, if asked to."""
        stream = self._stream
        try:
            with anyio.CancelScope() as scope:
                self._sender_scope = scope
                try:
                    while self._chunks:
                        chunks = self._chunks
                        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                        self._chunks = []
                        await stream.send(data)
                        self._size -= len(data)
                        self._update_flow_control()
                    if self._eof_requested and not self._closing:
                        await stream.send_eof()
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                    self._connection_lost(connection_error(exc))
            self._sender_scope = None
            if self._closing:
                if self._aborted or self._lost:
                    await anyio.aclose_forcefully(stream)
                else:
                    # Closing may include a TLS close_notify exchange: bound it, and
                    # let a peer that breaks it off cost nothing but the courtesy.
                    clean = False
                    with anyio.move_on_after(self._shutdown_timeout):
                        try:
                            await stream.aclose()
                            clean = True
                        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                            pass
                    if not clean:
                        await anyio.aclose_forcefully(stream)
                self._connection_lost(None)
        finally:
            self._sender_running = False
            self._sender_scope = None
            idle = self._sender_idle
            if idle is not None:
                self._sender_idle = None
                idle.set()
            if self._closing and not self._lost:
                # Cancelled (the event loop is shutting down): at least release the socket.
                with anyio.CancelScope(shield=True):
                    await anyio.aclose_forcefully(stream)
                self._connection_lost(None)

    def _connection_lost(self, exc: BaseException | None) -> None:
        """The connection is gone: tell the reader, drain(), wait_closed() and the server."""
        if self._lost:
            return
        self._lost = True
        self._lost_exc = exc
        self._stop_receiver()
        self._chunks.clear()
        self._size = 0
        reader = self._reader
        if reader is not None:
            if exc is None:
                reader.feed_eof()
            else:
                reader.set_exception(exc)
        self._paused = False
        for waiter in self._drain_waiters:
            waiter.set()
        if self._closed_event is not None:
            self._closed_event.set()
        if self._server is not None:
            self._server._detach(self)
        if not self._closing:
            # Lost by an error: release the socket too.
            self._closing = True
            self._ensure_sender()
