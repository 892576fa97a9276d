"""Readiness callbacks for sockets: one selector per event loop, not a task per socket.

trio waits for a socket in a task. A connection that receives in the background, as
every asyncio stream connection does, would then keep a task waiting on its socket for
as long as it is open: the task, its frames and its cancel scope, some 4 KB per end
of every idle connection. asyncio's selector loop keeps one selector instead and calls
each transport back when its socket is readable. :class:`Poller` does the same inside
any event loop: one task waits until the selector's own descriptor is readable, then
calls back every socket that is ready, in one batch.

Where the selector has no descriptor to wait on (``select()``, as on Windows), or no
descriptor is left to make one with, each watched socket gets a task of its own
instead; the callbacks are the same.
"""

from __future__ import annotations

import logging
import selectors
from collections.abc import Callable

import anyio

from ._backend import fd_waits, run_local, spawn_detached

__all__ = ["Poller", "poller"]

logger = logging.getLogger("asyncstreams")

# Returns True when it filled its receive buffer: more is likely queued.
Callback = Callable[[], bool]


# select() (the default on Windows) has no descriptor to wait on.
_ONE_SELECTOR = hasattr(selectors.DefaultSelector, "fileno")

# While sockets stream, how often the selector is asked for the others (see _run()).
_SELECT_EVERY = 4


