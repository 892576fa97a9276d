"""Testing asyncio-style stream code on every backend, with anyio's pytest plugin.

The handler under test is ordinary asyncio stream code. anyio's plugin runs each test
marked ``anyio`` once per entry of the ``anyio_backend`` fixture, here asyncio, asyncio
with uvloop and trio. ``asyncstreams.testing.memory_stream_pair()`` connects two
``(reader, writer)`` pairs in memory, so a handler can be tested without sockets::

    python -m pytest examples/test_upper_handler.py
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import uvloop

import asyncstreams
from asyncstreams.testing import memory_stream_pair

# --8<-- [start:fixture]
pytestmark = pytest.mark.anyio


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {}), id="asyncio"),
        pytest.param(("asyncio", {"loop_factory": uvloop.new_event_loop}), id="uvloop"),
        pytest.param(("trio", {}), id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    backend: tuple[str, dict[str, Any]] = request.param
    return backend


# --8<-- [end:fixture]


# --8<-- [start:handler]
async def handle_upper(
    reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter
) -> None:
    """The code under test: answer each line in upper case, until EOF."""
    async for line in reader:
        writer.write(line.upper())
        await writer.drain()
    writer.close()
    await writer.wait_closed()


# --8<-- [end:handler]


# --8<-- [start:memory]
async def test_upper_in_memory() -> None:
    (client_reader, client_writer), (server_reader, server_writer) = memory_stream_pair()
    async with anyio.create_task_group() as tg:
        tg.start_soon(handle_upper, server_reader, server_writer)
        client_writer.writelines([b"hello\n", b"world\n"])
        client_writer.write_eof()  # the handler's loop ends at EOF
        with anyio.fail_after(5):
            assert await client_reader.read() == b"HELLO\nWORLD\n"
    client_writer.close()
    await client_writer.wait_closed()


# --8<-- [end:memory]


# --8<-- [start:tcp]
async def test_upper_over_tcp() -> None:
    server = await asyncstreams.start_server(handle_upper, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncstreams.open_connection("127.0.0.1", port)
        writer.write(b"ping\n")
        with anyio.fail_after(5):
            assert await reader.readline() == b"PING\n"
        writer.close()
        await writer.wait_closed()


# --8<-- [end:tcp]
