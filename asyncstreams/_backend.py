"""The one place where asyncio and trio differ: running a task nobody awaits, and the
cheapest way on each to wait for a wake-up or for a socket.

asyncio stream code starts work that outlives the call that started it: the transport
keeps sending after ``write()`` returns, and a server runs each client's handler as a
task of its own. anyio deliberately has no fire-and-forget tasks, so this module provides
them: an asyncio task kept alive by a strong reference, or a trio system task.

Everything spawned here is wrapped so that an exception is logged rather than lost (on
asyncio) or fatal to the whole run (an exception escaping a trio system task crashes
``trio.run``). Cancellation still propagates: trio cancels system tasks when the main
task ends, and asyncio cancels the remaining tasks when ``asyncio.run`` ends.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import sys
import weakref
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Protocol, TypeVar, cast

__all__ = [
    "Waiter",
    "call_soon",
    "closed_error",
    "current_backend",
    "fd_waits",
    "run_local",
    "spawn_detached",
    "waiter_factory",
]

logger = logging.getLogger("asyncstreams")

# asyncio keeps only weak references to tasks; these are the strong ones.
_asyncio_tasks: set[asyncio.Task[None]] = set()

T = TypeVar("T")

# run_local()'s values: per asyncio loop here, per trio run in a RunVar.
_asyncio_locals: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Any, Any]] = (
    weakref.WeakKeyDictionary()
)


def current_backend() -> str | None:
    """Return ``"asyncio"`` or ``"trio"`` for the running event loop, or None outside one."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return "asyncio"
    trio = sys.modules.get("trio")
    if trio is not None and trio.lowlevel.in_trio_run():
        return "trio"
    return None


async def _guarded(fn: Callable[..., Awaitable[object]], args: tuple[Any, ...], what: str) -> None:
    try:
        await fn(*args)
    except Exception:
        logger.exception("Unhandled exception in %s", what)


def spawn_detached(fn: Callable[..., Awaitable[object]], *args: Any, name: str) -> None:
    """Start ``fn(*args)`` in the background of the running event loop.

    The task inherits the caller's context variables, as an asyncio task does.
    Raises RuntimeError outside a running asyncio or trio event loop.
    """
    backend = current_backend()
    if backend == "asyncio":
        task = asyncio.get_running_loop().create_task(_guarded(fn, args, name), name=name)
        _asyncio_tasks.add(task)
        task.add_done_callback(_asyncio_tasks.discard)
    elif backend == "trio":
        import trio

        trio.lowlevel.spawn_system_task(
            _guarded, fn, args, name, name=name, context=contextvars.copy_context()
        )
    else:
        raise RuntimeError("asyncstreams needs a running asyncio or trio event loop")


def run_local(factory: Callable[[], T]) -> T:
    """The running event loop's own ``factory()``, made on first use and dropped with
    the loop (a ``RunVar`` on trio). Raises RuntimeError outside a running loop."""
    backend = current_backend()
    if backend == "asyncio":
        values = _asyncio_locals.setdefault(asyncio.get_running_loop(), {})
        if factory not in values:
            values[factory] = factory()
        return cast(T, values[factory])
    if backend == "trio":
        var = _trio_run_var(factory)
        try:
            return cast(T, var.get())
        except LookupError:
            value = factory()
            var.set(value)
            return value
    raise RuntimeError("asyncstreams needs a running asyncio or trio event loop")


@functools.cache
def _trio_run_var(factory: Callable[[], T]) -> Any:
    import trio

    return trio.lowlevel.RunVar(f"asyncstreams {factory.__qualname__}")


def call_soon(fn: Callable[..., object], *args: Any) -> None:
    """Call ``fn(*args)`` on the event loop's next pass: ``loop.call_soon()`` on asyncio,
    ``run_sync_soon()`` on trio."""
    if current_backend() == "asyncio":
        asyncio.get_running_loop().call_soon(fn, *args)
    else:
        import trio

        trio.lowlevel.current_trio_token().run_sync_soon(fn, *args)


