"""A trio ``Stream`` as an anyio ``ByteStream``, so that ``wrap()`` takes both.

anyio wraps trio's sockets itself, but has no public adapter for the rest of trio's
streams (``trio.SSLStream``, ``trio.testing`` streams, a user's own ``trio.abc.Stream``).
This one maps trio's stream methods and exceptions onto anyio's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import ByteStream

if TYPE_CHECKING:
    import trio

__all__ = ["TrioStream"]


class TrioStream(ByteStream):
    """Adapts *stream* (a ``trio.abc.Stream``) to anyio's ``ByteStream``."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        import trio

        self.stream = stream
        #: Whether :meth:`send_eof` works (a ``trio.abc.HalfCloseableStream``).
        self.can_send_eof = isinstance(stream, trio.abc.HalfCloseableStream)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        import trio

        try:
            data = await self.stream.receive_some(max_bytes)
        except trio.ClosedResourceError as exc:
            raise anyio.ClosedResourceError from exc
        except trio.BrokenResourceError as exc:
            raise anyio.BrokenResourceError from exc.__cause__ or exc
        if not data:
            raise anyio.EndOfStream
        return bytes(data)

    async def send(self, item: bytes) -> None:
        import trio

        try:
            await self.stream.send_all(item)
        except trio.ClosedResourceError as exc:
            raise anyio.ClosedResourceError from exc
        except trio.BrokenResourceError as exc:
            raise anyio.BrokenResourceError from exc.__cause__ or exc

    async def send_eof(self) -> None:
        import trio

        if not isinstance(self.stream, trio.abc.HalfCloseableStream):
            raise NotImplementedError(f"{type(self.stream).__name__} cannot send EOF")
        try:
            await self.stream.send_eof()
        except trio.ClosedResourceError as exc:
            raise anyio.ClosedResourceError from exc
        except trio.BrokenResourceError as exc:
            raise anyio.BrokenResourceError from exc.__cause__ or exc

    async def aclose(self) -> None:
        await self.stream.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return {}


def adapt(stream: object) -> ByteStream:
    """*stream* as an anyio ByteStream: itself, or adapted if it is a trio Stream."""
    if isinstance(stream, ByteStream):
        return stream
    import sys

    trio = sys.modules.get("trio")
    if trio is not None and isinstance(stream, trio.abc.Stream):
        return TrioStream(stream)
    raise TypeError(f"expected an anyio ByteStream or a trio Stream, got {stream!r}")
