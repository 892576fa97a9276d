import asyncio


async def echo_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(await reader.readline())
    writer.close()
    await writer.wait_closed()


async def unix_round_trip(path: str) -> bytes:
    async with await asyncio.start_unix_server(echo_once, path):
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(b"over a UNIX socket\n")
        line = await reader.readline()
        writer.close()
        await writer.wait_closed()
    return line
