"""Opening client connections the way ``loop.create_connection()`` does.

anyio's ``connect_tcp`` has no *family*, *proto*, *flags*, local port or *interleave*, so
the socket work follows CPython's ``create_connection`` step for step (resolution,
interleaving by family, binding, staggered "happy eyeballs" attempts, its error
messages), while resolution, waiting for the connect and the stream itself come from
anyio, which makes it the same on asyncio and trio.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import sys
from collections.abc import Sequence
from typing import Any

import anyio
from anyio.abc import SocketStream

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup

__all__ = ["connect_tcp_socket", "connect_unix_socket", "resolve", "stream_from_socket"]

AddrInfo = tuple[int, int, int, str, Any]


def _ipaddr_info(
    host: Any, port: Any, family: int, type_: int, proto: int, flags: int
) -> AddrInfo | None:
    """A resolved entry for a numeric host, skipping the resolver (asyncio does too)."""
    if flags & ~socket.AI_PASSIVE or not isinstance(host, str) or host == "":
        return None
    if isinstance(port, (bytes, str)):
        port = None if port == "" else port
    if port is None:
        port = 0
    elif not isinstance(port, int):
        return None
    if proto == 0:
        proto = socket.IPPROTO_TCP
    elif proto != socket.IPPROTO_TCP:
        return None
    families = (socket.AF_INET, socket.AF_INET6) if family == socket.AF_UNSPEC else (family,)
    for af in families:
        try:
            socket.inet_pton(af, host.partition("%")[0] if af == socket.AF_INET6 else host)
        except (OSError, ValueError):
            continue
        if af == socket.AF_INET6 and "%" in host:
            return None  # a scope id needs the resolver
        sockaddr: Any = (host, port) if af == socket.AF_INET else (host, port, 0, 0)
        return (af, type_, proto, "", sockaddr)
    return None


async def resolve(
    address: Any,
    *,
    family: int = 0,
    type_: int = socket.SOCK_STREAM,
    proto: int = 0,
    flags: int = 0,
) -> list[AddrInfo]:
    """``getaddrinfo`` for ``(host, port)``, with asyncio's numeric shortcut."""
    host, port = address[:2]
    info = _ipaddr_info(host, port, family, type_, proto, flags)
    if info is not None:
        return [info]
    infos = await anyio.getaddrinfo(host, port, family=family, type=type_, proto=proto, flags=flags)
    return [(int(f), int(t), p, c, a) for f, t, p, c, a in infos]


def interleave_addrinfos(infos: Sequence[AddrInfo], first_family_count: int = 1) -> list[AddrInfo]:
    """Interleave addresses by family, as asyncio's ``_interleave_addrinfos``."""
    by_family: dict[int, list[AddrInfo]] = {}
    for info in infos:
        by_family.setdefault(info[0], []).append(info)
    lists = list(by_family.values())
    reordered: list[AddrInfo] = []
    if first_family_count > 1:
        reordered.extend(lists[0][: first_family_count - 1])
        del lists[0][: first_family_count - 1]
    reordered.extend(
        a for a in itertools.chain.from_iterable(itertools.zip_longest(*lists)) if a is not None
    )
    return reordered


async def sock_connect(sock: socket.socket, address: Any) -> None:
    """Connect a non-blocking socket, as ``loop.sock_connect`` does."""
    try:
        sock.connect(address)
    except (BlockingIOError, InterruptedError):
        pass
    else:
        return
    await anyio.wait_writable(sock)
    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err != 0:
        raise OSError(err, f"Connect call failed {address}")


