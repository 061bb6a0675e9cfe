"""Ray test set-up: loopback only, the engine's test models importable, apps closed after each test.

``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` must be in the environment before Ray
starts: with it every Ray process listens on 127.0.0.1 (see the project's Ray
notes). Each module starts Ray once, in a module-scoped fixture of its own.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Ray's worker processes (the rank actors) inherit the environment of the Ray this process
# starts: they import the package under test, not another copy installed in the venv.
REPO = str(Path(__file__).resolve().parents[2])
_paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != REPO]
os.environ["PYTHONPATH"] = os.pathsep.join([REPO, *_paths])

ENGINE_TESTS = Path(__file__).resolve().parent.parent / "engine"
if str(ENGINE_TESTS) not in sys.path:
    sys.path.insert(0, str(ENGINE_TESTS))  # the workers inherit sys.path: they import `models`

pytestmark = pytest.mark.ray


@pytest.fixture()
def make_ray_app(deploy_dirs: Path) -> Iterator[Callable[..., object]]:
    """NotebookApps on the Ray backend (fault model by default); all closed at the end."""
    from cosmos_gradio_nb import NotebookApp

    apps: list[NotebookApp] = []

    def make(**kwargs: object) -> NotebookApp:
        kwargs.setdefault("factory_module", "models")
        kwargs.setdefault("name", f"ray-test-{len(apps)}-{time.monotonic_ns()}")
        kwargs.setdefault("backend", "ray")
        app = NotebookApp(**kwargs)  # type: ignore[arg-type]
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


def our_placement_groups(app: object) -> list[str]:
    """States of the placement groups this app's backend created (by their name prefix)."""
    from ray.util.placement_group import placement_group_table

    token = app._pool.backend._token  # type: ignore[attr-defined]
    return [
        pg["state"]
        for pg in placement_group_table().values()
        if pg.get("name", "").startswith(f"cosmos-gradio-{token}")
    ]
