"""Behaviour of a hand-fed StreamReader, as asyncio 3.13 defines it.

Every expectation here was checked against CPython 3.13's ``asyncio.StreamReader``
(``Lib/asyncio/streams.py``), except where a test says asyncstreams deliberately
differs (a cancelled ``read(-1)`` loses nothing).
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import anyio
import anyio.lowlevel
import pytest
from anyio.abc import TaskGroup

from asyncstreams import IncompleteReadError, LimitOverrunError, StreamReader

pytestmark = pytest.mark.anyio

T = TypeVar("T")

#: Generous bound on any single wait in these tests: a hang fails, it does not stall.
WAIT = 10

NOT_FOUND = "Separator is not found, and chunk exceed the limit"
FOUND_TOO_LONG = "Separator is found, but chunk is longer than limit"
WAITING = "called while another coroutine is already waiting for incoming data"


class Background(Generic[T]):
    """One reader call running in a task; records how it ended."""

    def __init__(self) -> None:
        self._finished = anyio.Event()
        self._value: list[T] = []
        self.error: Exception | None = None

    async def run(self, fn: Callable[[], Awaitable[T]]) -> None:
        try:
            self._value.append(await fn())
        except Exception as exc:
            self.error = exc
        finally:
            self._finished.set()

    @property
    def done(self) -> bool:
        return self._finished.is_set()

    async def outcome(self) -> T:
        """The call's result (raising what it raised), once it has finished."""
        with anyio.fail_after(WAIT):
            await self._finished.wait()
        if self.error is not None:
            raise self.error
        return self._value[0]


def background(tg: TaskGroup, fn: Callable[[], Awaitable[T]]) -> Background[T]:
    call: Background[T] = Background()
    tg.start_soon(call.run, fn)
    return call


async def settle() -> None:
    """Let every task run until it blocks (a waiting reader has seen all fed data)."""
    with anyio.fail_after(WAIT):
        await anyio.wait_all_tasks_blocked()


async def pending(tg: TaskGroup, fn: Callable[[], Awaitable[T]]) -> Background[T]:
    """Start *fn* in the background and check that it is waiting for data."""
    call = background(tg, fn)
    await settle()
    assert not call.done, "the read should be waiting for data"
    return call


async def new_reader(earlier_wait: bool) -> StreamReader:
    """A reader; with *earlier_wait*, one whose read has waited once before (later
    waits of ``readexactly()`` take a path of their own)."""
    reader = StreamReader()
    if earlier_wait:
        async with anyio.create_task_group() as tg:
            call = await pending(tg, functools.partial(reader.read, 1))
            reader.feed_data(b"w")
            assert await call.outcome() == b"w"
    return reader


EARLIER_WAIT = pytest.mark.parametrize("earlier_wait", [False, True], ids=["first", "later"])


async def feed_slowly(reader: StreamReader, data: bytes, size: int = 1, eof: bool = False) -> None:
    """Feed *data* in *size*-byte chunks, letting the reader run after each one."""
    for i in range(0, len(data), size):
        reader.feed_data(data[i : i + size])
        await settle()
    if eof:
        reader.feed_eof()


# -- construction, exceptions ----------------------------------------------------------


async def test_exception_classes_are_asyncios() -> None:
    assert IncompleteReadError is asyncio.IncompleteReadError
    assert LimitOverrunError is asyncio.LimitOverrunError


@pytest.mark.parametrize("limit", [0, -1, -65536])
async def test_limit_must_be_positive(limit: int) -> None:
    with pytest.raises(ValueError, match=r"^Limit cannot be <= 0$"):
        StreamReader(limit=limit)


async def test_limit_is_positional_and_keyword() -> None:
    reader = StreamReader(3)
    reader.feed_data(b"abcd\n")
    with pytest.raises(ValueError, match=FOUND_TOO_LONG):
        await reader.readline()


async def test_default_limit_is_64_kib() -> None:
    reader = StreamReader()
    reader.feed_data(b"a" * 65536 + b"\n" + b"b" * 65537 + b"\n")
    assert await reader.readline() == b"a" * 65536 + b"\n"
    with pytest.raises(ValueError, match=FOUND_TOO_LONG):
        await reader.readline()


async def test_new_reader_state() -> None:
    reader = StreamReader()
    assert reader.exception() is None
    assert not reader.at_eof()


# -- feed_data -------------------------------------------------------------------------


async def test_feed_data_accepts_bytes_like_and_copies_it() -> None:
    reader = StreamReader()
    chunk = bytearray(b"abc")
    reader.feed_data(chunk)
    chunk[:] = b"XYZ"
    reader.feed_data(memoryview(b"def"))
    reader.feed_eof()
    data = await reader.read()
    assert data == b"abcdef"
    assert type(data) is bytes


async def test_feed_empty_data_does_not_wake_reader() -> None:
    reader = StreamReader()
    async with anyio.create_task_group() as tg:
        call = await pending(tg, functools.partial(reader.read, 10))
        reader.feed_data(b"")
        await settle()
        assert not call.done
        reader.feed_data(b"x")
        assert await call.outcome() == b"x"


# -- read ------------------------------------------------------------------------------


async def test_read_n_returns_at_most_n_available_bytes() -> None:
    reader = StreamReader()
    reader.feed_data(b"hello world")
    first = await reader.read(5)
    assert first == b"hello"
    assert type(first) is bytes
    assert await reader.read(100) == b" world"


async def test_read_n_returns_what_is_there_without_waiting_for_n() -> None:
    reader = StreamReader()
    reader.feed_data(b"ab")
    reader.feed_data(b"cd")
    assert await reader.read(1000) == b"abcd"


async def test_read_n_is_not_limited_by_limit() -> None:
    reader = StreamReader(limit=2)
    reader.feed_data(b"0123456789")
    assert await reader.read(8) == b"01234567"


async def test_read_zero_returns_immediately() -> None:
    reader = StreamReader()
    with anyio.fail_after(WAIT):
        assert await reader.read(0) == b""
    reader.feed_data(b"abc")
    assert await reader.read(0) == b""
    assert await reader.read(3) == b"abc"


async def test_read_all() -> None:
    reader = StreamReader()
    reader.feed_data(b"abc")
    reader.feed_data(b"def")
    reader.feed_eof()
    data = await reader.read()
    assert data == b"abcdef"
    assert type(data) is bytes
    assert reader.at_eof()
    assert await reader.read() == b""
    assert await reader.read(-1) == b""


@pytest.mark.parametrize("n", [-1, -2, -1000])
async def test_read_negative_reads_until_eof(n: int) -> None:
    reader = StreamReader()
    reader.feed_data(b"abc")
    reader.feed_eof()
    assert await reader.read(n) == b"abc"


