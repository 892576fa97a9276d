"""The asyncio docs' TCP echo server, with ``asyncstreams`` in place of ``asyncio``.

The same code runs under ``asyncio.run``, uvloop and ``trio.run``; Ctrl-C stops it::

    python examples/tcp_echo_server.py --backend trio      # port 8888; --port 0 for any free port
"""

from __future__ import annotations

import functools

import _run

import asyncstreams


# --8<-- [start:server]
async def handle_echo(reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter) -> None:
    data = await reader.read(100)
    message = data.decode()
    addr = writer.get_extra_info("peername")

    print(f"Received {message!r} from {addr!r}")

    print(f"Send: {message!r}")
    writer.write(data)
    await writer.drain()

    print("Close the connection")
    writer.close()
    await writer.wait_closed()


async def main(host: str = "127.0.0.1", port: int = 8888) -> None:
    server = await asyncstreams.start_server(handle_echo, host, port)

    addrs = ", ".join(str(sock.getsockname()) for sock in server.sockets)
    print(f"Serving on {addrs}")

    async with server:
        await server.serve_forever()


# --8<-- [end:server]

if __name__ == "__main__":
    parser = _run.parser(__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8888)
    args = parser.parse_args()
    _run.run(functools.partial(main, args.host, args.port), args.backend)
