"""Connected-app fixtures: one real ``serve`` per test module, and the client's environment."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # remote_models and remote_helpers, for the tests themselves

from remote_helpers import Served, server_env, start_serve  # noqa: E402


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One server (one worker of the remote test model, page auth on) for the module.

    The test process gets the server's RUNTIME_DIR, OUTPUT_DIR... so that
    ``connect(name=...)`` finds it and the client shares its file system.
    """
    root = tmp_path_factory.mktemp("served")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in server_env(root).items():
            if key != "PYTHONPATH":
                mp.setenv(key, value)
        server = start_serve(root, "remote-test", "--auth", "alice:s3cret")
        try:
            yield server
        finally:
            left = server.stop()
            assert not left, f"processes outlived the server: {left}"
