"""The asyncio docs' "register an open socket to wait for data using streams" example.

With ``asyncstreams`` in place of ``asyncio``; the same code runs under ``asyncio.run``,
uvloop and ``trio.run``::

    python examples/wait_for_data.py --backend trio
"""

from __future__ import annotations

import socket

import _run

import asyncstreams


# --8<-- [start:wait]
async def wait_for_data() -> None:
    # Create a pair of connected sockets.
    rsock, wsock = socket.socketpair()

    # Register the open socket to wait for data.
    reader, writer = await asyncstreams.open_connection(sock=rsock)

    # Simulate the reception of data from the network. (The page does this with
    # loop.call_soon(); there is no event loop object on trio, and sending right away
    # is the same here: the bytes wait in the socket until the read below.)
    wsock.send(b"abc")

    # Wait for data
    data = await reader.read(100)

    # Got data, we are done: close the socket
    print("Received:", data.decode())
    writer.close()
    await writer.wait_closed()

    # Close the second socket
    wsock.close()


# --8<-- [end:wait]

if __name__ == "__main__":
    args = _run.parser(__doc__).parse_args()
    _run.run(wait_for_data, args.backend)
