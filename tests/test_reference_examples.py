"""The examples of the asyncio streams reference page, run with ``asyncstreams``.

Source: /work/shared/reference/asyncio-streams-doc-zh.txt (the page users start from).
Each example's code is copied from the page with only these changes, marked ``# page:``
where they happen:

* ``asyncio.open_connection``/``asyncio.start_server`` become ``asyncstreams.…``;
* port 8888 (and 80/443) become the port of a server the test started itself;
* ``print`` is the test's recorder (the examples are built by a factory taking ``print``);
* type hints, for mypy --strict.

Every example runs on asyncio, asyncio+uvloop and trio.
"""

from __future__ import annotations

import ast
import gc
import logging
import re
import socket
import ssl
import sys
import threading
import urllib.parse
import warnings
from collections.abc import Callable, Coroutine, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest
import trustme

import asyncstreams

pytestmark = pytest.mark.anyio

#: Bound on every wait: a hang fails the test, it does not stall the run.
WAIT = 10

Print = Callable[..., None]


class Console:
    """Records what an example prints, line by line, and lets a test wait for a line."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._waiter: anyio.Event | None = None

    def print(self, *args: object, sep: str = " ") -> None:
        self.lines.append(sep.join(str(arg) for arg in args))
        if self._waiter is not None:
            self._waiter.set()
            self._waiter = None

    async def wait_for_line(self, prefix: str) -> str:
        with anyio.fail_after(WAIT):
            while True:
                for line in self.lines:
                    if line.startswith(prefix):
                        return line
                self._waiter = anyio.Event()
                await self._waiter.wait()


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[asyncstreams.StreamWriter]:
    """The writers the examples open: ``asyncstreams.open_connection`` records them."""
    writers: list[asyncstreams.StreamWriter] = []
    original = asyncstreams.open_connection

    async def recording_open_connection(
        *args: Any, **kwargs: Any
    ) -> tuple[asyncstreams.StreamReader, asyncstreams.StreamWriter]:
        reader, writer = await original(*args, **kwargs)
        writers.append(writer)
        return reader, writer

    monkeypatch.setattr(asyncstreams, "open_connection", recording_open_connection)
    return writers


def problems_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Warnings and errors logged by asyncstreams (or asyncio, e.g. a lost task exception)."""
    return [
        f"{record.name} {record.levelname}: {record.getMessage()} {record.exc_info and record.exc_info[1]!r}"
        for record in caplog.records
        if record.levelno >= logging.WARNING
        and record.name.split(".")[0] in ("asyncstreams", "asyncio")
    ]


async def check_closed_cleanly(
    writers: list[asyncstreams.StreamWriter], caplog: pytest.LogCaptureFixture
) -> None:
    """What the examples closed without ``wait_closed()`` ends closed, without errors."""
    assert writers
    for writer in writers:
        assert writer.is_closing()
        with anyio.fail_after(WAIT):
            await writer.wait_closed()
    assert problems_logged(caplog) == []


# -- the page's examples ------------------------------------------------------------------


def tcp_echo_client_example(print: Print, port: int) -> Callable[[str], Coroutine[Any, Any, None]]:
    """The page's first example: TCP echo client, closing with ``wait_closed()``."""

    # fmt: off
    async def tcp_echo_client(message: str) -> None:
        reader, writer = await asyncstreams.open_connection(  # page: asyncio.open_connection
            '127.0.0.1', port)  # page: 8888
        print(f'Send: {message!r}')
        writer.write(message.encode())
        await writer.drain()
        data = await reader.read(100)
        print(f'Received: {data.decode()!r}')
        print('Close the connection')
        writer.close()
        await writer.wait_closed()
    # fmt: on

    return tcp_echo_client


def tcp_echo_client_no_wait_closed_example(
    print: Print, port: int
) -> Callable[[str], Coroutine[Any, Any, None]]:
    """The page's "TCP echo client using streams" example: ``close()`` without ``wait_closed()``."""

    # fmt: off
    async def tcp_echo_client(message: str) -> None:
        reader, writer = await asyncstreams.open_connection(  # page: asyncio.open_connection
            '127.0.0.1', port)  # page: 8888
        print(f'Send: {message!r}')
        writer.write(message.encode())
        await writer.drain()
        data = await reader.read(100)
        print(f'Received: {data.decode()!r}')
        print('Close the connection')
        writer.close()
    # fmt: on

    return tcp_echo_client


