"""``asyncstreams demo``: the asyncio Streams page's examples on every backend, as a table."""

from __future__ import annotations

import functools
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anyio

import asyncstreams

from ._cli_examples import Out, handle_echo, print_http_headers, tcp_echo_client, wait_for_data
from ._cli_run import BackendUnavailable, run

__all__ = ["SCENARIOS", "demo"]

#: The bound on each example: a hang shows as a failure, it does not stall the demo.
TIMEOUT = 10.0


@dataclass(frozen=True)
class Result:
    status: str  # "pass", "FAIL" or "skip"
    detail: str = ""


class DemoFailure(Exception):
    """An example ran but did not produce what the page says it should."""


async def _echo(out: Out, http_port: int, backend: str) -> None:
    server_out: Out = lambda line: out(f"server: {line}")  # noqa: E731
    client_out: Out = lambda line: out(f"client: {line}")  # noqa: E731
    server = await asyncstreams.start_server(handle_echo(server_out), "127.0.0.1", 0)
    addrs = ", ".join(str(sock.getsockname()) for sock in server.sockets)
    server_out(f"Serving on {addrs}")
    port = server.sockets[0].getsockname()[1]
    async with server:
        message = f"Hello World from {backend}!"
        received = await tcp_echo_client(client_out, message, "127.0.0.1", port)
    if received != message:
        raise DemoFailure(f"sent {message!r}, received {received!r}")


async def _socketpair(out: Out, http_port: int, backend: str) -> None:
    received = await wait_for_data(out)
    if received != "abc":
        raise DemoFailure(f"expected 'abc', received {received!r}")


async def _headers(out: Out, http_port: int, backend: str) -> None:
    lines = await print_http_headers(out, f"http://127.0.0.1:{http_port}/path/page.html")
    if not lines or not lines[0].startswith("HTTP/1.0 200"):
        raise DemoFailure(f"expected an HTTP/1.0 200 status line, got {lines[:1]!r}")
    if "X-Requested-Path: /path/page.html" not in lines:
        raise DemoFailure(f"the request did not reach the server as sent: {lines!r}")


Scenario = Callable[[Out, int, str], Awaitable[None]]

#: (title, scenario): the page's examples, in the page's order.
SCENARIOS: tuple[tuple[str, Scenario], ...] = (
    ("TCP echo server + client", _echo),
    ("HTTP headers (local http.server)", _headers),
    ("socketpair: wait for data", _socketpair),
)


class _HeadHandler(BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("X-Requested-Path", self.path)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the demo prints what the client sees


@contextmanager
def local_http_server() -> Iterator[int]:
    """An http.server on 127.0.0.1 in a thread, answering HEAD; yields its port."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _HeadHandler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, name="demo http.server", daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(TIMEOUT)


async def _run_all(out: Out, http_port: int, backend: str) -> list[Result]:
    results = []
    for title, scenario in SCENARIOS:
        out(f"-- {title}")
        try:
            with anyio.fail_after(TIMEOUT):
                await scenario(lambda line: out(f"   {line}"), http_port, backend)
        except TimeoutError:
            results.append(Result("FAIL", f"no result within {TIMEOUT:g} s"))
        except Exception as exc:
            results.append(Result("FAIL", f"{type(exc).__name__}: {exc}"))
        else:
            results.append(Result("pass"))
    return results


def _table(backends: Sequence[str], results: dict[str, list[Result]]) -> list[str]:
    first = max(len("example"), *(len(title) for title, _ in SCENARIOS))
    widths = [max(len(b), 4) for b in backends]
    rows = [["example", *backends]]
    for i, (title, _) in enumerate(SCENARIOS):
        rows.append([title, *(results[b][i].status for b in backends)])
    lines = []
    for row in rows:
        cells = [row[0].ljust(first)] + [c.ljust(w) for c, w in zip(row[1:], widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join(["-" * first, *("-" * w for w in widths)]))
    return lines


def demo(out: Out, backends: Sequence[str], *, required: bool, quiet: bool = False) -> int:
    """Run every scenario on each backend, print a transcript and the table; return 0 or 1.

    A backend that is not installed is skipped, or fails when *required* (named on the
    command line).
    """
    transcript: Out = (lambda line: None) if quiet else out
    results: dict[str, list[Result]] = {}
    unavailable: dict[str, str] = {}
    out(f"The asyncio Streams page's examples, with asyncstreams, on {', '.join(backends)}")
    with local_http_server() as http_port:
        for backend in backends:
            transcript("")
            transcript(f"== {backend} ==")
            try:
                results[backend] = run(
                    backend, functools.partial(_run_all, transcript, http_port, backend)
                )
            except BackendUnavailable as exc:
                unavailable[backend] = str(exc)
                results[backend] = [Result("FAIL" if required else "skip")] * len(SCENARIOS)
                transcript(f"   {exc}")
    out("")
    for line in _table(backends, results):
        out(line)
    out("")
    for backend, reason in unavailable.items():
        out(f"{'FAIL' if required else 'skip'} {backend}: {reason}")
    for backend in backends:
        for (title, _), result in zip(SCENARIOS, results[backend], strict=True):
            if result.detail:
                out(f"FAIL {backend} / {title}: {result.detail}")
    failed = any(r.status == "FAIL" for rs in results.values() for r in rs)
    ran = [b for b in backends if b not in unavailable]
    if failed or not ran:
        return 1
    out(f"All examples passed on {', '.join(ran)}.")
    return 0
