"""Differential tests: asyncstreams.StreamReader against a real asyncio.StreamReader.

Both readers get the same random operations (feeds, EOF, exceptions, reads of every
kind with random separators and limits) and must agree on every result and exception
(type, args, ``partial``, ``expected``, ``consumed``), on ``at_eof()`` and
``exception()`` after every step, on whether a read is still waiting for data, and on
the data left in the buffer at the end.

The asyncio oracle runs synchronously, in the test's thread: its read coroutines are
stepped by hand with ``coro.send(None)``. An asyncio read only ever suspends on the
reader's own waiter future, so after each feed the oracle is resumed exactly when that
future is done. The asyncstreams read runs in a task; after each operation the test
waits until every task is blocked, so the two readers see data arrive in the same
chunks (asyncio's limit check, and so ``LimitOverrunError.consumed``, depends on it).

Cancelled reads are part of it: a read waiting for data is cancelled (``Cancel``),
or data arrives and the read is cancelled before it runs (``FeedAndCancel``; on
asyncio a task cancelled while its wake-up is pending gets CancelledError, on every
backend the read may instead finish, if cancellation is only noticed later). A read
that was cancelled must have taken nothing; one that finished anyway must have
returned exactly what asyncio's re-issued read returns. The one modelled difference:
asyncio's cancelled ``read(-1)`` drops what it had gathered, asyncstreams keeps it (the
oracle gets it back, so that the buffers can still be compared).

Examples: ``ASYNCSTREAMS_FUZZ_EXAMPLES`` (default 200) for the ``@given`` tests; the
state machine runs a quarter of that (at least 10) per backend. The ``slow`` test runs
``ASYNCSTREAMS_FUZZ_SLOW_EXAMPLES`` (default 10,000) on every backend; see
docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, TypeAlias

import anyio
import anyio.lowlevel
import pytest
from anyio.abc import TaskGroup, TaskStatus
from anyio.from_thread import start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from asyncstreams import StreamReader

pytestmark = pytest.mark.anyio

#: Tuple separators exist in asyncio from 3.13 only: below that there is no oracle.
TUPLE_SEPARATORS = sys.version_info >= (3, 13)

EXAMPLES = int(os.environ.get("ASYNCSTREAMS_FUZZ_EXAMPLES", "200"))
SLOW_EXAMPLES = int(os.environ.get("ASYNCSTREAMS_FUZZ_SLOW_EXAMPLES", "10000"))

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SLOW_FUZZ_SETTINGS = settings(
    FUZZ_SETTINGS,
    max_examples=SLOW_EXAMPLES,
)
STATEFUL_SETTINGS = settings(
    max_examples=max(10, EXAMPLES // 4),
    stateful_step_count=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

#: Bound on any single wait: a reader that hangs fails the test instead of stalling it.
WAIT = 10


# -- operations ------------------------------------------------------------------------


@dataclass(frozen=True)
class Feed:
    data: bytes


@dataclass(frozen=True)
class FeedEof:
    pass


@dataclass(frozen=True)
class SetException:
    kind: int


@dataclass(frozen=True)
class Cancel:
    """Cancel the waiting read (once it has seen everything fed so far)."""


@dataclass(frozen=True)
class FeedAndCancel:
    """Feed *data*, then cancel the waiting read before it gets to run."""

    data: bytes


@dataclass(frozen=True)
class Read:
    n: int


@dataclass(frozen=True)
class Readline:
    pass


@dataclass(frozen=True)
class Readuntil:
    separator: bytes | tuple[bytes, ...]


@dataclass(frozen=True)
class Readexactly:
    n: int


ReadOp: TypeAlias = Read | Readline | Readuntil | Readexactly
Op: TypeAlias = Feed | FeedEof | SetException | Cancel | FeedAndCancel | ReadOp


def oracle_buffer(reader: asyncio.StreamReader) -> bytearray:
    """asyncio's reader buffer (to give back what its cancelled ``read(-1)`` drops)."""
    buffer: bytearray = reader._buffer  # type: ignore[attr-defined]
    return buffer