def tcp_echo_server_example(
    print: Print, port: int, servers: list[asyncstreams.Server]
) -> Callable[[], Coroutine[Any, Any, None]]:
    """The page's "TCP echo server using streams" example; *servers* is a test hook."""

    # fmt: off
    async def handle_echo(reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter) -> None:
        data = await reader.read(100)
        message = data.decode()
        addr = writer.get_extra_info('peername')
        print(f"Received {message!r} from {addr!r}")
        print(f"Send: {message!r}")
        writer.write(data)
        await writer.drain()
        print("Close the connection")
        writer.close()

    async def main() -> None:
        server = await asyncstreams.start_server(  # page: asyncio.start_server
            handle_echo, '127.0.0.1', port)  # page: 8888
        servers.append(server)  # not on the page: lets the test inspect the server
        addrs = ', '.join(str(sock.getsockname()) for sock in server.sockets)
        print(f'Serving on {addrs}')
        async with server:
            await server.serve_forever()
    # fmt: on

    return main


def print_http_headers_example(print: Print) -> Callable[[str], Coroutine[Any, Any, None]]:
    """The page's "Get HTTP headers" example.

    ``url: Any`` and ``line: Any`` because the page rebinds a str to a SplitResult and
    bytes to a str, which mypy would refuse.
    """

    # fmt: off
    async def print_http_headers(url: Any) -> None:
        line: Any  # not on the page: see above
        url = urllib.parse.urlsplit(url)
        if url.scheme == 'https':
            reader, writer = await asyncstreams.open_connection(  # page: asyncio.open_connection
                url.hostname, url.port or 443, ssl=True)  # page: 443
        else:
            reader, writer = await asyncstreams.open_connection(  # page: asyncio.open_connection
                url.hostname, url.port or 80)  # page: 80
        query = (
            f"HEAD {url.path or '/'} HTTP/1.0\r\n"
            f"Host: {url.hostname}\r\n"
            f"\r\n"
        )
        writer.write(query.encode('latin-1'))
        while True:
            line = await reader.readline()
            if not line:
                break
            line = line.decode('latin1').rstrip()
            if line:
                print(f'HTTP header> {line}')
        # Ignore the body, close the socket
        writer.close()
    # fmt: on

    return print_http_headers


async def call_soon(fn: Callable[..., object], *args: Any) -> None:
    """Run ``fn(*args)`` once the caller next yields: what ``loop.call_soon`` does."""
    fn(*args)


def wait_for_data_example(print: Print) -> Callable[[], Coroutine[Any, Any, None]]:
    """The page's "Register an open socket to wait for data using streams" example.

    The page calls ``loop.call_soon(wsock.send, 'abc'.encode())`` on the loop from
    ``asyncio.get_running_loop()``. trio has no loop object, so the backend-neutral
    equivalent is a task started with ``start_soon`` in a task group: like a
    ``call_soon`` callback it runs once the example yields (in ``reader.read()``), not
    before.
    """

    # fmt: off
    async def wait_for_data() -> None:
        # page: loop = asyncio.get_running_loop() -- no loop on trio: see the task group below.

        # Create a pair of connected sockets.
        rsock, wsock = socket.socketpair()

        # Register the open socket to wait for data.
        reader, writer = await asyncstreams.open_connection(sock=rsock)  # page: asyncio.

        async with anyio.create_task_group() as tg:  # not on the page: stands in for the loop
            # Simulate the reception of data from the network
            # page: loop.call_soon(wsock.send, 'abc'.encode())
            tg.start_soon(call_soon, wsock.send, 'abc'.encode())  # noqa: UP012

            # Wait for data
            data = await reader.read(100)

        # Got data, we are done: close the socket
        print("Received:", data.decode())
        writer.close()

        # Close the second socket
        wsock.close()
    # fmt: on

    return wait_for_data


# -- TCP echo client and server -----------------------------------------------------------


