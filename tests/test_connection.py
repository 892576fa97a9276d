"""open_connection / open_unix_connection against asyncio 3.13's semantics.

The peers here are plain blocking sockets served by threads, so these tests exercise the
client side alone. Every expectation was checked against CPython 3.13's asyncio
(``base_events.create_connection``, ``unix_events.create_unix_connection``).
"""

from __future__ import annotations

import errno
import os
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import asyncstreams

pytestmark = pytest.mark.anyio


class RawEchoServer:
    """A blocking listener on a thread: every accepted connection is echoed until EOF.

    ``accepted`` records ``(conn.getsockname(), conn.getpeername())`` of each accepted
    socket, so the client's ``get_extra_info`` can be compared with the server's view.
    """

    def __init__(self, family: socket.AddressFamily, address: Any) -> None:
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.bind(address)
        self.listener.listen(16)
        self.listener.settimeout(0.05)
        self.address: Any = self.listener.getsockname()
        self.accepted: list[tuple[Any, Any]] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def port(self) -> int:
        port: int = self.address[1]
        return port

    def __enter__(self) -> RawEchoServer:
        self._spawn(self._accept_loop)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in list(self._threads):
            thread.join(10)
        self.listener.close()

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.append((conn.getsockname(), conn.getpeername()))
            self._spawn(self._echo, conn)

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        conn.settimeout(10)
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
            except OSError:
                pass


@pytest.fixture
def tcp_echo() -> Iterator[RawEchoServer]:
    with RawEchoServer(socket.AF_INET, ("127.0.0.1", 0)) as server:
        yield server


@pytest.fixture
def tcp6_echo() -> Iterator[RawEchoServer]:
    with RawEchoServer(socket.AF_INET6, ("::1", 0)) as server:
        yield server


@pytest.fixture
def unix_echo(tmp_path: Path) -> Iterator[RawEchoServer]:
    with RawEchoServer(socket.AF_UNIX, str(tmp_path / "echo.sock")) as server:
        yield server


async def close_writer(writer: asyncstreams.StreamWriter) -> None:
    writer.close()
    with anyio.fail_after(10):
        await writer.wait_closed()


async def round_trip(
    reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter, payload: bytes
) -> bytes:
    writer.write(payload)
    await writer.drain()
    with anyio.fail_after(10):
        return await reader.readexactly(len(payload))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# --------------------------------------------------------------------------- round trips


async def test_tcp_echo_round_trip(tcp_echo: RawEchoServer) -> None:
    with anyio.fail_after(10):
        reader, writer = await asyncstreams.open_connection("127.0.0.1", tcp_echo.port)
    try:
        assert await round_trip(reader, writer, b"hello\n") == b"hello\n"
        writer.writelines([b"a", bytearray(b"b"), memoryview(b"c\n")])
        await writer.drain()
        with anyio.fail_after(10):
            assert await reader.readline() == b"abc\n"
        big = os.urandom(1 << 20)
        writer.write(big)
        writer.write_eof()
        with anyio.fail_after(10):
            assert await reader.read() == big
        assert reader.at_eof()
    finally:
        await close_writer(writer)
    assert writer.is_closing()


async def test_tcp_port_as_string(tcp_echo: RawEchoServer) -> None:
    # asyncio passes port straight to getaddrinfo, which accepts a numeric string.
    with anyio.fail_after(10):
        reader, writer = await asyncstreams.open_connection("127.0.0.1", str(tcp_echo.port))
    try:
        assert await round_trip(reader, writer, b"str-port") == b"str-port"
    finally:
        await close_writer(writer)


async def test_tcp_localhost_name(tcp_echo: RawEchoServer) -> None:
    with anyio.fail_after(10):
        reader, writer = await asyncstreams.open_connection("localhost", tcp_echo.port)
    try:
        assert await round_trip(reader, writer, b"by-name") == b"by-name"
        assert writer.get_extra_info("peername") == ("127.0.0.1", tcp_echo.port)
    finally:
        await close_writer(writer)


