import anyio

import asyncstreams


async def heartbeat(writer: asyncstreams.StreamWriter) -> None:
    while True:
        writer.write(b"beat\n")
        await writer.drain()
        await anyio.sleep(0.01)


async def beat_until_stop(
    reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter
) -> int:
    lines = 0
    async with anyio.create_task_group() as tg:
        tg.start_soon(heartbeat, writer)
        while await reader.readline() != b"stop\n":
            lines += 1
        tg.cancel_scope.cancel()  # stops heartbeat; the block waits for it to end
    return lines
