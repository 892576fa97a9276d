"""asyncio's Streams API on anyio: the same stream code on asyncio, uvloop and trio.

>>> import asyncstreams
>>> reader, writer = await asyncstreams.open_connection("127.0.0.1", 8888)  # doctest: +SKIP
"""

from __future__ import annotations

from ._exceptions import IncompleteReadError, LimitOverrunError
from ._reader import StreamReader
from ._server import Server, start_server, start_unix_server
from ._streams import open_connection, open_unix_connection, wrap
from ._transport import StreamTransport
from ._writer import StreamWriter

__all__ = (
    "IncompleteReadError",
    "LimitOverrunError",
    "Server",
    "StreamReader",
    "StreamTransport",
    "StreamWriter",
    "open_connection",
    "open_unix_connection",
    "start_server",
    "start_unix_server",
    "wrap",
)

# Show the public path in reprs and tracebacks (asyncio's exceptions keep theirs).
for _name in (
    "Server",
    "StreamReader",
    "StreamTransport",
    "StreamWriter",
    "open_connection",
    "open_unix_connection",
    "start_server",
    "start_unix_server",
    "wrap",
):
    globals()[_name].__module__ = __name__
del _name