async def test_read_all_past_the_limit() -> None:
    reader = StreamReader(limit=3)
    data = bytes(range(100))
    async with anyio.create_task_group() as tg:
        call = await pending(tg, reader.read)
        await feed_slowly(reader, data, size=7, eof=True)
        assert await call.outcome() == data


async def test_read_all_waits_for_eof() -> None:
    reader = StreamReader()
    async with anyio.create_task_group() as tg:
        call = await pending(tg, functools.partial(reader.read, -1))
        reader.feed_data(b"abc")
        await settle()
        assert not call.done
        reader.feed_data(b"def")
        await settle()
        assert not call.done
        reader.feed_eof()
        assert await call.outcome() == b"abcdef"


async def test_read_at_eof_returns_empty() -> None:
    reader = StreamReader()
    reader.feed_eof()
    assert await reader.read(10) == b""
    assert await reader.read() == b""


async def test_read_after_eof_returns_buffered_data() -> None:
    reader = StreamReader()
    reader.feed_data(b"abcdef")
    reader.feed_eof()
    assert await reader.read(4) == b"abcd"
    assert not reader.at_eof()
    assert await reader.read(4) == b"ef"
    assert reader.at_eof()
    assert await reader.read(4) == b""


async def test_waiting_read_woken_by_data() -> None:
    reader = StreamReader()
    async with anyio.create_task_group() as tg:
        call = await pending(tg, functools.partial(reader.read, 10))
        reader.feed_data(b"abc")
        assert await call.outcome() == b"abc"


async def test_waiting_read_woken_by_eof() -> None:
    reader = StreamReader()
    async with anyio.create_task_group() as tg:
        call = await pending(tg, functools.partial(reader.read, 10))
        reader.feed_eof()
        assert await call.outcome() == b""
    assert reader.at_eof()


# A read(n) or readexactly(n) waiting on an empty buffer is handed the next bytes fed
# without their passing through the buffer; none of that may show.

SIZED_READS = pytest.mark.parametrize("method", ["read", "readexactly"])


@SIZED_READS
async def test_waiting_read_fed_more_than_n_leaves_the_rest_buffered(method: str) -> None:
    reader = StreamReader()
    async with anyio.create_task_group() as tg:
        call = await pending(tg, functools.partial(getattr(reader, method), 3))
        reader.feed_data(b"abcdef")
        reader.feed_data(b"gh")
        assert await call.outcome() == b"abc"
    assert await reader.read(10) == b"defgh"


async def test_waiting_readexactly_fed_less_than_n_keeps_the_order() -> None:
    # The first bytes are handed to the read, the next ones buffered before it runs.
    reader = StreamReader()
    async with anyio.create_task_group() as tg:
        call = await pending(tg, functools.partial(reader.readexactly, 5))
        reader.feed_data(b"ab")
        reader.feed_data(b"cdefg")
        assert await call.outcome() == b"abcde"
        call = await pending(tg, functools.partial(reader.readexactly, 4))
        reader.feed_data(b"h")
        await settle()
        reader.feed_data(b"ij")
        await settle()
        reader.feed_data(b"klm")
        assert await call.outcome() == b"fghi"
    assert await reader.read(10) == b"jklm"


async def test_bytes_handed_to_a_read_that_has_not_run_are_not_replaced() -> None:
    # A read woken with bytes handed to it has not run yet, and another read waits
    # since: what is fed now is buffered, not handed over the first read's bytes (an
    # engine may receive for the second read before the first runs). Set up by hand:
    # no public sequence of calls lands between the two reliably.
    reader = StreamReader()
    reader._handed = b"first"  # the first read's, taken when it runs
    reader._handoff_size = 100  # a read(100) waiting now
    reader.feed_data(b"second")
    assert reader._handed == b"first"
    assert bytes(reader._buffer) == b"second"


@SIZED_READS
@pytest.mark.parametrize("kind", [bytearray, memoryview])
async def test_waiting_read_gets_a_copy_of_mutable_data(method: str, kind: type) -> None:
    reader = StreamReader()
    chunk = bytearray(b"abc")
    async with anyio.create_task_group() as tg:
        call = await pending(tg, functools.partial(getattr(reader, method), 3))
        reader.feed_data(kind(chunk))
        chunk[:] = b"XYZ"
        data = await call.outcome()
    assert data == b"abc"
    assert type(data) is bytes


@SIZED_READS
async def test_data_fed_to_a_waiting_read_counts_for_at_eof(method: str) -> None:
    # Until the woken read has run, the bytes are unread: asyncio's buffer holds them.
    reader = StreamReader()
    async with anyio.create_task_group() as tg:
        call = await pending(tg, functools.partial(getattr(reader, method), 3))
        reader.feed_data(b"abc")
        reader.feed_eof()
        assert not reader.at_eof()
        assert "3 bytes" in repr(reader)
        assert await call.outcome() == b"abc"
    assert reader.at_eof()


@SIZED_READS
@EARLIER_WAIT
async def test_waiting_read_fed_then_cancelled_loses_nothing(
    method: str, earlier_wait: bool
) -> None:
    # A cancel scope lets a read already woken return its bytes (on every backend); a
    # bare asyncio task.cancel() does not (see tests/backends/test_asyncio_specific.py).
    # Either way no byte is lost and the order holds.
    reader = await new_reader(earlier_wait)
    returned: list[bytes] = []
    async with anyio.create_task_group() as tg:
        scope = anyio.CancelScope()

        async def run() -> None:
            with scope:
                returned.append(await getattr(reader, method)(4))

        tg.start_soon(run)
        await settle()
        reader.feed_data(b"abc")
        reader.feed_data(b"defgh")
        scope.cancel()
    reader.feed_eof()
    assert b"".join(returned) + await reader.read() == b"abcdefgh"


@pytest.mark.parametrize("call", ["readline", "read", "readexactly"])
@EARLIER_WAIT
async def test_data_fed_after_cancel_before_wakeup_stays_readable(
    call: str, earlier_wait: bool
) -> None:
    # The read is cancelled, then data arrives before its task runs again: waking a
    # cancelled waiter must be a no-op (asyncio's future is already done), and the
    # data stays for the next read.
    reader = await new_reader(earlier_wait)
    calls: dict[str, Callable[[], Awaitable[bytes]]] = {
        "readline": reader.readline,
        "read": functools.partial(reader.read, 100),
        "readexactly": functools.partial(reader.readexactly, 5),
    }
    returned: list[bytes] = []
    async with anyio.create_task_group() as tg:
        scope = anyio.CancelScope()

        async def run() -> None:
            with scope:
                returned.append(await calls[call]())

        tg.start_soon(run)
        await settle()
        scope.cancel()
        reader.feed_data(b"line\n")
    assert returned == []
    assert await reader.readline() == b"line\n"