async def test_tcp_echo_server_and_client(caplog: pytest.LogCaptureFixture) -> None:
    server_console, client_console = Console(), Console()
    servers: list[asyncstreams.Server] = []
    main = tcp_echo_server_example(server_console.print, 0, servers)

    async with anyio.create_task_group() as tg:
        tg.start_soon(main)
        serving = await server_console.wait_for_line("Serving on ")
        address = ast.literal_eval(serving.removeprefix("Serving on "))
        assert address[0] == "127.0.0.1"
        port = address[1]
        assert isinstance(port, int)
        assert port != 0
        (server,) = servers
        assert server.is_serving()

        tcp_echo_client = tcp_echo_client_example(client_console.print, port)
        with anyio.fail_after(WAIT):
            await tcp_echo_client("Hello World!")
        await server_console.wait_for_line("Close the connection")

        # The page's main() never returns by itself: it is cancelled, like ^C would.
        tg.cancel_scope.cancel()

    assert client_console.lines == [
        "Send: 'Hello World!'",
        "Received: 'Hello World!'",
        "Close the connection",
    ]
    assert server_console.lines[0] == f"Serving on {('127.0.0.1', port)}"
    assert re.fullmatch(
        r"Received 'Hello World!' from \('127\.0\.0\.1', \d+\)", server_console.lines[1]
    ), server_console.lines
    assert server_console.lines[2:] == ["Send: 'Hello World!'", "Close the connection"]

    # Cancelling serve_forever() inside ``async with server`` closed the server.
    assert not server.is_serving()
    assert server.sockets == ()
    with anyio.fail_after(WAIT):
        await server.wait_closed()
    with pytest.raises(ConnectionRefusedError), anyio.fail_after(WAIT):
        await asyncstreams.open_connection("127.0.0.1", port)
    assert problems_logged(caplog) == []


async def test_tcp_echo_server_serves_several_clients() -> None:
    server_console = Console()
    servers: list[asyncstreams.Server] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(tcp_echo_server_example(server_console.print, 0, servers))
        serving = await server_console.wait_for_line("Serving on ")
        port = ast.literal_eval(serving.removeprefix("Serving on "))[1]
        consoles = [Console() for _ in range(5)]
        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as clients:
                for i, console in enumerate(consoles):
                    client = tcp_echo_client_example(console.print, port)
                    clients.start_soon(client, f"Hello {i}!")
        tg.cancel_scope.cancel()
    for i, console in enumerate(consoles):
        assert console.lines == [
            f"Send: 'Hello {i}!'",
            f"Received: 'Hello {i}!'",
            "Close the connection",
        ]
    assert server_console.lines.count("Close the connection") == 5
    assert servers[0].sockets == ()


# -- the echo client that does not call wait_closed() -------------------------------------