async def test_tcp_ipv6_round_trip(tcp6_echo: RawEchoServer) -> None:
    with anyio.fail_after(10):
        reader, writer = await asyncstreams.open_connection("::1", tcp6_echo.port)
    try:
        assert await round_trip(reader, writer, b"six") == b"six"
        peername = writer.get_extra_info("peername")
        assert peername[:2] == ("::1", tcp6_echo.port)
        assert len(peername) == 4
    finally:
        await close_writer(writer)


async def test_open_connection_to_asyncstreams_server() -> None:
    async def echo(reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncstreams.start_server(echo, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        with anyio.fail_after(10):
            reader, writer = await asyncstreams.open_connection("127.0.0.1", port)
        try:
            assert await round_trip(reader, writer, b"ping") == b"ping"
            writer.write_eof()
            with anyio.fail_after(10):
                assert await reader.read() == b""
        finally:
            await close_writer(writer)


async def test_unix_echo_round_trip(unix_echo: RawEchoServer) -> None:
    with anyio.fail_after(10):
        reader, writer = await asyncstreams.open_unix_connection(unix_echo.address)
    try:
        assert await round_trip(reader, writer, b"unix\n") == b"unix\n"
        assert writer.can_write_eof()
        writer.write(b"tail")
        writer.write_eof()
        with anyio.fail_after(10):
            assert await reader.read() == b"tail"
    finally:
        await close_writer(writer)


async def test_unix_path_like(unix_echo: RawEchoServer) -> None:
    # create_unix_connection does os.fspath(path): a pathlib.Path is accepted.
    with anyio.fail_after(10):
        reader, writer = await asyncstreams.open_unix_connection(Path(unix_echo.address))
    try:
        assert await round_trip(reader, writer, b"path") == b"path"
    finally:
        await close_writer(writer)


# --------------------------------------------------------------------------- parameters


async def test_family_inet_selects_ipv4(tcp_echo: RawEchoServer) -> None:
    with anyio.fail_after(10):
        reader, writer = await asyncstreams.open_connection(
            "localhost", tcp_echo.port, family=socket.AF_INET
        )
    try:
        assert await round_trip(reader, writer, b"v4") == b"v4"
        assert writer.get_extra_info("socket").family == socket.AF_INET
        assert writer.get_extra_info("peername") == ("127.0.0.1", tcp_echo.port)
    finally:
        await close_writer(writer)


async def test_family_inet6(tcp6_echo: RawEchoServer) -> None:
    with anyio.fail_after(10):
        reader, writer = await asyncstreams.open_connection(
            "::1", tcp6_echo.port, family=socket.AF_INET6
        )
    try:
        assert await round_trip(reader, writer, b"v6") == b"v6"
        assert writer.get_extra_info("socket").family == socket.AF_INET6
    finally:
        await close_writer(writer)


async def test_family_mismatch_is_gaierror(tcp6_echo: RawEchoServer) -> None:
    # getaddrinfo('::1', port, AF_INET) fails: asyncio raises the gaierror
    # (EAI_ADDRFAMILY, "Address family for hostname not supported").
    with anyio.fail_after(10), pytest.raises(socket.gaierror):
        await asyncstreams.open_connection("::1", tcp6_echo.port, family=socket.AF_INET)


async def test_proto_and_flags_are_passed_to_getaddrinfo(tcp_echo: RawEchoServer) -> None:
    with anyio.fail_after(10):
        reader, writer = await asyncstreams.open_connection(
            "127.0.0.1",
            tcp_echo.port,
            proto=socket.IPPROTO_TCP,
            flags=socket.AI_NUMERICHOST,
        )
    try:
        assert await round_trip(reader, writer, b"flags") == b"flags"
    finally:
        await close_writer(writer)
    # AI_NUMERICHOST forbids name resolution: 'localhost' is then a gaierror.
    with anyio.fail_after(10), pytest.raises(socket.gaierror):
        await asyncstreams.open_connection("localhost", tcp_echo.port, flags=socket.AI_NUMERICHOST)


async def test_local_addr_any_port(tcp_echo: RawEchoServer) -> None:
    with anyio.fail_after(10):
        reader, writer = await asyncstreams.open_connection(
            "127.0.0.1", tcp_echo.port, local_addr=("127.0.0.1", 0)
        )
    try:
        assert await round_trip(reader, writer, b"la") == b"la"
        sockname = writer.get_extra_info("sockname")
        assert sockname[0] == "127.0.0.1"
        assert sockname[1] != 0
        # The server saw the connection come from exactly that address.
        assert any(peer == sockname for _, peer in tcp_echo.accepted)
    finally:
        await close_writer(writer)


async def test_local_addr_with_port(tcp_echo: RawEchoServer) -> None:
    port = free_port()
    with anyio.fail_after(10):
        reader, writer = await asyncstreams.open_connection(
            "127.0.0.1", tcp_echo.port, local_addr=("127.0.0.1", port)
        )
    try:
        assert await round_trip(reader, writer, b"lp") == b"lp"
        assert writer.get_extra_info("sockname") == ("127.0.0.1", port)
        assert any(peer == ("127.0.0.1", port) for _, peer in tcp_echo.accepted)
    finally:
        await close_writer(writer)


async def test_local_addr_family_mismatch_is_oserror(tcp_echo: RawEchoServer) -> None:
    # asyncio: OSError('no matching local address with family=AF_INET found').
    with anyio.fail_after(10), pytest.raises(OSError) as excinfo:
        await asyncstreams.open_connection("127.0.0.1", tcp_echo.port, local_addr=("::1", 0))
    assert not isinstance(excinfo.value, ConnectionRefusedError)


async def test_sock_connected_socket(tcp_echo: RawEchoServer) -> None:
    sock = socket.create_connection(("127.0.0.1", tcp_echo.port), timeout=10)
    try:
        with anyio.fail_after(10):
            reader, writer = await asyncstreams.open_connection(sock=sock)
    except BaseException:
        sock.close()
        raise
    try:
        assert await round_trip(reader, writer, b"sock") == b"sock"
        assert writer.get_extra_info("peername") == sock.getpeername()
        assert writer.get_extra_info("sockname") == sock.getsockname()
        assert writer.get_extra_info("socket").fileno() == sock.fileno()
    finally:
        await close_writer(writer)
    # The transport owns the socket: closing the writer closed it (asyncio and uvloop).
    assert sock.fileno() == -1


@pytest.mark.parametrize("n", [1, 1 << 14, 1 << 16, 1 << 20, 1 << 40])
async def test_read_n_waiting_for_data_whatever_n(tcp_echo: RawEchoServer, n: int) -> None:
    # A big read(n) waiting on an empty buffer gets bytes received for it alone; n is
    # a bound, never an allocation.
    payload = os.urandom(200_000)
    with anyio.fail_after(10):
        reader, writer = await asyncstreams.open_connection("127.0.0.1", tcp_echo.port)
    try:
        got = bytearray()

        async def read_all() -> None:
            while len(got) < len(payload):
                chunk = await reader.read(n)
                assert 1 <= len(chunk) <= n
                got.extend(chunk)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(read_all)
                await anyio.wait_all_tasks_blocked()
                writer.write(payload)
                await writer.drain()
        assert got == payload
    finally:
        await close_writer(writer)


def tcp_option(writer: asyncstreams.StreamWriter, option: int) -> int:
    value: int = writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, option)
    return value


def nodelay(writer: asyncstreams.StreamWriter) -> int:
    return tcp_option(writer, socket.TCP_NODELAY)


async def tcp_option_at_both_ends(option: int) -> tuple[int, list[int]]:
    """The option's value on an opened connection, and on the server's end of it."""
    accepted: list[int] = []

    async def handler(reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter) -> None:
        accepted.append(tcp_option(writer, option))
        writer.close()

    server = await asyncstreams.start_server(handler, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        with anyio.fail_after(10):
            reader, writer = await asyncstreams.open_connection("127.0.0.1", port)
            try:
                opened = tcp_option(writer, option)
                assert await reader.read() == b""
            finally:
                await close_writer(writer)
    return opened, accepted


async def test_tcp_nodelay_at_both_ends() -> None:
    # asyncio turns Nagle's algorithm off on every TCP connection it opens or accepts.
    opened, accepted = await tcp_option_at_both_ends(socket.TCP_NODELAY)
    assert opened == 1
    assert accepted == [1]


@pytest.mark.skipif(not hasattr(socket, "TCP_NOTSENT_LOWAT"), reason="no TCP_NOTSENT_LOWAT")
async def test_tcp_notsent_lowat_follows_the_backend(backend_id: str) -> None:
    # trio's SocketStream sets TCP_NOTSENT_LOWAT to 16 KiB on every TCP connection;
    # asyncio and uvloop leave the system's default (0: no limit).
    opened, accepted = await tcp_option_at_both_ends(socket.TCP_NOTSENT_LOWAT)
    expected = 2**14 if backend_id == "trio" else 0
    assert (opened, accepted) == (expected, [expected])


@pytest.mark.parametrize("proto", [0, socket.IPPROTO_TCP])
async def test_tcp_nodelay_with_sock_follows_the_loop(
    tcp_echo: RawEchoServer, proto: int, backend_id: str
) -> None:
    # asyncio leaves a socket made with proto=0 as it is; uvloop turns Nagle off on any
    # TCP socket. On trio, asyncstreams follows asyncio.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, proto)
    try:
        sock.settimeout(10)
        sock.connect(("127.0.0.1", tcp_echo.port))
        with anyio.fail_after(10):
            _reader, writer = await asyncstreams.open_connection(sock=sock)
    except BaseException:
        sock.close()
        raise
    try:
        expected = 1 if proto or backend_id == "asyncio+uvloop" else 0
        assert nodelay(writer) == expected
    finally:
        await close_writer(writer)


async def test_unix_sock_connected_socket(unix_echo: RawEchoServer) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(unix_echo.address)
    try:
        with anyio.fail_after(10):
            reader, writer = await asyncstreams.open_unix_connection(sock=sock)
    except BaseException:
        sock.close()
        raise
    try:
        assert await round_trip(reader, writer, b"usock") == b"usock"
        assert writer.get_extra_info("peername") == unix_echo.address
    finally:
        await close_writer(writer)
    assert sock.fileno() == -1


async def test_unix_sock_from_socketpair() -> None:
    left, right = socket.socketpair()
    right.settimeout(10)
    try:
        with anyio.fail_after(10):
            reader, writer = await asyncstreams.open_unix_connection(sock=left)
    except BaseException:
        left.close()
        right.close()
        raise
    with right:
        try:
            writer.write(b"to-right")
            await writer.drain()
            assert await anyio.to_thread.run_sync(right.recv, 100) == b"to-right"
            await anyio.to_thread.run_sync(right.sendall, b"to-left")
            with anyio.fail_after(10):
                assert await reader.readexactly(7) == b"to-left"
        finally:
            await close_writer(writer)


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"happy_eyeballs_delay": 0.25}, id="delay"),
        pytest.param({"happy_eyeballs_delay": 0.25, "interleave": 1}, id="delay+interleave"),
        pytest.param({"interleave": 2}, id="interleave"),
    ],
)
async def test_happy_eyeballs_parameters(tcp_echo: RawEchoServer, kwargs: dict[str, Any]) -> None:
    for host in ("127.0.0.1", "localhost"):
        with anyio.fail_after(10):
            reader, writer = await asyncstreams.open_connection(host, tcp_echo.port, **kwargs)
        try:
            assert await round_trip(reader, writer, b"he") == b"he"
            assert writer.get_extra_info("peername") == ("127.0.0.1", tcp_echo.port)
        finally:
            await close_writer(writer)


