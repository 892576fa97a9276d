"""asyncio's Streams API on anyio: the same stream code on asyncio, uvloop and trio.

>>> import asyncstreams
>>> reader, writer = await asyncstreams.open_connection("127.0.0.1", 8888)  # doctest: +SKIP
"""

from __future__ import annotations

import typing

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

# Names of asyncio's streams module that belong to its event loop. Type checkers do
# not see __getattr__, so a misspelt name stays an error for them.
_ASYNCIO_LOOP_ONLY = {
    "StreamReaderProtocol": (
        "it is the protocol asyncio's loop.create_connection() and "
        "loop.connect_read_pipe() drive, and trio has no such loop; wrap() gives "
        "asyncio's reader and writer over any anyio byte stream or trio stream instead "
        "(see the porting guide)"
    ),
}

if not typing.TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        why = _ASYNCIO_LOOP_ONLY.get(name)
        if why is not None:
            raise AttributeError(f"module 'asyncstreams' has no {name!r}: {why}", name=name)
        raise AttributeError(f"module 'asyncstreams' has no attribute {name!r}", name=name)
