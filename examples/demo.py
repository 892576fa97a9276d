"""The asyncio docs' TCP echo server and client, run with asyncstreams on every backend.

The two functions below are the reference page's examples with ``asyncstreams`` in place
of ``asyncio`` (the server listens on a free port instead of 8888). The same code runs
under asyncio, asyncio with uvloop, and trio, one after the other.

    python examples/demo.py [asyncio|uvloop|trio ...]
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import anyio

import asyncstreams


async def handle_echo(reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter) -> None:
    data = await reader.read(100)
    message = data.decode()
    addr = writer.get_extra_info("peername")

    print(f"  server: Received {message!r} from {addr!r}")
    print(f"  server: Send: {message!r}")
    writer.write(data)
    await writer.drain()

    print("  server: Close the connection")
    writer.close()
    await writer.wait_closed()


async def tcp_echo_client(message: str, port: int) -> str:
    reader, writer = await asyncstreams.open_connection("127.0.0.1", port)

    print(f"  client: Send: {message!r}")
    writer.write(message.encode())
    await writer.drain()

    data = await reader.read(100)
    print(f"  client: Received: {data.decode()!r}")

    print("  client: Close the connection")
    writer.close()
    await writer.wait_closed()
    return data.decode()


async def main(backend: str) -> bool:
    server = await asyncstreams.start_server(handle_echo, "127.0.0.1", 0)
    addrs = ", ".join(str(sock.getsockname()) for sock in server.sockets)
    print(f"  server: Serving on {addrs}")
    port = server.sockets[0].getsockname()[1]
    async with server:
        message = f"Hello World from {backend}!"
        received = await tcp_echo_client(message, port)
    return received == message


def _runner(backend: str) -> tuple[str, dict[str, Any]]:
    if backend == "uvloop":
        import uvloop

        loop_factory: Callable[[], Any] = uvloop.new_event_loop
        return "asyncio", {"loop_factory": loop_factory}
    return backend, {}


def run(backends: list[str]) -> int:
    results = {}
    for backend in backends:
        print(f"== {backend} ==")
        name, options = _runner(backend)
        results[backend] = anyio.run(main, backend, backend=name, backend_options=options)
    print()
    for backend, ok in results.items():
        print(f"{backend:8} {'pass' if ok else 'FAIL'}")
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    chosen = sys.argv[1:] or ["asyncio", "uvloop", "trio"]
    unknown = set(chosen) - {"asyncio", "uvloop", "trio"}
    if unknown:
        sys.exit(f"unknown backend(s): {', '.join(sorted(unknown))}; choose asyncio, uvloop, trio")
    sys.exit(run(chosen))
