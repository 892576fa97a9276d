"""trio-native code using asyncstreams: a server whose handlers run in *your* task group.

In asyncio, ``start_server()`` runs each client handler as a background task. In
structured trio code you want them inside a nursery you own, so that they cannot outlive
it and their errors reach you: pass ``task_group=`` (an anyio task group, which on trio
is a nursery underneath). Leaving the group's block waits for the server and its
handlers; cancelling the group's scope stops them all::

    python examples/trio_task_group.py
"""

from __future__ import annotations

import anyio
import trio

import asyncstreams


# --8<-- [start:trio]
async def handle_upper(
    reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter
) -> None:
    async for line in reader:  # until the client's EOF
        writer.write(line.upper())
        await writer.drain()
    writer.close()
    await writer.wait_closed()


async def client(port: int, n: int, replies: list[str]) -> None:
    reader, writer = await asyncstreams.open_connection("127.0.0.1", port)
    writer.write(f"hello from client {n}\n".encode())
    writer.write_eof()
    with trio.fail_after(5):  # a trio cancel scope bounds the read
        replies.append((await reader.readline()).decode().strip())
    writer.close()
    await writer.wait_closed()


async def main() -> None:
    async with anyio.create_task_group() as handlers:
        server = await asyncstreams.start_server(handle_upper, "127.0.0.1", 0, task_group=handlers)
        port = server.sockets[0].getsockname()[1]
        print(f"Serving on port {port}")

        replies: list[str] = []
        async with trio.open_nursery() as clients:  # three clients at once
            for n in range(3):
                clients.start_soon(client, port, n, replies)
        for reply in sorted(replies):
            print(f"Received: {reply}")

        # A client that never sends: its handler waits in the group...
        idle_reader, idle_writer = await asyncstreams.open_connection("127.0.0.1", port)
        await trio.sleep(0.1)
        # ...until cancelling the group stops the accept loop and every handler.
        handlers.cancel_scope.cancel()

    print("Handlers and accept loop have finished")
    assert await idle_reader.read() == b""  # the cancelled handler's connection was closed
    idle_writer.close()
    await idle_writer.wait_closed()
    server.close()
    await server.wait_closed()
    print("Server closed")


if __name__ == "__main__":
    trio.run(main)
# --8<-- [end:trio]
