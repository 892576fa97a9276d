"""The benchmark suite still runs: every workload on every implementation, at a tiny scale.

Runs ``benchmarks/run.py --quick`` smaller still (``--scale 0.002 --repeat 1``) and checks
that it succeeded and printed a table row for each workload and implementation. It asserts
nothing about speed: on a shared machine timings mean nothing at this scale.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"
WORKLOADS = (
    "bulk",
    "pingpong",
    "lines",
    "headers",
    "fanin",
    "frames",
    "smallwrites",
    "memory",
    "slowreader",
)
IMPLS = (
    "asyncio",
    "asyncstreams-asyncio",
    "uvloop",
    "asyncstreams-uvloop",
    "trio",
    "asyncstreams-trio",
    "trio-asyncio",
    "anyio-buffered",
    "threads",
)


def _skipped(stdout: str) -> set[str]:
    """Implementations the suite skipped because an optional package is missing."""
    return set(re.findall(r"^note: (\S+) skipped: ", stdout, flags=re.MULTILINE))


@pytest.mark.timeout(300)
def test_quick_suite_runs_every_workload_on_every_implementation(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(RUN),
            "--quick",
            "--scale",
            "0.002",
            "--repeat",
            "1",
            "--json",
            str(results),
        ],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    skipped = _skipped(proc.stdout)
    assert skipped <= {"trio-asyncio"}, f"only trio-asyncio is optional, skipped: {skipped}"
    rows = [line.split() for line in proc.stdout.splitlines()]
    for workload in WORKLOADS:
        for impl in set(IMPLS) - skipped:
            matching = [r for r in rows if len(r) > 4 and r[0] == workload and impl in r]
            assert matching, f"no table row for {workload} on {impl}:\n{proc.stdout}"
            assert all("FAILED" not in r for r in matching), proc.stdout
    assert results.stat().st_size > 0
