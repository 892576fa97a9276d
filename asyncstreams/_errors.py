"""Turning anyio's exceptions into the ones asyncio stream users catch.

This is the single seam for error translation (see the table in the project's style
notes): anyio wraps OS errors in ``BrokenResourceError`` and reports our own close as
``ClosedResourceError``; asyncio users expect the OS error itself.
"""

from __future__ import annotations

import anyio

__all__ = ["connection_error"]


def connection_error(exc: BaseException) -> BaseException:
    """The exception asyncio would report for a connection that failed with *exc*."""
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, anyio.BrokenResourceError):
        cause = exc.__cause__
        if isinstance(cause, OSError):
            return cause
        error = ConnectionResetError("Connection lost")
        error.__cause__ = exc
        return error
    if isinstance(exc, (anyio.ClosedResourceError, anyio.EndOfStream)):
        error = ConnectionResetError("Connection lost")
        error.__cause__ = exc
        return error
    return exc
