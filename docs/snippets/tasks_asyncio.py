import asyncio


async def heartbeat(writer: asyncio.StreamWriter) -> None:
    while True:
        writer.write(b"beat\n")
        await writer.drain()
        await asyncio.sleep(0.01)


async def beat_until_stop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
    task = asyncio.create_task(heartbeat(writer))
    lines = 0
    while await reader.readline() != b"stop\n":
        lines += 1
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    return lines
