"""asyncio-only behaviour of asyncstreams, checked against real asyncio in the same test.

Most tests here are plain functions that run an event loop themselves
(``asyncio.run``, or ``uvloop.run`` for uvloop's loop), because what they check belongs
to the loop: its exception handler, the tasks it cancels, what ``asyncio.run`` leaves
behind. Each scenario runs once with ``asyncio.start_server``/``asyncio.open_connection``
(the reference) and once with asyncstreams, and the two must agree.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import sys
import threading
import types
import warnings
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import anyio
import pytest
import uvloop

import asyncstreams

T = TypeVar("T")

#: Bound on every wait: a hang fails the test, it does not stall the run.
WAIT = 10

#: asyncio gained the behaviour asyncstreams follows everywhere (handler errors reported
#: and their connection closed, wait_closed() waiting for clients) in 3.12; before that,
#: the written-out expectations below are the reference.
ASYNCIO_IS_REFERENCE = sys.version_info >= (3, 12)

LoopFactory = Callable[[], asyncio.AbstractEventLoop] | None

LOOPS = [
    pytest.param(None, id="asyncio"),
    pytest.param(uvloop.new_event_loop, id="asyncio+uvloop"),
]


def run(main: Callable[[], Coroutine[Any, Any, T]], loop_factory: LoopFactory) -> T:
    """``asyncio.run(main())`` on a fresh loop (uvloop's if asked), bounded in time."""

    async def bounded() -> T:
        return await asyncio.wait_for(main(), WAIT)

    return asyncio_run(bounded(), loop_factory)


def asyncio_run(main: Coroutine[Any, Any, T], loop_factory: LoopFactory) -> T:
    """``asyncio.run`` with the default loop, or its uvloop twin ``uvloop.run``."""
    if loop_factory is None:
        return asyncio.run(main)
    assert loop_factory is uvloop.new_event_loop
    result: T = uvloop.run(main)
    return result


def port_of(server: Any) -> int:
    port: int = server.sockets[0].getsockname()[1]
    return port


# -- handler exceptions go to the loop's exception handler --------------------------------


async def handler_exception_scenario(mod: types.ModuleType) -> tuple[object, ...]:
    """A handler raises: what the loop's exception handler gets, and what the client sees."""
    loop = asyncio.get_running_loop()
    contexts: list[dict[str, Any]] = []
    reported = asyncio.Event()

    def exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        contexts.append(context)
        reported.set()

    loop.set_exception_handler(exception_handler)
    writers: list[Any] = []

    async def handler(reader: Any, writer: Any) -> None:
        writers.append(writer)
        await reader.readexactly(3)
        raise ValueError("boom")

    server = await mod.start_server(handler, "127.0.0.1", 0)
    reader, writer = await mod.open_connection("127.0.0.1", port_of(server))
    writer.write(b"abc")
    await reported.wait()
    at_client = await reader.read()  # the failed handler's connection is closed
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()
    (context,) = contexts
    return (
        sorted(context),
        context["message"],
        type(context["exception"]),
        context["exception"].args,
        context["transport"] is writers[0].transport,
        at_client,
    )


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_handler_exception_reaches_loop_exception_handler(loop_factory: LoopFactory) -> None:
    expected = (
        ["exception", "message", "transport"],
        "Unhandled exception in client_connected_cb",
        ValueError,
        ("boom",),
        True,
        b"",
    )
    if ASYNCIO_IS_REFERENCE:
        assert run(lambda: handler_exception_scenario(asyncio), loop_factory) == expected
    assert run(lambda: handler_exception_scenario(asyncstreams), loop_factory) == expected


async def default_handler_scenario(mod: types.ModuleType) -> None:
    async def handler(reader: Any, writer: Any) -> None:
        await reader.readexactly(3)
        raise ValueError("boom")

    server = await mod.start_server(handler, "127.0.0.1", 0)
    reader, writer = await mod.open_connection("127.0.0.1", port_of(server))
    writer.write(b"abc")
    assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_handler_exception_logged_by_default_exception_handler(
    loop_factory: LoopFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Without a custom handler, the loop's default one logs it to the 'asyncio' logger."""
    outcomes = []
    for mod in (asyncio, asyncstreams) if ASYNCIO_IS_REFERENCE else (asyncstreams,):
        caplog.clear()
        run(lambda mod=mod: default_handler_scenario(mod), loop_factory)  # type: ignore[misc]
        outcomes.append(
            [
                (r.name, r.levelno, r.getMessage().splitlines()[0], r.exc_info and r.exc_info[1])
                for r in caplog.records
                if r.levelno >= logging.WARNING
            ]
        )
    expected = ("asyncio", logging.ERROR, "Unhandled exception in client_connected_cb")
    for records in outcomes:
        assert len(records) == 1
        name, level, message, exc = records[0]
        assert (name, level, message) == expected
        assert isinstance(exc, ValueError)


# -- serve_forever() ends with CancelledError ---------------------------------------------


def outcome(task: asyncio.Task[None]) -> str:
    if not task.done():
        return "pending"
    if task.cancelled():
        return "cancelled"
    exc = task.exception()
    return "returned" if exc is None else f"raised {exc!r}"


async def serve_forever_scenario(mod: types.ModuleType, how: str, with_client: bool) -> list[str]:
    """``server.close()`` or ``task.cancel()`` while a task awaits ``serve_forever()``."""
    connected = asyncio.Event()

    async def handler(reader: Any, writer: Any) -> None:
        connected.set()
        await reader.read()
        writer.close()
        await writer.wait_closed()

    server = await mod.start_server(handler, "127.0.0.1", 0)
    events: list[str] = []
    task = asyncio.create_task(server.serve_forever())
    await asyncio.sleep(0)
    events.append(f"serving={server.is_serving()}")
    if with_client:
        _, writer = await mod.open_connection("127.0.0.1", port_of(server))
        await connected.wait()
    if how == "close":
        server.close()
    else:
        task.cancel()
    for _ in range(20):
        await asyncio.sleep(0)
    events.append(f"after {how}(): {outcome(task)}")
    if with_client:
        writer.close()
        await writer.wait_closed()
        await asyncio.wait({task})
        events.append(f"after the client closed: {outcome(task)}")
    events.append(f"serving={server.is_serving()} sockets={len(server.sockets)}")
    await server.wait_closed()
    return events


#: What asyncio 3.13 does (default event loop). uvloop's own Server is no reference here:
#: after close(), its serve_forever() never returns.
SERVE_FOREVER_EXPECTED = {
    ("close", False): [
        "serving=True",
        "after close(): cancelled",
        "serving=False sockets=0",
    ],
    ("cancel", False): [
        "serving=True",
        "after cancel(): cancelled",
        "serving=False sockets=0",
    ],
    # serve_forever() closes the server and waits for it, clients included (3.12+).
    ("close", True): [
        "serving=True",
        "after close(): pending",
        "after the client closed: cancelled",
        "serving=False sockets=0",
    ],
    ("cancel", True): [
        "serving=True",
        "after cancel(): pending",
        "after the client closed: cancelled",
        "serving=False sockets=0",
    ],
}


@pytest.mark.parametrize("loop_factory", LOOPS)
@pytest.mark.parametrize("with_client", [False, True], ids=["idle", "client-connected"])
@pytest.mark.parametrize("how", ["close", "cancel"])
def test_serve_forever_raises_cancelled_error(
    how: str, with_client: bool, loop_factory: LoopFactory
) -> None:
    expected = SERVE_FOREVER_EXPECTED[how, with_client]
    if ASYNCIO_IS_REFERENCE:
        assert run(lambda: serve_forever_scenario(asyncio, how, with_client), None) == expected
    ours = run(lambda: serve_forever_scenario(asyncstreams, how, with_client), loop_factory)
    assert ours == expected


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_serve_forever_close_raises_cancelled_error_in_awaiting_task(
    loop_factory: LoopFactory,
) -> None:
    """The task awaiting ``serve_forever()`` sees ``asyncio.CancelledError`` itself."""

    async def main(mod: types.ModuleType) -> str:
        server = await mod.start_server(lambda r, w: None, "127.0.0.1", 0)
        seen: list[str] = []

        async def serve() -> None:
            try:
                await server.serve_forever()
            except asyncio.CancelledError:
                seen.append("CancelledError")
                raise
            seen.append("returned")

        task = asyncio.create_task(serve())
        await asyncio.sleep(0)
        server.close()
        with pytest.raises(asyncio.CancelledError):
            await task
        return seen[0]

    assert run(lambda: main(asyncio), None) == "CancelledError"
    assert run(lambda: main(asyncstreams), loop_factory) == "CancelledError"


# -- asyncio's exception classes ----------------------------------------------------------


def test_exceptions_are_asyncios() -> None:
    assert asyncstreams.IncompleteReadError is asyncio.IncompleteReadError
    assert asyncstreams.LimitOverrunError is asyncio.LimitOverrunError


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_asyncio_except_clauses_catch_asyncstreams_errors(loop_factory: LoopFactory) -> None:
    async def main() -> tuple[bytes, int]:
        rsock, wsock = socket.socketpair()
        reader, writer = await asyncstreams.open_connection(sock=rsock, limit=4)
        try:
            wsock.sendall(b"0123456789")
            with pytest.raises(asyncio.LimitOverrunError) as overrun:
                await reader.readuntil(b"\n")
            wsock.shutdown(socket.SHUT_WR)
            try:
                await reader.readexactly(20)
            except asyncio.IncompleteReadError as exc:
                return exc.partial, overrun.value.consumed
        finally:
            writer.close()
            await writer.wait_closed()
            wsock.close()
        raise AssertionError("no IncompleteReadError")

    partial, consumed = run(main, loop_factory)
    assert partial == b"0123456789"
    assert consumed > 4


# -- the page's client without wait_closed(), under asyncio.run ---------------------------


class EchoThread:
    """A blocking echo server in a thread: echoes the first message, then reads to EOF."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(WAIT)
        self.port: int = self._listener.getsockname()[1]
        self.received = b""
        self.saw_eof = False
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self._listener.accept()
            with conn:
                conn.settimeout(WAIT)
                data = conn.recv(100)
                self.received += data
                conn.sendall(data)
                while chunk := conn.recv(4096):
                    self.received += chunk
                self.saw_eof = True
        except BaseException as exc:
            self.error = exc
        finally:
            self._listener.close()

    def join(self) -> None:
        self._thread.join(WAIT + 1)
        assert not self._thread.is_alive()
        if self.error is not None:
            raise self.error


def page_client(
    open_connection: Callable[..., Awaitable[Any]], port: int, lines: list[str]
) -> Callable[[str], Coroutine[Any, Any, None]]:
    """The page's echo client that ends with ``writer.close()`` and no ``wait_closed()``."""

    async def tcp_echo_client(message: str) -> None:
        reader, writer = await open_connection("127.0.0.1", port)
        lines.append(f"Send: {message!r}")
        writer.write(message.encode())
        await writer.drain()
        data = await reader.read(100)
        lines.append(f"Received: {data.decode()!r}")
        lines.append("Close the connection")
        writer.close()

    return tcp_echo_client


@pytest.mark.parametrize("loop_factory", LOOPS)
@pytest.mark.parametrize("mod", [asyncio, asyncstreams], ids=["reference", "asyncstreams"])
def test_page_client_without_wait_closed_under_asyncio_run(
    mod: types.ModuleType,
    loop_factory: LoopFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``asyncio.run(tcp_echo_client('Hello World!'))``: closed, nothing leaks or warns."""
    unraisable: list[str] = []
    monkeypatch.setattr(
        sys, "unraisablehook", lambda info: unraisable.append(f"{info.exc_type}: {info.exc_value}")
    )
    server = EchoThread()
    lines: list[str] = []
    tcp_echo_client = page_client(mod.open_connection, server.port, lines)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio_run(tcp_echo_client("Hello World!"), loop_factory)
        server.join()
        gc.collect()
    assert lines == ["Send: 'Hello World!'", "Received: 'Hello World!'", "Close the connection"]
    assert server.received == b"Hello World!"
    assert server.saw_eof
    assert [str(w.message) for w in caught] == []
    assert unraisable == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


# -- through the anyio plugin, limited to asyncio -----------------------------------------


@pytest.fixture(params=LOOPS)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """Overrides the matrix: asyncio and asyncio+uvloop only."""
    factory = request.param
    return ("asyncio", {"loop_factory": factory} if factory else {})


@pytest.mark.anyio
async def test_handler_runs_as_an_asyncio_task(backend_id: str) -> None:
    assert backend_id.startswith("asyncio")
    tasks: list[asyncio.Task[Any] | None] = []

    async def handler(reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter) -> None:
        tasks.append(asyncio.current_task())
        writer.write(await reader.readline())
        writer.close()
        await writer.wait_closed()

    server = await asyncstreams.start_server(handler, "127.0.0.1", 0)
    async with server:
        with anyio.fail_after(WAIT):
            reader, writer = await asyncstreams.open_connection("127.0.0.1", port_of(server))
            writer.write(b"x\n")
            assert await reader.read() == b"x\n"
            writer.close()
            await writer.wait_closed()
    (task,) = tasks
    assert isinstance(task, asyncio.Task)
    assert task is not asyncio.current_task()
    assert task.done()


# -- a read cancelled after data woke it ----------------------------------------------------


async def read_cancelled_after_wake_scenario(
    mod: types.ModuleType, method: str, earlier_wait: bool
) -> tuple[object, ...]:
    """``task.cancel()`` after feed_data() woke the read but before it ran.

    Only asyncio can cancel a task whose wait has already ended (trio, and anyio's
    cancel scopes, let the woken read return). asyncstreams hands the first bytes to
    the waiting read directly; cancelled, the read must give them back. A reader that
    has waited before waits in ``readexactly()`` itself, hence *earlier_wait*.
    """
    reader = mod.StreamReader()
    if earlier_wait:
        warm_up = asyncio.ensure_future(reader.read(1))
        await asyncio.sleep(0)
        reader.feed_data(b"w")
        assert await warm_up == b"w"
    task = asyncio.ensure_future(getattr(reader, method)(4))
    await asyncio.sleep(0)  # the read is waiting
    reader.feed_data(b"abc")
    reader.feed_data(b"defgh")
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        cancelled = True
    else:
        cancelled = False
    at_eof_before = reader.at_eof()
    reader.feed_eof()
    return cancelled, at_eof_before, reader.at_eof(), await reader.read()


@pytest.mark.parametrize("loop_factory", LOOPS)
@pytest.mark.parametrize("method", ["read", "readexactly"])
@pytest.mark.parametrize("earlier_wait", [False, True])
def test_read_cancelled_after_wake_loses_nothing(
    loop_factory: LoopFactory, method: str, earlier_wait: bool
) -> None:
    def scenario(mod: types.ModuleType) -> Any:
        return read_cancelled_after_wake_scenario(mod, method, earlier_wait)

    expected = run(lambda: scenario(asyncio), loop_factory)
    assert expected == (True, False, False, b"abcdefgh")
    assert run(lambda: scenario(asyncstreams), loop_factory) == expected


# -- writes after close() ---------------------------------------------------------------


async def writes_after_close_scenario(mod: types.ModuleType) -> tuple[int, bytes]:
    """What the peer receives of writes made right after ``close()`` while the loop's
    transport still holds unsent data: each is taken and sent, in order (with
    asyncstreams, the later ones are not joined for a loop pass that may come after
    the transport has closed)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        _reader, writer = await mod.open_connection(*listener.getsockname())
        peer, _ = listener.accept()
    with peer:
        writer.write(b"x" * (8 * 1024 * 1024))
        writer.close()
        writer.write(b"a")
        writer.write(b"b")
        writer.write(b"c")
        peer.settimeout(WAIT)
        received = bytearray()
        while chunk := await asyncio.to_thread(peer.recv, 1 << 20):
            received += chunk
        await writer.wait_closed()
        return len(received), bytes(received[-3:])


@pytest.mark.parametrize("loop_factory", LOOPS)
def test_writes_right_after_close_as_the_loop_does(loop_factory: LoopFactory) -> None:
    expected = run(lambda: writes_after_close_scenario(asyncio), loop_factory)
    assert expected == (8 * 1024 * 1024 + 3, b"abc")
    assert run(lambda: writes_after_close_scenario(asyncstreams), loop_factory) == expected
