"""Every script in ``examples/`` runs, on every backend it offers, as a user would run it.

Each example runs in a subprocess (``python examples/NAME.py ... --backend B``), with
warnings turned into errors, against servers on 127.0.0.1 with ports chosen by the OS.
A run must exit as expected, print what the example prints, and write nothing to stderr
(a leaked writer's ResourceWarning would show there).
"""

from __future__ import annotations

import ast
import os
import queue
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

import pytest
import trustme

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
BACKENDS = ["asyncio", "uvloop", "trio"]
#: Bound on every subprocess and every wait: a hang fails the test, it does not stall.
TIMEOUT = 30


def python(*args: str) -> list[str]:
    return [sys.executable, "-W", "error", *args]


def environment(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", **extra)
    env.pop("PYTHONWARNINGS", None)
    return env


def run_example(
    name: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        python(str(EXAMPLES / name), *args),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=ROOT,
        env=env or environment(),
        check=False,
    )


def check_ok(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert (result.returncode, result.stderr) == (0, ""), result
    return result.stdout.splitlines()


class Lines:
    """The stdout lines of a running process, read in a thread, waited for with a bound."""

    def __init__(self, stream: IO[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str) -> re.Match[str]:
        """The first line, seen so far or still to come, matching *pattern*."""
        for seen_line in self.seen:
            if match := re.search(pattern, seen_line):
                return match
        while True:
            try:
                line = self._queue.get(timeout=TIMEOUT)
            except queue.Empty:
                pytest.fail(f"no line matching {pattern!r} within {TIMEOUT} s; got {self.seen}")
            if line is None:
                pytest.fail(f"output ended without a line matching {pattern!r}; got {self.seen}")
            self.seen.append(line)
            if match := re.search(pattern, line):
                return match

    def join(self) -> None:
        self._thread.join(TIMEOUT)


class Process:
    """A long-running command (a server): its stdout as :class:`Lines`, stopped by a signal."""

    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=environment(),
        )
        assert self.proc.stdout is not None
        self.lines = Lines(self.proc.stdout)  # the only reader of stdout

    def stop(self, signum: int) -> tuple[int, str]:
        """Send *signum*; return the exit status and stderr once the process has ended."""
        self.proc.send_signal(signum)
        status = self.proc.wait(timeout=TIMEOUT)
        assert self.proc.stderr is not None
        return status, self.proc.stderr.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=TIMEOUT)
        self.lines.join()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def echo_server(request: pytest.FixtureRequest) -> Iterator[tuple[int, Lines]]:
    """``examples/tcp_echo_server.py --port 0`` on the backend in ``request.param``."""
    backend: str = request.param
    server = Process(
        python(str(EXAMPLES / "tcp_echo_server.py"), "--port", "0", "--backend", backend)
    )
    try:
        port = int(server.lines.wait_for(r"^Serving on \('127\.0\.0\.1', (\d+)\)$")[1])
        yield port, server.lines
        # Ctrl-C: the example's runner turns KeyboardInterrupt into exit status 130.
        assert server.stop(signal.SIGINT) == (130, "")
    finally:
        server.close()


@pytest.mark.parametrize("echo_server", BACKENDS, indirect=True)
@pytest.mark.parametrize("backend", BACKENDS)
def test_tcp_echo_client_and_server(echo_server: tuple[int, Lines], backend: str) -> None:
    """The client on each backend against the server on each backend."""
    port, server_lines = echo_server
    result = run_example(
        "tcp_echo_client.py", f"Hello from {backend}", "--port", str(port), "--backend", backend
    )
    assert check_ok(result) == [
        f"Send: 'Hello from {backend}'",
        f"Received: 'Hello from {backend}'",
        "Close the connection",
    ]
    server_lines.wait_for("^Close the connection$")
    assert re.fullmatch(
        rf"Received 'Hello from {backend}' from \('127\.0\.0\.1', \d+\)", server_lines.seen[1]
    )
    assert server_lines.seen[2:] == [f"Send: 'Hello from {backend}'", "Close the connection"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_tcp_echo_client_connection_refused(backend: str) -> None:
    with socket_bound_but_not_listening() as port:
        result = run_example("tcp_echo_client.py", "--port", str(port), "--backend", backend)
    assert result.returncode == 1
    assert "ConnectionRefusedError" in result.stderr


@contextmanager
def socket_bound_but_not_listening() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections (bound, so no one else takes it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_wait_for_data(backend: str) -> None:
    assert check_ok(run_example("wait_for_data.py", "--backend", backend)) == ["Received: abc"]


# -- Get HTTP headers ---------------------------------------------------------------------


class HTTPServer:
    """http.server on 127.0.0.1, port 0, in a thread; answers HEAD with fixed headers."""

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        self.requests: list[str] = []
        requests = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:
                requests.append(f"{self.requestline} Host={self.headers.get('Host')}")
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("X-Path", self.path)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if context is not None:
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port: int = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(TIMEOUT)


@pytest.fixture
def http_server() -> Iterator[HTTPServer]:
    server = HTTPServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def https_server(ca: trustme.CA) -> Iterator[HTTPServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server = HTTPServer(context)
    yield server
    server.stop()


def check_headers(lines: list[str], path: str) -> None:
    assert lines[0] == "HTTP header> HTTP/1.0 200 OK"
    assert lines[1].startswith("HTTP header> Server: BaseHTTP/")
    assert lines[2].startswith("HTTP header> Date: ")
    assert lines[3:] == ["HTTP header> Content-Type: text/plain", f"HTTP header> X-Path: {path}"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_http_headers(http_server: HTTPServer, backend: str) -> None:
    url = f"http://127.0.0.1:{http_server.port}/path/page.html"
    check_headers(
        check_ok(run_example("http_headers.py", url, "--backend", backend)), "/path/page.html"
    )
    assert http_server.requests == ["HEAD /path/page.html HTTP/1.0 Host=127.0.0.1"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_http_headers_https(
    https_server: HTTPServer, ca: trustme.CA, tmp_path: Path, backend: str
) -> None:
    """``ssl=True``: the default context, which trusts the CA named by SSL_CERT_FILE."""
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    env = environment(SSL_CERT_FILE=str(ca_file))
    env.pop("SSL_CERT_DIR", None)
    url = f"https://127.0.0.1:{https_server.port}/"
    check_headers(check_ok(run_example("http_headers.py", url, "--backend", backend, env=env)), "/")
    assert https_server.requests == ["HEAD / HTTP/1.0 Host=127.0.0.1"]


# -- trio-native examples, the testing example, the old demo entry ------------------------


def test_trio_task_group() -> None:
    lines = check_ok(run_example("trio_task_group.py"))
    assert re.fullmatch(r"Serving on port \d+", lines[0])
    assert lines[1:] == [
        "Received: HELLO FROM CLIENT 0",
        "Received: HELLO FROM CLIENT 1",
        "Received: HELLO FROM CLIENT 2",
        "Handlers and accept loop have finished",
        "Server closed",
    ]


def test_wrap_trio_stream() -> None:
    assert check_ok(run_example("wrap_trio_stream.py")) == [
        "trio.open_tcp_stream: WELCOME / HELLO asyncstreams",
        "anyio.connect_tcp: WELCOME / HELLO asyncstreams",
    ]


def test_testing_example_passes_on_every_backend() -> None:
    result = subprocess.run(
        python("-m", "pytest", "-q", "-p", "no:cacheprovider", "examples/test_upper_handler.py"),
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 2,
        cwd=ROOT,
        env=environment(),
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^6 passed", result.stdout.splitlines()[-1]), result.stdout


def test_demo_script_runs_the_command_line_demo() -> None:
    lines = check_ok(run_example("demo.py", "asyncio", "trio"))
    assert lines[-1] == "All examples passed on asyncio, trio."


# -- every example is tested --------------------------------------------------------------


def _tested_names() -> set[str]:
    source = Path(__file__).read_text()
    return set(re.findall(r"""["'](?:examples/)?([a-z_]+\.py)["']""", source))


def test_every_example_is_run_here() -> None:
    scripts = {p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")}
    assert scripts - _tested_names() == set()


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.py")), ids=lambda p: p.name)
def test_example_has_a_docstring_saying_how_to_run_it(path: Path) -> None:
    doc = ast.get_docstring(ast.parse(path.read_text()))
    assert doc, f"{path.name} has no module docstring"
    if not path.name.startswith("_"):
        assert f"examples/{path.name}" in doc, f"{path.name}'s docstring does not show its command"
