"""The public surface: ``__all__``, public paths, asyncio's exceptions, ``wrap()`` and
``asyncstreams.testing.memory_stream_pair()``."""

from __future__ import annotations
import __future__

import asyncio
import types
from asyncio import trsock
from typing import Any

import anyio
import pytest
from anyio.abc import ByteStream, SocketAttribute, SocketStream
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

import asyncstreams
import asyncstreams.testing
from asyncstreams import StreamReader, StreamWriter
from asyncstreams.testing import memory_stream_pair

pytestmark = pytest.mark.anyio

WAIT = 10

#: asyncio's own classes, re-exported: they keep asyncio's module.
ASYNCIO_EXCEPTIONS = ("IncompleteReadError", "LimitOverrunError")


def public_names(module: types.ModuleType) -> set[str]:
    """Names a star-import would want: not private, not a submodule or __future__ flag."""
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, (types.ModuleType, __future__._Feature))
    }


async def close_writer(writer: StreamWriter) -> None:
    writer.close()
    with anyio.fail_after(WAIT):
        await writer.wait_closed()


# --------------------------------------------------------------------------- the surface


@pytest.mark.parametrize("module", [asyncstreams, asyncstreams.testing], ids=lambda m: m.__name__)
def test_all_matches_what_exists(module: types.ModuleType) -> None:
    exported = module.__all__
    assert len(set(exported)) == len(exported), "duplicates in __all__"
    if module is asyncstreams:
        # Everything the package namespace offers is exported (helpers stay private).
        assert set(exported) == public_names(module)
    else:
        assert set(exported) <= public_names(module)
    for name in exported:
        assert getattr(module, name) is not None
    namespace: dict[str, Any] = {}
    exec(f"from {module.__name__} import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(exported)


def test_expected_public_names() -> None:
    expected = {
        "IncompleteReadError",
        "LimitOverrunError",
        "Server",
        "StreamReader",
        "StreamTransport",
        "StreamWriter",
        "open_connection",
        "open_unix_connection",
        "start_server",
        "start_unix_server",
        "wrap",
    }
    assert isinstance(asyncstreams.__all__, tuple)  # the STYLE guide's shape
    assert expected <= set(asyncstreams.__all__)
    assert list(asyncstreams.testing.__all__) == ["memory_stream_pair"]


@pytest.mark.parametrize("name", [n for n in asyncstreams.__all__ if n not in ASYNCIO_EXCEPTIONS])
def test_public_objects_show_the_public_path(name: str) -> None:
    obj = getattr(asyncstreams, name)
    assert obj.__module__ == "asyncstreams"
    assert obj.__qualname__ == name
    if isinstance(obj, type):
        assert repr(obj) == f"<class 'asyncstreams.{name}'>"


def test_asyncios_loop_only_protocol_is_a_clear_attribute_error() -> None:
    # asyncio.streams exports StreamReaderProtocol; it needs asyncio's event loop.
    assert "StreamReaderProtocol" in asyncio.streams.__all__
    with pytest.raises(AttributeError, match=r"'StreamReaderProtocol'.*wrap\(\)") as info:
        asyncstreams.StreamReaderProtocol  # type: ignore[attr-defined]  # noqa: B018
    assert info.value.name == "StreamReaderProtocol"
    assert not hasattr(asyncstreams, "StreamReaderProtocol")
    with pytest.raises(ImportError):
        exec("from asyncstreams import StreamReaderProtocol", {})


def test_unknown_attribute_is_the_usual_attribute_error() -> None:
    with pytest.raises(AttributeError, match=r"^module 'asyncstreams' has no attribute 'opne'$"):
        asyncstreams.opne  # type: ignore[attr-defined]  # noqa: B018
    assert getattr(asyncstreams, "nothing", None) is None


def test_every_name_of_asyncios_streams_module_exists_or_is_explained() -> None:
    for name in asyncio.streams.__all__:
        if not hasattr(asyncstreams, name):
            with pytest.raises(AttributeError, match=r"wrap\(\)"):
                getattr(asyncstreams, name)


def test_testing_helpers_module() -> None:
    assert memory_stream_pair.__module__ == "asyncstreams.testing"


@pytest.mark.parametrize("name", ASYNCIO_EXCEPTIONS)
def test_exceptions_are_asyncios_own_classes(name: str) -> None:
    assert getattr(asyncstreams, name) is getattr(asyncio, name)
    assert getattr(asyncstreams, name).__module__ == "asyncio.exceptions"


async def test_incomplete_read_error_is_caught_as_asyncios() -> None:
    (_reader_a, writer_a), (reader_b, writer_b) = memory_stream_pair()
    try:
        writer_a.write(b"ab")
        writer_a.write_eof()
        with anyio.fail_after(WAIT), pytest.raises(asyncio.IncompleteReadError) as excinfo:
            await reader_b.readexactly(5)
        assert type(excinfo.value) is asyncio.IncompleteReadError
        assert (excinfo.value.partial, excinfo.value.expected) == (b"ab", 5)
    finally:
        await close_writer(writer_a)
        await close_writer(writer_b)


async def test_limit_overrun_error_is_caught_as_asyncios() -> None:
    (_reader_a, writer_a), (reader_b, writer_b) = memory_stream_pair(limit=4)
    try:
        writer_a.write(b"abcdefgh\n")
        with anyio.fail_after(WAIT), pytest.raises(asyncio.LimitOverrunError) as excinfo:
            await reader_b.readuntil(b"\n")
        assert type(excinfo.value) is asyncio.LimitOverrunError
        assert excinfo.value.args[0] == "Separator is found, but chunk is longer than limit"
        assert excinfo.value.consumed == 8  # asyncio reports the separator's offset
        # asyncio leaves the data in the buffer after LimitOverrunError.
        with anyio.fail_after(WAIT):
            assert await reader_b.readexactly(9) == b"abcdefgh\n"
    finally:
        await close_writer(writer_a)
        await close_writer(writer_b)


# --------------------------------------------------------------------------- wrap()


async def test_wrap_anyio_tcp_streams_on_both_sides() -> None:
    server_ends: list[tuple[Any, Any]] = []

    async def handle(stream: SocketStream) -> None:
        reader, writer = asyncstreams.wrap(stream)
        server_ends.append((writer.get_extra_info("sockname"), writer.get_extra_info("peername")))
        try:
            async for line in reader:
                writer.write(line.upper())
                await writer.drain()
        finally:
            await close_writer(writer)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        with anyio.fail_after(WAIT):
            stream = await anyio.connect_tcp("127.0.0.1", port)
        local_address = stream.extra(SocketAttribute.local_address)
        reader, writer = asyncstreams.wrap(stream)
        try:
            assert isinstance(reader, StreamReader)
            assert isinstance(writer, StreamWriter)
            writer.write(b"hello\n")
            writer.writelines([b"wor", b"ld\n"])
            await writer.drain()
            with anyio.fail_after(WAIT):
                assert await reader.readline() == b"HELLO\n"
                assert await reader.readline() == b"WORLD\n"
            assert writer.get_extra_info("peername") == ("127.0.0.1", port)
            assert writer.get_extra_info("sockname") == local_address
            assert isinstance(writer.get_extra_info("socket"), trsock.TransportSocket)
            assert writer.can_write_eof()
            writer.write_eof()
            with anyio.fail_after(WAIT):
                assert await reader.read() == b""  # the handler closed at our EOF
            assert reader.at_eof()
        finally:
            await close_writer(writer)
        # The pair owned the stream: closing the writer closed it.
        with pytest.raises(anyio.ClosedResourceError):
            await stream.send(b"after close")
        tg.cancel_scope.cancel()
    assert server_ends == [(("127.0.0.1", port), local_address)]


class ObjectByteStream(ByteStream):
    """A third-party byte stream: one end of a pipe built on memory object streams."""

    def __init__(
        self, send: MemoryObjectSendStream[bytes], receive: MemoryObjectReceiveStream[bytes]
    ) -> None:
        self._send = send
        self._receive = receive
        self._leftover = b""

    async def receive(self, max_bytes: int = 65536) -> bytes:
        data = self._leftover or await self._receive.receive()
        self._leftover = data[max_bytes:]
        return data[:max_bytes]

    async def send(self, item: bytes) -> None:
        await self._send.send(bytes(item))

    async def send_eof(self) -> None:
        await self._send.aclose()

    async def aclose(self) -> None:
        await self._send.aclose()
        await self._receive.aclose()


def object_byte_stream_pair() -> tuple[ObjectByteStream, ObjectByteStream]:
    a_send, b_receive = anyio.create_memory_object_stream[bytes](1)
    b_send, a_receive = anyio.create_memory_object_stream[bytes](1)
    return ObjectByteStream(a_send, a_receive), ObjectByteStream(b_send, b_receive)


async def test_wrap_any_byte_stream() -> None:
    stream_a, stream_b = object_byte_stream_pair()
    reader_a, writer_a = asyncstreams.wrap(stream_a)
    reader_b, writer_b = asyncstreams.wrap(stream_b, limit=8)
    try:
        writer_a.write(b"ping\n")
        with anyio.fail_after(WAIT):
            assert await reader_b.readline() == b"ping\n"
        writer_b.write(b"pong\n")
        with anyio.fail_after(WAIT):
            assert await reader_a.readline() == b"pong\n"
        # The limit reached the reader.
        writer_a.write(b"x" * 20 + b"\n")
        with anyio.fail_after(WAIT), pytest.raises(ValueError):
            await reader_b.readline()
        # No socket underneath: no addresses, and get_extra_info's default.
        assert writer_a.get_extra_info("peername") is None
        assert writer_a.get_extra_info("socket", "none") == "none"
        writer_a.write_eof()
        with anyio.fail_after(WAIT):
            assert await reader_b.read() == b""
    finally:
        await close_writer(writer_a)
        await close_writer(writer_b)


@pytest.mark.parametrize("limit", [0, -1])
async def test_wrap_non_positive_limit_is_value_error(limit: int) -> None:
    stream_a, stream_b = object_byte_stream_pair()
    with pytest.raises(ValueError, match=r"^Limit cannot be <= 0$"):
        asyncstreams.wrap(stream_a, limit=limit)
    await stream_a.aclose()
    await stream_b.aclose()


# --------------------------------------------------------------------------- memory_stream_pair()


async def test_memory_pair_round_trip_both_ways() -> None:
    (reader_a, writer_a), (reader_b, writer_b) = memory_stream_pair()
    try:
        for writer, reader in ((writer_a, reader_b), (writer_b, reader_a)):
            writer.write(b"line one\n")
            writer.writelines([bytearray(b"line "), memoryview(b"two\n")])
            await writer.drain()
            with anyio.fail_after(WAIT):
                assert await reader.readline() == b"line one\n"
                assert await reader.readuntil(b"\n") == b"line two\n"
        big = bytes(range(256)) * 4096  # 1 MiB, more than one receive
        writer_a.write(big)
        with anyio.fail_after(WAIT):
            assert await reader_b.readexactly(len(big)) == big
    finally:
        await close_writer(writer_a)
        await close_writer(writer_b)


async def test_memory_pair_write_eof_is_eof_at_the_other_end() -> None:
    (reader_a, writer_a), (reader_b, writer_b) = memory_stream_pair()
    try:
        assert writer_a.can_write_eof()
        writer_a.write(b"last words")
        writer_a.write_eof()
        with anyio.fail_after(WAIT):
            assert await reader_b.read() == b"last words"
            assert await reader_b.read() == b""
        assert reader_b.at_eof()
        # A half-close: the other direction still works.
        writer_b.write(b"reply\n")
        with anyio.fail_after(WAIT):
            assert await reader_a.readline() == b"reply\n"
        assert not reader_a.at_eof()
    finally:
        await close_writer(writer_a)
        await close_writer(writer_b)


async def test_memory_pair_close_is_eof_at_the_other_end() -> None:
    (_reader_a, writer_a), (reader_b, writer_b) = memory_stream_pair()
    try:
        writer_a.write(b"bye\n")
        writer_a.close()
        assert writer_a.is_closing()
        with anyio.fail_after(WAIT):
            await writer_a.wait_closed()
            assert await reader_b.readline() == b"bye\n"
            assert await reader_b.read() == b""
        assert reader_b.at_eof()
    finally:
        await close_writer(writer_a)
        await close_writer(writer_b)


async def test_memory_pair_drain_applies_back_pressure() -> None:
    # As over a socket, the other end's reader buffers up to twice its limit before it
    # stops receiving; past that, what is written stays in our buffer and drain() waits.
    (_reader_a, writer_a), (reader_b, writer_b) = memory_stream_pair()
    chunk = b"z" * (64 * 1024 + 1)  # each one is over the 64 KiB high-water mark
    written = 0

    async def drain(done: anyio.Event) -> None:
        await writer_a.drain()
        done.set()

    try:
        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                for _ in range(64):
                    writer_a.write(chunk)
                    written += len(chunk)
                    drained = anyio.Event()
                    tg.start_soon(drain, drained)
                    await anyio.wait_all_tasks_blocked()
                    if not drained.is_set():
                        break
                else:
                    pytest.fail(f"drain() never waited, {written} bytes unread at the other end")
                # Nobody reads at the other end: drain() waits with data unsent.
                assert writer_a.transport.get_write_buffer_size() > 0
                await anyio.wait_all_tasks_blocked()
                assert not drained.is_set()
                # Reading at the other end releases it.
                assert await reader_b.readexactly(written) == b"z" * written
                await drained.wait()
            assert writer_a.transport.get_write_buffer_size() == 0
            # Below the high-water mark drain() returns at once, reader or not.
            writer_a.write(b"small")
            await writer_a.drain()
            assert await reader_b.readexactly(5) == b"small"
    finally:
        await close_writer(writer_a)
        await close_writer(writer_b)


async def test_memory_pair_limit() -> None:
    (_reader_a, writer_a), (reader_b, writer_b) = memory_stream_pair(limit=5)
    try:
        writer_a.write(b"abc\n" + b"toolong\n")
        with anyio.fail_after(WAIT):
            assert await reader_b.readline() == b"abc\n"
            with pytest.raises(ValueError):
                await reader_b.readline()
    finally:
        await close_writer(writer_a)
        await close_writer(writer_b)


@pytest.mark.parametrize("limit", [0, -1])
async def test_memory_pair_non_positive_limit_is_value_error(limit: int) -> None:
    with pytest.raises(ValueError, match=r"^Limit cannot be <= 0$"):
        memory_stream_pair(limit=limit)


async def test_memory_pair_has_no_socket_info() -> None:
    (_reader_a, writer_a), (_reader_b, writer_b) = memory_stream_pair()
    try:
        assert writer_a.get_extra_info("peername") is None
        assert writer_a.get_extra_info("sockname") is None
        assert writer_a.get_extra_info("socket") is None
    finally:
        await close_writer(writer_a)
        await close_writer(writer_b)
