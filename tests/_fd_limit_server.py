"""An echo server that runs out of file descriptors (for test_reliability_faults.py).

Run as ``python _fd_limit_server.py BACKEND SPARE START``. It listens on 127.0.0.1,
lowers RLIMIT_NOFILE so that only SPARE more descriptors can be opened, and prints
``READY <port>``.

* START ``cold``: clients can then connect (they wait in the listen backlog); a line on
  stdin starts an asyncstreams server on that socket, which finds them all at once,
  before it has set up any connection.
* START ``warm``: the server is serving from the start, and has served one connection
  (its own) before the limit is lowered; the line on stdin is not needed.

Each client gets its line echoed, then the connection is held until the client sends
EOF, so SPARE clients at once use up the descriptors. Log records of the
``asyncstreams`` logger are printed as ``LOG <level> <message>``, and closing stdin
makes the server close, wait for its clients, print ``CLOSED`` and exit.
"""

from __future__ import annotations

import logging
import os
import resource
import socket
import sys
from typing import Any

import anyio

import asyncstreams


class _PrintRecords(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        print(f"LOG {record.levelname} {record.getMessage()}", flush=True)


def limit_to_spare(spare: int) -> None:
    """Set RLIMIT_NOFILE so that exactly *spare* descriptor numbers are free below it."""
    used = {int(name) for name in os.listdir("/proc/self/fd")}
    # The listing's own descriptor is closed again: it is the lowest free number now.
    probe = os.open(os.devnull, os.O_RDONLY)
    used.discard(probe)
    os.close(probe)
    limit = 0
    free = 0
    while free < spare or limit in used:
        if limit not in used:
            free += 1
        limit += 1
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


async def handler(reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter) -> None:
    try:
        writer.write(await reader.readline())
        await writer.drain()
        await reader.read()  # hold the descriptor until the client is done
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except ConnectionError:
            pass


def _is_socket(fd: str) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    except OSError:
        return False  # the listing's own descriptor, closed by now


def sockets_open() -> int:
    """Open sockets (libuv's spare ``/dev/null`` descriptor, opened once, does not count)."""
    return sum(_is_socket(fd) for fd in os.listdir("/proc/self/fd"))


async def serve_one_connection(port: int) -> None:
    """Be our own first client, and wait until its descriptors are closed again."""
    before = sockets_open()
    reader, writer = await asyncstreams.open_connection("127.0.0.1", port)
    writer.write(b"warming up\n")
    await reader.readline()
    writer.write_eof()
    await reader.read()
    writer.close()
    await writer.wait_closed()
    with anyio.fail_after(20):
        while True:  # polled: uvloop closes a socket a moment after the close callback
            if sockets_open() <= before:
                break
            await anyio.sleep(0.01)


async def main(spare: int, start: str) -> None:
    listener = socket.create_server(("127.0.0.1", 0), backlog=100)
    port = listener.getsockname()[1]
    if start == "warm":
        server = await asyncstreams.start_server(handler, sock=listener)
        await serve_one_connection(port)
    limit_to_spare(spare)
    print(f"READY {port}", flush=True)
    if start == "cold":
        await anyio.to_thread.run_sync(sys.stdin.readline)
        server = await asyncstreams.start_server(handler, sock=listener)
    print("SERVING", flush=True)
    await anyio.to_thread.run_sync(sys.stdin.read)  # until the test closes stdin
    server.close()
    with anyio.fail_after(20):
        await server.wait_closed()
    print("CLOSED", flush=True)


def run(backend: str, spare: int, start: str) -> None:
    logger = logging.getLogger("asyncstreams")
    logger.addHandler(_PrintRecords())
    logger.propagate = False
    options: dict[str, Any] = {}
    if backend == "asyncio+uvloop":
        import uvloop

        backend, options = "asyncio", {"loop_factory": uvloop.new_event_loop}
    anyio.run(main, spare, start, backend=backend, backend_options=options)


if __name__ == "__main__":
    run(sys.argv[1], int(sys.argv[2]), sys.argv[3])
