"""Every code block in the docs and the README is tested here or comes from a tested file.

* The porting guide's before/after pairs (``docs/snippets/*_asyncio.py`` and
  ``*_asyncstreams.py``) run here: the "before" with real asyncio (the oracle), the
  "after" on asyncio, asyncio+uvloop and trio, and they must agree.
* A fenced block in ``docs/*.md`` is either only ``--8<--`` includes of files that
  exist and are tested (the snippets, ``examples/``), or a shell block whose commands
  are checked against the command line's parser, or the demo table, compared with what
  the demo prints.
* The README's echo client runs under ``asyncio.run`` and ``trio.run``, as it says.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import importlib.util
import re
import shlex
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest
from test_examples import BACKENDS, ROOT, Process, environment

import asyncstreams
from asyncstreams._cli import build_parser

DOCS = ROOT / "docs"
SNIPPETS = DOCS / "snippets"
PAGES = sorted(DOCS.glob("*.md"))
#: Bound on every wait.
WAIT = 10

anyio_test = pytest.mark.anyio


def snippet(name: str) -> ModuleType:
    """Import ``docs/snippets/NAME.py`` under a name of its own."""
    path = SNIPPETS / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"docs_snippet_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_asyncio(fn: Callable[[], Any]) -> Any:
    """``asyncio.run(fn())`` in a worker thread: the "before" code, on real asyncio."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(asyncio.run(fn())))
    thread.start()
    thread.join(WAIT)
    assert result, "the asyncio version did not finish"
    return result[0]


