"""The engine for plain sockets on trio: the socket itself, driven by readiness.

anyio's socket stream costs a task switch and a round of error translation per send,
and the task engine spawns a sending task per burst of writes. Here, as asyncio's
selector transport does, ``write()`` sends at once on the non-blocking socket; only
what the kernel does not take waits for a sending task (started once, when first
needed). Receiving is a callback, as in asyncio too: the event loop's
:class:`~asyncstreams._poller.Poller` calls it when the socket is readable, and it
feeds the reader. An idle connection costs no task.

The code is backend-neutral (readiness comes from ``_poller`` and
``_backend.fd_waits()``); it is used on trio, where asyncio's own transport
(``_asyncio_engine``) is not available.
"""

from __future__ import annotations

import socket
from collections.abc import Generator
from contextlib import suppress
from typing import Any

import anyio
from anyio.abc import ByteStream, SocketAttribute

from ._backend import Waiter, closed_error, fd_waits, spawn_detached, waiter_factory
from ._connect import stream_from_socket
from ._engine import DIRECT_RECEIVE_MIN, RECEIVE_SIZE, Owner, receive_buffer
from ._engine_base import WriteFlowControl
from ._poller import Poller, poller

__all__ = ["SocketEngine"]

_WOULD_BLOCK = (BlockingIOError, InterruptedError)


def _set_notsent_lowat(sock: socket.socket) -> None:
    """Keep at most 16 KiB unsent in the kernel beyond what is in flight, as trio's
    ``SocketStream`` does for every TCP socket (asyncio sets nothing).

    The rest of what ``write()`` is given waits in user space, where ``drain()`` sees
    it. Without it a write loop fills the kernel's multi-megabyte send buffer with
    64 KiB sends, and a receiver in another process often ends up taking them in
    halves: 1.4 GB/s instead of 4.2 on this project's machine.
    """
    if sock.family in (socket.AF_INET, socket.AF_INET6) and hasattr(socket, "TCP_NOTSENT_LOWAT"):
        with suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, 2**14)