async def test_happy_eyeballs_refused_is_connection_refused() -> None:
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        port = reserved.getsockname()[1]
        with anyio.fail_after(10), pytest.raises(ConnectionRefusedError):
            await asyncstreams.open_connection("127.0.0.1", port, happy_eyeballs_delay=0.1)


async def test_limit_is_the_reader_limit(tcp_echo: RawEchoServer) -> None:
    with anyio.fail_after(10):
        reader, writer = await asyncstreams.open_connection("127.0.0.1", tcp_echo.port, limit=10)
    try:
        writer.write(b"short\n")
        with anyio.fail_after(10):
            assert await reader.readline() == b"short\n"
        writer.write(b"x" * 30 + b"\n")
        await writer.drain()
        # StreamReader.readline turns LimitOverrunError into ValueError.
        with anyio.fail_after(10), pytest.raises(ValueError):
            await reader.readline()
    finally:
        await close_writer(writer)


async def test_default_limit_is_64k(tcp_echo: RawEchoServer) -> None:
    with anyio.fail_after(10):
        reader, writer = await asyncstreams.open_connection("127.0.0.1", tcp_echo.port)
    try:
        line = b"y" * 60_000 + b"\n"
        writer.write(line)
        with anyio.fail_after(10):
            assert await reader.readline() == line
        writer.write(b"z" * 70_000 + b"\n")
        with anyio.fail_after(10), pytest.raises(ValueError):
            await reader.readline()
    finally:
        await close_writer(writer)