@contextmanager
def line_server(reply: Callable[[bytes], bytes], connections: int) -> Iterator[int]:
    """A blocking TCP server in a thread for *connections* clients: each sends a line, and
    gets ``reply(line)``."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(WAIT)

    def serve() -> None:
        for _ in range(connections):
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(WAIT)
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(100)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(reply(data))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        thread.join(WAIT)


# -- the porting guide's pairs ------------------------------------------------------------


@anyio_test
async def test_client_pair() -> None:
    before, after = snippet("client_asyncio"), snippet("client_asyncstreams")
    with line_server(bytes.upper, connections=2) as port:
        expected = run_asyncio(lambda: before.ask("127.0.0.1", port, b"hello"))
        with anyio.fail_after(WAIT):
            got = await after.ask("127.0.0.1", port, b"hello")
    assert expected == got == b"HELLO\n"


async def _talk_to(open_connection: Any, port: int) -> bytes:
    reader, writer = await open_connection("127.0.0.1", port)
    writer.write(b"one\ntwo\n")
    writer.write_eof()
    data: bytes = await reader.read()
    writer.close()
    await writer.wait_closed()
    return data


@anyio_test
async def test_server_pair() -> None:
    before, after = snippet("server_asyncio"), snippet("server_asyncstreams")

    async def asyncio_version() -> bytes:
        ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(before.serve(0, ready.set_result))
        data = await _talk_to(asyncio.open_connection, await ready)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return data

    expected = run_asyncio(asyncio_version)
    ports: list[int] = []
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            started = anyio.Event()

            def ready(port: int) -> None:
                ports.append(port)
                started.set()

            tg.start_soon(after.serve, 0, ready)
            await started.wait()
            got = await _talk_to(asyncstreams.open_connection, ports[0])
            tg.cancel_scope.cancel()  # serve_forever() ends, closing the server
    assert expected == got == b"ONE\nTWO\n"
    with pytest.raises(ConnectionRefusedError):
        await asyncstreams.open_connection("127.0.0.1", ports[0])


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="UNIX sockets")
@anyio_test
async def test_unix_pair(tmp_path: Path) -> None:
    before, after = snippet("unix_asyncio"), snippet("unix_asyncstreams")
    expected = run_asyncio(lambda: before.unix_round_trip(str(tmp_path / "a.sock")))
    with anyio.fail_after(WAIT):
        got = await after.unix_round_trip(str(tmp_path / "b.sock"))
    assert expected == got == b"over a UNIX socket\n"
    # Closing removes the socket file: asyncstreams on every Python, asyncio from 3.13.
    assert not (tmp_path / "b.sock").exists()
    assert (tmp_path / "a.sock").exists() == (sys.version_info < (3, 13))


async def _timeouts(module: ModuleType, reader: Any) -> list[bytes | None]:
    results = [await module.read_line_or_none(reader, 0.05)]
    reader.feed_data(b"half a ")
    results.append(await module.read_line_or_none(reader, 0.05))
    reader.feed_data(b"line\n")
    results.append(await module.read_line_or_none(reader, 0.05))
    return results


@anyio_test
async def test_timeouts_pair() -> None:
    before, after = snippet("timeouts_asyncio"), snippet("timeouts_asyncstreams")

    async def asyncio_version() -> list[bytes | None]:
        return await _timeouts(before, asyncio.StreamReader())

    expected = run_asyncio(asyncio_version)
    with anyio.fail_after(WAIT):
        got = await _timeouts(after, asyncstreams.StreamReader())
        reader = asyncstreams.StreamReader()
        assert await after.read_line_or_none_too(reader, 0.05) is None
        reader.feed_data(b"ok\n")
        assert await after.read_line_or_none_too(reader, 0.05) == b"ok\n"
    assert expected == got == [None, None, b"half a line\n"]


async def _tasks(module: ModuleType, open_connection: Any) -> tuple[int, bytes]:
    ours, theirs = socket.socketpair()
    peer_reader, peer_writer = await open_connection(sock=theirs)
    reader, writer = await open_connection(sock=ours)

    async def peer() -> bytes:
        beats = await peer_reader.readline() + await peer_reader.readline()
        peer_writer.write(b"x\ny\nstop\n")
        await peer_writer.drain()
        return bytes(beats)

    async with anyio.create_task_group() as tg:
        seen: list[bytes] = []

        async def run_peer() -> None:
            seen.append(await peer())

        tg.start_soon(run_peer)
        lines = await module.beat_until_stop(reader, writer)
    for w in (writer, peer_writer):
        w.close()
        await w.wait_closed()
    return lines, seen[0]


@anyio_test
async def test_tasks_pair() -> None:
    before, after = snippet("tasks_asyncio"), snippet("tasks_asyncstreams")
    expected = run_asyncio(lambda: _tasks(before, asyncio.open_connection))
    with anyio.fail_after(WAIT):
        got = await _tasks(after, asyncstreams.open_connection)
    assert expected == got == (2, b"beat\nbeat\n")


@anyio_test
async def test_loop_pair() -> None:
    before, after = snippet("loop_asyncio"), snippet("loop_asyncstreams")
    expected = run_asyncio(before.digest_from_socket)
    with anyio.fail_after(WAIT):
        got = await after.digest_from_socket()
    assert expected == got == hashlib.sha256(b"abc").hexdigest()


@anyio_test
async def test_pipes_pair() -> None:
    before, after = snippet("pipes_asyncio"), snippet("pipes_asyncstreams")
    lines = [b"one\n", b"two\n"]
    expected = run_asyncio(lambda: before.shout(lines))
    with anyio.fail_after(WAIT):
        got = await after.shout(lines)
    assert expected == got == [b"ONE\n", b"TWO\n", b""]


@anyio_test
async def test_errors_pair() -> None:
    before, after = snippet("errors_asyncio"), snippet("errors_asyncstreams")
    results: dict[str, list[bytes | str]] = {"before": [], "after": []}
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        refused = unused.getsockname()[1]
        results["before"].append(run_asyncio(lambda: before.read_record("127.0.0.1", refused)))
        with anyio.fail_after(WAIT):
            results["after"].append(await after.read_record("127.0.0.1", refused))
    for record in (b"0003abc", b"0005ab"):
        # The servers reply without waiting for a newline: the client sends nothing.
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]

        def serve(listener: socket.socket = listener, record: bytes = record) -> None:
            for _ in range(2):
                conn, _ = listener.accept()
                with conn:
                    conn.sendall(record)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        results["before"].append(
            run_asyncio(functools.partial(before.read_record, "127.0.0.1", port))
        )
        with anyio.fail_after(WAIT):
            results["after"].append(await after.read_record("127.0.0.1", port))
        thread.join(WAIT)
        listener.close()
    assert results["before"] == results["after"] == ["refused", b"abc", "short read: b'ab'"]


def test_every_snippet_is_a_tested_pair() -> None:
    names = {path.stem for path in SNIPPETS.glob("*.py")}
    topics = {name.rsplit("_", 1)[0] for name in names}
    assert names == {f"{t}_{side}" for t in topics for side in ("asyncio", "asyncstreams")}
    source = Path(__file__).read_text()
    for topic in topics:
        assert f"def test_{topic}_pair(" in source, topic


# -- the code blocks of the docs ----------------------------------------------------------

FENCE = re.compile(
    r"^(?P<indent> *)```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```", re.M | re.S
)
INCLUDE = re.compile(r"""^\s*--8<--\s+"(?P<path>[^":]+)(?::(?P<section>[\w-]+))?"\s*$""")


def blocks(path: Path) -> list[tuple[str, str]]:
    """``(language, body)`` of each fenced block, with the fence's indent removed."""
    found = []
    for match in FENCE.finditer(path.read_text()):
        indent = len(match["indent"])
        body = "\n".join(line[indent:] for line in match["body"].splitlines())
        found.append((match["lang"], body))
    return found


def check_include(line: str) -> None:
    match = INCLUDE.match(line)
    assert match, f"not a snippet include: {line!r}"
    target = ROOT / match["path"]
    assert target.is_file(), f"{match['path']} does not exist"
    tested = (SNIPPETS, ROOT / "examples")
    assert target.parent in tested, f"{match['path']} is not a tested example or snippet"
    if match["section"]:
        text = target.read_text()
        for marker in ("start", "end"):
            assert f"# --8<-- [{marker}:{match['section']}]" in text, (match["path"], marker)