async def test_exception_set_after_cancel_before_wakeup() -> None:
    reader = StreamReader()
    async with anyio.create_task_group() as tg:
        scope = anyio.CancelScope()

        async def run() -> None:
            with scope:
                await reader.readline()

        tg.start_soon(run)
        await settle()
        scope.cancel()
        reader.set_exception(ValueError("boom"))
    assert scope.cancelled_caught
    with pytest.raises(ValueError, match="boom"):
        await reader.readline()
    assert reader._wake_exception is None  # nothing stale for a later waiter


@SIZED_READS
@EARLIER_WAIT
async def test_waiting_read_fed_then_exception_returns_the_data_first(
    method: str, earlier_wait: bool
) -> None:
    # As in asyncio: a read already woken by data returns it; the next read raises.
    reader = await new_reader(earlier_wait)
    async with anyio.create_task_group() as tg:
        call = await pending(tg, functools.partial(getattr(reader, method), 3))
        reader.feed_data(b"abc")
        reader.set_exception(ValueError("boom"))
        assert await call.outcome() == b"abc"
    with pytest.raises(ValueError, match="boom"):
        await reader.read(10)


@SIZED_READS
@EARLIER_WAIT
async def test_waiting_read_woken_by_exception_keeps_data_fed_after(
    method: str, earlier_wait: bool
) -> None:
    reader = await new_reader(earlier_wait)
    async with anyio.create_task_group() as tg:
        call = await pending(tg, functools.partial(getattr(reader, method), 10))
        reader.set_exception(ValueError("boom"))
        reader.feed_data(b"abc")
        with pytest.raises(ValueError, match="boom"):
            await call.outcome()
    reader.feed_eof()
    assert not reader.at_eof()  # the bytes are still buffered, as in asyncio
    assert "3 bytes" in repr(reader)


# -- readline --------------------------------------------------------------------------


async def test_readline() -> None:
    reader = StreamReader()
    reader.feed_data(b"line1\nline2\n\nlast")
    line = await reader.readline()
    assert line == b"line1\n"
    assert type(line) is bytes
    assert await reader.readline() == b"line2\n"
    assert await reader.readline() == b"\n"
    reader.feed_eof()
    assert await reader.readline() == b"last"
    assert reader.at_eof()
    assert await reader.readline() == b""
    assert await reader.readline() == b""


async def test_readline_only_newline_is_separator() -> None:
    reader = StreamReader()
    reader.feed_data(b"a\rb\r\nc\n")
    assert await reader.readline() == b"a\rb\r\n"
    assert await reader.readline() == b"c\n"


async def test_readline_waits_for_newline() -> None:
    reader = StreamReader()
    async with anyio.create_task_group() as tg:
        call = await pending(tg, reader.readline)
        reader.feed_data(b"abc")
        await settle()
        assert not call.done
        reader.feed_data(b"def\nghi")
        assert await call.outcome() == b"abcdef\n"
    assert await reader.read(10) == b"ghi"


async def test_readline_eof_returns_partial_line_and_empties_buffer() -> None:
    reader = StreamReader()
    async with anyio.create_task_group() as tg:
        call = await pending(tg, reader.readline)
        reader.feed_data(b"partial")
        await settle()
        reader.feed_eof()
        assert await call.outcome() == b"partial"
    assert reader.at_eof()


async def test_readline_exactly_at_limit() -> None:
    reader = StreamReader(limit=4)
    reader.feed_data(b"abcd\n")
    assert await reader.readline() == b"abcd\n"


async def test_readline_partial_line_at_eof_and_limit() -> None:
    # Without a newline, limit + 1 bytes is already too long (asyncio: offset > limit).
    reader = StreamReader(limit=4)
    reader.feed_data(b"abcd")
    reader.feed_eof()
    assert await reader.readline() == b"abcd"
    reader = StreamReader(limit=4)
    reader.feed_data(b"abcde")
    reader.feed_eof()
    with pytest.raises(ValueError, match=NOT_FOUND):
        await reader.readline()
    assert reader.at_eof()


async def test_readline_too_long_with_newline_discards_the_line() -> None:
    reader = StreamReader(limit=4)
    reader.feed_data(b"abcdefg\nnext\nrest")
    with pytest.raises(ValueError, match=FOUND_TOO_LONG) as excinfo:
        await reader.readline()
    assert type(excinfo.value) is ValueError
    assert excinfo.value.args == (FOUND_TOO_LONG,)
    assert await reader.readline() == b"next\n"
    assert await reader.read(100) == b"rest"


async def test_readline_too_long_without_newline_clears_the_buffer() -> None:
    reader = StreamReader(limit=4)
    reader.feed_data(b"abcdefg")
    with pytest.raises(ValueError, match=NOT_FOUND) as excinfo:
        await reader.readline()
    assert excinfo.value.args == (NOT_FOUND,)
    assert not reader.at_eof()
    # The buffer was cleared: the rest of the long line reads as a line of its own.
    reader.feed_data(b"tail\nnext\n")
    assert await reader.readline() == b"tail\n"
    assert await reader.readline() == b"next\n"
    reader.feed_eof()
    assert reader.at_eof()


async def test_readline_too_long_found_while_waiting() -> None:
    # limit bytes without newline keep the reader waiting; the newline then comes one
    # byte too late: the line is dropped through its newline, the rest stays.
    reader = StreamReader(limit=4)
    async with anyio.create_task_group() as tg:
        call = await pending(tg, reader.readline)
        reader.feed_data(b"aaaa")
        await settle()
        assert not call.done
        reader.feed_data(b"a\nxy\nz")
        with pytest.raises(ValueError, match=FOUND_TOO_LONG):
            await call.outcome()
    assert await reader.readline() == b"xy\n"
    assert await reader.read(10) == b"z"


async def test_readline_too_long_not_found_while_waiting() -> None:
    reader = StreamReader(limit=4)
    async with anyio.create_task_group() as tg:
        call = await pending(tg, reader.readline)
        await feed_slowly(reader, b"abcd")
        assert not call.done
        reader.feed_data(b"ef")
        with pytest.raises(ValueError, match=NOT_FOUND):
            await call.outcome()
    reader.feed_data(b"g\n")
    assert await reader.readline() == b"g\n"


async def test_readline_too_long_keeps_following_lines() -> None:
    reader = StreamReader(limit=2)
    reader.feed_data(b"abc\nd\n")
    with pytest.raises(ValueError, match=FOUND_TOO_LONG):
        await reader.readline()
    assert await reader.readline() == b"d\n"


# -- readuntil -------------------------------------------------------------------------


async def test_readuntil_default_separator_is_newline() -> None:
    reader = StreamReader()
    reader.feed_data(b"ab\ncd\n")
    data = await reader.readuntil()
    assert data == b"ab\n"
    assert type(data) is bytes
    assert await reader.readuntil(b"\n") == b"cd\n"


