"""The command line: ``python -m asyncstreams demo|echo-server|echo-client|headers|bench``.

Every command runs asyncstreams the way a user's program does: under ``asyncio.run``,
``uvloop.run`` or ``trio.run``, chosen with ``--backend``. Bad arguments and failures
(a refused connection, an unknown host, a failed TLS handshake) end with one line on
stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib.metadata
import ssl
import subprocess
import sys
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import NoReturn

import anyio

from ._cli_demo import demo
from ._cli_examples import print_http_headers, tcp_echo_client
from ._cli_run import BACKENDS, BackendUnavailable, run
from ._cli_server import serve_echo

__all__ = ["main"]

PROG = "asyncstreams"
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: ``prog: error: ... (see --help)``."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _port(text: str) -> int:
    try:
        port = int(text, 10)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: use a number from 0 to 65535")
    return port


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"invalid timeout {text!r}: use a positive number")
    return value


def _out(line: str) -> None:
    print(line, flush=True)


def _add_backend(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="asyncio",
        help="the event loop to run on: asyncio.run, uvloop.run or trio.run (default: asyncio)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description=(
            "asyncio's Streams API on anyio: the asyncio documentation's stream examples, "
            "run with asyncstreams on asyncio, uvloop or trio."
        ),
        epilog="Run 'asyncstreams COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=_Parser
    )

    cmd = commands.add_parser(
        "demo",
        help="run the reference page's examples on every backend and print a pass/fail table",
        description=(
            "Run the asyncio Streams page's examples (TCP echo server and client, HTTP "
            "headers against a local http.server, waiting for data on a socketpair) with "
            "asyncstreams on each backend, then print a pass/fail table. Exits 0 if all pass."
        ),
    )
    cmd.add_argument(
        "--backend",
        choices=BACKENDS,
        action="append",
        help="run on this backend only (repeat for several; default: all, skipping any "
        "that is not installed)",
    )
    cmd.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print only the table, not what the examples print",
    )

    cmd = commands.add_parser(
        "echo-server",
        help="the reference page's TCP echo server, until Ctrl-C",
        description=(
            "Echo back what each client sends until Ctrl-C (or SIGTERM), then stop "
            "listening, close the client connections and exit. Prints 'Serving on "
            "HOST:PORT' for each listening socket (use port 0 for a free port)."
        ),
    )
    cmd.add_argument(
        "host", nargs="?", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)"
    )
    cmd.add_argument(
        "port", nargs="?", type=_port, default=8888, help="port, 0 for any free one (default: 8888)"
    )
    _add_backend(cmd)

    cmd = commands.add_parser(
        "echo-client",
        help="the reference page's TCP echo client: send MESSAGE, print the echo",
        description="Connect to an echo server, send MESSAGE and print what comes back.",
    )
    cmd.add_argument("message", metavar="MESSAGE", help="the text to send")
    cmd.add_argument("--host", default="127.0.0.1", help="server address (default: 127.0.0.1)")
    cmd.add_argument("--port", type=_port, default=8888, help="server port (default: 8888)")
    cmd.add_argument(
        "--timeout",
        type=_positive,
        default=10.0,
        help="give up after this many seconds (default: 10)",
    )
    _add_backend(cmd)

    cmd = commands.add_parser(
        "headers",
        help="the reference page's HTTP headers example: print URL's response headers",
        description=(
            "Send 'HEAD path HTTP/1.0' to URL's server and print each response header "
            "line. https:// URLs use TLS with the system's CA certificates (or --cafile)."
        ),
    )
    cmd.set_defaults(command_parser=cmd)  # URL errors are reported as usage errors
    cmd.add_argument("url", metavar="URL", help="an http:// or https:// URL")
    cmd.add_argument("--cafile", help="trust the CA certificates in this PEM file for https")
    cmd.add_argument(
        "--timeout",
        type=_positive,
        default=10.0,
        help="give up after this many seconds (default: 10)",
    )
    _add_backend(cmd)

    cmd = commands.add_parser(
        "bench",
        help="run the benchmark suite (benchmarks/run.py, in a source checkout)",
        description=(
            "Run benchmarks/run.py from the source checkout this package was installed "
            "from, passing it the remaining arguments (try: bench --quick, bench -- --help)."
        ),
    )
    cmd.add_argument(
        "bench_args", nargs=argparse.REMAINDER, metavar="...", help="arguments for run.py"
    )
    return parser


def _version() -> str:
    try:
        return importlib.metadata.version("asyncstreams")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


async def _with_timeout(timeout: float, fn: Callable[[], Awaitable[object]]) -> None:
    try:
        with anyio.fail_after(timeout):
            await fn()
    except TimeoutError:
        raise TimeoutError(f"no answer within {timeout:g} s") from None


def _check_url(parser: argparse.ArgumentParser, url: str) -> None:
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError as exc:
        parser.error(f"invalid URL {url!r}: {exc}")
    if parts.scheme not in ("http", "https"):
        parser.error(f"invalid URL {url!r}: it must start with http:// or https://")
    if not parts.hostname:
        parser.error(f"invalid URL {url!r}: no host name")


def _ssl_context(parser: argparse.ArgumentParser, cafile: str | None) -> ssl.SSLContext | None:
    if cafile is None:
        return None
    try:
        return ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        parser.error(f"cannot load --cafile {cafile!r}: {exc}")


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, ssl.SSLCertVerificationError):
        text = f"TLS certificate verification failed: {exc.verify_message or exc}"
    elif isinstance(exc, asyncio.IncompleteReadError):
        text = f"the connection closed early ({exc})"
    return " ".join(text.split())  # one line, whatever the OS put in the message


def _demo(args: argparse.Namespace) -> int:
    backends = list(dict.fromkeys(args.backend or BACKENDS))
    return demo(_out, backends, required=bool(args.backend), quiet=args.quiet)


def _echo_server(args: argparse.Namespace) -> int:
    run(args.backend, functools.partial(serve_echo, _out, args.host, args.port))
    return 0


def _echo_client(args: argparse.Namespace) -> int:
    client = functools.partial(tcp_echo_client, _out, args.message, args.host, args.port)
    run(args.backend, functools.partial(_with_timeout, args.timeout, client))
    return 0


def _headers(args: argparse.Namespace) -> int:
    _check_url(args.command_parser, args.url)
    context = _ssl_context(args.command_parser, args.cafile)
    headers = functools.partial(print_http_headers, _out, args.url, ssl_context=context)
    run(args.backend, functools.partial(_with_timeout, args.timeout, headers))
    return 0


def _bench(args: argparse.Namespace) -> int:
    return _run_bench(list(args.bench_args))


def _run_bench(bench_args: list[str]) -> int:
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"
    if not script.is_file():
        print(
            f"{PROG} bench: error: the benchmark suite comes with the source checkout "
            f"(no {script})",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    if bench_args[:1] == ["--"]:
        bench_args = bench_args[1:]
    return subprocess.run([sys.executable, str(script), *bench_args], check=False).returncode


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "demo": _demo,
    "echo-server": _echo_server,
    "echo-client": _echo_client,
    "headers": _headers,
    "bench": _bench,
}


def _target(args: argparse.Namespace) -> str:
    """What a failure message names: the URL, or the address connected to or served on."""
    if args.command == "headers":
        return f"{args.url}: "
    if args.command in ("echo-server", "echo-client"):
        return f"{args.host}:{args.port}: "
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    """The ``asyncstreams`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"] and argv[1:2] not in (["-h"], ["--help"]):
        # argparse cannot pass on options it does not know: run.py parses its own.
        return _run_bench(argv[1:])
    args = build_parser().parse_args(argv)
    prog = f"{PROG} {args.command}"
    try:
        return _COMMANDS[args.command](args)
    except BackendUnavailable as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
    except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
        # Refused, unreachable, unknown host, TLS failure, timeout, address in use...
        print(f"{prog}: error: {_target(args)}{_describe(exc)}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_FAILURE