async def test_unix_limit(unix_echo: RawEchoServer) -> None:
    with anyio.fail_after(10):
        reader, writer = await asyncstreams.open_unix_connection(unix_echo.address, limit=4)
    try:
        writer.write(b"abcdefgh\n")
        with anyio.fail_after(10), pytest.raises(ValueError):
            await reader.readline()
    finally:
        await close_writer(writer)


@pytest.mark.parametrize("limit", [0, -1])
async def test_non_positive_limit_is_value_error(tcp_echo: RawEchoServer, limit: int) -> None:
    # StreamReader(limit<=0) raises ValueError('Limit cannot be <= 0').
    with anyio.fail_after(10), pytest.raises(ValueError, match="Limit cannot be <= 0"):
        await asyncstreams.open_connection("127.0.0.1", tcp_echo.port, limit=limit)


# --------------------------------------------------------------------------- errors


async def test_refused() -> None:
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))
        port = reserved.getsockname()[1]
        with anyio.fail_after(10), pytest.raises(ConnectionRefusedError) as excinfo:
            await asyncstreams.open_connection("127.0.0.1", port)
    assert excinfo.value.errno == errno.ECONNREFUSED


async def test_bad_hostname_is_gaierror() -> None:
    with anyio.fail_after(30), pytest.raises(socket.gaierror):
        await asyncstreams.open_connection("nonexistent.invalid", 80)


