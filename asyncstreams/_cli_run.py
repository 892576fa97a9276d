"""Running a coroutine function on a backend by name, the way a user's program would.

Each backend is started with its own entry point (``asyncio.run``, ``uvloop.run``,
``trio.run``) rather than ``anyio.run``, so the command line runs asyncstreams exactly as
user code does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["BACKENDS", "BackendUnavailable", "run"]

T = TypeVar("T")

BACKENDS = ("asyncio", "uvloop", "trio")

_EXTRAS = {"uvloop": "uvloop", "trio": "trio"}


class BackendUnavailable(Exception):
    """The backend's package is not installed."""


def _missing(backend: str) -> BackendUnavailable:
    return BackendUnavailable(
        f"{backend} is not installed (pip install 'asyncstreams[{_EXTRAS[backend]}]')"
    )


def run(backend: str, main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main()`` to completion on *backend* and return its result."""
    if backend == "asyncio":
        return asyncio.run(main())
    if backend == "uvloop":
        try:
            import uvloop
        except ImportError:
            raise _missing(backend) from None
        return uvloop.run(main())
    if backend == "trio":
        try:
            import trio
        except ImportError:
            raise _missing(backend) from None
        return trio.run(main)
    raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
