"""StreamReader: asyncio's reader API as a thin async shell over :class:`ReceiveBuffer`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Final

from ._backend import Waiter, waiter_factory
from ._buffer import SMALL, ReceiveBuffer, SeparatorMatch
from ._exceptions import IncompleteReadError, LimitOverrunError

if TYPE_CHECKING:
    from ._transport import StreamTransport

__all__ = ["DEFAULT_LIMIT", "StreamReader"]

DEFAULT_LIMIT: Final = 2**16  # 64 KiB, as in asyncio


class StreamReader(AsyncIterator[bytes]):
    """asyncio's :class:`asyncio.StreamReader`, on any anyio backend.

    A reader made by hand (``StreamReader(limit=...)``) is fed with :meth:`feed_data`,
    :meth:`feed_eof` and :meth:`set_exception`, as in asyncio. A reader made by
    :func:`~asyncstreams.open_connection`, :func:`~asyncstreams.start_server` or
    :func:`~asyncstreams.wrap` pulls from its connection when a read needs more bytes.

    As in asyncio, a connected reader receives in the background: its connection
    stops receiving once more than twice the limit is buffered and resumes when reads
    bring the buffer back to the limit.

    Differs from asyncio:

    * a cancelled read never loses bytes; ``read(-1)`` included (asyncio drops what it
      had collected);
    * the *loop* argument does not exist.
    """

    __slots__ = (
        "_buffer",
        "_eof",
        "_exception",
        "_handed",
        "_handoff_size",
        "_limit",
        "_new_waiter",
        "_paused",
        "_transport",
        "_waiter",
        "_wake_exception",
    )

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        # The line length limit is a security feature; it also bounds the buffer.
        if limit <= 0:
            raise ValueError("Limit cannot be <= 0")
        self._limit = limit
        self._buffer = ReceiveBuffer()
        self._eof = False
        self._exception: BaseException | None = None
        self._transport: StreamTransport | None = None
        # True while the transport has stopped receiving because the buffer is full.
        self._paused = False
        # The event a waiting read sleeps on; setting it wakes the read up.
        self._waiter: Waiter | None = None
        self._new_waiter: Callable[[], Waiter] | None = None  # the running loop's kind
        # The exception that woke the waiting read, if one did.
        self._wake_exception: BaseException | None = None
        # While a read(n) waits on an empty buffer, n: the next bytes fed go to it
        # directly (``_handed``), sparing a copy into the buffer and one out of it.
        self._handoff_size = 0
        self._handed: bytes | None = None

    def __repr__(self) -> str:
        info = ["StreamReader"]
        if self._buffer or self._handed is not None:
            size = len(self._buffer) + len(self._handed or b"")
            info.append(f"{size} bytes")
        if self._eof:
            info.append("eof")
        if self._limit != DEFAULT_LIMIT:
            info.append(f"limit={self._limit}")
        if self._waiter is not None:
            info.append("waiter")
        if self._paused:
            info.append("paused")
        if self._exception is not None:
            info.append(f"exception={self._exception!r}")
        if self._transport is not None:
            info.append(f"transport={self._transport!r}")
        return "<{}>".format(" ".join(info))

    # -- feeding, as a protocol would --------------------------------------------------

    def exception(self) -> BaseException | None:
        """The exception set with :meth:`set_exception` (or that ended the connection)."""
        return self._exception

    def set_exception(self, exc: BaseException) -> None:
        """Make the waiting read, and every later read, raise *exc*."""
        self._exception = exc
        waiter = self._waiter
        if waiter is not None:
            # Only a read still waiting raises it at once; one already woken by data
            # returns that data first, as in asyncio.
            self._waiter = None
            if not waiter.done():  # done: its read was cancelled
                self._wake_exception = exc
                waiter.set_result(None)

    def feed_eof(self) -> None:
        """Mark the end of the data: waiting and later reads see EOF."""
        self._eof = True
        self._wakeup_waiter()

    def at_eof(self) -> bool:
        """Return True if the buffer is empty and :meth:`feed_eof` was called."""
        return self._eof and not self._buffer and self._handed is None

    def feed_data(self, data: bytes | bytearray | memoryview) -> None:
        """Append *data* (copied) to the buffer and wake a waiting read."""
        assert not self._eof, "feed_data after feed_eof"
        if not data:
            return
        size = self._handoff_size
        if size and self._handed is None:
            # A read(size) waits on an empty buffer: it gets the first *size* bytes as
            # they are; only the rest is buffered. (Bytes handed to a read that has not
            # run yet are not replaced: a read waiting since then gets those, and this
            # goes to the buffer, as asyncio's reads take bytes in the order they run.)
            self._handoff_size = 0
            if len(data) <= size:
                self._handed = bytes(data)  # the object itself if it is bytes
                self._wakeup_waiter()
                return
            view = memoryview(data)
            self._handed = bytes(view[:size])
            data = view[size:]
        buffer = self._buffer
        buffer.feed(data)
        self._wakeup_waiter()
        transport = self._transport
        if transport is not None and not self._paused and len(buffer) > 2 * self._limit:
            self._paused = True
            transport._pause_reading()

    def _wakeup_waiter(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():  # done: its read was cancelled
                waiter.set_result(None)

    def _maybe_resume_transport(self) -> None:
        if self._paused and len(self._buffer) <= self._limit:
            self._resume_transport()

    def _resume_transport(self) -> None:
        self._paused = False
        if self._transport is not None:
            self._transport._resume_reading()

    async def _wait_for_data(self, func_name: str, handoff_size: int = 0) -> None:
        """Wait until data, EOF or an exception arrives.

        With *handoff_size*, the caller is ``read(handoff_size)`` on an empty buffer
        and takes what :meth:`feed_data` hands it from ``_handed``. ``readexactly()``
        has an inline copy of the wait itself, for speed.
        """
        # Two readers waiting at once could not know which of them gets the next data.
        if self._waiter is not None:
            raise RuntimeError(
                f"{func_name}() called while another coroutine is already waiting for incoming data"
            )
        assert not self._eof, "_wait_for_data after EOF"
        # Waiting while the transport is paused would never end (readexactly(n) with
        # n over the limit, read(-1)): let it receive again, as asyncio does.
        if self._paused:
            self._resume_transport()
        new_waiter = self._new_waiter
        if new_waiter is None:
            new_waiter = self._new_waiter = waiter_factory()
        waiter = self._waiter = new_waiter()
        self._handoff_size = handoff_size
        try:
            await waiter
        except BaseException:
            self._return_handed()  # cancelled after the bytes came: they stay readable
            self._wake_exception = None  # set_exception() keeps it for the next read
            raise
        finally:
            self._handoff_size = 0
            if self._waiter is waiter:
                self._waiter = None
        if self._wake_exception is not None:
            self._raise_wake_exception()

    def _raise_wake_exception(self) -> None:
        exc = self._wake_exception
        assert exc is not None
        self._wake_exception = None
        self._return_handed()
        raise exc

    def _return_handed(self) -> None:
        """Put bytes handed to a read that ends without them back in front of the buffer."""
        handed = self._handed
        if handed is not None:
            self._handed = None
            self._buffer[:0] = handed

    # -- reading -----------------------------------------------------------------------

    async def readline(self) -> bytes:
        """Read one line, ending with ``b"\\n"``.

        At EOF, return the incomplete line (``b""`` when nothing is left). If the line
        is longer than the limit, raise ValueError and drop the line if its newline was
        seen, else the whole buffer.
        """
        line = self._take_through(b"\n")
        if line is not None:
            return line
        try:
            return await self._readuntil_one(b"\n")
        except IncompleteReadError as e:
            return e.partial
        except LimitOverrunError as e:
            if self._buffer.startswith(b"\n", e.consumed):
                self._buffer.discard(e.consumed + 1)
            else:
                self._buffer.clear()
            self._maybe_resume_transport()
            raise ValueError(e.args[0]) from e

    async def readuntil(self, separator: bytes | tuple[bytes, ...] = b"\n") -> bytes:
        """Read until *separator* (or, given a tuple, any of them) and return it all.

        Of several separators, the match that ends earliest wins. Raise
        :class:`LimitOverrunError` (the data stays buffered) if the data before the
        separator is longer than the limit, and :class:`IncompleteReadError` (taking
        the buffer with it) if EOF comes first. Tuples work on every Python version,
        as in asyncio 3.13.
        """
        if type(separator) is bytes and separator:
            chunk = self._take_through(separator)
            if chunk is not None:
                return chunk
            return await self._readuntil_one(separator)
        if isinstance(separator, tuple):
            # Sorting makes the shortest of equally-ending matches win.
            separators = sorted(separator, key=len)
            if not separators:
                raise ValueError("Separator should contain at least one element")
        else:
            separators = [separator]
        if len(separators[0]) == 0:
            raise ValueError("Separator should be at least one-byte string")
        if self._exception is not None:
            raise self._exception

        buffer = self._buffer
        match = SeparatorMatch()
        while not buffer.find_separator(separators, match):
            if match.searched > self._limit:
                raise LimitOverrunError(
                    "Separator is not found, and chunk exceed the limit", match.searched
                )
            # A complete separator may arrive together with EOF, hence checking after.
            if self._eof:
                partial = buffer.take_all()
                self._maybe_resume_transport()
                raise IncompleteReadError(partial, None)
            await self._wait_for_data("readuntil")

        if match.start > self._limit:
            raise LimitOverrunError(
                "Separator is found, but chunk is longer than limit", match.start
            )
        chunk = buffer.take(match.end)
        if self._paused:
            self._maybe_resume_transport()
        return chunk

    def _take_through(self, separator: bytes) -> bytes | None:
        """The chunk through *separator* if it is buffered, within the limit; else None.

        The common case of ``readline()``/``readuntil()``, answered without a coroutine.
        """
        if self._exception is None:
            buffer = self._buffer
            start = buffer.find(separator)
            if 0 <= start <= self._limit:
                end = start + len(separator)
                if end <= SMALL:  # buffer.take(end), inline: every line's path
                    chunk = b"" + buffer[:end]
                    del buffer[:end]
                else:
                    chunk = buffer.take(end)
                if self._paused:
                    self._maybe_resume_transport()
                return chunk
        return None

    async def _readuntil_one(self, separator: bytes) -> bytes:
        """``readuntil()`` for one separator: the same steps, without the bookkeeping."""
        if self._exception is not None:
            raise self._exception
        buffer = self._buffer
        limit = self._limit
        seplen = len(separator)
        searched = 0  # the buffer holds no separator before this offset
        while True:
            buflen = len(buffer)
            if buflen - searched >= seplen:
                start = buffer.find(separator, searched)
                if start != -1:
                    break
                searched = buflen + 1 - seplen
                if searched > limit:
                    raise LimitOverrunError(
                        "Separator is not found, and chunk exceed the limit", searched
                    )
            # A complete separator may arrive together with EOF, hence checking after.
            if self._eof:
                partial = buffer.take_all()
                self._maybe_resume_transport()
                raise IncompleteReadError(partial, None)
            await self._wait_for_data("readuntil")
        if start > limit:
            raise LimitOverrunError("Separator is found, but chunk is longer than limit", start)
        chunk = buffer.take(start + seplen)
        if self._paused:
            self._maybe_resume_transport()
        return chunk

    async def read(self, n: int = -1) -> bytes:
        """Read up to *n* bytes; with ``n < 0``, read until EOF.

        Return as soon as at least one byte is available; ``b""`` at EOF.
        Differs from asyncio: a cancelled ``read(-1)`` leaves everything it had
        gathered in the buffer.
        """
        if self._exception is not None:
            raise self._exception
        if n == 0:
            return b""
        if n < 0:
            # Gather in the buffer itself, so that cancellation loses nothing. An error
            # ends the read as in asyncio: what it had gathered is gone.
            try:
                while not self._eof:
                    if self._exception is not None:
                        raise self._exception
                    await self._wait_for_data("read")
            except Exception:
                self._buffer.clear()
                self._maybe_resume_transport()
                raise
            data = self._buffer.take_all()
            self._maybe_resume_transport()
            return data
        if not self._buffer and not self._eof:
            await self._wait_for_data("read", n)
            handed = self._handed
            if handed is not None:
                self._handed = None
                return handed
        data = self._buffer.take(n)
        if self._paused:
            self._maybe_resume_transport()
        return data

    async def readexactly(self, n: int) -> bytes:
        """Read exactly *n* bytes; at EOF first, raise :class:`IncompleteReadError`."""
        buffer = self._buffer
        if n < 1 or n > len(buffer) or self._exception is not None:
            # Not answered from the buffer at once (every frame's path is the other).
            if n < 0:
                raise ValueError("readexactly size can not be less than zero")
            if self._exception is not None:
                raise self._exception
            if n == 0:
                return b""
            if not buffer and not self._eof:
                # As read(n) does: the next bytes fed come straight here, spared a copy
                # into the buffer and one out of it, and are the answer if they are all.
                waiter = self._waiter
                new_waiter = self._new_waiter
                if waiter is None and new_waiter is not None and not self._paused:
                    # _wait_for_data("readexactly", n) without a coroutine of its own,
                    # which is 3-4% of a request/response exchange on uvloop. Keep the
                    # two in step (the cancellation tests run both ways).
                    waiter = self._waiter = new_waiter()
                    self._handoff_size = n
                    try:
                        await waiter
                    except BaseException:
                        self._return_handed()
                        self._wake_exception = None
                        raise
                    finally:
                        self._handoff_size = 0
                        if self._waiter is waiter:
                            self._waiter = None
                    if self._wake_exception is not None:
                        self._raise_wake_exception()
                else:  # the first wait, or one that fails or resumes the transport first
                    await self._wait_for_data("readexactly", n)
                handed = self._handed
                if handed is not None:
                    self._handed = None
                    if len(handed) == n:
                        return handed
                    buffer[:0] = handed  # in front of anything fed since
            while len(buffer) < n:
                if self._eof:
                    partial = buffer.take_all()
                    self._maybe_resume_transport()
                    raise IncompleteReadError(partial, n)
                await self._wait_for_data("readexactly")
        if n <= SMALL:  # buffer.take(n), inline: every frame's path
            data = b"" + buffer[:n]
            del buffer[:n]
        else:
            data = buffer.take(n)
        if self._paused:
            self._maybe_resume_transport()
        return data

    def __aiter__(self) -> StreamReader:
        return self

    async def __anext__(self) -> bytes:
        line = await self.readline()
        if line == b"":
            raise StopAsyncIteration
        return line
