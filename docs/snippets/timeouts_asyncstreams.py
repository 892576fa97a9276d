import anyio

import asyncstreams


async def read_line_or_none(reader: asyncstreams.StreamReader, seconds: float) -> bytes | None:
    try:
        with anyio.fail_after(seconds):
            return await reader.readline()
    except TimeoutError:
        return None  # the bytes that had arrived stay in the reader's buffer


async def read_line_or_none_too(reader: asyncstreams.StreamReader, seconds: float) -> bytes | None:
    with anyio.move_on_after(seconds):
        return await reader.readline()
    return None
