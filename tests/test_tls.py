"""TLS on every backend: ``ssl=`` on clients and servers, ``start_tls()``, verification.

Certificates come from trustme. Peers we did not write are Python's own ``ssl`` module
over blocking sockets in worker threads; asyncstreams talks to asyncstreams too.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import trustme
from _write_loop import ticks_during_write_loop

import asyncstreams

pytestmark = pytest.mark.anyio

WAIT = 20


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    return context


@pytest.fixture(scope="session")
def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(context)
    return context


Handler = Callable[[asyncstreams.StreamReader, asyncstreams.StreamWriter], Any]


@contextlib.asynccontextmanager
async def tls_server(
    handler: Handler, context: ssl.SSLContext | None, **kwargs: Any
) -> AsyncIterator[tuple[asyncstreams.Server, int]]:
    server = await asyncstreams.start_server(handler, "127.0.0.1", 0, ssl=context, **kwargs)
    try:
        yield server, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        server.abort_clients()
        with anyio.fail_after(WAIT):
            await server.wait_closed()


async def echo_lines(reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter) -> None:
    try:
        async for line in reader:
            writer.write(line)
            await writer.drain()
    finally:
        writer.close()


async def close(writer: asyncstreams.StreamWriter) -> None:
    writer.close()
    with anyio.fail_after(WAIT), contextlib.suppress(ConnectionError, ssl.SSLError):
        await writer.wait_closed()


# -- clients and servers with ssl= ------------------------------------------------------


async def test_echo_over_tls(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    async with tls_server(echo_lines, server_context) as (_, port):
        with anyio.fail_after(WAIT):
            reader, writer = await asyncstreams.open_connection(
                "localhost", port, ssl=client_context
            )
            writer.write(b"hello\n")
            await writer.drain()
            assert await reader.readline() == b"hello\n"
            ssl_object = writer.get_extra_info("ssl_object")
            assert isinstance(ssl_object, ssl.SSLObject)
            assert writer.get_extra_info("sslcontext") is client_context
            assert writer.get_extra_info("cipher") == ssl_object.cipher()
            assert writer.get_extra_info("peercert")["subjectAltName"] == (
                ("DNS", "localhost"),
                ("IP Address", "127.0.0.1"),
            )
            assert writer.get_extra_info("compression") == ssl_object.compression()
            assert writer.get_extra_info("peername")[0] == "127.0.0.1"
            assert not writer.can_write_eof()
            with pytest.raises(NotImplementedError):
                writer.write_eof()
        await close(writer)


async def test_eight_mib_both_ways(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    size = 8 << 20
    payload = os.urandom(size)

    async def handler(reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter) -> None:
        data = await reader.readexactly(size)
        writer.write(hashlib.sha256(data).digest())
        writer.write(data)
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async with tls_server(handler, server_context) as (_, port):
        with anyio.fail_after(60):
            reader, writer = await asyncstreams.open_connection(
                "127.0.0.1", port, ssl=client_context, server_hostname="localhost"
            )
            writer.write(payload)
            await writer.drain()
            digest = await reader.readexactly(32)
            echoed = await reader.readexactly(size)
            assert await reader.read() == b""
    assert digest == hashlib.sha256(payload).digest()
    assert echoed == payload
    await close(writer)


async def test_mutual_tls_handler_sees_peercert(ca: trustme.CA) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    ca.configure_trust(server_context)
    server_context.verify_mode = ssl.CERT_REQUIRED
    client_context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(client_context)
    ca.issue_cert("client@example.org").configure_cert(client_context)
    seen: list[Any] = []

    async def handler(reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter) -> None:
        seen.append(writer.get_extra_info("peercert"))
        writer.write(b"ok\n")
        await writer.drain()
        writer.close()

    async with tls_server(handler, server_context) as (_, port):
        with anyio.fail_after(WAIT):
            reader, writer = await asyncstreams.open_connection(
                "localhost", port, ssl=client_context
            )
            assert await reader.readline() == b"ok\n"
        await close(writer)
    (cert,) = seen
    assert ("email", "client@example.org") in cert["subjectAltName"]


async def test_server_requiring_client_cert_drops_client_without_one(ca: trustme.CA) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    ca.configure_trust(server_context)
    server_context.verify_mode = ssl.CERT_REQUIRED
    client_context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(client_context)
    called = []

    async def handler(reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter) -> None:
        called.append(True)
        writer.close()

    async with tls_server(handler, server_context) as (server, port):
        with anyio.fail_after(WAIT):
            # TLS 1.3: the client learns of the rejection on its first read.
            with contextlib.suppress(ssl.SSLError, ConnectionError):
                reader, writer = await asyncstreams.open_connection(
                    "localhost", port, ssl=client_context
                )
                with contextlib.suppress(ssl.SSLError, ConnectionError):
                    assert await reader.read() == b""
                await close(writer)
            # The server goes on serving.
            assert server.is_serving()
    assert called == []


async def test_untrusted_certificate(server_context: ssl.SSLContext) -> None:
    async with tls_server(echo_lines, server_context) as (server, port):
        with anyio.fail_after(WAIT):
            # ssl=True is a default context: trustme's CA is not in the system store.
            with pytest.raises(ssl.SSLCertVerificationError):
                await asyncstreams.open_connection("localhost", port, ssl=True)
            assert server.is_serving()


async def test_wrong_hostname(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    async with tls_server(echo_lines, server_context) as (_, port):
        with anyio.fail_after(WAIT), pytest.raises(ssl.SSLCertVerificationError) as info:
            await asyncstreams.open_connection(
                "127.0.0.1", port, ssl=client_context, server_hostname="example.org"
            )
    assert "example.org" in str(info.value)


async def test_empty_server_hostname_turns_hostname_checking_off(
    ca: trustme.CA, server_context: ssl.SSLContext
) -> None:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    context.check_hostname = False
    async with tls_server(echo_lines, server_context) as (_, port):
        with anyio.fail_after(WAIT):
            reader, writer = await asyncstreams.open_connection(
                "127.0.0.1", port, ssl=context, server_hostname=""
            )
            writer.write(b"x\n")
            assert await reader.readline() == b"x\n"
        await close(writer)


async def test_ssl_argument_errors(client_context: ssl.SSLContext) -> None:
    with pytest.raises(ValueError, match="server_hostname is only meaningful with ssl"):
        await asyncstreams.open_connection("127.0.0.1", 1, server_hostname="x")
    with pytest.raises(ValueError, match="ssl_handshake_timeout is only meaningful with ssl"):
        await asyncstreams.open_connection("127.0.0.1", 1, ssl_handshake_timeout=1)
    with pytest.raises(ValueError, match="ssl_shutdown_timeout is only meaningful with ssl"):
        await asyncstreams.open_connection("127.0.0.1", 1, ssl_shutdown_timeout=1)
    sock_a, sock_b = socket.socketpair()
    with sock_b:
        with pytest.raises(ValueError, match="server_hostname when using ssl without a host"):
            await asyncstreams.open_connection(sock=sock_a, ssl=client_context)
        sock_a.close()
    with pytest.raises(ValueError, match="server_hostname"):
        await asyncstreams.open_unix_connection("/nonexistent", ssl=client_context)
    with pytest.raises(TypeError):
        await asyncstreams.start_server(echo_lines, "127.0.0.1", 0, ssl=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ssl_handshake_timeout is only meaningful with ssl"):
        await asyncstreams.start_server(echo_lines, "127.0.0.1", 0, ssl_handshake_timeout=1)


# -- timeouts ---------------------------------------------------------------------------


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A TCP listener that accepts (in the kernel backlog) and never says a word."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield listener.getsockname()[1]


async def test_client_handshake_timeout(client_context: ssl.SSLContext) -> None:
    with (
        silent_listener() as port,
        anyio.fail_after(WAIT),
        pytest.raises(ConnectionAbortedError, match="SSL handshake is taking longer"),
    ):
        await asyncstreams.open_connection(
            "localhost", port, ssl=client_context, ssl_handshake_timeout=0.3
        )


async def test_server_handshake_timeout_drops_only_that_client(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    async with tls_server(echo_lines, server_context, ssl_handshake_timeout=0.3) as (server, port):
        with anyio.fail_after(WAIT):
            silent = socket.create_connection(("127.0.0.1", port))
            with silent:
                silent.settimeout(WAIT)
                # The server gives up on the silent client and closes it...
                assert await anyio.to_thread.run_sync(silent.recv, 1) == b""
            # ...and serves the next one.
            reader, writer = await asyncstreams.open_connection(
                "localhost", port, ssl=client_context
            )
            writer.write(b"next\n")
            assert await reader.readline() == b"next\n"
            assert server.is_serving()
        await close(writer)


async def test_server_survives_garbage_instead_of_a_handshake(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    async with tls_server(echo_lines, server_context) as (_, port):
        with anyio.fail_after(WAIT):
            garbage = socket.create_connection(("127.0.0.1", port))
            with garbage:
                garbage.settimeout(WAIT)
                garbage.sendall(b"GET / HTTP/1.0\r\n\r\n")
                with contextlib.suppress(ConnectionResetError):
                    await anyio.to_thread.run_sync(garbage.recv, 1024)
            reader, writer = await asyncstreams.open_connection(
                "localhost", port, ssl=client_context
            )
            writer.write(b"fine\n")
            assert await reader.readline() == b"fine\n"
        await close(writer)


# -- start_tls --------------------------------------------------------------------------


async def test_starttls_upgrade_on_both_ends_with_pipelined_data(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    """A STARTTLS exchange: plain lines, the upgrade on both ends, then TLS lines.

    The client sends its STARTTLS line and, without waiting, the TLS ClientHello, so
    the server's reader already holds handshake bytes when the handler upgrades.
    """
    log: list[bytes] = []

    async def handler(reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter) -> None:
        log.append(await reader.readline())  # b"HELLO\n"
        writer.write(b"250 hello\n")
        log.append(await reader.readline())  # b"STARTTLS\n"
        writer.write(b"220 go ahead\n")
        # Wait until the ClientHello has surely arrived behind the STARTTLS line.
        await anyio.sleep(0.1)
        await writer.start_tls(server_context)
        assert writer.get_extra_info("ssl_object") is not None
        async for line in reader:
            log.append(line)
            writer.write(b"secure " + line)
        writer.close()

    async with tls_server(handler, None) as (_, port):
        with anyio.fail_after(WAIT):
            reader, writer = await asyncstreams.open_connection("127.0.0.1", port)
            writer.write(b"HELLO\nSTARTTLS\n")
            assert await reader.readline() == b"250 hello\n"
            assert await reader.readline() == b"220 go ahead\n"
            assert writer.get_extra_info("ssl_object") is None
            sockname = writer.get_extra_info("sockname")
            await writer.start_tls(client_context, server_hostname="localhost")
            assert writer.get_extra_info("peercert") is not None
            assert not writer.can_write_eof()
            assert writer.get_extra_info("socket").getsockname() == sockname
            writer.write(b"one\ntwo\n")
            assert await reader.readline() == b"secure one\n"
            assert await reader.readline() == b"secure two\n"
        await close(writer)
    assert log == [b"HELLO\n", b"STARTTLS\n", b"one\n", b"two\n"]


async def _read_all(reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        while await reader.read(65536):
            pass
    writer.close()


async def test_write_loop_over_tls_lets_other_tasks_run(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    # With a high-water mark above what the loop writes, drain() never waits: only
    # its yield every 64 KiB lets the ticker (and the TLS sending task) run.
    async with tls_server(_read_all, server_context) as (_, port):
        with anyio.fail_after(WAIT):
            _reader, writer = await asyncstreams.open_connection(
                "localhost", port, ssl=client_context
            )
            writer.transport.set_write_buffer_limits(high=1 << 20)
            assert await ticks_during_write_loop(writer, unpaused=False) >= 2
        await close(writer)


async def test_write_loop_after_start_tls_lets_other_tasks_run(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    # 1 MiB in plain text first: the TLS connection's count starts again at zero.
    plain = 1 << 20

    async def handler(reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter) -> None:
        await reader.readexactly(plain)
        writer.write(b"go\n")
        await writer.start_tls(server_context)
        await _read_all(reader, writer)

    async with tls_server(handler, None) as (_, port):
        with anyio.fail_after(WAIT):
            reader, writer = await asyncstreams.open_connection("127.0.0.1", port)
            for _ in range(plain // 16384):
                writer.write(b"p" * 16384)
                await writer.drain()
            assert await reader.readline() == b"go\n"
            await writer.start_tls(client_context, server_hostname="localhost")
            writer.transport.set_write_buffer_limits(high=1 << 20)
            assert await ticks_during_write_loop(writer, unpaused=False) >= 2
        await close(writer)


async def test_write_loop_during_start_tls_lets_the_upgrade_run(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    # Writes made while start_tls() runs wait for the TLS connection; a write()+drain()
    # loop meanwhile still lets the loop run, so the handshake goes on, and every byte
    # arrives over TLS after it.
    received = bytearray()
    done = anyio.Event()

    async def handler(reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter) -> None:
        await reader.readline()
        writer.write(b"go\n")
        await writer.start_tls(server_context)
        while data := await reader.read(65536):
            received.extend(data)
        done.set()
        writer.close()

    async with tls_server(handler, None) as (_, port):
        with anyio.fail_after(WAIT):
            reader, writer = await asyncstreams.open_connection("127.0.0.1", port)
            writer.write(b"STARTTLS\n")
            assert await reader.readline() == b"go\n"
            async with anyio.create_task_group() as tg:
                tg.start_soon(
                    functools.partial(writer.start_tls, client_context, server_hostname="localhost")
                )
                while writer.transport._upgrade_backlog is None:  # it has begun
                    await anyio.lowlevel.checkpoint()
                assert await ticks_during_write_loop(writer, unpaused=False) >= 2
            assert writer.get_extra_info("ssl_object") is not None
            writer.close()
            await done.wait()
    assert received == b"x" * 192 * 1024


async def test_start_tls_client_against_python_ssl_server(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    """A peer we did not write: a blocking socket that upgrades with ``ssl.wrap_socket``."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(WAIT)
    port = listener.getsockname()[1]
    seen: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        conn.settimeout(WAIT)
        with conn:
            buf = b""
            while not buf.endswith(b"STARTTLS\n"):
                buf += conn.recv(100)
            conn.sendall(b"OK\n")
            with server_context.wrap_socket(conn, server_side=True) as tls:
                data = b""
                while not data.endswith(b"\n"):
                    data += tls.recv(100)
                seen.append(data)
                tls.sendall(data.upper())
                tls.unwrap()

    with listener:
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, serve)
            with anyio.fail_after(WAIT):
                reader, writer = await asyncstreams.open_connection("127.0.0.1", port)
                writer.write(b"STARTTLS\n")
                assert await reader.readline() == b"OK\n"
                await writer.start_tls(client_context, server_hostname="localhost")
                writer.write(b"over tls\n")
                assert await reader.readline() == b"OVER TLS\n"
                assert await reader.read() == b""  # close_notify from the peer
            await close(writer)
    assert seen == [b"over tls\n"]