def make_exception(kind: int) -> Exception:
    """A fresh exception for each reader (so identity can be checked per reader)."""
    return (
        ConnectionResetError("connection reset"),
        OSError(5, "I/O error"),
        ValueError("bad stream"),
    )[kind]


# -- strategies ------------------------------------------------------------------------

# A small alphabet, so that separators are found often and partial matches straddle
# chunk boundaries.
_symbols = st.sampled_from([b"a", b"b", b"\n", b"\r", b"ab", b"\r\n"])
chunks = st.one_of(
    st.lists(_symbols, max_size=10).map(b"".join),
    st.integers(min_value=0, max_value=30).map(lambda n: b"a" * n),
)
single_separators = st.lists(
    st.sampled_from([b"a", b"b", b"\n", b"\r"]), min_size=1, max_size=4
).map(b"".join)
if TUPLE_SEPARATORS:
    separators: st.SearchStrategy[bytes | tuple[bytes, ...]] = st.one_of(
        single_separators,
        st.lists(single_separators, min_size=1, max_size=3).map(tuple),
        st.sampled_from([b"", (), (b"a", b""), (b"", b"\n")]),
    )
else:
    separators = st.one_of(single_separators, st.just(b""))

feed_ops = st.builds(Feed, chunks)
read_ops: st.SearchStrategy[ReadOp] = st.one_of(
    st.builds(Read, st.integers(min_value=-2, max_value=12)),
    st.builds(Readline),
    st.builds(Readuntil, separators),
    st.builds(Readexactly, st.integers(min_value=-1, max_value=16)),
)
ops: st.SearchStrategy[Op] = st.one_of(
    feed_ops,
    feed_ops,
    read_ops,
    st.builds(FeedEof),
    st.builds(SetException, st.integers(min_value=0, max_value=2)),
    st.builds(Cancel),
    st.builds(FeedAndCancel, chunks),
)
limits = st.integers(min_value=1, max_value=10)


# -- outcomes --------------------------------------------------------------------------


@dataclass
class Outcome:
    value: bytes | None = None
    error: Exception | None = None
    cancelled: bool = False


def describe_exception(exc: BaseException | None) -> tuple[object, ...] | None:
    if exc is None:
        return None
    return (
        type(exc),
        exc.args,
        getattr(exc, "partial", None),
        getattr(exc, "expected", None),
        getattr(exc, "consumed", None),
    )


def describe(outcome: Outcome) -> tuple[object, ...]:
    if outcome.cancelled:
        return ("cancelled",)
    if outcome.error is not None:
        return ("raised", describe_exception(outcome.error))
    assert type(outcome.value) is bytes, f"read returned {type(outcome.value)}, not bytes"
    return ("returned", outcome.value)


class OracleCall:
    """An asyncio reader coroutine, stepped by hand without running any event loop."""

    def __init__(self, coro: Coroutine[Any, Any, bytes]) -> None:
        self._coro = coro
        self._waiting_on: Any = None
        self.outcome: Outcome | None = None
        # For read(-1): the bytes it may have gathered (the buffer when it started,
        # and everything fed since), to give back what asyncio drops on cancellation.
        self.stream = bytearray()
        self._step()

    def _step(self) -> None:
        try:
            self._waiting_on = self._coro.send(None)
        except StopIteration as stop:
            self.outcome = Outcome(value=stop.value)
        except Exception as exc:
            self.outcome = Outcome(error=exc)
        else:
            assert isinstance(self._waiting_on, asyncio.Future)

    def advance(self) -> None:
        """Resume the coroutine for as long as the future it waits on is done."""
        while self.outcome is None and self._waiting_on.done():
            self._step()

    def cancel(self) -> None:
        """Cancel it as a task's cancellation does: CancelledError at its ``await``.

        asyncio throws it in even when the future waited on is already done (the
        task's wake-up is pending): the cancellation is delivered first.
        """
        assert self.outcome is None
        try:
            self._coro.throw(asyncio.CancelledError())
        except asyncio.CancelledError:
            self.outcome = Outcome(cancelled=True)
        else:
            raise AssertionError("asyncio's read swallowed its cancellation")

    @property
    def done(self) -> bool:
        return self.outcome is not None