async def _connect_sock(
    exceptions: list[OSError], info: AddrInfo, local_infos: Sequence[AddrInfo] | None
) -> socket.socket:
    family, type_, proto, _, address = info
    sock = None
    try:
        sock = socket.socket(family=family, type=type_, proto=proto)
        sock.setblocking(False)
        if local_infos is not None:
            bind_errors: list[OSError] = []
            for lfamily, _, _, _, laddr in local_infos:
                if lfamily != family:
                    continue
                try:
                    sock.bind(laddr)
                    break
                except OSError as exc:
                    msg = f"error while attempting to bind on address {laddr!r}: {str(exc.strerror).lower()}"
                    bind_errors.append(OSError(exc.errno, msg))
            else:
                if bind_errors:
                    exceptions.extend(bind_errors[:-1])
                    raise bind_errors[-1]
                raise OSError(f"no matching local address with family={family!r} found")
        await sock_connect(sock, address)
        return sock
    except OSError as exc:
        exceptions.append(exc)
        if sock is not None:
            sock.close()
        raise
    except BaseException:
        if sock is not None:
            sock.close()
        raise


async def _staggered_connect(
    infos: Sequence[AddrInfo],
    delay: float,
    local_infos: Sequence[AddrInfo] | None,
    exceptions: list[OSError],
) -> socket.socket | None:
    """Happy eyeballs (RFC 8305): start the next attempt when one fails or *delay* passes."""
    winner: socket.socket | None = None

    async with anyio.create_task_group() as tg:

        async def attempt(info: AddrInfo, failed: anyio.Event) -> None:
            nonlocal winner
            try:
                sock = await _connect_sock(exceptions, info, local_infos)
            except OSError:
                failed.set()
                return
            if winner is None:
                winner = sock
                tg.cancel_scope.cancel()
            else:
                sock.close()

        for info in infos:
            failed = anyio.Event()
            tg.start_soon(attempt, info, failed)
            with anyio.move_on_after(delay):
                await failed.wait()
    return winner


def _raise_connect_errors(exceptions: list[OSError], all_errors: bool) -> None:
    if all_errors:
        raise ExceptionGroup("create_connection failed", exceptions)
    if len(exceptions) == 1:
        raise exceptions[0]
    model = str(exceptions[0])
    if all(str(exc) == model for exc in exceptions):
        raise exceptions[0]
    raise OSError("Multiple exceptions: {}".format(", ".join(str(exc) for exc in exceptions)))


async def connect_tcp_socket(
    host: Any,
    port: Any,
    *,
    family: int,
    proto: int,
    flags: int,
    local_addr: Any,
    happy_eyeballs_delay: float | None,
    interleave: int | None,
    all_errors: bool,
) -> socket.socket:
    """Resolve and connect as ``loop.create_connection(host, port, ...)`` does."""
    if happy_eyeballs_delay is not None and interleave is None:
        interleave = 1  # happy eyeballs defaults to interleaving families
    infos = await resolve((host, port), family=family, proto=proto, flags=flags)
    if not infos:
        raise OSError("getaddrinfo() returned empty list")
    local_infos = None
    if local_addr is not None:
        local_infos = await resolve(local_addr, family=family, proto=proto, flags=flags)
        if not local_infos:
            raise OSError("getaddrinfo() returned empty list")
    if interleave:
        infos = interleave_addrinfos(infos, interleave)

    exceptions: list[OSError] = []
    sock: socket.socket | None = None
    if happy_eyeballs_delay is None:
        for info in infos:
            try:
                sock = await _connect_sock(exceptions, info, local_infos)
                break
            except OSError:
                continue
    else:
        sock = await _staggered_connect(infos, happy_eyeballs_delay, local_infos, exceptions)
    if sock is None:
        _raise_connect_errors(exceptions, all_errors)
        raise AssertionError("unreachable")
    return sock


async def connect_unix_socket(path: str | bytes | os.PathLike[Any]) -> socket.socket:
    """Connect a UNIX stream socket to *path*, as ``loop.create_unix_connection`` does."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0)
    try:
        sock.setblocking(False)
        await sock_connect(sock, os.fspath(path))
    except BaseException:
        sock.close()
        raise
    return sock


async def stream_from_socket(sock: socket.socket) -> SocketStream:
    """Hand a connected socket to anyio; the stream owns it from then on."""
    sock.setblocking(False)
    try:
        return await SocketStream.from_socket(sock)
    except ValueError as exc:
        # anyio refuses unconnected sockets; asyncio fails on first use with ENOTCONN.
        raise OSError(errno.ENOTCONN, os.strerror(errno.ENOTCONN)) from exc