async def test_unix_missing_path_is_file_not_found(tmp_path: Path) -> None:
    with anyio.fail_after(10), pytest.raises(FileNotFoundError):
        await asyncstreams.open_unix_connection(tmp_path / "missing.sock")


async def test_unix_stale_socket_file_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "stale.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(path)  # leaves the file behind, with nobody listening
    with anyio.fail_after(10), pytest.raises(ConnectionRefusedError):
        await asyncstreams.open_unix_connection(path)


TCP_VALUE_ERRORS: list[Any] = [
    pytest.param(
        {"host": "127.0.0.1", "port": 1, "sock": "tcp"},
        "host/port and sock can not be specified at the same time",
        id="host+port+sock",
    ),
    pytest.param(
        {"port": 1, "sock": "tcp"},
        "host/port and sock can not be specified at the same time",
        id="port+sock",
    ),
    pytest.param(
        {"host": "127.0.0.1", "sock": "tcp"},
        "host/port and sock can not be specified at the same time",
        id="host+sock",
    ),
    pytest.param({}, "host and port was not specified and no sock specified", id="nothing"),
    pytest.param(
        {"host": "127.0.0.1", "port": 1, "server_hostname": "example.com"},
        "server_hostname is only meaningful with ssl",
        id="server_hostname-without-ssl",
    ),
    pytest.param(
        {"host": "127.0.0.1", "port": 1, "ssl_handshake_timeout": 1.0},
        "ssl_handshake_timeout is only meaningful with ssl",
        id="handshake-timeout-without-ssl",
    ),
    pytest.param(
        {"host": "127.0.0.1", "port": 1, "ssl_shutdown_timeout": 1.0},
        "ssl_shutdown_timeout is only meaningful with ssl",
        id="shutdown-timeout-without-ssl",
    ),
    pytest.param(
        {"sock": "tcp", "ssl": True},
        "You must set server_hostname when using ssl without a host",
        id="ssl-without-host",
    ),
    pytest.param(
        {"sock": "udp"},
        "A Stream Socket was expected, got <socket.socket",
        id="datagram-sock",
    ),
]