async def test_readuntil_multibyte_separator() -> None:
    reader = StreamReader()
    reader.feed_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody")
    assert await reader.readuntil(b"\r\n\r\n") == b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    assert await reader.read(10) == b"body"


async def test_readuntil_first_occurrence() -> None:
    reader = StreamReader()
    reader.feed_data(b"a--b--c")
    assert await reader.readuntil(b"--") == b"a--"
    assert await reader.readuntil(b"--") == b"b--"


async def test_readuntil_overlapping_separator() -> None:
    reader = StreamReader()
    reader.feed_data(b"xaaab")
    assert await reader.readuntil(b"aab") == b"xaaab"


async def test_readuntil_separator_split_across_chunks() -> None:
    reader = StreamReader()
    async with anyio.create_task_group() as tg:
        call = await pending(tg, functools.partial(reader.readuntil, b"\r\n"))
        reader.feed_data(b"abc\r")
        await settle()
        assert not call.done
        reader.feed_data(b"\ndef")
        assert await call.outcome() == b"abc\r\n"
    assert await reader.read(10) == b"def"


async def test_readuntil_long_separator_fed_byte_by_byte() -> None:
    reader = StreamReader(limit=16)
    sep = b"--BOUNDARY--"
    data = b"0123--BOUND" + b"0123" + sep + b"after"
    async with anyio.create_task_group() as tg:
        call = await pending(tg, functools.partial(reader.readuntil, sep))
        await feed_slowly(reader, data)
        assert await call.outcome() == b"0123--BOUND0123" + sep
    assert await reader.read(100) == b"after"


async def test_readuntil_separator_already_buffered_with_eof() -> None:
    reader = StreamReader()
    reader.feed_data(b"a\nb")
    reader.feed_eof()
    assert await reader.readuntil() == b"a\n"
    with pytest.raises(IncompleteReadError) as excinfo:
        await reader.readuntil()
    assert excinfo.value.partial == b"b"
    assert excinfo.value.expected is None


async def test_readuntil_eof_raises_incomplete_and_empties_buffer() -> None:
    reader = StreamReader()
    reader.feed_data(b"abc\r")
    reader.feed_eof()
    with pytest.raises(IncompleteReadError) as excinfo:
        await reader.readuntil(b"\r\n")
    err = excinfo.value
    assert err.partial == b"abc\r"
    assert type(err.partial) is bytes
    assert err.expected is None
    assert err.args == ("4 bytes read on a total of undefined expected bytes",)
    assert reader.at_eof()
    assert await reader.read() == b""


async def test_readuntil_eof_on_empty_buffer() -> None:
    reader = StreamReader()
    reader.feed_eof()
    with pytest.raises(IncompleteReadError) as excinfo:
        await reader.readuntil(b"\n")
    assert excinfo.value.partial == b""
    assert excinfo.value.expected is None


async def test_readuntil_eof_while_waiting() -> None:
    reader = StreamReader()
    async with anyio.create_task_group() as tg:
        call = await pending(tg, functools.partial(reader.readuntil, b"END"))
        reader.feed_data(b"xyzEN")
        await settle()
        reader.feed_eof()
        with pytest.raises(IncompleteReadError) as excinfo:
            await call.outcome()
    assert excinfo.value.partial == b"xyzEN"
    assert excinfo.value.expected is None
    assert reader.at_eof()


async def test_readuntil_exactly_at_limit() -> None:
    reader = StreamReader(limit=5)
    reader.feed_data(b"abcde\r\n")
    assert await reader.readuntil(b"\r\n") == b"abcde\r\n"


async def test_readuntil_found_but_too_long_keeps_data() -> None:
    reader = StreamReader(limit=5)
    reader.feed_data(b"abcdefg\nhij\n")
    with pytest.raises(LimitOverrunError) as excinfo:
        await reader.readuntil()
    err = excinfo.value
    assert err.args == (FOUND_TOO_LONG,)
    assert err.consumed == 7
    # Nothing was consumed: the same call fails again, the data is all still there.
    with pytest.raises(LimitOverrunError) as excinfo:
        await reader.readuntil()
    assert excinfo.value.consumed == 7
    assert await reader.readexactly(8) == b"abcdefg\n"
    assert await reader.readuntil() == b"hij\n"


async def test_readuntil_not_found_and_exceeds_keeps_data() -> None:
    reader = StreamReader(limit=5)
    reader.feed_data(b"abcdef")
    with pytest.raises(LimitOverrunError) as excinfo:
        await reader.readuntil(b"\n")
    err = excinfo.value
    assert err.args == (NOT_FOUND,)
    # consumed = len(buffer) + 1 - len(separator)
    assert err.consumed == 6
    reader.feed_eof()
    assert await reader.read() == b"abcdef"


async def test_readuntil_not_found_consumed_accounts_for_separator_length() -> None:
    # 7 bytes, 3-byte separator: offset = 7 + 1 - 3 = 5, not over the limit of 5.
    reader = StreamReader(limit=5)
    async with anyio.create_task_group() as tg:
        call = await pending(tg, functools.partial(reader.readuntil, b"XYZ"))
        reader.feed_data(b"abcdefg")
        await settle()
        assert not call.done
        reader.feed_data(b"h")  # offset = 6 > 5
        with pytest.raises(LimitOverrunError) as excinfo:
            await call.outcome()
    assert excinfo.value.args == (NOT_FOUND,)
    assert excinfo.value.consumed == 6
    assert await reader.read(100) == b"abcdefgh"


async def test_readuntil_not_found_below_limit_then_eof() -> None:
    reader = StreamReader(limit=5)
    reader.feed_data(b"abcdefg")
    reader.feed_eof()
    with pytest.raises(IncompleteReadError) as excinfo:
        await reader.readuntil(b"XYZ")
    assert excinfo.value.partial == b"abcdefg"


async def test_readuntil_not_found_consumed_is_buffer_at_check_time() -> None:
    # The limit check runs each time data arrives: 8 + 8 bytes fed separately to a
    # waiting reader with limit 10 fail at 16 bytes, with consumed == 16.
    reader = StreamReader(limit=10)
    async with anyio.create_task_group() as tg:
        call = await pending(tg, reader.readuntil)
        reader.feed_data(b"a" * 8)
        await settle()
        assert not call.done
        reader.feed_data(b"b" * 8)
        with pytest.raises(LimitOverrunError) as excinfo:
            await call.outcome()
    assert excinfo.value.consumed == 16
    assert await reader.read(100) == b"a" * 8 + b"b" * 8


