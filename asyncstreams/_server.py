"""The server side: ``start_server``, ``start_unix_server`` and :class:`Server`."""

from __future__ import annotations

import errno
import inspect
import os
import socket
import ssl as _ssl
import stat
import sys
import weakref
from asyncio import trsock
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, Protocol

import anyio
from anyio.lowlevel import checkpoint

from ._backend import current_backend, report_handler_error, spawn_detached
from ._connect import resolve
from ._peers import listening, not_listening
from ._reader import DEFAULT_LIMIT, StreamReader
from ._transport import StreamTransport, logger, transport_from_socket
from ._writer import StreamWriter

__all__ = ["ClientConnectedCallback", "Server", "start_server", "start_unix_server"]

ClientConnectedCallback = Callable[[StreamReader, StreamWriter], Awaitable[None] | None]


class TaskStarter(Protocol):
    """What ``task_group=`` takes: an anyio ``TaskGroup`` or a trio ``Nursery``."""

    def start_soon(
        self, func: Callable[..., Coroutine[Any, Any, Any]], *args: Any, name: Any = None
    ) -> Any: ...


# Accept errors that mean "out of resources": back off and retry, as asyncio and trio do.
_ACCEPT_RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_ACCEPT_RETRY_DELAY = 1.0


class Server:
    """asyncio's :class:`asyncio.Server` for stream servers, on any anyio backend.

    Client handlers run in the background (no nursery needed, as in asyncio), or as
    children of the ``task_group=`` given to :func:`start_server`.

    Differs from asyncio: ``get_loop()`` does not exist; on trio, calling :meth:`close`
    while a task awaits :meth:`serve_forever` makes it return (asyncio raises
    ``CancelledError`` there, and does so on the asyncio backend too).
    """

    def __init__(
        self,
        sockets: list[socket.socket],
        client_connected_cb: ClientConnectedCallback,
        *,
        limit: int,
        backlog: int,
        ssl: _ssl.SSLContext | None,
        ssl_handshake_timeout: float | None,
        ssl_shutdown_timeout: float | None,
        keep_alive: bool,
        task_group: TaskStarter | None,
        unix_inodes: dict[socket.socket, int] | None = None,
    ) -> None:
        self._sockets: list[socket.socket] | None = sockets
        for sock in sockets:
            listening(sock)  # its clients on this loop yield in drain() (see _peers)
        self._callback = client_connected_cb
        self._limit = limit
        self._backlog = backlog
        self._ssl = ssl
        self._ssl_handshake_timeout = ssl_handshake_timeout
        self._ssl_shutdown_timeout = ssl_shutdown_timeout
        self._keep_alive = keep_alive
        self._task_group = task_group
        self._unix_inodes = unix_inodes or {}
        self._clients: weakref.WeakSet[StreamTransport] = weakref.WeakSet()
        self._serving = False
        self._accept_scopes: list[anyio.CancelScope] = []
        self._accepting = 0  # accept loops still running
        # Clients accepted whose transport does not exist yet (asyncio attaches a client
        # to its server as it accepts it, so wait_closed() waits for these too).
        self._starting = 0
        self._closed_event: anyio.Event | None = None
        self._fully_closed = False
        self._serve_forever_event: anyio.Event | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} sockets={self.sockets!r}>"

    # -- bookkeeping of clients ----------------------------------------------------------

    def _attach(self, transport: StreamTransport) -> None:
        self._clients.add(transport)

    def _detach(self, transport: StreamTransport) -> None:
        self._clients.discard(transport)
        self._maybe_wakeup()

    def _maybe_wakeup(self) -> None:
        if (
            self._sockets is None
            and not self._clients
            and self._accepting == 0
            and self._starting == 0
        ):
            self._fully_closed = True
            if self._closed_event is not None:
                self._closed_event.set()

    # -- asyncio.Server ------------------------------------------------------------------

    @property
    def sockets(self) -> tuple[trsock.TransportSocket, ...]:
        """The listening sockets (as asyncio's ``TransportSocket``); empty once closed."""
        if self._sockets is None:
            return ()
        return tuple(trsock.TransportSocket(s) for s in self._sockets)

    def is_serving(self) -> bool:
        """True while the server accepts connections."""
        return self._serving

    def _start_serving(self) -> None:
        if self._serving or self._sockets is None:
            return
        self._serving = True
        for sock in self._sockets:
            sock.listen(self._backlog)
            scope = anyio.CancelScope()
            self._accept_scopes.append(scope)
            self._accepting += 1
            self._spawn(self._accept_loop, sock, scope, name=f"asyncstreams accept {sock!r}")

    async def start_serving(self) -> None:
        """Start accepting connections (a no-op if already serving)."""
        self._start_serving()
        await checkpoint()

    async def serve_forever(self) -> None:
        """Accept connections until cancelled; cancelling closes the server.

        Differs from asyncio: cancelled by an anyio or trio cancel scope, it closes the
        server but cannot then wait for the clients to leave (the scope is cancelled);
        ``await server.wait_closed()`` outside the scope does that.
        """
        if self._serve_forever_event is not None:
            raise RuntimeError(f"server {self!r} is already being awaited on serve_forever()")
        if self._sockets is None:
            raise RuntimeError(f"server {self!r} is closed")
        self._start_serving()
        event = self._serve_forever_event = anyio.Event()
        try:
            await event.wait()
        except anyio.get_cancelled_exc_class():
            try:
                self.close()
                await self.wait_closed()
            finally:
                raise
        finally:
            self._serve_forever_event = None
        # close() was called. asyncio cancels serve_forever()'s future there, so the
        # caller waits for the clients to leave and then sees CancelledError.
        await self.wait_closed()
        if current_backend() == "asyncio":
            import asyncio

            raise asyncio.CancelledError()

    def close(self) -> None:
        """Stop listening. Connected clients stay connected; see :meth:`close_clients`."""
        sockets = self._sockets
        if sockets is None:
            return
        self._sockets = None
        self._serving = False
        for scope in self._accept_scopes:
            scope.cancel()
        self._accept_scopes.clear()
        # As asyncio does, close the listeners now, not when the accept loops next run:
        # a client connecting right after close() is refused, never accepted and reset,
        # and a UNIX socket file is gone once close() returns.
        for sock in sockets:
            self._close_listener(sock)
        if self._serve_forever_event is not None:
            self._serve_forever_event.set()
        self._maybe_wakeup()

    def close_clients(self) -> None:
        """Close every client connection, sending what is buffered first (3.13)."""
        for transport in list(self._clients):
            transport.close()

    def abort_clients(self) -> None:
        """Close every client connection at once, dropping unsent data (3.13)."""
        for transport in list(self._clients):
            transport.abort()

    async def wait_closed(self) -> None:
        """Wait until the server is closed and every client connection has ended."""
        if self._fully_closed:
            return
        if self._closed_event is None:
            self._closed_event = anyio.Event()
        await self._closed_event.wait()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
        await self.wait_closed()

    # -- internals -----------------------------------------------------------------------

    def _spawn(self, fn: Callable[..., Coroutine[Any, Any, None]], *args: Any, name: str) -> None:
        if self._task_group is not None:
            self._task_group.start_soon(fn, *args, name=name)
        else:
            spawn_detached(fn, *args, name=name)

    def _close_listener(self, sock: socket.socket) -> None:
        if sock.fileno() == -1:
            return
        not_listening(sock)
        inode = self._unix_inodes.pop(sock, None)
        path = None
        if inode is not None:
            try:
                path = sock.getsockname()
            except OSError:
                path = None
        if current_backend() is not None:
            # Wake the accept loop waiting on it before the descriptor can be reused.
            anyio.notify_closing(sock)
        sock.close()
        if path:
            try:
                if os.stat(path).st_ino == inode:
                    os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as err:
                logger.error("Unable to clean up listening UNIX socket %r: %r", path, err)

    async def _accept_loop(self, sock: socket.socket, scope: anyio.CancelScope) -> None:
        try:
            with scope:
                while sock.fileno() != -1:
                    try:
                        await anyio.wait_readable(sock)
                    except anyio.ClosedResourceError:
                        break  # close() closed it
                    # Accept what is queued, up to the backlog, as asyncio does.
                    for _ in range(self._backlog):
                        try:
                            conn, addr = sock.accept()
                        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                            break
                        except OSError as exc:
                            if exc.errno in _ACCEPT_RESOURCE_ERRORS:
                                logger.error(
                                    "socket.accept() out of system resource: %s",
                                    exc,
                                    exc_info=True,
                                )
                                await anyio.sleep(_ACCEPT_RETRY_DELAY)
                            else:
                                # asyncio logs it and keeps listening; so do we.
                                logger.error("Error accepting a connection: %r", exc, exc_info=True)
                            break
                        self._starting += 1
                        try:
                            self._spawn(
                                self._serve_client, conn, name=f"asyncstreams client {addr!r}"
                            )
                        except BaseException:
                            self._starting -= 1
                            conn.close()
                            raise
        finally:
            self._accepting -= 1
            self._close_listener(sock)
            self._maybe_wakeup()

    async def _connect_client(
        self, conn: socket.socket
    ) -> tuple[StreamReader, StreamWriter] | None:
        """Make the client's reader and writer, attached to this server; None if it left."""
        reader = StreamReader(limit=self._limit)
        try:
            if self._keep_alive:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            transport = await transport_from_socket(
                conn,
                reader,
                ssl_context=self._ssl,
                server=self,
                server_side=True,
                ssl_handshake_timeout=self._ssl_handshake_timeout,
                ssl_shutdown_timeout=self._ssl_shutdown_timeout,
            )
        except OSError as exc:
            # The client left before we got to it, or its TLS handshake failed: that
            # drops this client only. asyncio logs it at debug level.
            conn.close()
            logger.debug("Could not set up a connection with a client: %r", exc)
            return None
        except BaseException:
            conn.close()
            raise
        return reader, StreamWriter(transport, reader)

    async def _serve_client(self, conn: socket.socket) -> None:
        try:
            pair = await self._connect_client(conn)
        finally:
            self._starting -= 1
            self._maybe_wakeup()
        if pair is None:
            return
        reader, writer = pair
        transport = writer.transport
        try:
            result = self._callback(reader, writer)
            if inspect.isawaitable(result):
                await result
        except anyio.get_cancelled_exc_class():
            transport.close()
            raise
        except Exception as exc:
            report_handler_error(exc, transport)
            transport.close()


