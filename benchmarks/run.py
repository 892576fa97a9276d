#!/usr/bin/env python3
"""The asyncstreams benchmark suite: every workload on every implementation, in one run.

    python benchmarks/run.py                       # the full suite (long)
    python benchmarks/run.py --quick               # 1/20 scale, about a minute
    python benchmarks/run.py --workloads bulk,pingpong --impls asyncio,asyncstreams-asyncio
    python benchmarks/run.py --processes --malloc-env both --json out.json --chart ratios.png

Each measurement runs in a fresh process (``--child``), implementations interleaved
(A B C ... A B C ...) over the repetitions to resist machine drift; with ``--processes``
that process starts the server in a process of its own (``--serve``). Every received
byte is verified; a mismatch fails the measurement. The table gives medians, the
spread over the repetitions, and ratios against asyncio's own streams on the default
loop (and, for asyncstreams, against what it replaces on the same event loop).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

from bench_impls import BASELINE, IMPLS, load_family, missing_modules
from bench_report import Row, format_table, make_chart, read_json, write_json
from bench_spec import METRICS, WORKLOADS, ServerStats, Spec, metrics, raise_nofile_limit

HERE = Path(__file__).resolve().parent
QUICK_SCALE = 0.05
QUICK_REPEAT = 3
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "1048576", "MALLOC_TRIM_THRESHOLD_": "4194304"}
RESULT_PREFIX = "RESULT "


def _csv(choices: dict[str, Any] | tuple[str, ...], what: str) -> Any:
    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in names if name not in choices]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(unknown) or '(none given)'}; "
                f"choose from {', '.join(choices)}"
            )
        return names

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark asyncstreams against asyncio's streams, trio, anyio and threads.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="implementations:\n"
        + "\n".join(f"  {i.name:22} {i.description}" for i in IMPLS.values())
        + "\n\nworkloads: "
        + ", ".join(WORKLOADS),
    )
    parser.add_argument("--quick", action="store_true", help=f"run at scale {QUICK_SCALE}")
    parser.add_argument("--scale", type=float, help="size factor (1.0 = full; default 1.0)")
    parser.add_argument(
        "--repeat", type=int, help=f"repetitions (default 5, {QUICK_REPEAT} with --quick)"
    )
    parser.add_argument(
        "--workloads",
        type=_csv(WORKLOADS, "workload"),
        default=list(WORKLOADS),
        help="comma-separated (default: all, listed below)",
    )
    parser.add_argument(
        "--impls",
        type=_csv(IMPLS, "implementation"),
        default=list(IMPLS),
        help="comma-separated (default: all, listed below)",
    )
    parser.add_argument(
        "--processes", action="store_true", help="client and server in separate processes"
    )
    parser.add_argument(
        "--malloc-env",
        nargs="?",
        const="tuned",
        default="inherit",
        choices=("inherit", "tuned", "both"),
        help="'tuned' (what the bare flag means) runs the measurements with "
        + " ".join(f"{k}={v}" for k, v in MALLOC_ENV.items())
        + " (glibc then stops mmap/munmap-ing asyncio's 256 KiB receive buffers); "
        "'both' runs each measurement with glibc's defaults and tuned, a table each; "
        "default: the environment run.py was started in",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="save the results as JSON")
    parser.add_argument(
        "--chart", type=Path, metavar="PATH", help="save a PNG bar chart of the ratios"
    )
    parser.add_argument(
        "--load",
        type=Path,
        metavar="PATH",
        help="measure nothing: print the tables of a --json file (and make --chart from it)",
    )
    parser.add_argument(
        "--timeout", type=float, help="seconds per measurement (default 120, 60 with --quick)"
    )
    # Internal: one measurement (client side) or a server process.
    parser.add_argument("--child", nargs=2, metavar=("IMPL", "WORKLOAD"), help=argparse.SUPPRESS)
    parser.add_argument("--serve", nargs=2, metavar=("IMPL", "WORKLOAD"), help=argparse.SUPPRESS)
    parser.add_argument("--nofile", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.scale is None:
        args.scale = QUICK_SCALE if args.quick else 1.0
    if args.scale <= 0:
        parser.error("--scale must be positive")
    if args.repeat is None:
        args.repeat = QUICK_REPEAT if args.quick else 5
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.timeout is None:
        args.timeout = 60.0 if args.quick else 120.0
    if args.chart is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error("--chart needs matplotlib: pip install matplotlib")
    return args


# -- inside a measurement process -----------------------------------------------------------


def run_child(impl: str, workload: str, scale: float, processes: bool) -> int:
    """Measure *workload* on *impl* once; print the result as a ``RESULT`` JSON line."""
    nofile = raise_nofile_limit()
    spec = Spec(scale, separate_server=processes, nofile_limit=nofile)
    try:
        if processes:
            client, stats = _run_with_server_process(impl, workload, spec)
        else:
            client, stats = load_family(impl).both(impl, spec, workload)
    except Exception as exc:
        traceback.print_exc()
        print(f"error: client: {exc!r}", file=sys.stderr, flush=True)
        return 1
    if stats.errors:  # already shown on stderr
        return 1
    result = {"values": metrics(workload, spec, client, stats), "note": client.note}
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


def _run_with_server_process(impl: str, workload: str, spec: Spec) -> tuple[Any, ServerStats]:
    command = [
        sys.executable,
        __file__,
        "--serve",
        impl,
        workload,
        "--scale",
        repr(spec.scale),
        "--nofile",
        str(spec.nofile_limit),
    ]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as server:
        try:
            assert server.stdout is not None
            line = server.stdout.readline()
            if not line.startswith("PORT "):
                raise RuntimeError(f"server process did not start: {line!r}")
            client = load_family(impl).client(impl, spec, workload, int(line.split()[1]))
            out, _ = server.communicate(timeout=60)
        finally:
            if server.poll() is None:
                server.kill()
    if server.returncode != 0:
        raise RuntimeError(f"server process exited with {server.returncode}")
    stats_lines = [s for s in out.splitlines() if s.startswith("STATS ")]
    if not stats_lines:
        raise RuntimeError("server process reported nothing")
    return client, ServerStats(**json.loads(stats_lines[-1][len("STATS ") :]))


def run_server(impl: str, workload: str, scale: float, nofile: int) -> int:
    raise_nofile_limit()
    spec = Spec(scale, separate_server=True, nofile_limit=nofile)
    stats = load_family(impl).server(
        impl, spec, workload, lambda port: print(f"PORT {port}", flush=True)
    )
    print("STATS " + json.dumps(asdict(stats)), flush=True)
    return 0


# -- the orchestrating process --------------------------------------------------------------


def _version(dist: str) -> str:
    try:
        return f"{dist} {metadata.version(dist)}"
    except metadata.PackageNotFoundError:
        return f"{dist} (not installed)"


def _versions() -> str:
    dists = ("asyncstreams", "anyio", "trio", "uvloop", "trio-asyncio")
    return ", ".join([f"Python {platform.python_version()}", *map(_version, dists)])


def _git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(HERE), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip()


def _malloc_environments(choice: str) -> dict[str, dict[str, str]]:
    """The environments to measure in, by name: ``inherit``, ``default`` and/or ``tuned``."""
    inherited = dict(os.environ)
    tuned = {**inherited, **MALLOC_ENV}
    if choice == "inherit":
        return {"inherit": inherited}
    if choice == "tuned":
        return {"tuned": tuned}
    glibc_defaults = {k: v for k, v in inherited.items() if k not in MALLOC_ENV}
    return {"default": glibc_defaults, "tuned": tuned}


def _malloc_description(name: str, env: dict[str, str]) -> str:
    values = {k: env[k] for k in MALLOC_ENV if k in env}
    if not values:
        return "glibc defaults (MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_ unset)"
    how = "inherited" if name == "inherit" else "--malloc-env"
    return " ".join(f"{k}={v}" for k, v in values.items()) + f" ({how})"


def _kill_session(pid: int) -> None:
    """End a measurement process and the server process it started, if still there."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _measure(
    args: argparse.Namespace, impl: str, workload: str, env: dict[str, str]
) -> tuple[list[float] | None, str]:
    """One measurement in a fresh process: (values, note) or (None, why it failed)."""
    command = [sys.executable, __file__, "--child", impl, workload, "--scale", repr(args.scale)]
    if args.processes:
        command.append("--processes")
    # A session of its own, so that a timeout ends the server process too.
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    ) as proc:
        try:
            out, err = proc.communicate(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            _kill_session(proc.pid)
            proc.communicate()
            return None, f"timed out after {args.timeout:g} s"
        except BaseException:  # Ctrl-C: the measurement has a session of its own
            _kill_session(proc.pid)
            raise
    results = [line for line in out.splitlines() if line.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not results:
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        why = errors or err.strip().splitlines()[-3:] or [f"exit status {proc.returncode}"]
        return None, " | ".join(dict.fromkeys(why))
    result = json.loads(results[-1][len(RESULT_PREFIX) :])
    values: list[float] = result["values"]
    note: str = result["note"]
    return values, note


def _available(names: list[str]) -> tuple[list[str], list[str]]:
    """The implementations that can run here, and a note for each one skipped."""
    impls, skipped = [], []
    for name in names:
        missing = missing_modules(IMPLS[name])
        if missing:
            skipped.append(f"{name} skipped: {', '.join(missing)} not installed")
        else:
            impls.append(name)
    return impls, skipped


FOOTNOTES = (
    f"ratios: median / median of {BASELINE} (asyncio's streams, default loop), same malloc env",
    "vs peer: asyncstreams / what it replaces on the same event loop",
    "spread: half the min..max range over the repetitions, relative to the median",
    "memory: growth of resident memory per idle connection, client and server ends together",
    "slowreader: most bytes held in user space while the reader lags, received and unread",
    "  (read side) or written and unsent (write side); 0 where nothing is buffered",
)


def _print_header(meta: dict[str, Any]) -> None:
    quick = " (--quick)" if meta["quick"] else ""
    print(
        f"asyncstreams benchmarks: scale {meta['scale']:g}{quick}, "
        f"{meta['repeat']} repetition(s), {meta['mode']}"
    )
    print(f"command: {meta['command']}")
    print(f"{meta['versions']}; git {meta['git']}; {meta['cpus']} CPUs, {meta['platform']}")
    envs = meta["malloc_envs"]
    for name, description in envs.items():
        print(f"malloc environment{f' {name!r}' if len(envs) > 1 else ''}: {description}")
    print("load average at start: " + ", ".join(f"{x:.2f}" for x in meta["loadavg_start"]))
    for note in meta["skipped"]:
        print(f"note: {note}")
    print(flush=True)


Rows = dict[tuple[str, str, str, str], Row]  # by (env, workload, metric, implementation)


def _measurements(rows: Rows) -> tuple[int, int]:
    """How many measurements were made and how many of them failed."""
    firsts = [r for (_, w, m, _), r in rows.items() if m == METRICS[w][0].name]
    return sum(len(r.values) + len(r.failures) for r in firsts), sum(
        len(r.failures) for r in firsts
    )


def _run_all(args: argparse.Namespace, impls: list[str], envs: dict[str, dict[str, str]]) -> Rows:
    """Every measurement, implementations interleaved: A B C ... A B C ..."""
    rows = {
        (e, w, m.name, i): Row(w, m, i, e)
        for e in envs
        for w in args.workloads
        for m in METRICS[w]
        for i in impls
    }
    total = args.repeat * len(args.workloads) * len(envs) * len(impls)
    jobs = [
        (rep, workload, env_name, impl)
        for rep in range(1, args.repeat + 1)
        for workload in args.workloads
        for env_name in envs
        for impl in impls
    ]
    try:
        for done, (rep, workload, env_name, impl) in enumerate(jobs, 1):
            started = time.perf_counter()
            values, note = _measure(args, impl, workload, envs[env_name])
            shown = []
            for i, metric in enumerate(METRICS[workload]):
                row = rows[env_name, workload, metric.name, impl]
                if values is None:
                    row.failures.append(note)
                    continue
                row.values.append(values[i])
                if note:
                    row.notes.add(note)
                shown.append(f"{values[i]:,.1f} {metric.unit}")
            if values is None:
                shown.append(f"FAILED: {note}")
            where = f" {env_name}" if len(envs) > 1 else ""
            print(
                f"[{done}/{total}] rep {rep}{where} {workload:11} {impl:21} "
                f"{'; '.join(shown)}  ({time.perf_counter() - started:.1f} s)",
                file=sys.stderr,
                flush=True,
            )
    except KeyboardInterrupt:
        print("interrupted: showing the results so far", file=sys.stderr)
    return rows


def _print_results(rows: Rows, envs: dict[str, str]) -> None:
    for env_name, description in envs.items():
        if len(envs) > 1:
            print(f"== malloc environment {env_name!r}: {description}")
        print(format_table([row for key, row in rows.items() if key[0] == env_name]))
        print()
    for line in FOOTNOTES:
        print(line)
    for note in sorted({n for r in rows.values() if r.workload == "memory" for n in r.notes}):
        print(f"note: memory: {note}")
    for (env_name, workload, metric_name, impl), row in rows.items():
        if metric_name != METRICS[workload][0].name:
            continue  # a measurement's failure is the same for all its metrics
        where = f" ({env_name})" if len(envs) > 1 else ""
        for failure in dict.fromkeys(row.failures):
            print(f"failure: {workload} on {impl}{where}: {failure}")


def _report(args: argparse.Namespace, meta: dict[str, Any], rows: Rows) -> int:
    """Print the tables, save the JSON and the chart; return the exit status."""
    _print_results(rows, meta["malloc_envs"])
    made, failures = _measurements(rows)
    expected = meta["repeat"] * sum(1 for (_, w, m, _) in rows if m == METRICS[w][0].name)
    interrupted = made < expected
    stopped = ", interrupted" if interrupted else ""
    print(f"{made} measurements in {meta['seconds']:.0f} s, {failures} failed{stopped}")
    if args.json is not None:
        write_json(args.json, meta, list(rows.values()))
        print(f"results saved to {args.json}")
    if args.chart is not None:
        envs = meta["malloc_envs"]
        names = len(envs) > 1
        environments = "\n".join(f"malloc{f' {n}' if names else ''}: {d}" for n, d in envs.items())
        title = (
            f"Ratio to asyncio's own streams (median of {meta['repeat']}, "
            f"scale {meta['scale']:g}, {meta['mode']})\n{environments}"
        )
        make_chart(args.chart, list(rows.values()), title)
        print(f"chart saved to {args.chart}")
    return 1 if failures or interrupted else 0


def orchestrate(args: argparse.Namespace) -> int:
    envs = _malloc_environments(args.malloc_env)
    impls, skipped = _available(args.impls)
    meta: dict[str, Any] = {
        "command": shlex.join(["python", "benchmarks/run.py", *sys.argv[1:]]),
        "scale": args.scale,
        "quick": args.quick,
        "repeat": args.repeat,
        "mode": "client and server in separate processes" if args.processes else "one process",
        "malloc_envs": {name: _malloc_description(name, env) for name, env in envs.items()},
        "versions": _versions(),
        "git": _git_revision(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "skipped": skipped,
    }
    _print_header(meta)
    started = time.perf_counter()
    rows = _run_all(args, impls, envs)
    meta["seconds"] = round(time.perf_counter() - started, 1)
    meta["loadavg_end"] = os.getloadavg()
    return _report(args, meta, rows)


def report_saved(args: argparse.Namespace) -> int:
    """``--load``: the tables (and ``--chart``) of a ``--json`` file, without measuring."""
    meta, saved = read_json(args.load)
    meta.setdefault("quick", False)
    rows = {(r.env, r.workload, r.metric.name, r.impl): r for r in saved}
    print(f"(results loaded from {args.load})")
    _print_header(meta)
    if args.json == args.load:
        args.json = None  # nothing new to save
    return _report(args, meta, rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        impl, workload = args.child
        return run_child(impl, workload, args.scale, args.processes)
    if args.serve:
        impl, workload = args.serve
        return run_server(impl, workload, args.scale, args.nofile or raise_nofile_limit())
    if args.load:
        return report_saved(args)
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
