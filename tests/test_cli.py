"""``python -m asyncstreams``: every command, run as a user runs it, in a subprocess.

Servers are on 127.0.0.1 with ports chosen by the OS; every run and every wait is
bounded. A successful run writes nothing to stderr; a failing one writes exactly one
line there and exits non-zero, never with a traceback.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trustme
from test_examples import HTTPServer, Process  # the same helpers

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ["asyncio", "uvloop", "trio"]
COMMANDS = ["demo", "echo-server", "echo-client", "headers", "bench"]
#: Bound on every subprocess and every wait.
TIMEOUT = 30
PYTHON_M = (sys.executable, "-W", "error", "-m", "asyncstreams")


def environment(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="200", **extra)
    env.pop("PYTHONWARNINGS", None)
    return env


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PYTHON_M, *args],
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


def check_one_line_error(result: subprocess.CompletedProcess[str], status: int) -> str:
    """The run failed with *status* and one line on stderr (stdout may show progress)."""
    assert result.returncode == status, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("asyncstreams"), lines[0]
    assert ": error: " in lines[0]
    return lines[0]


@contextmanager
def refused_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections (bound, so no one else takes it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


# -- --help and bad arguments -------------------------------------------------------------


def test_help_lists_every_command() -> None:
    lines = check_ok(cli("--help"))
    assert lines[0].startswith("usage: asyncstreams ")
    text = "\n".join(lines)
    for command in COMMANDS:
        assert re.search(rf"^\s+{command}\s+\S", text, re.MULTILINE), command


@pytest.mark.parametrize(
    ("command", "says"),
    [
        ("demo", "pass/fail table"),
        ("echo-server", "until Ctrl-C"),
        ("echo-client", "send MESSAGE"),
        ("headers", "response header"),
    ],
)
def test_help_of_each_command(command: str, says: str) -> None:
    text = " ".join(check_ok(cli(command, "--help")))
    assert text.startswith(f"usage: asyncstreams {command} ")
    assert says in " ".join(text.split())
    assert "--backend" in text


def test_help_of_bench() -> None:
    text = " ".join(" ".join(check_ok(cli("bench", "--help"))).split())
    assert text.startswith("usage: asyncstreams bench ")
    assert "benchmarks/run.py" in text


def test_bench_runs_the_benchmark_suite() -> None:
    """``bench`` hands its arguments to benchmarks/run.py (here: one tiny measurement)."""
    result = cli(
        "bench",
        "--scale",
        "0.002",
        "--repeat",
        "1",
        "--workloads",
        "pingpong",
        "--impls",
        "asyncstreams-asyncio",
    )
    assert result.returncode == 0, result.stderr  # progress goes to stderr
    lines = result.stdout.splitlines()
    rows = [line for line in lines if line.startswith("pingpong ")]
    assert rows
    assert "asyncstreams-asyncio" in rows[0]


def test_version() -> None:
    assert re.fullmatch(r"asyncstreams \d+\.\d+\.\d+\S*", check_ok(cli("--version"))[0])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "required: COMMAND"),
        (("serve",), "invalid choice: 'serve'"),
        (("demo", "--backend", "curio"), "invalid choice: 'curio'"),
        (("demo", "extra"), "unrecognized arguments: extra"),
        (("echo-server", "127.0.0.1", "http"), "invalid port 'http'"),
        (("echo-server", "127.0.0.1", "65536"), "invalid port '65536'"),
        (("echo-server", "127.0.0.1", "0", "more"), "unrecognized arguments: more"),
        (("echo-client",), "required: MESSAGE"),
        (("echo-client", "hi", "--port", "-1"), "invalid port '-1'"),
        (("echo-client", "hi", "--timeout", "soon"), "invalid timeout 'soon'"),
        (("echo-client", "hi", "--backend", "twisted"), "invalid choice: 'twisted'"),
        (("headers",), "required: URL"),
        (("headers", "ftp://example.com/"), "must start with http:// or https://"),
        (("headers", "example.com"), "must start with http:// or https://"),
        (("headers", "http:///path"), "no host name"),
        (("headers", "http://example.com:port/"), "invalid URL"),
        (("headers", "https://example.com/", "--cafile", "/no/such/ca.pem"), "--cafile"),
    ],
)
def test_bad_arguments_give_one_line_and_status_2(args: tuple[str, ...], message: str) -> None:
    result = cli(*args)
    line = check_one_line_error(result, 2)
    assert result.stdout == ""
    assert message in line
    assert line.endswith("--help)")


@pytest.mark.parametrize("backend", BACKENDS)
def test_echo_client_connection_refused(backend: str) -> None:
    with refused_port() as port:
        line = check_one_line_error(
            cli("echo-client", "hi", "--port", str(port), "--backend", backend), 1
        )
    assert line.startswith(f"asyncstreams echo-client: error: 127.0.0.1:{port}: [Errno ")


def test_headers_connection_refused() -> None:
    with refused_port() as port:
        line = check_one_line_error(cli("headers", f"http://127.0.0.1:{port}/"), 1)
    assert f"http://127.0.0.1:{port}/: [Errno " in line


def test_echo_server_address_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = check_one_line_error(cli("echo-server", "127.0.0.1", str(port)), 1)
    assert "address already in use" in line.lower()


def test_echo_client_timeout() -> None:
    """A server that accepts and never answers: the client gives up after --timeout."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        line = check_one_line_error(
            cli("echo-client", "hi", "--port", str(port), "--timeout", "0.5"), 1
        )
    assert line.endswith("no answer within 0.5 s")


