"""The engine for plain sockets on asyncio (and uvloop): the loop's own socket transport.

This is the backend-specific fast path. On asyncio, anyio's socket stream pauses and
resumes reading around every receive and takes an extra loop pass per send; stream code
pays that on every message. Here the loop's transport calls us back directly, as it
calls asyncio's own ``StreamReaderProtocol``: received bytes go straight into the
reader, and writes go straight to the transport, with no task in between.

Three things make it faster than asyncio's own streams: on asyncio's own loops it
receives through :class:`asyncio.BufferedProtocol` into one reused buffer per thread
(asyncio allocates a fresh 256 KiB ``bytes`` per receive; uvloop does not, so there the
plain ``data_received()`` is the cheaper path); it joins writes made in a row into one
send (asyncio makes a system call per ``write()``); and on the selector loop it makes
the ``sock.send()`` that ``transport.write()`` would make itself, without the
transport's Python write path (:class:`SelectorEngine`).
"""

from __future__ import annotations

import asyncio
import socket
from asyncio import trsock
from typing import Any, cast

from anyio.abc import ByteStream, SocketAttribute

from ._connect import stream_from_socket
from ._engine import DEFAULT_HIGH_WATER, DIRECT_RECEIVE_MIN, Owner, receive_buffer

__all__ = ["AsyncioEngine"]


