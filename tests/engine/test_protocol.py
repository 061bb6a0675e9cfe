"""The app <-> worker protocol with real workers: framed strict JSON, stops, pings, records.

Issue 15 (a worker stopped mid-message, replies the wire refuses, health checks,
one writer of status.json), 16 (stop without a reload, live previews) and 18
(status.json from the moment a request is accepted).
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from enginetest import alive, wait_for
from hostile import expected, hostile_values

import cosmos_gradio_nb as cg
from cosmos_gradio_nb._core.history import read_run
from cosmos_gradio_nb._core.past_runs import load_results


def status_of(fut: cg.InferenceFuture) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((fut.output_dir / "status.json").read_text())
    return data


def record_state(fut: cg.InferenceFuture) -> str | None:
    try:
        return str(status_of(fut)["state"])
    except (OSError, ValueError):
        return None


def pid_of(app: cg.NotebookApp, group: int, rank: int = 0) -> int:
    return next(w.pid for w in app.workers() if w.group == group and w.rank == rank)


def is_stopped(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_STOPPED
    except psutil.NoSuchProcess:
        return False


@pytest.fixture()
def resume_stopped():
    """SIGCONT then SIGKILL what a test stopped, should it fail before the app cleans up."""
    stopped: list[int] = []
    yield stopped.append
    for pid in alive(stopped):
        os.kill(pid, signal.SIGKILL)


# -- replies the wire refuses never kill the worker ---------------------------------------------
def test_replies_the_wire_refuses_fail_naming_the_key_and_the_worker_stays(make_app) -> None:
    app = make_app()
    pid = app.infer({"op": "echo"}).result(30).status["pid"]
    for case in sorted(hostile_values()):
        fut = app.infer({"op": "hostile", "case": case})
        with pytest.raises(cg.InferenceError) as info:
            fut.result(30)
        assert expected(case) in str(info.value), (case, str(info.value))
        assert status_of(fut)["state"] == "failed"
        assert app.infer({"op": "echo"}).result(30).status["pid"] == pid, case
    assert app.workers()[0].restarts == 0


# -- a worker stopped in the middle of a message stalls nobody ----------------------------------
def test_a_worker_frozen_mid_message_delays_no_other_group_and_is_restarted(
    make_app, resume_stopped
) -> None:
    app = make_app(num_gpus=2, gpus_per_model=1, health_interval=1.0, health_timeout=2.0)
    app.wait_ready(30)
    first = app.infer({"op": "halfstop"}).result(30)
    frozen, group = first.status["pid"], first.status["group"]
    resume_stopped(frozen)
    wait_for(lambda: is_stopped(frozen), timeout=10)  # half a frame out, then SIGSTOP
    t0 = time.monotonic()
    other = app.infer({"op": "echo", "value": 1}).result(5)
    took = time.monotonic() - t0
    assert other.status["group"] != group and other.status["echo"] == 1
    assert is_stopped(frozen), "the other group's request should complete while it is stopped"
    assert took < 2.0, f"the other group's request took {took:.2f} s"
    # the frozen group is then found by its health check and restarted
    log = app.env.log_file
    line = f"group {group} did not answer a health check within 2 s: restarting"
    wait_for(lambda: line in log.read_text(), timeout=20)
    wait_for(lambda: pid_of(app, group) not in (None, frozen), timeout=30)
    wait_for(lambda: not alive([frozen]), timeout=10)
    wait_for(lambda: all(w.state == "idle" for w in app.workers()), timeout=30)
    assert app.infer({"op": "echo", "value": 2}).result(30).status["echo"] == 2


def test_an_idle_worker_that_stops_answering_is_restarted_and_shown(
    make_app, resume_stopped
) -> None:
    app = make_app(health_interval=0.3, health_timeout=1.0)
    app.wait_ready(30)
    pid = pid_of(app, 0)
    app.infer({"op": "echo"}).result(30)
    os.kill(pid, signal.SIGSTOP)
    resume_stopped(pid)
    seen: set[str] = set()

    def restarted() -> bool:
        seen.update(w.state for w in app.workers())
        return pid_of(app, 0) not in (None, pid) and app.workers()[0].state == "idle"

    wait_for(restarted, timeout=30, interval=0.005)
    assert "unresponsive" in seen
    line = "group 0 did not answer a health check within 1 s: restarting"
    wait_for(lambda: line in app.env.log_file.read_text(), timeout=5)
    assert app.workers()[0].restarts == 1
    assert app.infer({"op": "echo", "value": 3}).result(30).status["echo"] == 3


def test_a_healthy_idle_worker_is_pinged_and_left_alone(make_app) -> None:
    app = make_app(health_interval=0.1, health_timeout=2.0)
    app.wait_ready(30)
    pid = pid_of(app, 0)
    group = app._pool._groups[0]
    wait_for(lambda: group.ping_n >= 5 and group.ping_deadline is None, timeout=30)  # answered
    assert pid_of(app, 0) == pid and app.workers()[0].restarts == 0
    assert "health check" not in app.env.log_file.read_text()


# -- stop without a reload ----------------------------------------------------------------------
def test_a_model_that_honours_the_stop_stops_in_under_a_second_and_stays_loaded(
    make_app,
) -> None:
    app = make_app()
    pid = app.infer({"op": "echo"}).result(30).status["pid"]
    fut = app.infer({"op": "steps"})
    wait_for(lambda: fut.progress is not None, timeout=30)
    t0 = time.monotonic()
    assert fut.terminate()
    took = time.monotonic() - t0
    assert took < 1.0, f"the stop took {took:.2f} s"
    assert fut.cancelled() and fut.state == "cancelled"
    status = status_of(fut)
    assert status["state"] == "cancelled" and status["stop"]["how"] == "cooperative"
    assert status["files"]["partial"] == [str(fut.output_dir / "partial.txt")]
    after = app.infer({"op": "echo"}).result(30).status
    assert after["pid"] == pid and after["calls"] == 3  # the same loaded model served it
    assert app.workers()[0].restarts == 0


def test_a_model_that_ignores_the_stop_is_killed_after_the_grace(make_app) -> None:
    app = make_app(stop_grace=1.0)
    pid = app.infer({"op": "echo"}).result(30).status["pid"]
    fut = app.infer({"op": "ignore_stop"})
    wait_for(lambda: fut.state == "running", timeout=30)
    t0 = time.monotonic()
    assert fut.terminate()
    took = time.monotonic() - t0
    assert 1.0 <= took < 5.0, f"terminate took {took:.2f} s"
    assert fut.cancelled()
    status = status_of(fut)
    assert status["state"] == "cancelled" and status["stop"]["how"] == "restarted"
    line = "did not stop within 1 s (STOP_GRACE): restarting group 0"
    wait_for(lambda: line in app.env.log_file.read_text(), timeout=5)  # written after the lock
    assert app.infer({"op": "echo"}).result(30).status["pid"] != pid


# -- live previews --------------------------------------------------------------------------------
def test_previews_reach_the_future_its_callbacks_the_queue_and_the_record(make_app) -> None:
    from PIL import Image

    app = make_app()
    fut = app.infer({"op": "preview", "steps": 3, "step_seconds": 0.6})
    assert fut.preview is None
    seen: list[str | None] = []
    fut.add_progress_callback(lambda f: seen.append(f.preview))
    wait_for(lambda: any(r["preview"] for r in app.requests()), timeout=30)
    fut.result(30)
    path = str(fut.output_dir / "preview.jpg")
    assert fut.preview == path and path in seen
    with Image.open(path) as img:
        assert img.format == "JPEG" and img.size == (512, 288)
    status = status_of(fut)
    assert status["preview"] == path
    assert path not in status["files"]["images"]  # a preview is not an output


def test_a_model_without_previews_looks_as_before(make_app) -> None:
    app = make_app()
    fut = app.infer({"op": "progress", "steps": 3})
    fut.result(30)
    assert fut.preview is None and "preview" not in status_of(fut)
    assert not (fut.output_dir / "preview.jpg").exists()


# -- status.json from the moment a request is accepted ------------------------------------------
def test_status_is_written_queued_then_running_then_final_and_history_shows_it(
    make_app, tmp_path: Path
) -> None:
    app = make_app()
    release = tmp_path / "release"
    running = app.submit({"op": "block", "release": str(release)}, source="api")
    queued = app.submit({"op": "echo", "value": 5}, source="page")
    wait_for(lambda: record_state(running) == "running", timeout=10)
    wait_for(lambda: record_state(queued) == "queued", timeout=10)
    record = status_of(running)
    assert record["group"] == 0 and record["started_at"] and record["source"] == "api"
    assert record["params"]["release"] == str(release)
    assert record["provenance"]["factory"] == "models:create_worker"
    waiting = status_of(queued)
    assert waiting["params"]["value"] == 5 and waiting["started_at"] is None
    assert waiting["source"] == "page" and waiting["queued_at_iso"]
    listed = {r.request_id: r for r in load_results(app.env.output_dir)}
    assert listed[running.request_id].status["state"] == "running"
    assert listed[queued.request_id].status["state"] == "queued"
    assert read_run(queued.output_dir).broken is None
    info = app.requests()
    assert [(r["id"], r["state"], r["source"], r["position"]) for r in info] == [
        (running.request_id, "running", "api", None),
        (queued.request_id, "queued", "page", 0),
    ]
    release.write_text("go")
    assert running.result(30).status["released"] is True
    assert queued.result(30).status["source"] == "page"
    assert status_of(queued)["state"] == "succeeded" and app.requests() == []


def test_a_peer_dying_while_rank_0_finishes_is_never_recorded_as_succeeded(make_app) -> None:
    app = make_app(num_gpus=2)  # one group of two ranks
    app.wait_ready(30)
    for _ in range(5):
        fut = app.infer({"op": "crash", "only_rank": 1})  # rank 0 returns at once
        with pytest.raises(cg.WorkerCrashedError):
            fut.result(30)
        status = status_of(fut)  # on disk as soon as result() raised
        assert status["state"] == "failed" and status["error"]["type"] == "WorkerCrashedError"
        app.wait_ready(30)
        wait_for(lambda: all(w.state == "idle" for w in app.workers()), timeout=30)


def test_a_peer_failure_is_recorded_at_once_not_after_the_peer_grace(make_app) -> None:
    app = make_app(num_gpus=2)
    app.wait_ready(30)
    fut = app.infer({"op": "fail_one", "rank": 1})  # rank 0 hangs: the grace would be 10 s
    with pytest.raises(cg.InferenceError, match="rank 1 fails"):
        fut.result(30)
    status = status_of(fut)
    assert status["state"] == "failed" and status["error"]["type"] == "ValueError"


def test_a_request_folder_whose_record_is_on_its_way_reads_as_running_not_broken(
    tmp_path: Path,
) -> None:
    from cosmos_gradio_nb._core.outputs import new_request_id, request_folder

    fresh = request_folder(tmp_path, new_request_id())  # named now, as the app names them
    fresh.mkdir()  # the worker made it; the app's running record follows within 50 ms
    old = request_folder(tmp_path, new_request_id(), now=time.time() - 3600)
    old.mkdir()  # an hour old and still without a record: the app died before writing it
    assert read_run(fresh).state == "running" and read_run(fresh).broken is None
    assert read_run(old).state == "broken" and "no status.json" in (read_run(old).broken or "")
