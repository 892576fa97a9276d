import asyncio


async def read_line_or_none(reader: asyncio.StreamReader, seconds: float) -> bytes | None:
    try:
        return await asyncio.wait_for(reader.readline(), timeout=seconds)
    except asyncio.TimeoutError:
        return None
