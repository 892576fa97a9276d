import hashlib
import socket

import anyio.to_thread

import asyncstreams


async def digest_from_socket() -> str:
    rsock, wsock = socket.socketpair()
    reader, writer = await asyncstreams.open_connection(sock=rsock)
    wsock.send(b"abc")  # no loop.call_soon(): the bytes wait in the socket
    data = await reader.read(100)
    digest = await anyio.to_thread.run_sync(lambda: hashlib.sha256(data).hexdigest())
    writer.close()
    await writer.wait_closed()
    wsock.close()
    return digest