class Poller:
    """Calls ``callback()`` each time a watched socket is readable (level-triggered).

    A callback returns True if it filled its receive buffer (more is likely queued):
    then the sockets are looked at again after one pass of the event loop, without
    waiting for the selector.

    A callback may be called when nothing is there to read (another callback of the
    same batch may have consumed it, or closed the socket and a new one reused its
    descriptor): it must treat ``BlockingIOError`` as "nothing yet". It is never
    called after :meth:`unwatch`. A callback that raises is logged; the others go on.
    The selector (and its task) exist only while a socket is watched or the poller is
    held (:meth:`hold`).
    """

    __slots__ = ("_aside", "_callbacks", "_holds", "_scopes", "_selector")

    def __init__(self) -> None:
        self._selector: selectors.BaseSelector | None = None
        self._callbacks: dict[int, Callback] = {}
        self._scopes: dict[int, anyio.CancelScope] = {}  # sockets waiting in a task
        # Watched, but out of the selector while a task waits on it: fd -> that wait.
        self._aside: dict[int, object] = {}
        self._holds = 0

    def watch(self, fd: int, callback: Callback) -> None:
        """Call *callback* whenever socket *fd* is readable, until :meth:`unwatch`."""
        if fd in self._callbacks:
            raise RuntimeError(f"socket {fd} is already watched")
        selector = self._open_selector()
        if selector is None:
            scope = self._scopes[fd] = anyio.CancelScope()
            spawn_detached(self._watch_alone, fd, callback, scope, name="asyncstreams watcher")
        else:
            selector.register(fd, selectors.EVENT_READ)
        self._callbacks[fd] = callback

    def unwatch(self, fd: int) -> None:
        """Stop calling back for *fd*; call it before closing the socket."""
        if self._callbacks.pop(fd, None) is None:
            return
        scope = self._scopes.pop(fd, None)
        if scope is not None:
            scope.cancel()
            return
        if self._aside.pop(fd, None) is None:
            selector = self._selector
            assert selector is not None
            selector.unregister(fd)
        self._close_if_unused()

    def alone(self, fd: int) -> bool:
        """Whether *fd* is the one socket watched, and watched through the selector."""
        return len(self._callbacks) == 1 and fd in self._callbacks and not self._scopes

    def step_aside(self, fd: int, owner: object) -> None:
        """Take watched *fd* out of the selector while *owner* (a task's wait) waits on
        it itself: it is not called back until :meth:`step_back` by the same owner (or
        until it is unwatched). A later owner takes over one that has not stepped back
        yet."""
        assert fd in self._callbacks
        if fd not in self._aside:
            selector = self._selector
            assert selector is not None
            selector.unregister(fd)
        self._aside[fd] = owner

    def step_back(self, fd: int, owner: object) -> None:
        """Put *fd* back in the selector after *owner*'s :meth:`step_aside`, if it is
        still watched and nobody stepped it aside since (the descriptor may even be
        another socket's by now)."""
        if self._aside.get(fd) is owner:
            del self._aside[fd]
            selector = self._selector
            assert selector is not None
            selector.register(fd, selectors.EVENT_READ)

    def hold(self) -> None:
        """Keep the selector until :meth:`release`, also while nothing is watched.

        A connection holds it for its lifetime, so that pausing and resuming its
        reads (unwatching and watching again) does not make a new selector each time.
        """
        self._holds += 1

    def release(self) -> None:
        self._holds -= 1
        self._close_if_unused()

    def _close_if_unused(self) -> None:
        selector = self._selector
        if selector is not None and not self._holds and not selector.get_map() and not self._aside:
            # Nothing left to watch: release the selector; its task ends.
            self._selector = None
            anyio.notify_closing(selector.fileno())  # type: ignore[attr-defined]
            selector.close()

    def _open_selector(self) -> selectors.BaseSelector | None:
        """The selector, made (with its task) if there is none; None where there can be
        none: no descriptor to wait on, or no descriptor left to make one with."""
        selector = self._selector
        if selector is None and _ONE_SELECTOR:
            try:
                selector = self._selector = selectors.DefaultSelector()
            except OSError as exc:  # EMFILE: the socket can still wait in a task
                logger.debug("No selector for the poller, a task per socket: %r", exc)
                return None
            spawn_detached(self._run, selector, name="asyncstreams poller")
        return selector

    async def _run(self, selector: selectors.BaseSelector) -> None:
        wait_readable, _, checkpoint = fd_waits()
        callbacks = self._callbacks
        aside = self._aside
        if selector is not self._selector:
            return  # every socket came and went before this task started
        fd = selector.fileno()  # type: ignore[attr-defined]
        # The sockets whose callback filled its receive on the last pass: more is
        # likely queued there. They are called again after one pass of the event loop
        # (letting the readers run), without asking the selector, as trio's own
        # sockets try a receive before they wait; every _SELECT_EVERY passes the
        # selector is asked too, so that the other sockets are not kept waiting.
        streaming: list[int] = []
        passes = 0
        while True:
            if streaming:
                await checkpoint()
            else:
                try:
                    await wait_readable(fd)
                except Exception:
                    if selector is not self._selector:
                        return  # unwatch() closed it under the wait
                    raise
            if selector is not self._selector:
                return  # closed after it woke us
            passes += 1
            watched = selector.get_map()
            if len(watched) == 1:
                # The selector is readable (or the socket streams) and watches one
                # socket: that is the one to call, no system call needed to ask.
                ready = [key.fd for key in watched.values()]
            elif streaming and passes % _SELECT_EVERY:
                ready = streaming
            else:
                ready = [key.fd for key, _ in selector.select(0)]
            streaming = []
            for ready_fd in ready:
                callback = callbacks.get(ready_fd)
                if callback is None or ready_fd in aside:
                    continue  # unwatched meanwhile, or a task waits on it itself
                try:
                    more = callback()
                except Exception:
                    logger.exception("Unhandled exception in a socket's readiness callback")
                    more = False
                if selector is not self._selector:
                    return  # closed by the callback (the last socket closed)
                if more:
                    streaming.append(ready_fd)

    async def _watch_alone(self, fd: int, callback: Callback, scope: anyio.CancelScope) -> None:
        wait_readable, _, checkpoint = fd_waits()
        more = False
        with scope:
            while True:
                try:
                    await (checkpoint() if more else wait_readable(fd))
                except Exception:
                    if scope.cancel_called:
                        return  # unwatched, and its socket closed under the wait
                    raise
                try:
                    more = callback()
                except Exception:
                    logger.exception("Unhandled exception in a socket's readiness callback")
                    more = False


def poller() -> Poller:
    """The running event loop's poller."""
    return run_local(Poller)