class OursCall:
    """An asyncstreams read running in a task, in a cancel scope of its own."""

    def __init__(self) -> None:
        self.outcome: Outcome | None = None
        self.scope = anyio.CancelScope()

    async def run(self, fn: Callable[[], Awaitable[bytes]]) -> None:
        with self.scope:
            try:
                value = await fn()
            except Exception as exc:
                self.outcome = Outcome(error=exc)
            else:
                self.outcome = Outcome(value=value)
        if self.scope.cancelled_caught:
            self.outcome = Outcome(cancelled=True)

    @property
    def done(self) -> bool:
        return self.outcome is not None


async def settle() -> None:
    """Let every task run until it blocks: a waiting read has seen all data fed so far."""
    # A few plain checkpoints first: anyio's asyncio wait_all_tasks_blocked() sleeps
    # 0.1 s whenever it finds a runnable task, and the reader just woken up usually is.
    for _ in range(5):
        await anyio.lowlevel.checkpoint()
    with anyio.fail_after(WAIT):
        await anyio.wait_all_tasks_blocked()


# -- the engine ------------------------------------------------------------------------


class Engine:
    """Applies operations to both readers and checks that they agree.

    Runs in the asyncstreams reader's event loop; *tg* hosts the waiting reads.
    """

    def __init__(self, limit: int, tg: TaskGroup, oracle_loop: asyncio.AbstractEventLoop) -> None:
        self.ours = StreamReader(limit)
        self.oracle = asyncio.StreamReader(limit, loop=oracle_loop)
        self._tg = tg
        self.eof = False
        self.pending: tuple[ReadOp, OursCall, OracleCall] | None = None
        self.history: list[str] = [f"StreamReader(limit={limit})"]

    def _context(self) -> str:
        return "\n  ".join(["operations so far:", *self.history])

    async def apply(self, op: Op) -> None:
        if isinstance(op, (Cancel, FeedAndCancel)) and self.pending is not None:
            await self._cancel(op)
            return
        if isinstance(op, Cancel):
            return  # nothing to cancel
        if isinstance(op, (Feed, FeedAndCancel)):
            if self.eof:
                return  # asyncio asserts on feed_data() after feed_eof()
            self._feed(op.data)
        elif isinstance(op, FeedEof):
            self.eof = True
            self.ours.feed_eof()
            self.oracle.feed_eof()
        elif isinstance(op, SetException):
            self.ours.set_exception(make_exception(op.kind))
            self.oracle.set_exception(make_exception(op.kind))
        else:
            if self.pending is not None:
                return  # one read at a time
            await self._start_read(op)
            return
        self.history.append(repr(op))
        await self._progress()
        self._compare_state()

    def _feed(self, data: bytes) -> None:
        self.ours.feed_data(data)
        self.oracle.feed_data(data)
        if self.pending is not None:
            self.pending[2].stream += data

    async def _cancel(self, op: Cancel | FeedAndCancel) -> None:
        assert self.pending is not None
        read_op, ours_call, oracle_call = self.pending
        self.history.append(repr(op))
        if isinstance(op, FeedAndCancel) and not self.eof:
            self._feed(op.data)  # neither read may react to it before the cancellation
        ours_call.scope.cancel()
        await settle()
        assert ours_call.outcome is not None, (
            f"{read_op}: still waiting after its cancellation\n{self._context()}"
        )
        oracle_call.cancel()
        if isinstance(read_op, Read) and read_op.n < 0:
            # asyncio drops what read(-1) had gathered; asyncstreams keeps it.
            remaining = bytes(oracle_buffer(self.oracle))
            assert oracle_call.stream.endswith(remaining)
            gathered = oracle_call.stream[: len(oracle_call.stream) - len(remaining)]
            oracle_buffer(self.oracle)[:0] = gathered
        self.pending = None
        got = describe(ours_call.outcome)
        if not ours_call.outcome.cancelled:
            # The cancellation came too late: the read finished first. It must have
            # returned what asyncio's read, made again now, returns at once.
            assert isinstance(op, FeedAndCancel), (
                f"{read_op}: finished with {got} though nothing arrived before its "
                f"cancellation\n{self._context()}"
            )
            again = OracleCall(self._call(self.oracle, read_op))
            assert again.outcome is not None, (
                f"{read_op}: asyncstreams finished with {got}, asyncio's read made again "
                f"waits\n{self._context()}"
            )
            expected = describe(again.outcome)
            assert got == expected, (
                f"{read_op} cancelled too late: expected {expected}, got {got}\n{self._context()}"
            )
        self.history.append(f"  -> {got}")
        self._compare_state()

    async def _start_read(self, op: ReadOp) -> None:
        self.history.append(repr(op))
        buffered = bytes(oracle_buffer(self.oracle))  # before the read takes any of it
        oracle_call = OracleCall(self._call(self.oracle, op))
        oracle_call.stream += buffered
        ours_call = OursCall()
        ours: Any = self.ours

        async def ours_fn() -> bytes:
            result: bytes = await self._call(ours, op)
            return result

        self._tg.start_soon(ours_call.run, ours_fn)
        self.pending = (op, ours_call, oracle_call)
        await self._progress()
        self._compare_state()

    @staticmethod
    def _call(reader: Any, op: ReadOp) -> Coroutine[Any, Any, bytes]:
        if isinstance(op, Read):
            coro: Coroutine[Any, Any, bytes] = reader.read(op.n)
        elif isinstance(op, Readline):
            coro = reader.readline()
        elif isinstance(op, Readuntil):
            coro = reader.readuntil(op.separator)
        else:
            coro = reader.readexactly(op.n)
        return coro

    async def _progress(self) -> None:
        """Let the waiting read (if any) react to the last operation; check its end."""
        if self.pending is None:
            return
        op, ours_call, oracle_call = self.pending
        oracle_call.advance()
        await settle()
        if oracle_call.outcome is None:
            assert ours_call.outcome is None, (
                f"{op}: asyncio is still waiting for data, asyncstreams finished with "
                f"{describe(ours_call.outcome)}\n{self._context()}"
            )
            return
        assert ours_call.outcome is not None, (
            f"{op}: asyncio finished with {describe(oracle_call.outcome)}, asyncstreams "
            f"is still waiting for data\n{self._context()}"
        )
        self.pending = None
        expected = describe(oracle_call.outcome)
        got = describe(ours_call.outcome)
        self.history.append(f"  -> {expected}")
        assert got == expected, f"{op}: expected {expected}, got {got}\n{self._context()}"
        if oracle_call.outcome.error is not None and oracle_call.outcome.error is (
            self.oracle.exception()
        ):
            assert ours_call.outcome.error is self.ours.exception(), (
                f"{op}: should raise the very exception given to set_exception()"
            )

    def _compare_state(self) -> None:
        assert self.ours.at_eof() == self.oracle.at_eof(), (
            f"at_eof(): expected {self.oracle.at_eof()}, got {self.ours.at_eof()}\n"
            f"{self._context()}"
        )
        expected = describe_exception(self.oracle.exception())
        got = describe_exception(self.ours.exception())
        assert got == expected, f"exception(): expected {expected}, got {got}\n{self._context()}"

    async def finish(self) -> None:
        """End the stream, then compare what is left in the buffers."""
        if self.oracle.exception() is None and not self.eof:
            await self.apply(FeedEof())
        assert self.pending is None, f"a read is still waiting\n{self._context()}"
        if self.oracle.exception() is None:
            await self._start_read(Read(-1))
            assert self.pending is None, f"read(-1) at EOF is waiting\n{self._context()}"
            assert self.ours.at_eof()