async def test_readuntil_separator_found_after_limit_while_waiting() -> None:
    reader = StreamReader(limit=3)
    async with anyio.create_task_group() as tg:
        call = await pending(tg, functools.partial(reader.readuntil, b"!!!"))
        reader.feed_data(b"abcd!")  # offset = 5 + 1 - 3 = 3: still waiting
        await settle()
        assert not call.done
        reader.feed_data(b"!!")  # found at 4 > 3
        with pytest.raises(LimitOverrunError) as excinfo:
            await call.outcome()
    assert excinfo.value.args == (FOUND_TOO_LONG,)
    assert excinfo.value.consumed == 4
    assert await reader.read(100) == b"abcd!!!"


async def test_readuntil_data_before_separator_exactly_at_limit_while_waiting() -> None:
    reader = StreamReader(limit=3)
    async with anyio.create_task_group() as tg:
        call = await pending(tg, functools.partial(reader.readuntil, b"!!"))
        reader.feed_data(b"abc!")
        await settle()
        assert not call.done
        reader.feed_data(b"!x")
        assert await call.outcome() == b"abc!!"
    assert await reader.read(100) == b"x"


async def test_readuntil_empty_separator() -> None:
    reader = StreamReader()
    reader.feed_data(b"abc")
    with pytest.raises(ValueError, match=r"^Separator should be at least one-byte string$"):
        await reader.readuntil(b"")


async def test_readuntil_empty_tuple() -> None:
    reader = StreamReader()
    reader.feed_data(b"abc")
    with pytest.raises(ValueError, match=r"^Separator should contain at least one element$"):
        await reader.readuntil(())


async def test_readuntil_tuple_with_empty_separator() -> None:
    reader = StreamReader()
    reader.feed_data(b"abc")
    with pytest.raises(ValueError, match=r"^Separator should be at least one-byte string$"):
        await reader.readuntil((b"b", b""))
    assert await reader.read(10) == b"abc"


async def test_readuntil_separator_errors_come_before_stored_exception() -> None:
    reader = StreamReader()
    reader.set_exception(ConnectionResetError("boom"))
    with pytest.raises(ValueError, match="one-byte"):
        await reader.readuntil(b"")
    with pytest.raises(ValueError, match="one element"):
        await reader.readuntil(())


async def test_readuntil_tuple_earliest_end_wins() -> None:
    reader = StreamReader()
    reader.feed_data(b"xxABCDyyQ")
    # b"ABCDyy" starts first but b"CD" ends first.
    assert await reader.readuntil((b"ABCDyy", b"CD")) == b"xxABCD"
    assert await reader.read(10) == b"yyQ"


async def test_readuntil_tuple_longer_separator_ending_first_wins() -> None:
    reader = StreamReader()
    reader.feed_data(b"xABYzY")
    assert await reader.readuntil((b"Y", b"AB")) == b"xAB"
    assert await reader.readuntil((b"Y", b"AB")) == b"Y"
    assert await reader.readuntil((b"AB", b"Y")) == b"zY"


async def test_readuntil_tuple_order_does_not_matter() -> None:
    for seps in [(b"\r\n", b"\n", b"\r"), (b"\r", b"\n", b"\r\n"), (b"\n", b"\r\n", b"\r")]:
        reader = StreamReader()
        reader.feed_data(b"a\r\nb\nc\rd")
        assert await reader.readuntil(seps) == b"a\r"
        assert await reader.readuntil(seps) == b"\n"
        assert await reader.readuntil(seps) == b"b\n"
        assert await reader.readuntil(seps) == b"c\r"


async def test_readuntil_tuple_single_and_duplicate_elements() -> None:
    reader = StreamReader()
    reader.feed_data(b"a;b;c")
    assert await reader.readuntil((b";",)) == b"a;"
    assert await reader.readuntil((b";", b";")) == b"b;"


async def test_readuntil_tuple_tie_goes_to_shorter_separator_for_limit() -> None:
    # b"ab" and b"b" both end at 3; the shorter wins, so the data before it is
    # b"xa" (2 bytes), over a limit of 1 - even though b"x" alone would fit.
    reader = StreamReader(limit=1)
    reader.feed_data(b"xab")
    with pytest.raises(LimitOverrunError) as excinfo:
        await reader.readuntil((b"ab", b"b"))
    assert excinfo.value.args == (FOUND_TOO_LONG,)
    assert excinfo.value.consumed == 2
    reader = StreamReader(limit=2)
    reader.feed_data(b"xab")
    assert await reader.readuntil((b"ab", b"b")) == b"xab"


async def test_readuntil_tuple_found_too_long_consumed_is_start_of_winner() -> None:
    reader = StreamReader(limit=3)
    reader.feed_data(b"0123456;89|")
    with pytest.raises(LimitOverrunError) as excinfo:
        await reader.readuntil((b"|", b";"))
    assert excinfo.value.consumed == 7
    assert await reader.read(100) == b"0123456;89|"


async def test_readuntil_tuple_not_found_consumed_uses_longest_separator() -> None:
    # offset = len(buffer) + 1 - max(len(sep)): 6 + 1 - 5 = 2, under the limit of 3.
    seps = (b"\n", b"XXXXX")
    reader = StreamReader(limit=3)
    reader.feed_data(b"abcdef")
    reader.feed_eof()
    with pytest.raises(IncompleteReadError) as incomplete:
        await reader.readuntil(seps)
    assert incomplete.value.partial == b"abcdef"
    # 8 + 1 - 5 = 4 > 3.
    reader = StreamReader(limit=3)
    reader.feed_data(b"abcdefgh")
    with pytest.raises(LimitOverrunError) as excinfo:
        await reader.readuntil(seps)
    assert excinfo.value.args == (NOT_FOUND,)
    assert excinfo.value.consumed == 4
    assert await reader.read(100) == b"abcdefgh"


async def test_readuntil_tuple_separators_split_across_chunks() -> None:
    seps = (b"<END>", b"\r\n", b"#")
    data = b"one\r\ntwo<END>three#four<EN"
    reader = StreamReader()
    async with anyio.create_task_group() as tg:
        tg.start_soon(feed_slowly, reader, data, 1, True)
        got = [await reader.readuntil(seps) for _ in range(3)]
        with pytest.raises(IncompleteReadError) as excinfo:
            await reader.readuntil(seps)
    assert got == [b"one\r\n", b"two<END>", b"three#"]
    assert excinfo.value.partial == b"four<EN"


async def test_readuntil_tuple_match_straddling_chunks_ends_earliest() -> None:
    # b"<END>" completes in the second chunk, before the b"#" that follows it.
    reader = StreamReader()
    async with anyio.create_task_group() as tg:
        call = await pending(tg, functools.partial(reader.readuntil, (b"#", b"<END>")))
        reader.feed_data(b"ab<EN")
        await settle()
        assert not call.done
        reader.feed_data(b"D>cd#")
        assert await call.outcome() == b"ab<END>"
    assert await reader.read(10) == b"cd#"


# -- readexactly -----------------------------------------------------------------------


