import asyncstreams


async def echo_once(reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter) -> None:
    writer.write(await reader.readline())
    writer.close()
    await writer.wait_closed()


async def unix_round_trip(path: str) -> bytes:
    async with await asyncstreams.start_unix_server(echo_once, path):
        reader, writer = await asyncstreams.open_unix_connection(path)
        writer.write(b"over a UNIX socket\n")
        line = await reader.readline()
        writer.close()
        await writer.wait_closed()
    return line
