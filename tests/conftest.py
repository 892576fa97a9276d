"""The backend matrix: every test marked ``anyio`` runs on asyncio, asyncio+uvloop and trio."""

from __future__ import annotations

from typing import Any

import pytest

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a test dependency on POSIX
    uvloop = None

_BACKENDS: list[Any] = [
    pytest.param(("asyncio", {}), id="asyncio"),
    pytest.param(("trio", {}), id="trio"),
]
if uvloop is not None:
    _BACKENDS.insert(1, pytest.param(("asyncio", {"loop_factory": uvloop.new_event_loop}), id="asyncio+uvloop"))


@pytest.fixture(params=_BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    backend: tuple[str, dict[str, Any]] = request.param
    return backend


@pytest.fixture
def backend_id(anyio_backend: tuple[str, dict[str, Any]]) -> str:
    """``"asyncio"``, ``"asyncio+uvloop"`` or ``"trio"``."""
    name, options = anyio_backend
    return "asyncio+uvloop" if options else name