async def test_tcp_echo_client_without_wait_closed(
    opened: list[asyncstreams.StreamWriter], caplog: pytest.LogCaptureFixture
) -> None:
    """The connection closed by ``writer.close()`` alone really closes: the server sees EOF."""
    after_echo: list[bytes] = []
    done = anyio.Event()

    async def echo_then_read_to_eof(
        reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter
    ) -> None:
        data = await reader.read(100)
        writer.write(data)
        await writer.drain()
        after_echo.append(await reader.read())  # b"" once the client has closed
        writer.close()
        await writer.wait_closed()
        done.set()

    console = Console()
    server = await asyncstreams.start_server(echo_then_read_to_eof, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        tcp_echo_client = tcp_echo_client_no_wait_closed_example(console.print, port)
        with anyio.fail_after(WAIT):
            await tcp_echo_client("Hello World!")
            await done.wait()
    assert console.lines == [
        "Send: 'Hello World!'",
        "Received: 'Hello World!'",
        "Close the connection",
    ]
    assert after_echo == [b""]
    await check_closed_cleanly(opened, caplog)


class EchoThread:
    """A blocking echo server in a thread, for running an example as the page runs it."""

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


def test_tcp_echo_client_without_wait_closed_run_as_on_the_page(
    anyio_backend: tuple[str, dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``asyncio.run(tcp_echo_client(...))`` as on the page: the run ends right after ``close()``.

    Nothing may leak or warn once the event loop is gone: the connection is closed (the
    peer sees EOF without the garbage collector's help) and no ResourceWarning or
    unraisable exception shows up, even after a full garbage collection.
    """
    unraisable: list[str] = []

    def hook(info: Any) -> None:
        unraisable.append(f"{info.exc_type.__name__}: {info.exc_value} ({info.object!r})")

    monkeypatch.setattr(sys, "unraisablehook", hook)
    backend, options = anyio_backend
    server = EchoThread()
    console = Console()
    tcp_echo_client = tcp_echo_client_no_wait_closed_example(console.print, server.port)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        anyio.run(tcp_echo_client, "Hello World!", backend=backend, backend_options=options)
        server.join()
        gc.collect()
    assert console.lines == [
        "Send: 'Hello World!'",
        "Received: 'Hello World!'",
        "Close the connection",
    ]
    assert server.received == b"Hello World!"
    assert server.saw_eof
    assert [str(w.message) for w in caught] == []
    assert unraisable == []
    assert problems_logged(caplog) == []


# -- Get HTTP headers ---------------------------------------------------------------------


class LocalHTTPServer:
    """http.server on 127.0.0.1, port 0, in a thread; records the requests it gets."""

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        self.requests: list[tuple[str, str | None]] = []
        requests = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:
                requests.append((self.requestline, self.headers.get("Host")))
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=latin-1")
                self.send_header("Content-Length", "1234")
                self.send_header("X-Requested-Path", self.path)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if context is not None:
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port: int = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(WAIT)


@pytest.fixture
def http_server() -> Iterator[LocalHTTPServer]:
    server = LocalHTTPServer()
    yield server
    server.stop()


@pytest.fixture
def https_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalHTTPServer]:
    """An HTTPS server whose CA the default context trusts (``ssl=True`` in the example)."""
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    # ssl.create_default_context() loads the default verify paths, which honour this.
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server = LocalHTTPServer(context)
    yield server
    server.stop()


def check_header_lines(lines: list[str], path: str) -> None:
    assert lines, "no header printed"
    assert all(line.startswith("HTTP header> ") for line in lines), lines
    assert lines[0] == "HTTP header> HTTP/1.0 200 OK"
    headers = dict(line.removeprefix("HTTP header> ").split(": ", 1) for line in lines[1:])
    assert headers["Content-Type"] == "text/html; charset=latin-1"
    assert headers["Content-Length"] == "1234"
    assert headers["X-Requested-Path"] == path
    assert headers["Server"].startswith("BaseHTTP/")
    assert "Date" in headers
    assert len(lines) == 6, lines


async def test_print_http_headers(
    http_server: LocalHTTPServer,
    opened: list[asyncstreams.StreamWriter],
    caplog: pytest.LogCaptureFixture,
) -> None:
    console = Console()
    print_http_headers = print_http_headers_example(console.print)
    with anyio.fail_after(WAIT):
        await print_http_headers(f"http://127.0.0.1:{http_server.port}/path/page.html")
    check_header_lines(console.lines, "/path/page.html")
    assert http_server.requests == [("HEAD /path/page.html HTTP/1.0", "127.0.0.1")]
    await check_closed_cleanly(opened, caplog)


async def test_print_http_headers_empty_path(
    http_server: LocalHTTPServer,
    opened: list[asyncstreams.StreamWriter],
    caplog: pytest.LogCaptureFixture,
) -> None:
    console = Console()
    print_http_headers = print_http_headers_example(console.print)
    with anyio.fail_after(WAIT):
        await print_http_headers(f"http://127.0.0.1:{http_server.port}")
    check_header_lines(console.lines, "/")
    assert http_server.requests == [("HEAD / HTTP/1.0", "127.0.0.1")]
    await check_closed_cleanly(opened, caplog)


async def test_print_http_headers_https(
    https_server: LocalHTTPServer,
    opened: list[asyncstreams.StreamWriter],
    caplog: pytest.LogCaptureFixture,
) -> None:
    console = Console()
    print_http_headers = print_http_headers_example(console.print)
    with anyio.fail_after(WAIT):
        await print_http_headers(f"https://127.0.0.1:{https_server.port}/path/page.html")
    check_header_lines(console.lines, "/path/page.html")
    assert https_server.requests == [("HEAD /path/page.html HTTP/1.0", "127.0.0.1")]
    await check_closed_cleanly(opened, caplog)


# -- Register an open socket to wait for data ---------------------------------------------


async def test_wait_for_data(
    opened: list[asyncstreams.StreamWriter], caplog: pytest.LogCaptureFixture
) -> None:
    console = Console()
    wait_for_data = wait_for_data_example(console.print)
    with anyio.fail_after(WAIT):
        await wait_for_data()
    assert console.lines == ["Received: abc"]
    (writer,) = opened
    rsock = writer.get_extra_info("socket")
    await check_closed_cleanly(opened, caplog)
    # The writer owned rsock (the page: "transfers ownership of the socket"): closed now.
    assert rsock.fileno() == -1