def _check_server_ssl(
    ssl: Any, ssl_handshake_timeout: float | None, ssl_shutdown_timeout: float | None
) -> None:
    if isinstance(ssl, bool):
        raise TypeError("ssl argument must be an SSLContext or None")
    if ssl is not None and not isinstance(ssl, _ssl.SSLContext):
        raise TypeError(f"ssl argument must be an SSLContext or None, got {ssl!r}")
    if ssl_handshake_timeout is not None and ssl is None:
        raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
    if ssl_shutdown_timeout is not None and ssl is None:
        raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")


def _set_reuseport(sock: socket.socket) -> None:
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ValueError("reuse_port not supported by socket module")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    except OSError:
        raise ValueError(
            "reuse_port not supported by socket module, SO_REUSEPORT defined but not implemented."
        ) from None


async def _bind_tcp_sockets(
    host: str | Iterable[str] | None,
    port: int | str | None,
    *,
    family: int,
    flags: int,
    reuse_address: bool | None,
    reuse_port: bool | None,
    keep_alive: bool | None,
) -> list[socket.socket]:
    if reuse_address is None:
        reuse_address = os.name == "posix" and sys.platform != "cygwin"
    hosts: list[str | None]
    if host == "":
        hosts = [None]
    elif isinstance(host, str) or not isinstance(host, Iterable):
        hosts = [host]
    else:
        hosts = list(host)
    infos: list[Any] = []
    for h in hosts:
        found = await resolve((h, port), family=family, flags=flags)
        if not found:
            raise OSError(f"getaddrinfo({h!r}) returned empty list")
        infos.extend(i for i in found if i not in infos)
    sockets: list[socket.socket] = []
    completed = False
    try:
        for af, socktype, proto, _canonname, sa in infos:
            try:
                sock = socket.socket(af, socktype, proto)
            except OSError:
                continue  # a family this host lacks
            sockets.append(sock)
            if reuse_address:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, True)
            if reuse_port and af in (socket.AF_INET, socket.AF_INET6):
                _set_reuseport(sock)
            if keep_alive:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, True)
            if af == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                # One socket per family, as asyncio: no dual-stack socket.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, True)
            try:
                sock.bind(sa)
            except OSError as err:
                msg = f"error while attempting to bind on address {sa!r}: {str(err).lower()}"
                if err.errno == errno.EADDRNOTAVAIL:
                    sockets.pop()
                    sock.close()
                    continue
                raise OSError(err.errno, msg) from None
        if not sockets:
            raise OSError(f"could not bind on any address out of {[info[4] for info in infos]!r}")
        completed = True
    finally:
        if not completed:
            for sock in sockets:
                sock.close()
    return sockets


