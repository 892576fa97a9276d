"""The one helper the examples share: run ``main()`` on the backend named by ``--backend``.

Each backend is started with its own entry point, exactly as a program of yours would:

* ``asyncio``: ``asyncio.run(main())``
* ``uvloop``: ``uvloop.run(main())`` (``asyncio.run`` with uvloop's event loop)
* ``trio``: ``trio.run(main)``

The example code itself is the same for all three.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

BACKENDS = ("asyncio", "uvloop", "trio")


def parser(description: str | None) -> argparse.ArgumentParser:
    """An argument parser with the ``--backend`` option already added."""
    result = argparse.ArgumentParser(description=description)
    result.add_argument(
        "--backend",
        choices=BACKENDS,
        default="asyncio",
        help="run with asyncio.run, uvloop.run or trio.run (default: asyncio)",
    )
    return result


# --8<-- [start:run]
def run(main: Callable[[], Coroutine[Any, Any, T]], backend: str) -> T:
    """Run ``main()`` on *backend*; Ctrl-C exits with status 130 instead of a traceback."""
    try:
        if backend == "uvloop":
            import uvloop

            return uvloop.run(main())
        if backend == "trio":
            import trio

            return trio.run(main)
        return asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(130)


# --8<-- [end:run]