async def run_operations(limit: int, operations: list[Op]) -> None:
    oracle_loop = asyncio.new_event_loop()
    failure: Exception | None = None
    try:
        async with anyio.create_task_group() as tg:
            try:
                engine = Engine(limit, tg, oracle_loop)
                for op in operations:
                    await engine.apply(op)
                await engine.finish()
            except Exception as exc:
                failure = exc
                tg.cancel_scope.cancel()
    finally:
        oracle_loop.close()
    if failure is not None:
        raise failure


# -- tests -----------------------------------------------------------------------------


@FUZZ_SETTINGS
@given(limit=limits, operations=st.lists(ops, max_size=30))
async def test_matches_asyncio(limit: int, operations: list[Op]) -> None:
    await run_operations(limit, operations)


@pytest.mark.slow
@pytest.mark.timeout(900)
@SLOW_FUZZ_SETTINGS
@given(limit=limits, operations=st.lists(ops, max_size=30))
async def test_matches_asyncio_many_examples(limit: int, operations: list[Op]) -> None:
    """The same as test_matches_asyncio, with 10,000 examples (see docs/reliability.md)."""
    await run_operations(limit, operations)


@FUZZ_SETTINGS
@given(
    limit=limits,
    data=st.lists(st.sampled_from([b"a", b"b", b"\n", b"\r"]), max_size=60).map(b"".join),
    sizes=st.lists(st.integers(min_value=1, max_value=7), min_size=1, max_size=10),
    reads=st.lists(read_ops, min_size=1, max_size=12),
)
async def test_matches_asyncio_with_trickling_data(
    limit: int, data: bytes, sizes: list[int], reads: list[ReadOp]
) -> None:
    """Each read is issued first and then fed in small chunks until it completes."""
    operations: list[Op] = []
    pos = 0
    for i, read in enumerate(reads):
        operations.append(read)
        for j in range(len(sizes)):
            size = sizes[(i + j) % len(sizes)]
            operations.append(Feed(data[pos : pos + size]))
            pos += size
    operations.append(FeedEof())
    await run_operations(limit, operations)