class AsyncioEngine(asyncio.Protocol):
    """An asyncio protocol that feeds its owner, and the engine that writes for it.

    This class receives through ``data_received()``, which is what suits uvloop (it
    reads into a buffer of its own and hands over exact-size ``bytes``);
    :class:`BufferedAsyncioEngine` receives through ``asyncio.BufferedProtocol``, which
    is what suits asyncio's own loops.
    """

    __slots__ = (
        "_aborted",
        "_detached",
        "_early",
        "_early_eof",
        "_flush_handle",
        "_flushed",
        "_high",
        "_loop",
        "_lost",
        "_lost_exc",
        "_owner",
        "_pending",
        "_pending_size",
        "_send_next",
        "_sock",
        "_transport",
        "_view",
        "written",
    )

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._owner: Owner | None = None
        self._view = receive_buffer()
        # The first write after a wait goes straight to the transport, as in asyncio (one
        # message, one send). Writes that follow it are joined and sent together at the
        # next drain(), the next loop pass, or once they pass the high-water mark.
        self._send_next = True
        self._pending: list[bytes] = []
        self._pending_size = 0
        self.written = 0  # see Engine.written
        self._flush_handle: asyncio.Handle | None = None
        self._high = DEFAULT_HIGH_WATER
        self._detached = False
        self._aborted = False  # uvloop reports the dropped buffer's size until it is lost
        self._lost = False
        self._lost_exc: BaseException | None = None
        self._early: bytearray | None = None  # what arrived before start()
        self._early_eof = False
        self._flushed: asyncio.Future[None] | None = None

    @staticmethod
    async def connect(sock: socket.socket) -> AsyncioEngine:
        """Run *sock* (connected, non-blocking) on the loop's transport; close it on failure."""
        loop = asyncio.get_running_loop()
        uvloop = type(loop).__module__.startswith("uvloop")
        if uvloop:
            engine: AsyncioEngine = AsyncioEngine(sock)
        elif isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop):
            engine = SelectorEngine(sock)
        else:
            engine = BufferedAsyncioEngine(sock)
        try:
            sock.setblocking(False)
            await engine._loop.connect_accepted_socket(lambda: engine, sock)
        except BaseException:
            sock.close()
            raise
        return engine

    # -- asyncio.BufferedProtocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._transport.set_write_buffer_limits(self._high)

    def data_received(self, data: bytes) -> None:
        self._send_next = True  # a new loop pass: a reply may go out at once
        if self._owner is not None:
            self._owner._data_received(data)
        else:
            # Before start(): the loop may read as soon as the connection is made.
            self._keep_early(data)

    def get_buffer(self, sizehint: int) -> memoryview:
        # A big read() waiting on an empty buffer takes the receive whole (see Owner).
        owner = self._owner
        if owner is not None:
            size = owner._read_size()
            if size >= DIRECT_RECEIVE_MIN:
                return self._view[:size]
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        self._send_next = True  # a new loop pass: a reply may go out at once
        if self._owner is not None:
            self._owner._data_received(self._view[:nbytes])
        else:
            # Before start(): the loop may read as soon as the connection is made.
            self._keep_early(self._view[:nbytes])

    def _keep_early(self, data: bytes | memoryview) -> None:
        if self._early is None:
            self._early = bytearray()
        self._early += data

    def eof_received(self) -> bool:
        if self._owner is None:
            self._early_eof = True
        elif not self._detached:
            self._owner._eof_received()
        return True  # stay half-open, as asyncio's StreamReaderProtocol does

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_flush()
        self._pending.clear()
        self._pending_size = 0
        if self._flushed is not None and not self._flushed.done():
            self._flushed.set_result(None)
        self._lost = True
        self._lost_exc = exc
        if self._owner is not None and not self._detached:
            self._owner._connection_lost(exc)

    def pause_writing(self) -> None:
        if self._owner is not None:
            self._owner._pause_writing()

    def resume_writing(self) -> None:
        flushed = self._flushed
        if flushed is not None and not flushed.done():
            flushed.set_result(None)
        if self._owner is not None:
            self._owner._resume_writing()

    # -- Engine --------------------------------------------------------------------------

    def start(self, owner: Owner) -> None:
        self._owner = owner
        if self._early is not None:
            owner._data_received(bytes(self._early))
            self._early = None
        if self._early_eof:
            owner._eof_received()
        if self._lost:
            owner._connection_lost(self._lost_exc)

    def write(self, data: bytes) -> None:
        self.written += len(data)
        if self._send_next and not self._pending:  # never ahead of what waits to be joined
            self._send_next = False
            # self._send(data), inline: this is every message's path on uvloop.
            transport = self._transport
            assert transport is not None
            transport.write(data)
            if transport.is_closing():
                self._write_failed()
            return
        self._join(data)

    def _join(self, data: bytes) -> None:
        """Keep *data* to send with the writes that follow it (see ``__init__``)."""
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size > self._high:
            self._flush()
        elif self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)

    def write_eof(self) -> None:
        self._flush()
        assert self._transport is not None
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return True

    def close(self) -> None:
        self._flush()
        assert self._transport is not None
        self._transport.close()

    def takes_writes_while_closing(self) -> bool:
        # What the loop's transport does with them, our own buffer counted in.
        return not (self._aborted or self._lost) and self.get_write_buffer_size() > 0

    def abort(self) -> None:
        self._cancel_flush()
        self._pending.clear()
        self._pending_size = 0
        self._aborted = True
        assert self._transport is not None
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        transport = self._transport
        if transport is None or self._aborted:
            return self._pending_size
        return self._pending_size + transport.get_write_buffer_size()

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        self._high = high
        if self._transport is not None:
            self._transport.set_write_buffer_limits(high, low)

    def pause_reading(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def extra(self, attribute: Any, default: Any = None) -> Any:
        if attribute is SocketAttribute.raw_socket:
            return self._sock
        return default

    def socket_info(self) -> dict[str, Any]:
        """``get_extra_info()``'s socket entries; the loop's transport keeps the addresses
        from the start, so they are there after the connection closes, as in asyncio."""
        transport = self._transport
        assert transport is not None
        return {
            "socket": trsock.TransportSocket(self._sock),
            "sockname": transport.get_extra_info("sockname"),
            "peername": transport.get_extra_info("peername"),
        }

    async def detach(self) -> ByteStream:
        """Hand the connection to an anyio stream over a duplicate of the socket."""
        transport = self._transport
        assert transport is not None
        if transport.is_closing():
            raise ConnectionResetError("Connection lost")
        transport.pause_reading()
        self._flush()
        if transport.get_write_buffer_size():
            # The transport signals an empty buffer once the low-water mark is zero.
            self._flushed = self._loop.create_future()
            transport.set_write_buffer_limits(0, 0)
            await self._flushed
            if transport.is_closing():
                raise ConnectionResetError("Connection lost")
        # The duplicate keeps the connection open while the transport lets go of it.
        sock = self._sock.dup()
        self._detached = True
        transport.abort()
        return await stream_from_socket(sock)

    # -- internals -----------------------------------------------------------------------

    def flush(self) -> None:
        """Hand what ``write()`` buffered to the transport now (``drain()`` calls it)."""
        # After two or more joined writes, the next write is joined too (the program
        # writes in batches): one send per batch. After one, the next goes out at once.
        batch = len(self._pending) > 1
        if self._pending:
            self._flush()
        self._send_next = not batch

    def _flush(self) -> None:
        self._send_next = True
        self._cancel_flush()
        pending = self._pending
        if not pending:
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        self._pending_size = 0
        self._send(data)

    def _send(self, data: bytes | memoryview) -> None:
        transport = self._transport
        assert transport is not None
        transport.write(data)
        if transport.is_closing():
            self._write_failed()

    def _write_failed(self) -> None:
        # transport.write() failed: the transport has scheduled connection_lost().
        if self._owner is not None:
            self._owner._write_failed(None)

    def _cancel_flush(self) -> None:
        handle = self._flush_handle
        if handle is not None:
            self._flush_handle = None
            handle.cancel()


class BufferedAsyncioEngine(AsyncioEngine, asyncio.BufferedProtocol):
    """:class:`AsyncioEngine` receiving into the thread's shared buffer.

    asyncio's selector loop otherwise allocates a fresh 256 KiB ``bytes`` per receive
    (which glibc serves with mmap/munmap, python/cpython#85451).
    """

    __slots__ = ()


class SelectorEngine(BufferedAsyncioEngine):
    """:class:`BufferedAsyncioEngine` on asyncio's selector loop, sending as it does.

    When the transport holds nothing unsent, ``transport.write()`` calls
    ``sock.send()`` and returns; this engine makes that call itself, which spares a
    write path that costs as much as the rest of ``write()`` and ``drain()``
    together. Anything the kernel does not take goes to ``transport.write()``, and
    while the transport holds unsent bytes every write does, so the order is kept. A
    send error ends the connection as the transport would have: the connection is
    closing at once, the transport is aborted, and the error is what
    ``connection_lost()`` reports on the next loop pass.
    """

    __slots__ = ("_send_error", "_transport_busy")

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        self._transport_busy = False  # the transport may hold unsent bytes
        self._send_error: OSError | None = None

    def write(self, data: bytes) -> None:
        self.written += len(data)
        if self._send_next and not self._pending:  # as AsyncioEngine.write()
            self._send_next = False
            self._send(data)
            return
        self._join(data)

    def _send(self, data: bytes | memoryview) -> None:
        transport = self._transport
        assert transport is not None
        if self._transport_busy and transport.get_write_buffer_size():
            super()._send(data)
            return
        self._transport_busy = False
        if transport.is_closing():
            super()._send(data)  # counted and warned about as a lost write
            return
        try:
            sent = self._sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self._send_error = exc
            transport.abort()  # connection_lost(exc) follows on the next pass
            self._write_failed()
            return
        if sent < len(data):
            self._transport_busy = True
            super()._send(memoryview(data)[sent:])

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc if exc is not None else self._send_error)