async def test_readexactly() -> None:
    reader = StreamReader()
    reader.feed_data(b"0123456789")
    data = await reader.readexactly(4)
    assert data == b"0123"
    assert type(data) is bytes
    assert await reader.readexactly(6) == b"456789"


async def test_readexactly_zero() -> None:
    reader = StreamReader()
    with anyio.fail_after(WAIT):
        assert await reader.readexactly(0) == b""


async def test_readexactly_larger_than_limit() -> None:
    reader = StreamReader(limit=4)
    data = bytes(range(50))
    async with anyio.create_task_group() as tg:
        call = await pending(tg, functools.partial(reader.readexactly, 50))
        await feed_slowly(reader, data, size=3)
        assert await call.outcome() == data


async def test_readexactly_waits_for_all_bytes() -> None:
    reader = StreamReader()
    async with anyio.create_task_group() as tg:
        call = await pending(tg, functools.partial(reader.readexactly, 5))
        reader.feed_data(b"abcd")
        await settle()
        assert not call.done
        reader.feed_data(b"efg")
        assert await call.outcome() == b"abcde"
    assert await reader.read(10) == b"fg"


async def test_readexactly_eof_raises_incomplete_and_empties_buffer() -> None:
    reader = StreamReader()
    reader.feed_data(b"abc")
    reader.feed_eof()
    with pytest.raises(IncompleteReadError) as excinfo:
        await reader.readexactly(5)
    err = excinfo.value
    assert err.partial == b"abc"
    assert type(err.partial) is bytes
    assert err.expected == 5
    assert err.args == ("3 bytes read on a total of 5 expected bytes",)
    assert reader.at_eof()
    assert await reader.read() == b""


async def test_readexactly_eof_while_waiting() -> None:
    reader = StreamReader()
    async with anyio.create_task_group() as tg:
        call = await pending(tg, functools.partial(reader.readexactly, 10))
        reader.feed_data(b"abc")
        await settle()
        reader.feed_eof()
        with pytest.raises(IncompleteReadError) as excinfo:
            await call.outcome()
    assert excinfo.value.partial == b"abc"
    assert excinfo.value.expected == 10


async def test_readexactly_at_eof_empty() -> None:
    reader = StreamReader()
    reader.feed_eof()
    with pytest.raises(IncompleteReadError) as excinfo:
        await reader.readexactly(1)
    assert excinfo.value.partial == b""
    assert excinfo.value.expected == 1
    assert await reader.readexactly(0) == b""


@pytest.mark.parametrize("n", [-1, -10])
async def test_readexactly_negative(n: int) -> None:
    reader = StreamReader()
    reader.feed_data(b"abc")
    with pytest.raises(ValueError, match=r"^readexactly size can not be less than zero$"):
        await reader.readexactly(n)
    # The size check comes before the stored exception.
    reader.set_exception(ConnectionResetError())
    with pytest.raises(ValueError, match="less than zero"):
        await reader.readexactly(n)


# -- at_eof ----------------------------------------------------------------------------


async def test_at_eof() -> None:
    reader = StreamReader()
    assert not reader.at_eof()
    reader.feed_data(b"ab")
    assert not reader.at_eof()
    reader.feed_eof()
    assert not reader.at_eof()
    assert await reader.read(1) == b"a"
    assert not reader.at_eof()
    assert await reader.read(1) == b"b"
    assert reader.at_eof()


async def test_at_eof_empty_then_eof() -> None:
    reader = StreamReader()
    reader.feed_eof()
    assert reader.at_eof()
    reader.feed_eof()  # a second EOF is harmless
    assert reader.at_eof()


async def test_at_eof_false_after_reading_everything_before_eof() -> None:
    reader = StreamReader()
    reader.feed_data(b"abc\n")
    assert await reader.readline() == b"abc\n"
    assert not reader.at_eof()


# -- exceptions ------------------------------------------------------------------------


async def test_set_exception() -> None:
    reader = StreamReader()
    reader.feed_data(b"abc\ndef\n")
    exc = ConnectionResetError("reset")
    reader.set_exception(exc)
    assert reader.exception() is exc
    # Buffered data is not returned any more: every read raises the exception.
    with pytest.raises(ConnectionResetError) as excinfo:
        await reader.read(1)
    assert excinfo.value is exc
    with pytest.raises(ConnectionResetError):
        await reader.read()
    with pytest.raises(ConnectionResetError):
        await reader.read(0)
    with pytest.raises(ConnectionResetError):
        await reader.readline()
    with pytest.raises(ConnectionResetError):
        await reader.readuntil(b"\n")
    with pytest.raises(ConnectionResetError):
        await reader.readuntil((b"\n", b"x"))
    with pytest.raises(ConnectionResetError):
        await reader.readexactly(1)
    with pytest.raises(ConnectionResetError):
        await reader.readexactly(0)
    assert reader.exception() is exc


async def test_set_exception_after_eof() -> None:
    reader = StreamReader()
    reader.feed_data(b"abc")
    reader.feed_eof()
    reader.set_exception(OSError("late"))
    with pytest.raises(OSError, match="late"):
        await reader.read()
    assert not reader.at_eof()


async def test_set_exception_replaces_previous() -> None:
    reader = StreamReader()
    first, second = OSError("first"), ConnectionAbortedError("second")
    reader.set_exception(first)
    reader.set_exception(second)
    assert reader.exception() is second
    with pytest.raises(ConnectionAbortedError):
        await reader.read(1)


async def test_async_iteration_raises_exception() -> None:
    reader = StreamReader()
    reader.feed_data(b"a\n")
    reader.set_exception(ConnectionResetError("gone"))
    with pytest.raises(ConnectionResetError, match="gone"):
        async for _line in reader:
            pass


@pytest.mark.parametrize("method", ["read", "read_all", "readline", "readuntil", "readexactly"])
async def test_set_exception_wakes_waiting_reader(method: str) -> None:
    reader = StreamReader()
    calls: dict[str, Callable[[], Awaitable[bytes]]] = {
        "read": functools.partial(reader.read, 10),
        "read_all": reader.read,
        "readline": reader.readline,
        "readuntil": functools.partial(reader.readuntil, (b"END", b"\n")),
        "readexactly": functools.partial(reader.readexactly, 10),
    }
    exc = ConnectionResetError("wake up")
    async with anyio.create_task_group() as tg:
        call = await pending(tg, calls[method])
        if method != "read":
            reader.feed_data(b"abc")
            await settle()
            assert not call.done
        reader.set_exception(exc)
        with pytest.raises(ConnectionResetError) as excinfo:
            await call.outcome()
    assert excinfo.value is exc
    assert reader.exception() is exc


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("read", b""),
        ("read_all", b"abc"),
        ("readline", b"abc"),
        ("readuntil", IncompleteReadError(b"abc", None)),
        ("readexactly", IncompleteReadError(b"abc", 10)),
    ],
)
async def test_feed_eof_wakes_waiting_reader(
    method: str, expected: bytes | IncompleteReadError
) -> None:
    reader = StreamReader()
    calls: dict[str, Callable[[], Awaitable[bytes]]] = {
        "read": functools.partial(reader.read, 10),
        "read_all": reader.read,
        "readline": reader.readline,
        "readuntil": functools.partial(reader.readuntil, (b"END", b"\n")),
        "readexactly": functools.partial(reader.readexactly, 10),
    }
    async with anyio.create_task_group() as tg:
        call = await pending(tg, calls[method])
        if method != "read":
            reader.feed_data(b"abc")
            await settle()
            assert not call.done
        reader.feed_eof()
        if isinstance(expected, IncompleteReadError):
            with pytest.raises(IncompleteReadError) as excinfo:
                await call.outcome()
            assert excinfo.value.partial == expected.partial
            assert excinfo.value.expected == expected.expected
        else:
            assert await call.outcome() == expected
    assert reader.at_eof()


