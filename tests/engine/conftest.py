"""Engine fixtures: apps on the fault model, and process bookkeeping."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # the workers inherit sys.path, so they import `models` too

from enginetest import wait_for, worker_pids  # noqa: E402
from pooltest import make_pool  # noqa: E402, F401 - the fixture, for the policy tests


@pytest.fixture()
def make_app(deploy_dirs: Path) -> Iterator[Callable[..., object]]:
    """Create NotebookApps on the fault model; all are closed, and their workers checked gone."""
    from cosmos_gradio_nb import NotebookApp

    apps = []

    def make(**kwargs: object) -> NotebookApp:
        kwargs.setdefault("factory_module", "models")
        kwargs.setdefault("name", f"test-{len(apps)}-{time.monotonic_ns()}")
        app = NotebookApp(**kwargs)  # type: ignore[arg-type]
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()
    wait_for(lambda: not worker_pids(), timeout=10)