async def test_start_tls_twice_is_type_error(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    async with tls_server(echo_lines, server_context) as (_, port):
        with anyio.fail_after(WAIT):
            _, writer = await asyncstreams.open_connection("localhost", port, ssl=client_context)
            with pytest.raises(TypeError, match="is not supported by start_tls"):
                await writer.start_tls(client_context)
            with pytest.raises(TypeError, match="sslcontext is expected to be an instance"):
                await writer.start_tls(True)  # type: ignore[arg-type]
        await close(writer)


async def test_start_tls_handshake_failure_closes_the_connection(
    server_context: ssl.SSLContext,
) -> None:
    untrusting = ssl.create_default_context()  # does not trust trustme's CA

    async def handler(reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter) -> None:
        await reader.readline()
        writer.write(b"go\n")
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await writer.start_tls(server_context)
        writer.close()

    async with tls_server(handler, None) as (_, port):
        with anyio.fail_after(WAIT):
            reader, writer = await asyncstreams.open_connection("127.0.0.1", port)
            writer.write(b"STARTTLS\n")
            assert await reader.readline() == b"go\n"
            with pytest.raises(ssl.SSLCertVerificationError):
                await writer.start_tls(untrusting, server_hostname="localhost")
            assert writer.is_closing()
        await close(writer)


# -- TLS over unix sockets, many clients, interoperability -------------------------------


async def test_tls_over_unix_socket(
    tmp_path: Path, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    path = str(tmp_path / "tls.sock")
    server = await asyncstreams.start_unix_server(echo_lines, path, ssl=server_context)
    async with server:
        with anyio.fail_after(WAIT):
            reader, writer = await asyncstreams.open_unix_connection(
                path, ssl=client_context, server_hostname="localhost"
            )
            writer.write(b"via unix\n")
            assert await reader.readline() == b"via unix\n"
            assert writer.get_extra_info("ssl_object") is not None
        await close(writer)


async def test_many_concurrent_tls_clients(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    results: dict[int, list[bytes]] = {}

    async def client(i: int, port: int) -> None:
        reader, writer = await asyncstreams.open_connection("localhost", port, ssl=client_context)
        got = []
        for j in range(5):
            writer.write(f"{i}:{j}\n".encode())
            got.append(await reader.readline())
        results[i] = got
        await close(writer)

    async with tls_server(echo_lines, server_context) as (_, port):
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for i in range(40):
                    tg.start_soon(client, i, port)
    assert results == {i: [f"{i}:{j}\n".encode() for j in range(5)] for i in range(40)}


async def test_client_against_python_ssl_server(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(WAIT)
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with server_context.wrap_socket(conn, server_side=True) as tls:
            tls.settimeout(WAIT)
            data = b""
            while not data.endswith(b"\n"):
                data += tls.recv(100)
            tls.sendall(b"echo " + data)
            # Close without close_notify: asyncio reads that as EOF too.

    with listener:
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, serve)
            with anyio.fail_after(WAIT):
                reader, writer = await asyncstreams.open_connection(
                    "localhost", port, ssl=client_context
                )
                writer.write(b"ping\n")
                assert await reader.readline() == b"echo ping\n"
                assert await reader.read() == b""
            await close(writer)


async def test_server_against_python_ssl_client(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    received: list[bytes] = []

    def client(port: int) -> None:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=WAIT) as raw,
            client_context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            tls.sendall(b"from python\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = tls.recv(100)
                if not chunk:
                    break
                data += chunk
            received.append(data)

    async with tls_server(echo_lines, server_context) as (_, port):
        with anyio.fail_after(WAIT):
            await anyio.to_thread.run_sync(client, port)
    assert received == [b"from python\n"]


async def test_close_sends_close_notify(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    """The Python peer sees a clean TLS shutdown (SSLZeroReturnError-free EOF)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(WAIT)
    port = listener.getsockname()[1]
    outcome: list[object] = []
    done = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with server_context.wrap_socket(conn, server_side=True) as tls:
            tls.settimeout(WAIT)
            try:
                outcome.append(tls.recv(100))
                outcome.append(tls.recv(100))  # b"" only after a close_notify
                tls.unwrap()
            except (ssl.SSLError, OSError) as exc:
                outcome.append(exc)
            done.set()

    with listener:
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, serve)
            with anyio.fail_after(WAIT):
                _, writer = await asyncstreams.open_connection(
                    "localhost", port, ssl=client_context
                )
                writer.write(b"bye")
                writer.close()
                await writer.wait_closed()
    assert outcome == [b"bye", b""]
