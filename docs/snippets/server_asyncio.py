import asyncio
from collections.abc import Callable


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    async for line in reader:
        writer.write(line.upper())
        await writer.drain()
    writer.close()
    await writer.wait_closed()


async def serve(port: int, ready: Callable[[int], None]) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    ready(server.sockets[0].getsockname()[1])
    async with server:
        await server.serve_forever()  # until cancelled