async def _make_server(sockets: list[socket.socket], start_serving: bool, **kwargs: Any) -> Server:
    for sock in sockets:
        sock.setblocking(False)
    server = Server(sockets, **kwargs)
    if start_serving:
        server._start_serving()
        await checkpoint()
    return server


async def start_server(
    client_connected_cb: ClientConnectedCallback,
    host: str | Iterable[str] | None = None,
    port: int | str | None = None,
    *,
    limit: int = DEFAULT_LIMIT,
    family: int = socket.AF_UNSPEC,
    flags: int = socket.AI_PASSIVE,
    sock: socket.socket | None = None,
    backlog: int = 100,
    ssl: _ssl.SSLContext | None = None,
    reuse_address: bool | None = None,
    reuse_port: bool | None = None,
    keep_alive: bool | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
    start_serving: bool = True,
    task_group: TaskStarter | None = None,
) -> Server:
    """Start a TCP server, as :func:`asyncio.start_server`.

    *client_connected_cb(reader, writer)* is called for each client; a coroutine it
    returns runs as a background task, as in asyncio. Every parameter means what it
    means to :meth:`asyncio.loop.create_server`.

    Beyond asyncio: with *task_group* (an anyio ``TaskGroup`` or a trio ``Nursery``)
    the accept loop and the handlers run as its children instead, so the group waits
    for them and cancelling it stops them. Either way a handler that raises is
    reported (on asyncio to the loop's exception handler, on trio to the
    ``asyncstreams`` logger) and its connection closed; the exception does not reach
    the group, as asyncio never lets it reach the caller.
    """
    _check_server_ssl(ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
    if limit <= 0:
        raise ValueError("Limit cannot be <= 0")
    if sock is not None and isinstance(sock, _ssl.SSLSocket):
        raise TypeError("Socket cannot be of type SSLSocket")
    if host is not None or port is not None:
        if sock is not None:
            raise ValueError("host/port and sock can not be specified at the same time")
        sockets = await _bind_tcp_sockets(
            host,
            port,
            family=family,
            flags=flags,
            reuse_address=reuse_address,
            reuse_port=reuse_port,
            keep_alive=keep_alive,
        )
    else:
        if sock is None:
            raise ValueError("Neither host/port nor sock were specified")
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f"A Stream Socket was expected, got {sock!r}")
        sockets = [sock]
    return await _make_server(
        sockets,
        start_serving,
        client_connected_cb=client_connected_cb,
        limit=limit,
        backlog=backlog,
        ssl=ssl,
        ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout,
        # asyncio applies keep_alive to the sockets it binds only, never to a given sock.
        keep_alive=bool(keep_alive) and sock is None,
        task_group=task_group,
    )


