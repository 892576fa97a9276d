import asyncio
import hashlib
import socket


async def digest_from_socket() -> str:
    loop = asyncio.get_running_loop()
    rsock, wsock = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=rsock)
    loop.call_soon(wsock.send, b"abc")
    data = await reader.read(100)
    digest = await loop.run_in_executor(None, lambda: hashlib.sha256(data).hexdigest())
    writer.close()
    await writer.wait_closed()
    wsock.close()
    return digest