@pytest.mark.parametrize(("kwargs", "message"), TCP_VALUE_ERRORS)
async def test_open_connection_value_errors(kwargs: dict[str, Any], message: str) -> None:
    kwargs = dict(kwargs)
    sock = None
    if kwargs.get("sock") == "tcp":
        sock = kwargs["sock"] = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    elif kwargs.get("sock") == "udp":
        sock = kwargs["sock"] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        with anyio.fail_after(10), pytest.raises(ValueError, match=re.escape(message)):
            await asyncstreams.open_connection(**kwargs)
        # A rejected call leaves the caller's socket alone (asyncio does not close it).
        if sock is not None:
            assert sock.fileno() != -1
    finally:
        if sock is not None:
            sock.close()


UNIX_VALUE_ERRORS: list[Any] = [
    pytest.param(
        {"path": "PATH", "sock": "unix"},
        "path and sock can not be specified at the same time",
        id="path+sock",
    ),
    pytest.param({}, "no path and sock were specified", id="nothing"),
    pytest.param(
        {"sock": "tcp"},
        "A UNIX Domain Stream Socket was expected, got <socket.socket",
        id="inet-sock",
    ),
    pytest.param(
        {"sock": "unix-dgram"},
        "A UNIX Domain Stream Socket was expected, got <socket.socket",
        id="unix-datagram-sock",
    ),
    pytest.param(
        {"path": "PATH", "server_hostname": "example.com"},
        "server_hostname is only meaningful with ssl",
        id="server_hostname-without-ssl",
    ),
    pytest.param(
        {"path": "PATH", "ssl_handshake_timeout": 1.0},
        "ssl_handshake_timeout is only meaningful with ssl",
        id="handshake-timeout-without-ssl",
    ),
    pytest.param(
        {"path": "PATH", "ssl_shutdown_timeout": 1.0},
        "ssl_shutdown_timeout is only meaningful with ssl",
        id="shutdown-timeout-without-ssl",
    ),
    pytest.param(
        {"path": "PATH", "ssl": True},
        # asyncio's wording (uvloop says 'You must set server_hostname when using ssl
        # without a host' here; we promise asyncio's).
        "you have to pass server_hostname when using ssl",
        id="ssl-without-server_hostname",
    ),
]


@pytest.mark.parametrize(("kwargs", "message"), UNIX_VALUE_ERRORS)
async def test_open_unix_connection_value_errors(
    unix_echo: RawEchoServer, kwargs: dict[str, Any], message: str
) -> None:
    kwargs = dict(kwargs)
    if kwargs.get("path") == "PATH":
        kwargs["path"] = unix_echo.address
    sock = None
    kinds = {
        "unix": (socket.AF_UNIX, socket.SOCK_STREAM),
        "unix-dgram": (socket.AF_UNIX, socket.SOCK_DGRAM),
        "tcp": (socket.AF_INET, socket.SOCK_STREAM),
    }
    if "sock" in kwargs:
        sock = kwargs["sock"] = socket.socket(*kinds[kwargs["sock"]])
    try:
        with anyio.fail_after(10), pytest.raises(ValueError, match=re.escape(message)):
            await asyncstreams.open_unix_connection(**kwargs)
    finally:
        if sock is not None:
            sock.close()


# --------------------------------------------------------------------------- get_extra_info


