"""``NotebookApp(detach=True)`` in this process: start, reuse, refuse, replace; a broken model.

Real servers (``python -m cosmos_gradio_nb serve --app-spec ...``) started by the
app itself, each shut down by the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from remote_helpers import alive, server_env

import cosmos_gradio_nb as cg


@pytest.fixture()
def client_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for key, value in server_env(tmp_path).items():
        if key != "PYTHONPATH":
            monkeypatch.setenv(key, value)
    yield tmp_path


def test_detach_reuses_a_match_refuses_a_difference_and_replaces_when_asked(
    client_env: Path,
) -> None:
    from remote_models import Params

    local = cg.NotebookApp(Params, factory="remote_models:create_worker", name="d1")
    app = cg.NotebookApp(Params, factory="remote_models:create_worker", name="d1", detach=True)
    apps = [app]
    assert local.closed, "the kernel's app of that name keeps its workers"
    try:
        assert isinstance(app, cg.NotebookApp) and app.name == "d1"
        assert app.infer({"op": "echo", "value": 1}).result(120).status["echo"] == 1
        first = app.server_pid
        log = (
            client_env
            / "outputs"
            / next(p.name for p in (client_env / "outputs").glob("app.server-d1-*.log"))
        )
        assert "starting workers for remote_models:create_worker" in log.read_text()
        with pytest.raises(cg.CosmosGradioError) as err:
            cg.NotebookApp(
                Params, factory="remote_models:create_worker", name="d1", detach=True, num_gpus=2
            )
        assert "NUM_GPUS: 1 there, 2 here" in str(err.value) and "replace=True" in str(err.value)
        assert not app.closed, "a refused app must not disturb the one in use"
        again = cg.NotebookApp(
            Params, factory="remote_models:create_worker", name="d1", detach=True
        )
        apps.append(again)
        assert again.server_pid == first and app.closed  # re-run: the earlier client goes
        assert again.infer({"op": "echo", "value": 2}).result(60).status["echo"] == 2
        bigger = cg.NotebookApp(
            Params,
            factory="remote_models:create_worker",
            name="d1",
            detach=True,
            num_gpus=2,
            gpus_per_model=1,
            replace=True,
        )
        apps.append(bigger)
        assert bigger.server_pid != first and not alive([first])
        bigger.wait_ready(120)
        assert len(bigger.workers()) == 2
    finally:
        for each in reversed(apps):
            if not each.closed:
                each.shutdown()


def test_a_detached_model_that_cannot_start_fails_as_in_the_kernel(client_env: Path) -> None:
    broken = cg.NotebookApp(factory="remote_models:broken_worker", name="d2", detach=True)
    fixed = None
    try:
        with pytest.raises(cg.WorkerStartupError, match="no weights at /nowhere") as err:
            broken.wait_ready(120)
        assert "RuntimeError" in err.value.remote_traceback
        with pytest.raises(cg.WorkerStartupError, match="no weights"):
            broken.infer({"op": "echo"})
        # Nothing is loaded there: the fixed factory replaces it without replace=True.
        fixed = cg.NotebookApp(factory="remote_models:create_worker", name="d2", detach=True)
        assert fixed.server_pid != broken.server_pid and not alive([broken.server_pid or 0])
        assert fixed.infer({"op": "echo", "value": 5}).result(120).status["echo"] == 5
    finally:
        for each in (fixed, broken):
            if each is not None and not each.closed:
                each.shutdown()


def test_a_server_that_stopped_answering_is_replaced_only_when_asked(
    client_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import signal

    monkeypatch.setattr("cosmos_gradio_nb._remote.http.PROBE_TIMEOUT", 2.0)
    stuck = cg.NotebookApp(factory="remote_models:create_worker", name="d3", detach=True)
    pid = stuck.server_pid or 0
    fresh = None
    try:
        stuck.close()
        os.kill(pid, signal.SIGSTOP)  # wedged: alive, silent
        with pytest.raises(
            cg.CosmosGradioError, match=r"does not answer|no cosmos_gradio_nb"
        ) as err:
            cg.NotebookApp(factory="remote_models:create_worker", name="d3", detach=True)
        assert f"its process still runs (pid {pid}): pass replace=True" in str(err.value)
        fresh = cg.NotebookApp(
            factory="remote_models:create_worker", name="d3", detach=True, replace=True
        )
        assert fresh.server_pid != pid and not alive([pid])
        assert fresh.infer({"op": "echo", "value": 9}).result(120).status["echo"] == 9
    finally:
        if alive([pid]):
            os.kill(pid, signal.SIGKILL)
        if fresh is not None:
            fresh.shutdown()