EXAMPLES_CASES: list[tuple[int, list[Op]]] = [
    (4, [Readline(), Feed(b"aaaa"), Feed(b"a\nxy\n"), Readline(), Read(-1)]),
    (10, [Readuntil(b"\n"), Feed(b"a" * 8), Feed(b"b" * 8), Read(100)]),
    (5, [Feed(b"abcdefg"), Readuntil(b"\r\n\r"), Feed(b"h"), FeedEof()]),
    (3, [Readexactly(7), Feed(b"ab"), Feed(b"cd"), SetException(0), Read(1)]),
    (2, [Read(-1), Feed(b"abc"), Feed(b"defg"), FeedEof(), Read(-1)]),
    (3, [Feed(b"ab"), Readexactly(-1), Readuntil(b""), Read(0), Readexactly(0)]),
    (3, [Feed(b"ab"), Read(-1), Feed(b"c"), SetException(1), FeedEof()]),
    # Cancelled reads take nothing.
    (4, [Feed(b"ab"), Readline(), Cancel(), Feed(b"c\n"), Readline()]),
    (5, [Readexactly(4), Feed(b"ab"), FeedAndCancel(b"cd"), Read(10)]),
    (5, [Feed(b"ab"), Readuntil(b"\r\n"), FeedAndCancel(b"\r\n"), Readline()]),
    (2, [Readuntil(b"ab"), Feed(b"xxa"), Cancel(), Feed(b"b"), Readuntil(b"ab")]),
    # ... read(-1) included, where asyncio drops what it had gathered.
    (3, [Feed(b"abcd"), Read(-1), Feed(b"ef"), Cancel(), FeedEof(), Read(-1)]),
    (2, [Read(-1), Feed(b"abc"), FeedAndCancel(b"d"), Read(3)]),
    (3, [Read(4), Cancel(), Cancel(), Feed(b"x"), Read(4)]),
]
if TUPLE_SEPARATORS:
    EXAMPLES_CASES += [
        (1, [Feed(b"xab"), Readuntil((b"ab", b"b")), Readuntil((b"b", b"ab"))]),
        (3, [Readuntil((b"\n", b"aaaaa")), Feed(b"bbbbbb"), Feed(b"bb")]),
        (9, [Readuntil((b"#", b"<E>")), Feed(b"x<"), Feed(b"E>#"), Readuntil(())]),
    ]