async def test_tcp_extra_info_matches_raw_socket(tcp_echo: RawEchoServer) -> None:
    with anyio.fail_after(10):
        reader, writer = await asyncstreams.open_connection("127.0.0.1", tcp_echo.port)
    try:
        assert await round_trip(reader, writer, b"x") == b"x"
        sock = writer.get_extra_info("socket")
        peername = writer.get_extra_info("peername")
        sockname = writer.get_extra_info("sockname")
        assert peername == sock.getpeername() == ("127.0.0.1", tcp_echo.port)
        assert sockname == sock.getsockname()
        assert sock.family == socket.AF_INET
        assert sock.type == socket.SOCK_STREAM
        assert sock.fileno() >= 0
        # The server's accepted socket is the mirror image of ours.
        assert (peername, sockname) in tcp_echo.accepted
        assert writer.get_extra_info("sslcontext") is None
        assert writer.get_extra_info("no-such-key") is None
        assert writer.get_extra_info("no-such-key", 42) == 42
        transport = writer.transport
        assert transport.get_extra_info("peername") == peername
        assert transport.get_extra_info("sockname") == sockname
        assert transport.get_extra_info("no-such-key", "dflt") == "dflt"
    finally:
        await close_writer(writer)


async def test_extra_info_first_asked_after_close(tcp_echo: RawEchoServer) -> None:
    # As in asyncio, the addresses are those of the connection even once it is closed
    # (asyncstreams reads them from the loop's transport on first use there).
    with anyio.fail_after(10):
        reader, writer = await asyncstreams.open_connection("127.0.0.1", tcp_echo.port)
        assert await round_trip(reader, writer, b"x") == b"x"
        writer.close()
        await writer.wait_closed()
    peername = writer.get_extra_info("peername")
    sockname = writer.get_extra_info("sockname")
    assert peername == ("127.0.0.1", tcp_echo.port)
    assert sockname[0] == "127.0.0.1"
    assert sockname[1] > 0
    assert (peername, sockname) in tcp_echo.accepted
    sock = writer.get_extra_info("socket")
    assert sock is writer.get_extra_info("socket")
    assert sock.fileno() == -1
    assert f"peer={peername!r}" in repr(writer.transport)


async def test_unix_extra_info_matches_raw_socket(unix_echo: RawEchoServer) -> None:
    with anyio.fail_after(10):
        reader, writer = await asyncstreams.open_unix_connection(unix_echo.address)
    try:
        assert await round_trip(reader, writer, b"x") == b"x"
        sock = writer.get_extra_info("socket")
        assert sock.family == socket.AF_UNIX
        # asyncio: peername is the server's path, sockname the unbound client's ''.
        assert writer.get_extra_info("peername") == sock.getpeername() == unix_echo.address
        assert writer.get_extra_info("sockname") == sock.getsockname() == ""
        assert writer.get_extra_info("sslcontext") is None
        assert writer.get_extra_info("no-such-key", 7) == 7
    finally:
        await close_writer(writer)


# --------------------------------------------------------------------------- peer behaviour


async def test_peer_close_gives_eof(tcp_echo: RawEchoServer) -> None:
    with anyio.fail_after(10):
        reader, writer = await asyncstreams.open_connection("127.0.0.1", tcp_echo.port)
    try:
        writer.write(b"last words")
        writer.write_eof()  # the echo thread closes once it sees EOF
        with anyio.fail_after(10):
            assert await reader.read() == b"last words"
            assert await reader.read() == b""
        assert reader.at_eof()
    finally:
        await close_writer(writer)


async def test_many_sequential_connections(tcp_echo: RawEchoServer) -> None:
    for i in range(20):
        with anyio.fail_after(10):
            reader, writer = await asyncstreams.open_connection("127.0.0.1", tcp_echo.port)
        try:
            payload = f"conn {i}\n".encode()
            assert await round_trip(reader, writer, payload) == payload
        finally:
            await close_writer(writer)


async def test_concurrent_connections(tcp_echo: RawEchoServer) -> None:
    results: dict[int, bytes] = {}

    async def one(i: int) -> None:
        reader, writer = await asyncstreams.open_connection("127.0.0.1", tcp_echo.port)
        try:
            payload = os.urandom(10_000 + i)
            got = await round_trip(reader, writer, payload)
            results[i] = got if got == payload else b"MISMATCH"
        finally:
            await close_writer(writer)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(one, i)
    assert len(results) == 10
    assert b"MISMATCH" not in results.values()
