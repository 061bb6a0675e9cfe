"""The pool on the in-process fake backend: its config, a fixture's factory, small helpers."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_backend import FakeBackend

from cosmos_gradio_nb._engine.config import EngineConfig
from cosmos_gradio_nb._engine.future import InferenceFuture
from cosmos_gradio_nb._engine.pool import WorkerPool
from cosmos_gradio_nb._engine.request import new_request

MakePool = Callable[..., tuple[WorkerPool, FakeBackend]]


def engine_config(out: Path, groups: int = 1, size: int = 1, **overrides: Any) -> EngineConfig:
    """The app's defaults, with the log in ``out`` (the requests' folders go there too)."""
    values: dict[str, Any] = {
        "factory": {"module": "m", "function": "f"},
        "num_groups": groups,
        "group_size": size,
        "model_name": "cosmos_model",
        "log_file": out / "app.log",
        "log_max_bytes": 100 * 1024 * 1024,
        "log_backups": 3,
        "startup_timeout": 1800.0,
    }
    return EngineConfig(**{**values, **overrides})


@pytest.fixture()
def make_pool(tmp_path: Path) -> Iterator[MakePool]:
    """Pools on the fake backend (2 groups of 1 by default); all closed at the end."""
    pools: list[WorkerPool] = []

    def make(
        groups: int = 2,
        size: int = 1,
        *,
        setup: Callable[[FakeBackend], None] | None = None,
        retry_after: float = 60.0,
        **settings: Any,
    ) -> tuple[WorkerPool, FakeBackend]:
        config = engine_config(tmp_path / "out", groups, size, retry_after=retry_after, **settings)
        made: list[FakeBackend] = []

        def backend(emit: Any) -> FakeBackend:
            fake = FakeBackend(emit, size=size)
            if setup is not None:
                setup(fake)
            made.append(fake)
            return fake

        pool = WorkerPool(config, backend)
        pool.start()
        pools.append(pool)
        made[0].sync()
        return pool, made[0]

    yield make
    for pool in pools:
        pool.close(1.0)


def submit(pool: WorkerPool, timeout: float | None = None, **params: Any) -> InferenceFuture:
    request = new_request(pool, dict(params), pool.config.log_file.parent, timeout)
    pool.submit(request)
    return request.future


def status_of(fut: InferenceFuture) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((fut.output_dir / "status.json").read_text())
    return data


def states(pool: WorkerPool) -> list[str]:
    return [w.state for w in pool.workers() if w.rank == 0]
