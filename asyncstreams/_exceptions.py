"""asyncio's own stream exceptions, re-exported so ``except asyncio.X`` keeps working."""

from __future__ import annotations

from asyncio import IncompleteReadError, LimitOverrunError

__all__ = ["IncompleteReadError", "LimitOverrunError"]
