"""Helpers shared by the reliability suite (``tests/test_reliability_*.py``).

* the asyncio oracle: run one scenario on asyncstreams (the test's backend) and on
  real asyncio in a worker thread, and compare;
* open file descriptors, read from ``/proc/self/fd``, to prove nothing leaks;
* cancelling an operation the way each backend's own users do: ``task.cancel()`` and
  ``asyncio.wait_for`` on asyncio, cancel scopes and ``trio.move_on_after`` on trio;
* a guard that fails a test when anything was logged in the background: an exception
  escaping a task, asyncio's "Task exception was never retrieved", a handler error.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import pytest
import sniffio

import asyncstreams

T = TypeVar("T")

LOOPBACK = "127.0.0.1"

#: Bound on every single wait: a hang fails the test instead of stalling the run.
WAIT = 20.0

#: asyncio 3.13 is the reference; on older Pythons the written-out expectations are.
ASYNCIO_IS_REFERENCE = sys.version_info >= (3, 13)


# -- the asyncio oracle ------------------------------------------------------------------


async def in_asyncio(scenario: Callable[[], Awaitable[T]]) -> T:
    """Run *scenario* on real asyncio (a fresh ``asyncio.run`` in a worker thread)."""

    async def main() -> T:
        return await scenario()

    return await anyio.to_thread.run_sync(lambda: asyncio.run(main()))


async def both(scenario: Callable[[Any], Awaitable[T]]) -> tuple[T, T]:
    """``(asyncstreams result, asyncio result)`` of the same scenario.

    *scenario* receives the streams module (``asyncstreams`` or ``asyncio``). Before
    Python 3.13 the asyncio result is asyncstreams' own: only the test's written-out
    expectations check it there.
    """
    ours = await scenario(asyncstreams)
    if not ASYNCIO_IS_REFERENCE:
        return ours, ours
    theirs = await in_asyncio(lambda: scenario(asyncio))
    return ours, theirs


def outcome_of(exc: BaseException | None) -> str:
    """A comparable description of how an operation ended."""
    if exc is None:
        return "ok"
    return f"{type(exc).__name__}{exc.args!r}"


def port_of(server: Any) -> int:
    port: int = server.sockets[0].getsockname()[1]
    return port


async def close_writer(writer: Any) -> str:
    """Close *writer* and wait (bounded); return how ``wait_closed()`` ended."""
    writer.close()
    with anyio.fail_after(WAIT):
        try:
            await writer.wait_closed()
        except ConnectionError as exc:
            return type(exc).__name__
    return "ok"


@contextlib.asynccontextmanager
async def serving(server: Any) -> AsyncIterator[Any]:
    """Close *server* and wait for its clients on the way out, bounded."""
    try:
        yield server
    finally:
        server.close()
        with anyio.fail_after(WAIT):
            await server.wait_closed()


async def until_blocked() -> None:
    """Wait until every task is blocked (bounded)."""
    with anyio.fail_after(WAIT):
        await anyio.wait_all_tasks_blocked()


# -- file descriptors ----------------------------------------------------------------------


def _target(fd: str) -> str | None:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None  # the descriptor listdir() used, closed by now


def open_fds() -> dict[int, str]:
    """This process's open descriptors and what they point to (``socket:[inode]``...)."""
    targets = {int(fd): _target(fd) for fd in os.listdir("/proc/self/fd")}
    return {fd: target for fd, target in targets.items() if target is not None}


def new_fds(baseline: dict[int, str]) -> dict[int, str]:
    """Descriptors open now that were not in *baseline*.

    ``/dev/null`` is not counted: libuv (uvloop) opens it once per loop, on first use,
    as a spare descriptor to recover from EMFILE, and keeps it for the loop's life.
    """
    return {
        fd: target
        for fd, target in open_fds().items()
        if baseline.get(fd) != target and target != "/dev/null"
    }


async def assert_fds_released(baseline: dict[int, str], what: str) -> None:
    """Every descriptor opened since *baseline* is closed, now or within a few loop turns.

    A few turns, not at once: uvloop closes a socket's descriptor in a callback of
    the loop iteration after ``close()``.
    """
    for _ in range(20):
        if not new_fds(baseline):
            return
        await anyio.lowlevel.checkpoint()
    with anyio.move_on_after(1):
        while True:  # polled: nothing signals a descriptor's closing
            if not new_fds(baseline):
                return
            await anyio.sleep(0.01)
    leaked = new_fds(baseline)
    assert not leaked, f"{what}: descriptors still open: {leaked}"


