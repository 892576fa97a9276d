"""The asyncio docs' TCP echo client, with ``asyncstreams`` in place of ``asyncio``.

The same code runs under ``asyncio.run``, uvloop and ``trio.run``::

    python examples/tcp_echo_server.py &                   # or: python -m asyncstreams echo-server
    python examples/tcp_echo_client.py 'Hello World!' --backend trio
"""

from __future__ import annotations

import functools

import _run

import asyncstreams


# --8<-- [start:client]
async def tcp_echo_client(message: str, host: str = "127.0.0.1", port: int = 8888) -> None:
    reader, writer = await asyncstreams.open_connection(host, port)

    print(f"Send: {message!r}")
    writer.write(message.encode())
    await writer.drain()

    data = await reader.read(100)
    print(f"Received: {data.decode()!r}")

    print("Close the connection")
    writer.close()
    await writer.wait_closed()


# --8<-- [end:client]

if __name__ == "__main__":
    parser = _run.parser(__doc__)
    parser.add_argument("message", nargs="?", default="Hello World!")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8888)
    args = parser.parse_args()
    _run.run(functools.partial(tcp_echo_client, args.message, args.host, args.port), args.backend)
