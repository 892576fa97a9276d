"""The implementations the suite compares, and which module runs each of them."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast

from bench_spec import ClientResult, ServerStats, Spec

__all__ = ["BASELINE", "IMPLS", "Family", "Impl", "load_family", "missing_modules"]


class Family(Protocol):
    """What each ``bench_<family>`` module provides (sync entry points, one per role)."""

    def both(self, impl: str, spec: Spec, workload: str) -> tuple[ClientResult, ServerStats]: ...

    def server(
        self, impl: str, spec: Spec, workload: str, on_listening: Callable[[int], None]
    ) -> ServerStats: ...

    def client(self, impl: str, spec: Spec, workload: str, port: int) -> ClientResult: ...


@dataclass(frozen=True)
class Impl:
    name: str
    family: str  # the bench_<family> module with its workloads
    description: str
    requires: tuple[str, ...] = ()  # modules that must be importable
    peer: str | None = None  # what it must match (besides native asyncio)


IMPLS: dict[str, Impl] = {
    impl.name: impl
    for impl in (
        Impl("asyncio", "asyncio", "asyncio's own streams, default event loop"),
        Impl(
            "asyncstreams-asyncio",
            "asyncio",
            "asyncstreams on asyncio",
            ("asyncstreams",),
            peer="asyncio",
        ),
        Impl("uvloop", "asyncio", "asyncio's own streams on uvloop", ("uvloop",)),
        Impl(
            "asyncstreams-uvloop",
            "asyncio",
            "asyncstreams on asyncio + uvloop",
            ("asyncstreams", "uvloop"),
            peer="uvloop",
        ),
        Impl("trio", "trio", "hand-written trio: serve_tcp/open_tcp_stream + bytearray", ("trio",)),
        Impl(
            "asyncstreams-trio",
            "asyncio",
            "asyncstreams on trio",
            ("asyncstreams", "trio"),
            peer="trio",
        ),
        Impl(
            "trio-asyncio",
            "asyncio",
            "asyncio's own streams under trio via trio-asyncio",
            ("trio", "trio_asyncio"),
        ),
        Impl("anyio-buffered", "anyio", "anyio BufferedByteStream on asyncio", ("anyio",)),
        Impl("threads", "threads", "blocking sockets, a thread per connection (rough ceiling)"),
    )
}

BASELINE = "asyncio"


def missing_modules(impl: Impl) -> list[str]:
    return [m for m in impl.requires if importlib.util.find_spec(m) is None]


def load_family(impl: str) -> Family:
    return cast(Family, importlib.import_module(f"bench_{IMPLS[impl].family}"))