# -- echo-server and echo-client ----------------------------------------------------------


class EchoServer(Process):
    """``asyncstreams echo-server 127.0.0.1 0`` in a subprocess."""

    def __init__(self, backend: str) -> None:
        super().__init__([*PYTHON_M, "echo-server", "127.0.0.1", "0", "--backend", backend])
        try:
            self.port = int(self.lines.wait_for(r"^Serving on 127\.0\.0\.1:(\d+)$")[1])
            self.lines.wait_for("^Press Ctrl-C to stop$")
        except BaseException:
            self.close()
            raise


@pytest.fixture
def echo_server(request: pytest.FixtureRequest) -> Iterator[EchoServer]:
    server = EchoServer(request.param)
    try:
        yield server
    finally:
        server.close()


@pytest.mark.parametrize("echo_server", BACKENDS, indirect=True)
def test_echo_server_and_client(echo_server: EchoServer) -> None:
    for backend in BACKENDS:
        lines = check_ok(
            cli(
                "echo-client",
                f"hi from {backend}",
                "--port",
                str(echo_server.port),
                "--backend",
                backend,
            )
        )
        assert lines == [
            f"Send: 'hi from {backend}'",
            f"Received: 'hi from {backend}'",
            "Close the connection",
        ]
        echo_server.lines.wait_for(rf"^Received 'hi from {backend}' from 127\.0\.0\.1:\d+$")
    assert echo_server.stop(signal.SIGINT) == (0, "")
    assert echo_server.lines.wait_for("^.*server stopped$")[0] == (
        "Closed 0 client connections; server stopped"
    )


def test_echo_client_long_message_comes_back_whole() -> None:
    server = EchoServer("asyncio")
    try:
        message = "x" * 5000
        lines = check_ok(cli("echo-client", message, "--port", str(server.port)))
        assert lines[1] == f"Received: {message!r}"
        assert server.stop(signal.SIGTERM) == (0, "")
    finally:
        server.close()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("echo_server", BACKENDS, indirect=True)
def test_echo_server_stops_cleanly_closing_its_clients(
    echo_server: EchoServer, signum: int
) -> None:
    """Ctrl-C with two clients connected: they see EOF, the server exits 0."""
    clients = [socket.create_connection(("127.0.0.1", echo_server.port), timeout=TIMEOUT)]
    clients.append(socket.create_connection(("127.0.0.1", echo_server.port), timeout=TIMEOUT))
    try:
        for n, client in enumerate(clients):
            client.sendall(f"ping {n}".encode())
            assert client.recv(100) == f"ping {n}".encode()
        assert echo_server.stop(signum) == (0, "")
        for client in clients:
            assert client.recv(100) == b""  # closed by the server
    finally:
        for client in clients:
            client.close()
    name = signal.Signals(signum).name
    assert echo_server.lines.wait_for(f"^{name}: shutting down$")
    assert echo_server.lines.wait_for("^.*server stopped$")[0] == (
        "Closed 2 client connections; server stopped"
    )


# -- headers ------------------------------------------------------------------------------