class SocketEngine(WriteFlowControl):
    """Moves bytes between a connected non-blocking socket and its owner."""

    __slots__ = (
        "_checkpoint",
        "_closed_error",
        "_closing",
        "_detached",
        "_direct_wait",
        "_eof_received",
        "_eof_requested",
        "_eof_sent",
        "_fd",
        "_flushed",
        "_holding",
        "_kernel_full",
        "_lost",
        "_new_plain_waiter",
        "_pending",
        "_poller",
        "_reading",
        "_reading_paused",
        "_send_next",
        "_sender_running",
        "_sender_wakeup",
        "_sent",
        "_sock",
        "_streaming",
        "_view",
        "_wait_readable",
        "_wait_writable",
    )

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        sock.setblocking(False)
        _set_notsent_lowat(sock)
        self._sock = sock
        self._fd = sock.fileno()  # what the poller knows it by, even once it is closed
        self._wait_readable, self._wait_writable, self._checkpoint = fd_waits()
        self._closed_error = closed_error()
        self._new_plain_waiter = waiter_factory()
        self._direct_wait: _SocketWait | None = None  # a read waiting on the socket itself
        self._streaming = False  # the last receive filled its buffer
        self._poller: Poller = poller()
        self._reading = False  # the poller calls _on_readable()
        self._holding = False  # the poller keeps its selector for us
        self._reading_paused = False
        self._eof_received = False
        self._view = receive_buffer()  # the thread's, shared by its connections
        # The first write after a wait is sent at once; writes that follow it are
        # joined and sent by the sending task (or by drain()).
        self._send_next = True
        self._pending: list[bytes | memoryview] = []
        self._sent = 0  # what the kernel has taken, a running total
        self._sender_wakeup: anyio.Event | None = None
        self._sender_running = False
        # The kernel took only part of the last send: the next waits until the socket
        # is writable (as asyncio's transport, which then sends from its writer callback).
        self._kernel_full = False
        self._flushed: anyio.Event | None = None
        self._eof_requested = False
        self._eof_sent = False
        self._closing = False
        self._lost = False
        self._detached = False

    # -- Engine --------------------------------------------------------------------------

    def start(self, owner: Owner) -> None:
        super().start(owner)
        self._poller.hold()  # released with the socket (_release_socket())
        self._holding = True
        self._update_reading()

    def write(self, data: bytes) -> None:
        pending = self._pending
        rest: bytes | memoryview = data
        if not pending:  # else a burst: the sending task (or drain()) sends it all
            if self._send_next:
                self._send_next = False
                sent = self._send(data)
                if sent is None or sent == len(data):
                    return
                rest = memoryview(data)[sent:]  # not a copy
            self._wake_sender()  # it was idle, or sending what is now gone
        pending.append(rest)
        size = self._size = self._size + len(rest)
        if size > self._high and not self._writing_paused:
            self._writing_paused = True
            assert self._owner is not None
            self._owner._pause_writing()

    @property
    def written(self) -> int:
        # Counted per send rather than per write: a burst of small writes costs less.
        return self._sent + self._size

    def flush(self) -> None:
        # As asyncio's transport, which sends each write at once while it holds
        # nothing unsent: what is buffered goes to the kernel now, unless the kernel
        # has no room for it. After two or more joined writes, the next write is joined
        # too (the program writes in batches): one send per batch. After one, the next
        # write goes out at once again.
        self._send_next = len(self._pending) < 2
        if self._pending and not self._kernel_full and not self._send_pending():
            self._wake_sender()  # the kernel took only part of it

    def write_eof(self) -> None:
        self._eof_requested = True
        self.flush()
        if not self._pending:
            self._shutdown_write()
        else:
            self._wake_sender()

    def can_write_eof(self) -> bool:
        return True

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._update_reading()  # asyncio stops reading at close()
        self.flush()
        if self._pending:
            self._wake_sender()  # it closes once everything is sent
        else:
            self._close_socket()
            self._lose(None)

    def takes_writes_while_closing(self) -> bool:
        return bool(self._pending) and not self._lost

    def abort(self) -> None:
        self._lose(None)  # drops what is unsent and closes the socket

    def extra(self, attribute: Any, default: Any = None) -> Any:
        if attribute is SocketAttribute.raw_socket:
            return self._sock
        return default

    async def detach(self) -> ByteStream:
        if self._pending:
            self._flushed = anyio.Event()
            self._wake_sender()
            await self._flushed.wait()
        if self._lost or self._closing:
            raise ConnectionResetError("Connection lost")
        self._detached = True
        self._release_socket()
        sender = self._sender_wakeup
        if sender is not None:
            sender.set()  # let the sending task see it is done
        return await stream_from_socket(self._sock)

    # -- receiving -----------------------------------------------------------------------

    def read_waiter(self) -> Waiter:
        """What a read of this connection waits on (the reader's waiter factory).

        While this is the only connection the poller watches (a client's one connection,
        or a server's one client), the read waits on the socket itself and receives as
        soon as it is readable: the reply goes out on the same pass of the event loop.
        Through the poller it would take one pass more, its task's and then the
        reader's: with another process at the other end, some 12 µs per round trip on
        trio. With more connections the poller serves them all with one wait.
        """
        if self._may_wait_on_socket():
            return _SocketWait(self)
        return self._new_plain_waiter()

    def _may_wait_on_socket(self) -> bool:
        return self._reading and not self._reading_paused and self._poller.alone(self._fd)

    async def _wait_on_socket(self, waiter: _SocketWait) -> None:
        """Receive once the socket is readable (or *waiter* is woken otherwise)."""
        if self._streaming:
            # The last receive filled its buffer: more is likely queued. Try first, as
            # trio's own sockets do, and let the others run as the poller's pass would.
            self._on_readable()
            if waiter._done:
                await self._checkpoint()
                return
        fd = self._fd
        self._poller.step_aside(fd, waiter)
        self._direct_wait = waiter
        try:
            waiter._on_socket = True
            try:
                await self._wait_readable(self._sock)
                readable = True
            except self._closed_error:
                readable = False  # closed, or woken for something else (_interrupt())
            finally:
                waiter._on_socket = False  # before receiving: what it feeds sets waiter
            if readable and self._reading and not self._reading_paused:
                self._on_readable()
        finally:
            if self._direct_wait is waiter:
                self._direct_wait = None
            self._poller.step_back(fd, waiter)

    def _interrupt(self, waiter: _SocketWait) -> None:
        """End *waiter*'s wait on the socket: for what does not come from the socket."""
        waiter._on_socket = False
        if self._sock.fileno() != -1:
            # Wakes what waits on the socket with ClosedResourceError, without closing
            # it: a cancel scope per wait would cost more than the wait saves.
            anyio.notify_closing(self._sock)

    def _interrupt_direct_wait(self) -> None:
        waiter = self._direct_wait
        if waiter is not None and waiter._on_socket:
            self._interrupt(waiter)

    def pause_reading(self) -> None:
        # The poller lets go of the socket only if it is readable while paused
        # (_on_readable()): a reader that catches up at once costs no system call.
        self._reading_paused = True

    def resume_reading(self) -> None:
        self._reading_paused = False
        self._update_reading()

    def _update_reading(self) -> None:
        """Watch the socket exactly while it should receive (as asyncio's transport
        adds and removes its reader)."""
        reading = not (
            self._reading_paused
            or self._eof_received
            or self._closing
            or self._lost
            or self._detached
        )
        if reading != self._reading:
            self._reading = reading
            if reading:
                self._poller.watch(self._fd, self._on_readable)
            else:
                self._poller.unwatch(self._fd)

    def _on_readable(self) -> bool:
        """Receive what is there; True if it filled the receive (more is likely queued)."""
        if self._reading_paused:
            self._update_reading()  # until resume_reading()
            return False
        owner = self._owner
        assert owner is not None
        sock = self._sock
        # A big read() waiting on an empty buffer gets bytes received for it alone,
        # as trio's receive_some() would return them; all else goes through the
        # shared buffer into the reader's.
        size = owner._read_size()
        try:
            if size >= DIRECT_RECEIVE_MIN:
                size = min(size, RECEIVE_SIZE)  # recv() allocates all it may return
                data: bytes | memoryview = sock.recv(size)
            else:
                size = RECEIVE_SIZE
                view = self._view
                data = view[: sock.recv_into(view, size)]
        except _WOULD_BLOCK:
            self._streaming = False
            return False
        except OSError as exc:
            self._lose(exc)
            return False
        nbytes = len(data)
        if not nbytes:
            self._eof_received = True
            self._update_reading()
            owner._eof_received()
            return False
        self._send_next = True  # a new pass: a reply may go out at once
        more = self._streaming = nbytes >= size
        owner._data_received(data)
        return more

    # -- sending -------------------------------------------------------------------------

    def _wake_sender(self) -> None:
        if self._sender_running:
            wakeup = self._sender_wakeup
            if wakeup is not None:
                self._sender_wakeup = None
                wakeup.set()
        elif not self._lost:
            self._sender_running = True
            spawn_detached(self._run_sender, name="asyncstreams sender")

    def _send(self, data: bytes | memoryview) -> int | None:
        """How much of *data* the kernel takes now; None if that broke the connection."""
        try:
            sent = self._sock.send(data)
        except _WOULD_BLOCK:
            self._kernel_full = True
            return 0
        except OSError as exc:
            # As asyncio's transport: closing at once, the error reported a pass later.
            self._lose(exc, report_later=True)
            return None
        self._sent += sent
        if sent < len(data):
            self._kernel_full = True
        return sent

    def _send_pending(self) -> bool:
        """Send what the kernel takes now; True once nothing is left."""
        pending = self._pending
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        sent = self._send(data)
        if sent is None:
            return True
        self._size -= sent
        if sent < len(data):
            pending.append(memoryview(data)[sent:])  # the rest, not a copy
        self._update_flow_control()
        return not pending

    async def _run_sender(self) -> None:
        try:
            while not self._lost and not self._detached:
                if self._pending:
                    if self._kernel_full:
                        try:
                            await self._wait_writable(self._sock)
                        except Exception as exc:
                            if self._lost:
                                return  # aborted under the wait
                            if not isinstance(exc, self._closed_error):
                                raise
                            # Woken for a read's sake (_interrupt()): look again.
                        finally:
                            self._kernel_full = False  # flush() may send again
                        continue  # lost, detached or flushed meanwhile?
                    self._send_pending()
                    continue
                flushed = self._flushed
                if flushed is not None:
                    self._flushed = None
                    flushed.set()
                if self._eof_requested and not self._eof_sent:
                    self._shutdown_write()
                if self._closing:
                    self._close_socket()
                    self._lose(None)
                    return
                self._send_next = True
                wakeup = self._sender_wakeup = anyio.Event()
                await wakeup.wait()
        finally:
            self._sender_running = False
            if self._closing and not self._lost:
                # Cancelled (the event loop is shutting down): release the socket.
                self._close_socket()
                self._lose(None)

    def _shutdown_write(self) -> None:
        if self._eof_sent or self._lost:
            return
        self._eof_sent = True
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            self._lose(exc)

    def _release_socket(self) -> None:
        """Let the poller go of the socket: for good (it is closed or handed over)."""
        if self._reading:
            self._reading = False
            self._poller.unwatch(self._fd)
        self._interrupt_direct_wait()  # it must not wait on what it lets go of
        if self._holding:
            self._holding = False
            self._poller.release()

    def _close_socket(self) -> None:
        self._release_socket()  # first: the poller must not watch a closed descriptor
        if self._sock.fileno() != -1:
            anyio.notify_closing(self._sock)
            self._sock.close()

    def _lose(self, exc: BaseException | None, *, report_later: bool = False) -> None:
        if self._lost:
            return
        self._lost = True
        self._pending.clear()
        self._sent += self._size  # dropped, but written stays a running total
        self._size = 0
        self._writing_paused = False
        if not self._closing:
            self._closing = True
        self._close_socket()
        wakeup = self._sender_wakeup
        if wakeup is not None:
            wakeup.set()
        flushed = self._flushed
        if flushed is not None:
            flushed.set()
        owner = self._owner
        if owner is not None and not self._detached:
            if report_later:
                owner._write_failed(exc)
            else:
                owner._connection_lost(exc)


