"""What the engines that are not asyncio's transport share: write flow control, and
(for the one over an anyio stream) a receiving task.

:class:`~asyncstreams._task_engine.TaskEngine` (over an anyio stream) and
:class:`~asyncstreams._socket_engine.SocketEngine` (over a socket) count what is
written but unsent; the first receives in a task of its own, the second on readiness
callbacks (``_poller``). The asyncio engine gets all of it from the event loop's
transport instead.
"""

from __future__ import annotations

import socket
from asyncio import trsock
from typing import Any

import anyio
from anyio.abc import SocketAttribute

from ._backend import spawn_detached
from ._engine import DEFAULT_HIGH_WATER, Owner

__all__ = ["ReceivingEngine", "WriteFlowControl", "read_socket_info"]


def read_socket_info(sock: socket.socket | None) -> dict[str, Any]:
    """``get_extra_info()``'s socket entries for *sock*, read now."""
    if sock is None:
        return {}
    extra: dict[str, Any] = {"socket": trsock.TransportSocket(sock)}
    try:
        extra["sockname"] = sock.getsockname()
    except OSError:
        extra["sockname"] = None
    try:
        extra["peername"] = sock.getpeername()
    except OSError:
        extra["peername"] = None
    return extra


class WriteFlowControl:
    """asyncio's write high/low marks over ``_size``, the bytes written but unsent.

    Subclasses keep ``_size`` and call :meth:`_update_flow_control` when it changes.
    """

    __slots__ = (
        "_high",
        "_low",
        "_owner",
        "_size",
        "_socket_info",
        "_writing_paused",
    )

    def __init__(self) -> None:
        self._owner: Owner | None = None
        self._size = 0
        self._high = DEFAULT_HIGH_WATER
        self._low = DEFAULT_HIGH_WATER // 4
        self._writing_paused = False
        self._socket_info: dict[str, Any] = {}

    def start(self, owner: Owner) -> None:
        self._owner = owner
        # Read now: nothing keeps the addresses once the socket is closed (or reset).
        self._socket_info = read_socket_info(self.extra(SocketAttribute.raw_socket, None))

    def extra(self, attribute: Any, default: Any = None) -> Any:
        raise NotImplementedError

    def socket_info(self) -> dict[str, Any]:
        return self._socket_info

    # -- write flow control --------------------------------------------------------------

    def get_write_buffer_size(self) -> int:
        return self._size

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        self._high = high
        self._low = low
        self._update_flow_control()

    def _update_flow_control(self) -> None:
        owner = self._owner
        if self._size > self._high:
            if not self._writing_paused:
                self._writing_paused = True
                if owner is not None:
                    owner._pause_writing()
        elif self._writing_paused and self._size <= self._low:
            self._writing_paused = False
            if owner is not None:
                owner._resume_writing()


class ReceivingEngine(WriteFlowControl):
    """:class:`WriteFlowControl` with a receiving task that stops while paused.

    Subclasses implement :meth:`_receive_loop` (it returns at EOF or on an error, and
    calls :meth:`_wait_while_paused` before each receive).
    """

    __slots__ = (
        "_reading_paused",
        "_receiver_done",
        "_receiver_scope",
        "_receiving",
        "_resume_event",
    )

    def __init__(self) -> None:
        super().__init__()
        self._receiver_scope: anyio.CancelScope | None = None
        self._receiving = False
        self._receiver_done: anyio.Event | None = None  # made when someone waits for it
        self._reading_paused = False
        self._resume_event: anyio.Event | None = None

    def start(self, owner: Owner) -> None:
        super().start(owner)
        scope = self._receiver_scope = anyio.CancelScope()
        self._receiving = True
        spawn_detached(self._run_receiver, scope, name="asyncstreams receiver")

    # -- receiving -----------------------------------------------------------------------

    def pause_reading(self) -> None:
        self._reading_paused = True

    def resume_reading(self) -> None:
        self._reading_paused = False
        event = self._resume_event
        if event is not None:
            self._resume_event = None
            event.set()

    async def _wait_while_paused(self) -> None:
        if self._reading_paused:
            event = self._resume_event = anyio.Event()
            await event.wait()

    def _stop_receiver(self) -> None:
        scope = self._receiver_scope
        if scope is not None:
            self._receiver_scope = None
            scope.cancel()

    async def _stop_receiver_and_wait(self) -> None:
        self._stop_receiver()
        if self._receiving:
            done = self._receiver_done
            if done is None:
                done = self._receiver_done = anyio.Event()
            await done.wait()

    async def _run_receiver(self, scope: anyio.CancelScope) -> None:
        try:
            with scope:
                await self._receive_loop()
        finally:
            self._receiving = False
            done = self._receiver_done
            if done is not None:
                done.set()

    async def _receive_loop(self) -> None:
        raise NotImplementedError
