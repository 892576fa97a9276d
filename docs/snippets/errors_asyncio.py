import asyncio


async def read_record(host: str, port: int) -> bytes | str:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except ConnectionRefusedError:
        return "refused"
    try:
        header = await reader.readexactly(4)
        return await reader.readexactly(int(header))
    except asyncio.IncompleteReadError as exc:
        return f"short read: {exc.partial!r}"
    finally:
        writer.close()
        await writer.wait_closed()