class _SocketWait:
    """A read's waiter that waits on the socket itself (see ``SocketEngine.read_waiter()``).

    It is done once the reader sets it (data, EOF or an error came), or once the read is
    cancelled. Until then it receives whenever the socket is readable; while the
    connection does not receive (paused, closing) or shares the poller, it waits as
    any other waiter does, for the reader to set it.
    """

    __slots__ = ("_done", "_engine", "_on_socket", "_plain")

    def __init__(self, engine: SocketEngine) -> None:
        self._engine = engine
        self._done = False
        self._on_socket = False  # waiting on the socket now
        self._plain: Waiter | None = None  # or on this

    def done(self) -> bool:
        return self._done

    def set_result(self, result: None, /) -> None:
        self._done = True
        plain = self._plain
        if plain is not None:
            if not plain.done():
                plain.set_result(None)
        elif self._on_socket:
            self._engine._interrupt(self)  # set from outside the socket's receive

    def __await__(self) -> Generator[Any, Any, None]:
        return self._wait().__await__()

    async def _wait(self) -> None:
        engine = self._engine
        try:
            while not self._done:
                if engine._may_wait_on_socket():
                    await engine._wait_on_socket(self)
                else:
                    plain = self._plain = engine._new_plain_waiter()
                    try:
                        await plain
                    finally:
                        self._plain = None
        except BaseException:
            self._done = True  # cancelled, as an asyncio future is
            raise
