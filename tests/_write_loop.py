"""A write loop that counts how often another task ran during it (``drain()``'s yield)."""

from __future__ import annotations

import anyio
import anyio.lowlevel

import asyncstreams

__all__ = ["ticks_during_write_loop"]


async def ticks_during_write_loop(
    writer: asyncstreams.StreamWriter,
    *,
    unpaused: bool,
    size: int = 16384,
    drain_every: int = 1,
) -> int:
    """How often another task ran while 192 KiB were written, in writes of *size* bytes
    with a ``drain()`` after every *drain_every* of them; with *unpaused*, check that
    the kernel took everything at each drain() (so it never had to wait)."""
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await anyio.lowlevel.checkpoint()  # the ticker is running
        ticks = 0
        for i in range(1, 192 * 1024 // size + 1):
            writer.write(b"x" * size)
            if i % drain_every == 0:
                await writer.drain()
                if unpaused:
                    assert not writer.transport.get_write_buffer_size()
        tg.cancel_scope.cancel()
    return ticks