# -- cancelling the way each backend's users do ----------------------------------------------

#: The two styles: ``"explicit"`` is ``task.cancel()`` on asyncio and
#: ``CancelScope.cancel()`` on trio, once the operation is blocked; ``"timeout"`` is
#: ``asyncio.wait_for(..., timeout)`` on asyncio and ``trio.move_on_after(timeout)`` on trio.
CANCEL_STYLES = ("explicit", "timeout")

#: The timeout of the ``"timeout"`` style; the operations cancelled never complete.
CANCEL_TIMEOUT = 0.05


def backend_name() -> str:
    name: str = sniffio.current_async_library()
    return name


async def cancel_when_blocked(
    fn: Callable[[], Awaitable[object]], style: str, *, ready: anyio.Event | None = None
) -> None:
    """Start ``fn()``, cancel it natively once it is blocked, and check it was cancelled.

    *fn* must block until cancelled; if it returns or raises instead, that fails. With
    *ready*, the ``"explicit"`` style also waits for that event before cancelling (the
    ``"timeout"`` style cancels at its deadline, whatever has happened by then).
    """
    if backend_name() == "trio":
        await _trio_cancel(fn, style, ready)
    else:
        await _asyncio_cancel(fn, style, ready)


async def _until_ready(ready: anyio.Event | None) -> None:
    if ready is not None:
        with anyio.fail_after(WAIT):
            await ready.wait()
    await until_blocked()


async def _asyncio_cancel(
    fn: Callable[[], Awaitable[object]], style: str, ready: anyio.Event | None
) -> None:
    async def run() -> object:
        return await fn()

    if style == "timeout":
        try:
            result = await asyncio.wait_for(run(), CANCEL_TIMEOUT)
        except asyncio.TimeoutError:
            return
        raise AssertionError(f"returned {result!r} instead of blocking")
    task = asyncio.get_running_loop().create_task(run())
    try:
        await _until_ready(ready)
        assert not task.done(), f"not blocked: {task!r}"
        task.cancel()
        with anyio.fail_after(WAIT):
            await asyncio.wait({task})
    finally:
        task.cancel()
    assert task.cancelled(), f"ended with {task.exception()!r} instead of being cancelled"


async def _trio_cancel(
    fn: Callable[[], Awaitable[object]], style: str, ready: anyio.Event | None
) -> None:
    import trio

    if style == "timeout":
        with trio.move_on_after(CANCEL_TIMEOUT) as scope:
            result = await fn()
            raise AssertionError(f"returned {result!r} instead of blocking")
        assert scope.cancelled_caught
        return
    scope = trio.CancelScope()
    returned: list[object] = []

    async def run() -> None:
        with scope:
            returned.append(await fn())

    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            await _until_ready(ready)
            scope.cancel()
    assert scope.cancelled_caught, f"returned {returned!r} instead of being cancelled"


# -- nothing goes wrong in the background ----------------------------------------------------


@contextlib.contextmanager
def no_background_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail if anything logs a warning or an error meanwhile, or right after a GC.

    On asyncio the loop's exception handler is asyncio's own default one for the
    duration, so "Task exception was never retrieved" (and any other report) is
    logged rather than collected by anyio's test runner; a ``gc.collect()`` at the end
    finalises tasks that were dropped with an exception nobody retrieved.
    """
    caplog.set_level(logging.WARNING)
    loop: asyncio.AbstractEventLoop | None = None
    previous: Any = None
    if backend_name() == "asyncio":
        loop = asyncio.get_running_loop()
        previous = loop.get_exception_handler()
        loop.set_exception_handler(lambda loop, context: loop.default_exception_handler(context))
    try:
        yield
        gc.collect()
    finally:
        if loop is not None:
            loop.set_exception_handler(previous)
    problems = [
        f"{record.name} {record.levelname}: {record.getMessage()}"
        for record in caplog.records
        if record.levelno >= logging.WARNING
    ]
    assert not problems, "logged in the background:\n" + "\n".join(problems)
