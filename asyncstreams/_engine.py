"""What moves a connection's bytes: the engine interface behind :class:`StreamTransport`.

An engine is to :class:`~asyncstreams.StreamTransport` what an asyncio transport is to
its protocol: it sends what it is given, receives into the reader, and reports back
through the :class:`Owner` callbacks (data, EOF, connection lost, write flow control).
Three engines exist: :class:`~asyncstreams._task_engine.TaskEngine` over any anyio byte
stream (on every backend, for TLS and wrapped streams), and for plain sockets the
faster :class:`~asyncstreams._asyncio_engine.AsyncioEngine` over the event loop's own
socket transport on asyncio and :class:`~asyncstreams._socket_engine.SocketEngine` over
the socket itself on trio.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

from anyio.abc import ByteStream

__all__ = [
    "DEFAULT_HIGH_WATER",
    "DIRECT_RECEIVE_MIN",
    "RECEIVE_SIZE",
    "YIELD_EVERY",
    "Engine",
    "Owner",
    "receive_buffer",
]

DEFAULT_HIGH_WATER = 64 * 1024  # asyncio's default write high-water mark
RECEIVE_SIZE = 64 * 1024
# drain() lets the event loop run at least once per this many bytes written.
YIELD_EVERY = 64 * 1024
# A read waiting for at least this much is received into for itself (see Owner).
DIRECT_RECEIVE_MIN = 16 * 1024
_SHARED_RECEIVE_SIZE = 256 * 1024


class _ThreadBuffer(threading.local):
    def __init__(self) -> None:
        self.view = memoryview(bytearray(_SHARED_RECEIVE_SIZE))


_thread_buffer = _ThreadBuffer()


def receive_buffer() -> memoryview:
    """The calling thread's receive buffer, shared by all its connections.

    An engine receives into it and hands the bytes to the reader (which copies
    them) before it awaits anything, so one buffer serves every connection of an
    event loop, and an idle connection holds none.
    """
    return _thread_buffer.view


class Owner(Protocol):
    """The callbacks an engine makes (``StreamTransport`` implements them)."""

    # An attribute rather than a method: the owner sets it to the reader's feed_data.
    _data_received: Callable[[bytes | bytearray | memoryview], None]

    def _read_size(self) -> int:
        """The n of a ``read(n)`` waiting on an empty buffer, else 0.

        Bytes received for such a read reach it as they are: an engine that can size
        its next receive (at least ``DIRECT_RECEIVE_MIN``) spares the copy out of its
        own buffer.
        """

    def _eof_received(self) -> None: ...
    def _write_failed(self, exc: BaseException | None) -> None:
        """A send made for ``write()`` failed: the connection is closing from now on.

        The owner reports *exc* as the connection's end on the event loop's next pass,
        as asyncio's transport does; with None, the engine reports it itself through
        :meth:`_connection_lost` (asyncio's transport has already scheduled that).
        """

    def _connection_lost(self, exc: BaseException | None) -> None: ...
    def _pause_writing(self) -> None: ...
    def _resume_writing(self) -> None: ...


class Engine(Protocol):
    """A connection's byte mover; every method but :meth:`detach` is synchronous."""

    def start(self, owner: Owner) -> None:
        """Begin receiving; report to *owner* from now on."""

    def write(self, data: bytes) -> None: ...
    @property
    def written(self) -> int:
        """How many bytes ``write()`` has taken, a running total.

        ``drain()`` reads it to let the event loop run every ``YIELD_EVERY`` bytes; an
        engine counts them wherever that costs least (not necessarily per write).
        """

    def flush(self) -> None:
        """Start sending what ``write()`` buffered now rather than a moment later."""

    def write_eof(self) -> None: ...
    def can_write_eof(self) -> bool: ...
    def close(self) -> None:
        """Send what is buffered, then close; ``_connection_lost(None)`` follows."""

    def takes_writes_while_closing(self) -> bool:
        """Whether a ``write()`` now, after :meth:`close`, would still be sent.

        asyncio's socket transports take writes after ``close()`` while they still
        hold unsent data, and send them before closing; its TLS transport drops them.
        """

    def abort(self) -> None:
        """Close at once, dropping what is buffered; ``_connection_lost(None)`` follows."""

    def get_write_buffer_size(self) -> int: ...
    def set_write_buffer_limits(self, high: int, low: int) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def extra(self, attribute: Any, default: Any = None) -> Any:
        """An anyio typed attribute (``SocketAttribute``, ``TLSAttribute``) or *default*."""

    def socket_info(self) -> dict[str, Any]:
        """``get_extra_info()``'s ``socket``, ``sockname`` and ``peername`` (empty without
        a socket), as they were while the connection was open."""

    async def detach(self) -> ByteStream:
        """Send everything buffered, stop receiving, and hand over the connection.

        The engine reports nothing more; the returned stream (which ``start_tls()``
        wraps in TLS) owns the connection.
        """