@pytest.mark.parametrize(
    ("method", "expected"),
    [("read", b"abc\nd"), ("readexactly", b"abc\nd"), ("readline", b"abc\n")],
)
async def test_reader_woken_by_data_gets_it_despite_later_exception(
    method: str, expected: bytes
) -> None:
    # feed_data() wakes the waiting read; set_exception() before it runs finds no
    # waiter (asyncio: _wakeup_waiter() cleared it) and only affects later reads.
    # This is data_received() followed by connection_lost(exc) in one loop iteration.
    reader = StreamReader()
    calls: dict[str, Callable[[], Awaitable[bytes]]] = {
        "read": functools.partial(reader.read, 10),
        "readexactly": functools.partial(reader.readexactly, 5),
        "readline": reader.readline,
    }
    exc = ConnectionResetError("reset")
    async with anyio.create_task_group() as tg:
        call = await pending(tg, calls[method])
        reader.feed_data(b"abc\nd")
        reader.set_exception(exc)
        assert await call.outcome() == expected
    with pytest.raises(ConnectionResetError) as excinfo:
        await reader.read(1)
    assert excinfo.value is exc


async def test_read_all_ended_by_exception_consumed_what_it_gathered() -> None:
    # asyncio's read(-1) moves the data it gathers out of the buffer (into a local
    # list, read(limit) at a time) and drops it when set_exception() wakes it up: the
    # buffer is empty afterwards, so at_eof() becomes true once EOF is fed.
    reader = StreamReader(limit=4)
    reader.feed_data(b"0123456789")
    async with anyio.create_task_group() as tg:
        call = await pending(tg, reader.read)
        reader.feed_data(b"abc")
        await settle()
        reader.set_exception(ConnectionResetError("reset"))
        with pytest.raises(ConnectionResetError):
            await call.outcome()
    assert not reader.at_eof()
    reader.feed_eof()
    assert reader.at_eof()


# -- one waiting reader at a time ------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "name"),
    [
        ("read", "read"),
        ("read_all", "read"),
        ("readline", "readuntil"),
        ("readuntil", "readuntil"),
        ("readexactly", "readexactly"),
    ],
)
async def test_second_waiting_reader_raises_runtime_error(method: str, name: str) -> None:
    reader = StreamReader()
    calls: dict[str, Callable[[], Awaitable[bytes]]] = {
        "read": functools.partial(reader.read, 10),
        "read_all": reader.read,
        "readline": reader.readline,
        "readuntil": functools.partial(reader.readuntil, b"\n"),
        "readexactly": functools.partial(reader.readexactly, 3),
    }
    async with anyio.create_task_group() as tg:
        first = await pending(tg, functools.partial(reader.readexactly, 3))
        with pytest.raises(RuntimeError) as excinfo, anyio.fail_after(WAIT):
            await calls[method]()
        assert str(excinfo.value) == f"{name}() {WAITING}"
        # The first reader is unaffected and still gets its data.
        assert not first.done
        reader.feed_data(b"xyz\n")
        assert await first.outcome() == b"xyz"
    # Once nobody waits, reading works again.
    reader.feed_data(b"abc\n")
    reader.feed_eof()
    expected = {"read": b"\nabc\n", "read_all": b"\nabc\n", "readexactly": b"\nab"}
    assert await calls[method]() == expected.get(method, b"\n")


async def test_second_reader_after_first_finished_is_fine() -> None:
    reader = StreamReader()
    async with anyio.create_task_group() as tg:
        first = await pending(tg, reader.readline)
        reader.feed_data(b"one\n")
        assert await first.outcome() == b"one\n"
        second = await pending(tg, reader.readline)
        reader.feed_data(b"two\n")
        assert await second.outcome() == b"two\n"


# -- async iteration -------------------------------------------------------------------


async def test_async_iteration() -> None:
    reader = StreamReader()
    assert reader.__aiter__() is reader
    reader.feed_data(b"line1\nline2\n\nlast")
    reader.feed_eof()
    lines = [line async for line in reader]
    assert lines == [b"line1\n", b"line2\n", b"\n", b"last"]
    assert reader.at_eof()


async def test_async_iteration_while_data_arrives() -> None:
    reader = StreamReader()
    data = b"".join(b"line %d\n" % i for i in range(50)) + b"end"
    async with anyio.create_task_group() as tg:
        tg.start_soon(feed_slowly, reader, data, 5, True)
        lines = [line async for line in reader]
    assert lines == [b"line %d\n" % i for i in range(50)] + [b"end"]


async def test_async_iteration_empty_stream() -> None:
    reader = StreamReader()
    reader.feed_eof()
    lines = [line async for line in reader]
    assert lines == []


async def test_async_iteration_line_too_long() -> None:
    reader = StreamReader(limit=3)
    reader.feed_data(b"ab\nabcdef\ncd\n")
    reader.feed_eof()
    assert await anext(reader) == b"ab\n"
    with pytest.raises(ValueError, match=FOUND_TOO_LONG):
        await anext(reader)
    assert [line async for line in reader] == [b"cd\n"]
    with pytest.raises(StopAsyncIteration):
        await anext(reader)


# -- many small chunks -----------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 2, 3, 7])
async def test_mixed_reads_while_data_trickles_in(chunk: int) -> None:
    payload = bytes(random.Random(chunk).randrange(256) for _ in range(40))
    data = b"hello\nworld\r\n" + payload + b"tail<<SEP>>rest-of-it\n" + b"abc"
    reader = StreamReader(limit=64)
    async with anyio.create_task_group() as tg:
        tg.start_soon(feed_slowly, reader, data, chunk, True)
        assert await reader.readline() == b"hello\n"
        assert await reader.readuntil(b"\r\n") == b"world\r\n"
        assert await reader.readexactly(40) == payload
        assert await reader.readuntil((b"<<SEP>>", b"\n")) == b"tail<<SEP>>"
        assert await reader.readuntil((b"\n", b"-of-")) == b"rest-of-"
        assert await reader.read(1) == b"i"
        assert await reader.readline() == b"t\n"
        assert await reader.read() == b"abc"
    assert reader.at_eof()


