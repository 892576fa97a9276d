"""Whether a client connection's server is on the same event loop.

``drain()`` lets the event loop run once per 64 KiB written (see
``StreamWriter.drain``): a reader on the same loop then takes each chunk while it is
still in the CPU cache, which makes bulk transfers between two ends on one loop 2.5x
faster. When the reader is elsewhere (another process, another machine) the pass only
costs: asyncio's own ``drain()`` never yields unless it must wait, and bulk transfers
between processes ran at 0.87x its speed with the yield.

So on asyncio's loops, a TCP client connection whose server's port is not one this
loop listens on (with :func:`~asyncstreams.start_server`) yields only when it must
wait, as asyncio's does. Every other connection keeps the yield: the ends a server
accepts (their client may be on this loop, and may connect before or after), UNIX
sockets, and every connection on trio, where the yield is a write loop's checkpoint.
A remote server on a port this loop also listens on only makes its clients yield as
they would without this module.
"""

from __future__ import annotations

import socket
from collections import Counter

from ._backend import current_backend, run_local

__all__ = ["NEVER", "client_yields", "listening", "not_listening"]

# A yield threshold no connection reaches.
NEVER = 2**63

_TCP = (socket.AF_INET, socket.AF_INET6)


class _Ports:
    """The TCP ports this loop's servers listen on, with how many listen on each."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: Counter[int] = Counter()


def _port(sock: socket.socket, peer: bool = False) -> int | None:
    if sock.family not in _TCP:
        return None
    try:
        port: int = (sock.getpeername() if peer else sock.getsockname())[1]
    except OSError:
        return None
    return port


def listening(sock: socket.socket) -> None:
    """*sock* listens for this loop's server (call from within the loop)."""
    port = _port(sock)
    if port is not None and current_backend() is not None:
        run_local(_Ports).counts[port] += 1


def not_listening(sock: socket.socket) -> None:
    """*sock*, passed to :func:`listening`, is about to close."""
    port = _port(sock)
    if port is not None and current_backend() is not None:
        counts = run_local(_Ports).counts
        counts[port] -= 1
        if counts[port] <= 0:
            del counts[port]


def client_yields(sock: socket.socket) -> bool:
    """Whether ``drain()`` on this client connection lets the loop run every 64 KiB."""
    if current_backend() != "asyncio":
        return True
    port = _port(sock, peer=True)
    return port is None or port in run_local(_Ports).counts
