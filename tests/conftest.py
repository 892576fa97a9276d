"""The backend matrix: every test marked ``anyio`` runs on asyncio, asyncio+uvloop and trio."""

from __future__ import annotations

from typing import Any

import pytest
import uvloop

_BACKENDS: list[Any] = [
    pytest.param(("asyncio", {}), id="asyncio"),
    pytest.param(("asyncio", {"loop_factory": uvloop.new_event_loop}), id="asyncio+uvloop"),
    pytest.param(("trio", {}), id="trio"),
]


@pytest.fixture(params=_BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    backend: tuple[str, dict[str, Any]] = request.param
    return backend


@pytest.fixture
def backend_id(anyio_backend: tuple[str, dict[str, Any]]) -> str:
    """``"asyncio"``, ``"asyncio+uvloop"`` or ``"trio"``."""
    name, options = anyio_backend
    return "asyncio+uvloop" if options else name