def check_command(line: str) -> None:
    """A shell command from the docs: ours must parse; files must exist; installs pass."""
    words = [word for word in shlex.split(line, comments=True) if word not in ("$", "&")]
    if not words:
        return
    prog = Path(words[0]).name
    if prog == "asyncstreams" or (
        prog.startswith("python") and words[1:3] == ["-m", "asyncstreams"]
    ):
        args = words[1:] if prog == "asyncstreams" else words[3:]
        if args[:1] == ["bench"]:
            check_benchmark_command(args[1:], line)  # bench hands them to run.py
            return
        exit_code: object = 0
        try:
            build_parser().parse_args(args)
        except SystemExit as exc:  # --help exits 0, a refused argument 2
            exit_code = exc.code
        assert exit_code == 0, f"the command line refuses {line!r}"
    elif prog.startswith("python") and words[1] == "benchmarks/run.py":
        check_benchmark_command(words[2:], line)
    elif prog.startswith("python") and words[1].startswith("examples/"):
        assert (ROOT / words[1]).is_file(), line
        assert "--backend" not in words or words[words.index("--backend") + 1] in BACKENDS
    elif prog.startswith("python") and words[1] == "-m":
        assert words[2] in ("venv", "pip", "pytest", "mkdocs"), line
    elif prog in ("pip", "mkdocs") or (prog == "cd" and len(words) == 2):
        pass  # installing, building the docs: CI runs these itself
    else:
        raise AssertionError(f"no check for the command {line!r}")


def check_benchmark_command(args: list[str], line: str) -> None:
    """The benchmark suite's own parser must accept the arguments."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import run as benchmarks_run  # type: ignore[import-not-found, unused-ignore]
    finally:
        sys.path.pop(0)
    exit_code: object = 0
    try:
        benchmarks_run.parse_args(args)
    except SystemExit as exc:  # --help exits 0, a refused argument 2
        exit_code = exc.code
    assert exit_code == 0, f"benchmarks/run.py refuses {line!r}"


def demo_table() -> list[str]:
    result = subprocess.run(
        [sys.executable, "-m", "asyncstreams", "demo", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=environment(),
        check=True,
    )
    return result.stdout.splitlines()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_block_is_included_or_checked(page: Path) -> None:
    for lang, body in blocks(page):
        lines = [line for line in body.splitlines() if line.strip()]
        if lang in ("python", "py", "toml", "yaml", ""):
            for line in lines:
                check_include(line)
        elif lang in ("sh", "console", "bash"):
            for line in lines:
                check_command(line)
        elif lang == "text" and lines and lines[0].startswith("example "):
            table = demo_table()
            start = table.index(next(line for line in table if line.startswith("example ")))
            assert lines == table[start : start + len(lines)], "the demo table in the docs is stale"
        else:
            raise AssertionError(f"{page.name}: a {lang!r} block that nothing checks:\n{body}")


def test_reference_covers_the_public_api() -> None:
    text = (DOCS / "reference.md").read_text()
    documented = set(re.findall(r"^::: asyncstreams\.([\w.]+)", text, re.M))
    exported = set(asyncstreams.__all__) - {"IncompleteReadError", "LimitOverrunError"}
    assert exported | {"testing"} <= documented
    for name in ("IncompleteReadError", "LimitOverrunError"):
        assert f"asyncio-exceptions.html#asyncio.{name}" in text


# -- the README ---------------------------------------------------------------------------

README = (ROOT / "README.md").read_text()


def test_readme_starts_with_the_two_commands() -> None:
    title, blank, fence, demo, tests, end = README.splitlines()[:6]
    assert (title, blank, fence, end) == ("# asyncstreams", "", "```sh", "```")
    assert [demo.split("  #")[0].strip(), tests.split("  #")[0].strip()] == [
        "python3 -m venv .venv && .venv/bin/pip install -e '.[trio,uvloop]' && .venv/bin/python -m asyncstreams demo",
        "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/python -m pytest",
    ]


def test_readme_echo_client_runs_under_asyncio_run_and_trio_run() -> None:
    (code,) = [body for lang, body in blocks(ROOT / "README.md") if lang == "python"]
    assert "asyncio.run(tcp_echo_client(" in code
    assert "trio.run(tcp_echo_client," in code
    server = Process([sys.executable, "-m", "asyncstreams", "echo-server", "127.0.0.1", "0"])
    try:
        port = server.lines.wait_for(r"^Serving on 127\.0\.0\.1:(\d+)$")[1]
        result = subprocess.run(
            [sys.executable, "-W", "error", "-c", code.replace("8888", port)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env=environment(),
            check=False,
        )
    finally:
        server.close()
    assert (result.returncode, result.stderr) == (0, ""), result
    assert result.stdout.splitlines() == ["Received: 'Hello World!'"] * 2


def test_readme_commands_are_checked() -> None:
    for lang, body in blocks(ROOT / "README.md"):
        if lang == "sh":
            for line in body.splitlines():
                for command in line.split("&&"):
                    check_command(command)
