"""The engine over any anyio byte stream: a receiving task and a sending task.

It works on every backend and over every stream (sockets, TLS, memory pipes). The
receiving task stops while the reader is full (asyncio's ``pause_reading``); the
sending task joins whatever ``write()`` buffered into one send, so small writes cost
one send between them.
"""

from __future__ import annotations

import ssl
from typing import Any

import anyio
from anyio.abc import ByteStream
from anyio.streams.tls import TLSAttribute

from ._backend import spawn_detached
from ._engine import RECEIVE_SIZE
from ._engine_base import ReceivingEngine
from ._errors import connection_error

__all__ = ["TaskEngine"]

_DEFAULT_SHUTDOWN_TIMEOUT = 30.0

_SEND_ERRORS = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


def _is_ragged_tls_eof(exc: BaseException) -> bool:
    cause = exc.__cause__ if isinstance(exc, anyio.BrokenResourceError) else exc
    return isinstance(cause, ssl.SSLEOFError) or (
        isinstance(cause, ssl.SSLError) and "UNEXPECTED_EOF_WHILE_READING" in str(cause)
    )


class TaskEngine(ReceivingEngine):
    """Moves bytes between an anyio :class:`~anyio.abc.ByteStream` and its owner."""

    __slots__ = (
        "__weakref__",
        "_aborted",
        "_chunks",
        "_closing",
        "_detached",
        "_eof_requested",
        "_lost",
        "_sender_idle",
        "_sender_running",
        "_sender_scope",
        "_shutdown_timeout",
        "stream",
        "written",
    )

    def __init__(self, stream: ByteStream, *, shutdown_timeout: float | None = None) -> None:
        super().__init__()
        self.stream = stream
        self._shutdown_timeout = (
            _DEFAULT_SHUTDOWN_TIMEOUT if shutdown_timeout is None else shutdown_timeout
        )
        # Unsent data: chunks not yet handed to the stream, plus the one being sent.
        self._chunks: list[bytes] = []
        self.written = 0  # see Engine.written
        self._sender_running = False
        self._sender_scope: anyio.CancelScope | None = None
        self._sender_idle: anyio.Event | None = None
        self._eof_requested = False
        self._closing = False
        self._aborted = False
        self._lost = False
        self._detached = False

    # -- Engine --------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        self._chunks.append(data)
        self.written += len(data)
        self._size += len(data)
        if not self._writing_paused and self._size > self._high:
            self._writing_paused = True
            assert self._owner is not None
            self._owner._pause_writing()
        if not self._sender_running:
            self._ensure_sender()

    def flush(self) -> None:
        pass  # the sending task is already on its way

    def write_eof(self) -> None:
        self._eof_requested = True
        self._ensure_sender()

    def can_write_eof(self) -> bool:
        if not getattr(self.stream, "can_send_eof", True):
            return False  # an adapted trio stream that cannot half-close
        return self.stream.extra(TLSAttribute.ssl_object, None) is None

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._stop_receiver()  # asyncio stops reading at close()
        self._ensure_sender()

    def takes_writes_while_closing(self) -> bool:
        return False  # as asyncio's TLS transport, the one this engine stands for

    def abort(self) -> None:
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

    def extra(self, attribute: Any, default: Any = None) -> Any:
        return self.stream.extra(attribute, default)

    async def detach(self) -> ByteStream:
        while self._sender_running:
            idle = self._sender_idle = anyio.Event()
            await idle.wait()
        if self._lost or self._closing:
            raise ConnectionResetError("Connection lost")
        await self._stop_receiver_and_wait()
        if self._lost:
            raise ConnectionResetError("Connection lost")
        self._detached = True
        return self.stream

    # -- receiving -----------------------------------------------------------------------

    async def _receive_loop(self) -> None:
        owner = self._owner
        assert owner is not None
        stream = self.stream
        try:
            while True:
                await self._wait_while_paused()
                owner._data_received(await stream.receive(RECEIVE_SIZE))
        except anyio.EndOfStream:
            owner._eof_received()
        except anyio.ClosedResourceError:
            pass  # closed by us: _connection_lost() reports the end
        except (anyio.BrokenResourceError, OSError) as exc:
            if _is_ragged_tls_eof(exc):
                # A TLS peer that closes without close_notify reads as EOF, as in asyncio.
                owner._eof_received()
            else:
                self._lose(connection_error(exc))

    # -- sending -------------------------------------------------------------------------

    def _ensure_sender(self) -> None:
        if not self._sender_running and not self._detached:
            self._sender_running = True
            spawn_detached(self._run_sender, name="asyncstreams sender")

    async def _run_sender(self) -> None:
        """Send everything written; then write EOF or close, if asked to."""
        stream = self.stream
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
                except _SEND_ERRORS as exc:
                    self._lose(connection_error(exc))
            self._sender_scope = None
            if self._closing:
                await self._close_stream(stream)
                self._lose(None)
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
                self._lose(None)

    async def _close_stream(self, stream: ByteStream) -> None:
        if self._aborted or self._lost:
            await anyio.aclose_forcefully(stream)
            return
        # Closing may include a TLS close_notify exchange: bound it, and let a peer
        # that breaks it off cost nothing but the courtesy.
        with anyio.move_on_after(self._shutdown_timeout):
            # The exchange reads: the receiving task (cancelled) must be gone first.
            await self._stop_receiver_and_wait()
            try:
                await stream.aclose()
            except _SEND_ERRORS:
                pass
            else:
                return
        await anyio.aclose_forcefully(stream)

    def _lose(self, exc: BaseException | None) -> None:
        """The connection is gone: stop everything, release the stream, tell the owner."""
        if self._lost:
            return
        self._lost = True
        self._stop_receiver()
        self._chunks.clear()
        self._size = 0
        self._writing_paused = False
        if not self._closing:
            # Lost by an error: release the stream too.
            self._closing = True
            self._ensure_sender()
        if self._owner is not None:
            self._owner._connection_lost(exc)