async def test_read_n_returns_as_soon_as_some_data_arrives() -> None:
    reader = StreamReader()
    data = bytes(range(200))
    got = bytearray()
    async with anyio.create_task_group() as tg:
        tg.start_soon(feed_slowly, reader, data, 3, True)
        while chunk := await reader.read(1000):
            assert 1 <= len(chunk) <= 3
            got += chunk
    assert bytes(got) == data


# -- cancellation ----------------------------------------------------------------------


async def _cancel_after_partial(
    reader: StreamReader, fn: Callable[[], Awaitable[bytes]], partial: bytes
) -> None:
    """Run *fn* in a task, feed *partial* while it waits, then cancel it."""
    async with anyio.create_task_group() as tg:
        scope = anyio.CancelScope()
        finished: list[bytes] = []

        async def run() -> None:
            with scope:
                finished.append(await fn())

        tg.start_soon(run)
        await settle()
        for i in range(len(partial)):
            reader.feed_data(partial[i : i + 1])
            await settle()
        scope.cancel()
    assert scope.cancelled_caught
    assert finished == []


async def test_cancelled_readuntil_loses_nothing() -> None:
    reader = StreamReader()
    await _cancel_after_partial(reader, functools.partial(reader.readuntil, b"END"), b"abcEN")
    reader.feed_data(b"D!")
    assert await reader.readuntil(b"END") == b"abcEND"
    assert await reader.read(10) == b"!"


async def test_cancelled_readuntil_tuple_loses_nothing() -> None:
    reader = StreamReader()
    await _cancel_after_partial(reader, functools.partial(reader.readuntil, (b"END", b"|")), b"ab")
    reader.feed_data(b"c|d")
    assert await reader.readuntil((b"END", b"|")) == b"abc|"


async def test_cancelled_readline_loses_nothing() -> None:
    reader = StreamReader()
    await _cancel_after_partial(reader, reader.readline, b"partial ")
    reader.feed_data(b"line\n")
    assert await reader.readline() == b"partial line\n"


@EARLIER_WAIT
async def test_cancelled_readexactly_loses_nothing(earlier_wait: bool) -> None:
    reader = await new_reader(earlier_wait)
    await _cancel_after_partial(reader, functools.partial(reader.readexactly, 10), b"abc")
    reader.feed_data(b"defghij")
    assert await reader.readexactly(10) == b"abcdefghij"


async def test_cancelled_read_n_loses_nothing() -> None:
    reader = StreamReader()
    await _cancel_after_partial(reader, functools.partial(reader.read, 10), b"")
    reader.feed_data(b"abc")
    assert await reader.read(10) == b"abc"


async def test_cancelled_read_all_loses_nothing() -> None:
    # asyncio loses the blocks read(-1) had collected; asyncstreams deliberately doesn't.
    reader = StreamReader(limit=4)
    await _cancel_after_partial(reader, reader.read, b"0123456789")
    reader.feed_data(b"tail")
    reader.feed_eof()
    assert await reader.read() == b"0123456789tail"


async def test_cancelled_read_all_fed_in_big_chunks_loses_nothing() -> None:
    reader = StreamReader(limit=3)
    async with anyio.create_task_group() as tg:
        scope = anyio.CancelScope()

        async def run() -> None:
            with scope:
                await reader.read()

        tg.start_soon(run)
        await settle()
        reader.feed_data(b"first chunk, ")
        await settle()
        reader.feed_data(b"second chunk")
        await settle()
        scope.cancel()
    reader.feed_eof()
    assert await reader.read() == b"first chunk, second chunk"


async def test_read_all_cancelled_before_waiting_loses_nothing() -> None:
    reader = StreamReader(limit=2)
    reader.feed_data(b"buffered")
    with anyio.CancelScope() as scope:
        scope.cancel()
        await reader.read()
    assert scope.cancelled_caught
    reader.feed_eof()
    assert await reader.read() == b"buffered"


@pytest.mark.parametrize("method", ["read", "read_all", "readline", "readuntil", "readexactly"])
async def test_move_on_after_while_waiting(method: str) -> None:
    reader = StreamReader(limit=4)
    calls: dict[str, Callable[[], Awaitable[bytes]]] = {
        "read": functools.partial(reader.read, 10),
        "read_all": reader.read,
        "readline": reader.readline,
        "readuntil": functools.partial(reader.readuntil, (b"END", b"\n")),
        "readexactly": functools.partial(reader.readexactly, 10),
    }
    if method != "read":
        reader.feed_data(b"ab")
    with anyio.move_on_after(0.01) as scope:
        await calls[method]()
    assert scope.cancelled_caught
    # Nothing lost, and no reader is left registered as waiting.
    reader.feed_data(b"cdef\n")
    reader.feed_eof()
    expected = b"cdef\n" if method == "read" else b"abcdef\n"
    assert await reader.read() == expected


async def test_cancelled_reader_does_not_block_next_reader() -> None:
    reader = StreamReader()
    with anyio.move_on_after(0.01):
        await reader.readline()
    async with anyio.create_task_group() as tg:
        call = await pending(tg, reader.readline)
        reader.feed_data(b"ok\n")
        assert await call.outcome() == b"ok\n"


# -- big buffers -----------------------------------------------------------------------

BIG = 64 * 1024 * 1024


@pytest.mark.slow
async def test_big_buffer_read_100_at_a_time() -> None:
    data = random.Random(64).randbytes(BIG)
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    out = bytearray()
    remaining = BIG
    with anyio.fail_after(55):
        while chunk := await reader.read(100):
            if len(chunk) != min(100, remaining):
                pytest.fail(f"read(100) returned {len(chunk)} bytes with {remaining} buffered")
            remaining -= len(chunk)
            out += chunk
    assert reader.at_eof()
    assert len(out) == BIG
    identical = out == data
    assert identical, "data read back differs from data fed"


async def test_big_stream_producer_consumer() -> None:
    size = 16 * 1024 * 1024
    data = random.Random(16).randbytes(size)
    reader = StreamReader()
    out = bytearray()

    async def produce() -> None:
        view = memoryview(data)
        for i in range(0, size, 1 << 20):
            reader.feed_data(view[i : i + (1 << 20)])
            await anyio.lowlevel.checkpoint()
        reader.feed_eof()

    with anyio.fail_after(55):
        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            while chunk := await reader.read(100):
                out += chunk
    identical = out == data
    assert identical, "data read back differs from data fed"
