"""``asyncstreams echo-server``: the page's echo server as a tool that runs until Ctrl-C."""

from __future__ import annotations

import signal
from typing import Any

import anyio

import asyncstreams

from ._cli_examples import Out

__all__ = ["format_address", "serve_echo"]

#: How long the clients get to finish closing before their connections are aborted.
GRACE_PERIOD = 5.0


def format_address(address: Any) -> str:
    """``host:port`` for an IPv4 address, ``[host]:port`` for IPv6, else the address."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)


async def serve_echo(out: Out, host: str, port: int, *, grace: float = GRACE_PERIOD) -> None:
    """Echo every client's bytes back until SIGINT or SIGTERM, then close the clients.

    Unlike the page's handler, which answers one read and hangs up, each client is
    served until it closes, so that Ctrl-C has connections to close.
    """
    connections: set[asyncstreams.StreamWriter] = set()

    async def handle(reader: asyncstreams.StreamReader, writer: asyncstreams.StreamWriter) -> None:
        peer = format_address(writer.get_extra_info("peername"))
        connections.add(writer)
        out(f"Connection from {peer}")
        try:
            while data := await reader.read(4096):
                out(f"Received {data.decode(errors='replace')!r} from {peer}")
                writer.write(data)
                await writer.drain()
        except ConnectionError as exc:
            out(f"Connection from {peer} lost: {exc}")
        finally:
            connections.discard(writer)
            writer.close()
            try:
                await writer.wait_closed()
            except ConnectionError:
                pass
            out(f"Closed the connection from {peer}")

    # Listen for the signals before serving: a Ctrl-C right after "Serving on" must
    # already take the clean way out.
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        server = await asyncstreams.start_server(handle, host, port)
        for sock in server.sockets:
            out(f"Serving on {format_address(sock.getsockname())}")
        out("Press Ctrl-C to stop")
        async for signum in signals:
            out(f"{signal.Signals(signum).name}: shutting down")
            break
        server.close()
        count = len(connections)
        server.close_clients()
        with anyio.move_on_after(grace) as waited:
            await server.wait_closed()
        if waited.cancelled_caught:
            server.abort_clients()
            await server.wait_closed()
    out(f"Closed {count} client connection{'' if count == 1 else 's'}; server stopped")