def report_handler_error(exc: BaseException, transport: object) -> None:
    """Report an exception that escaped a server's client handler.

    On asyncio this goes to the loop's exception handler, exactly as asyncio reports
    it (so a custom handler set with ``loop.set_exception_handler`` sees it); elsewhere
    it is logged to the ``asyncstreams`` logger with the same message.
    """
    message = "Unhandled exception in client_connected_cb"
    if current_backend() == "asyncio":
        asyncio.get_running_loop().call_exception_handler(
            {"message": message, "exception": exc, "transport": transport}
        )
    else:
        logger.error("%s\ntransport: %r", message, transport, exc_info=exc)


class Waiter(Protocol):
    """A one-shot wake-up shaped like a future: one task awaits it; anyone else calls
    ``set_result(None)`` unless it is ``done()`` (an asyncio waiter is done once the
    task waiting on it is cancelled)."""

    def done(self) -> bool: ...
    def set_result(self, result: None, /) -> None: ...
    def __await__(self) -> Generator[Any, Any, Any]: ...


@functools.cache
def _trio_waiter() -> type[Waiter]:
    import trio

    reschedule = trio.lowlevel.reschedule
    current_task = trio.lowlevel.current_task
    wait_task_rescheduled = trio.lowlevel.wait_task_rescheduled
    succeeded = trio.lowlevel.Abort.SUCCEEDED

    class TrioWaiter:
        """A waiter for one trio task: what ``trio.Event`` does, without its task set."""

        __slots__ = ("_done", "_task")

        def __init__(self) -> None:
            self._done = False
            self._task: trio.lowlevel.Task | None = None

        def done(self) -> bool:
            return self._done

        def set_result(self, result: None, /) -> None:
            self._done = True
            task = self._task
            if task is not None:
                self._task = None
                reschedule(task)

        def _abort(self, raise_cancel: object) -> trio.lowlevel.Abort:
            self._done = True  # cancelled, as an asyncio future is
            self._task = None
            return succeeded

        def __await__(self) -> Generator[Any, Any, None]:
            # Awaited once, as soon as it is made: nothing can have set it yet.
            assert not self._done, "a waiter is awaited once"
            self._task = current_task()
            yield from wait_task_rescheduled(self._abort).__await__()

    return TrioWaiter


def waiter_factory() -> Callable[[], Waiter]:
    """What makes waiters on the running event loop.

    On asyncio a bare future, what asyncio's own StreamReader waits on (an
    ``anyio.Event`` costs about three times more); on trio what ``trio.Event`` does
    for one task. Raises RuntimeError outside a running asyncio or trio event loop.
    """
    backend = current_backend()
    if backend == "asyncio":
        return functools.partial(asyncio.Future, loop=asyncio.get_running_loop())
    if backend == "trio":
        return _trio_waiter()
    raise RuntimeError("asyncstreams needs a running asyncio or trio event loop")


FdWait = Callable[[Any], Awaitable[None]]


def fd_waits() -> tuple[FdWait, FdWait, Callable[[], Awaitable[None]]]:
    """``wait_readable``, ``wait_writable`` and ``checkpoint`` for the running loop.

    On trio, trio's own functions, which anyio's would call after a dispatch per call;
    elsewhere anyio's.
    """
    trio = sys.modules.get("trio")
    if trio is not None and trio.lowlevel.in_trio_run():
        lowlevel = trio.lowlevel
        return lowlevel.wait_readable, lowlevel.wait_writable, lowlevel.checkpoint
    import anyio
    import anyio.lowlevel

    return anyio.wait_readable, anyio.wait_writable, anyio.lowlevel.checkpoint


def closed_error() -> type[Exception]:
    """What ``fd_waits()``'s waits raise when ``anyio.notify_closing()`` wakes them."""
    trio = sys.modules.get("trio")
    if trio is not None and trio.lowlevel.in_trio_run():
        return cast("type[Exception]", trio.ClosedResourceError)
    import anyio

    return anyio.ClosedResourceError