async def start_unix_server(
    client_connected_cb: ClientConnectedCallback,
    path: str | bytes | os.PathLike[str] | None = None,
    *,
    limit: int = DEFAULT_LIMIT,
    sock: socket.socket | None = None,
    backlog: int = 100,
    ssl: _ssl.SSLContext | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
    start_serving: bool = True,
    cleanup_socket: bool = True,
    task_group: TaskStarter | None = None,
) -> Server:
    """Start a UNIX socket server, as :func:`asyncio.start_unix_server`.

    With *cleanup_socket* (the default, as in 3.13), closing the server removes the
    socket file, unless it was replaced meanwhile.
    """
    _check_server_ssl(ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
    if limit <= 0:
        raise ValueError("Limit cannot be <= 0")
    if path is not None:
        if sock is not None:
            raise ValueError("path and sock can not be specified at the same time")
        fspath = os.fspath(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if fspath and fspath[0] not in (0, "\x00"):  # not an abstract socket
            try:
                if stat.S_ISSOCK(os.stat(fspath).st_mode):
                    os.remove(fspath)
            except FileNotFoundError:
                pass
            except OSError as err:
                logger.error("Unable to check or remove stale UNIX socket %r: %r", fspath, err)
        try:
            sock.bind(fspath)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise OSError(errno.EADDRINUSE, f"Address {fspath!r} is already in use") from None
            raise
        except BaseException:
            sock.close()
            raise
    else:
        if sock is None:
            raise ValueError("path was not specified, and no sock specified")
        if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
            raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")
    inodes: dict[socket.socket, int] = {}
    if cleanup_socket:
        name = sock.getsockname()
        if name and name[0] not in (0, "\x00"):
            try:
                inodes[sock] = os.stat(name).st_ino
            except FileNotFoundError:
                pass
    return await _make_server(
        [sock],
        start_serving,
        client_connected_cb=client_connected_cb,
        limit=limit,
        backlog=backlog,
        ssl=ssl,
        ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout,
        keep_alive=False,
        task_group=task_group,
        unix_inodes=inodes,
    )