@pytest.mark.parametrize(("limit", "operations"), EXAMPLES_CASES)
async def test_examples_match_asyncio(limit: int, operations: list[Op]) -> None:
    """Hand-picked sequences: the harness itself, exercised deterministically."""
    await run_operations(limit, operations)


# -- the state machine -----------------------------------------------------------------


async def _host(*, task_status: TaskStatus[TaskGroup]) -> None:
    """Keep a task group open in the portal's event loop, for the waiting reads."""
    async with anyio.create_task_group() as tg:
        task_status.started(tg)
        await anyio.sleep_forever()


class ReaderMachine(RuleBasedStateMachine):
    """The same comparison, with hypothesis choosing each operation from the state.

    The asyncstreams reader lives in a blocking portal's event loop (on the backend
    the test is parametrized with), so that it survives from one rule to the next.
    """

    backend: tuple[str, dict[str, Any]] = ("asyncio", {})

    def __init__(self) -> None:
        super().__init__()
        self._stack = ExitStack()
        name, options = self.backend
        self.portal = self._stack.enter_context(
            start_blocking_portal(name, backend_options=options)
        )
        oracle_loop = asyncio.new_event_loop()
        self._stack.callback(oracle_loop.close)
        host, tg = self.portal.start_task(_host)
        self._stack.callback(host.cancel)
        self._oracle_loop = oracle_loop
        self._tg = tg
        self._failed = False
        self.engine: Engine | None = None

    def _apply(self, op: Op) -> None:
        assert self.engine is not None
        try:
            self.portal.call(self.engine.apply, op)
        except BaseException:
            self._failed = True
            raise

    @initialize(limit=limits)
    def create_readers(self, limit: int) -> None:
        self.engine = self.portal.call(Engine, limit, self._tg, self._oracle_loop)

    def _can_feed(self) -> bool:
        return self.engine is not None and not self.engine.eof

    def _can_read(self) -> bool:
        return self.engine is not None and self.engine.pending is None

    def _is_waiting(self) -> bool:
        return self.engine is not None and self.engine.pending is not None

    def _is_waiting_and_can_feed(self) -> bool:
        return self._is_waiting() and self._can_feed()

    @precondition(_can_feed)
    @rule(data=chunks)
    def feed(self, data: bytes) -> None:
        self._apply(Feed(data))

    @precondition(_can_feed)
    @rule()
    def feed_eof(self) -> None:
        self._apply(FeedEof())

    @rule(kind=st.integers(min_value=0, max_value=2))
    def set_exception(self, kind: int) -> None:
        self._apply(SetException(kind))

    @precondition(_can_read)
    @rule(n=st.integers(min_value=-2, max_value=12))
    def read(self, n: int) -> None:
        self._apply(Read(n))

    @precondition(_can_read)
    @rule()
    def readline(self) -> None:
        self._apply(Readline())

    @precondition(_can_read)
    @rule(separator=separators)
    def readuntil(self, separator: bytes | tuple[bytes, ...]) -> None:
        self._apply(Readuntil(separator))

    @precondition(_can_read)
    @rule(n=st.integers(min_value=-1, max_value=16))
    def readexactly(self, n: int) -> None:
        self._apply(Readexactly(n))

    @precondition(_is_waiting)
    @rule()
    def cancel(self) -> None:
        self._apply(Cancel())

    @precondition(_is_waiting_and_can_feed)
    @rule(data=chunks)
    def feed_and_cancel(self, data: bytes) -> None:
        self._apply(FeedAndCancel(data))

    def teardown(self) -> None:
        try:
            if self.engine is not None and not self._failed:
                self.portal.call(self.engine.finish)
        finally:
            self._stack.close()


def test_state_machine(anyio_backend: tuple[str, dict[str, Any]]) -> None:
    machine = type("ReaderMachine", (ReaderMachine,), {"backend": anyio_backend})
    run_state_machine_as_test(machine, settings=STATEFUL_SETTINGS)