@pytest.fixture
def http_server() -> Iterator[HTTPServer]:
    server = HTTPServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def https_server(ca: trustme.CA) -> Iterator[HTTPServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    server = HTTPServer(context)
    yield server
    server.stop()


def check_headers(lines: list[str], path: str) -> None:
    assert lines[0] == "HTTP header> HTTP/1.0 200 OK"
    assert lines[1].startswith("HTTP header> Server: BaseHTTP/")
    assert lines[2].startswith("HTTP header> Date: ")
    assert lines[3:] == ["HTTP header> Content-Type: text/plain", f"HTTP header> X-Path: {path}"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_headers_http(http_server: HTTPServer, backend: str) -> None:
    url = f"http://127.0.0.1:{http_server.port}/a/b.html?q=1"
    check_headers(check_ok(cli("headers", url, "--backend", backend)), "/a/b.html")


@pytest.mark.parametrize("backend", BACKENDS)
def test_headers_https_with_cafile(https_server: HTTPServer, ca_file: str, backend: str) -> None:
    url = f"https://localhost:{https_server.port}/secure"
    check_headers(
        check_ok(cli("headers", url, "--cafile", ca_file, "--backend", backend)), "/secure"
    )


def test_headers_https_with_the_default_context(https_server: HTTPServer, ca_file: str) -> None:
    """Without --cafile: ``ssl=True``, the default context (which SSL_CERT_FILE feeds)."""
    env = environment(SSL_CERT_FILE=ca_file)
    env.pop("SSL_CERT_DIR", None)
    url = f"https://127.0.0.1:{https_server.port}/"
    check_headers(check_ok(cli("headers", url, "--backend", "trio", env=env)), "/")


@pytest.mark.parametrize("backend", BACKENDS)
def test_headers_https_untrusted_certificate(https_server: HTTPServer, backend: str) -> None:
    env = environment(SSL_CERT_FILE=os.devnull)
    env.pop("SSL_CERT_DIR", None)
    url = f"https://127.0.0.1:{https_server.port}/"
    line = check_one_line_error(cli("headers", url, "--backend", backend, env=env), 1)
    assert line.startswith(
        f"asyncstreams headers: error: {url}: TLS certificate verification failed"
    )


# -- demo ---------------------------------------------------------------------------------

TABLE_HEADER = re.compile(r"^example\s+asyncio\s+uvloop\s+trio$")


def test_demo_passes_on_every_backend() -> None:
    lines = check_ok(cli("demo"))
    start = next(i for i, line in enumerate(lines) if TABLE_HEADER.match(line))
    rows = lines[start + 2 : start + 5]
    assert [row.split()[-3:] for row in rows] == [["pass", "pass", "pass"]] * 3
    assert [re.split(r"\s{2,}", row)[0] for row in rows] == [
        "TCP echo server + client",
        "HTTP headers (local http.server)",
        "socketpair: wait for data",
    ]
    assert lines[-1] == "All examples passed on asyncio, uvloop, trio."
    for backend in BACKENDS:
        assert f"== {backend} ==" in lines
        assert f"   client: Received: 'Hello World from {backend}!'" in lines
    assert lines.count("   Received: abc") == 3
    assert lines.count("   HTTP header> HTTP/1.0 200 OK") == 3


def test_demo_one_backend_quietly() -> None:
    lines = check_ok(cli("demo", "--backend", "trio", "-q"))
    assert any(re.fullmatch(r"example\s+trio", line) for line in lines), lines
    assert not any(line.startswith("   ") for line in lines)  # no transcript
    assert lines[-1] == "All examples passed on trio."


BLOCK_TRIO = "import sys; sys.modules['trio'] = None; import runpy; runpy.run_module('asyncstreams', run_name='__main__')"


def test_demo_skips_a_backend_that_is_not_installed() -> None:
    result = subprocess.run(
        [sys.executable, "-c", BLOCK_TRIO, "demo", "-q"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=ROOT,
        env=environment(),
        check=False,
    )
    lines = check_ok(result)
    assert "skip trio: trio is not installed (pip install 'asyncstreams[trio]')" in lines
    assert lines[-1] == "All examples passed on asyncio, uvloop."


def test_demo_fails_when_a_requested_backend_is_not_installed() -> None:
    result = subprocess.run(
        [sys.executable, "-c", BLOCK_TRIO, "demo", "-q", "--backend", "trio"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=ROOT,
        env=environment(),
        check=False,
    )
    assert result.returncode == 1
    assert "FAIL trio: trio is not installed (pip install 'asyncstreams[trio]')" in result.stdout
    assert result.stderr == ""


def test_console_script() -> None:
    """The ``asyncstreams`` script that installing the package puts next to python."""
    script = Path(sys.executable).parent / "asyncstreams"
    assert script.exists(), "reinstall the package: pip install -e ."
    result = subprocess.run(
        [str(script), "echo-client", "--help"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert check_ok(result)[0].startswith("usage: asyncstreams echo-client ")
