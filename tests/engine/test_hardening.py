"""Hostile models, floods and callbacks, each tried for real: nothing may stall, leak or lie."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from enginetest import alive, parent_script, wait_for, worker_pids

import cosmos_gradio_nb as cg

REPO = Path(__file__).resolve().parents[2]
_started: list[int] = []  # helper pids the tests saw, killed at teardown if a test failed


@pytest.fixture(autouse=True)
def _kill_leftover_helpers():
    yield
    for pid in alive(_started):
        os.kill(pid, signal.SIGKILL)
    _started.clear()


def _helpers(pids: list[int]) -> list[int]:
    _started.extend(pids)
    return pids


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- processes a model starts -------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["plain", "setsid", "doublefork", "ignore_term"])
def test_no_helper_survives_close(make_app, kind: str) -> None:
    app = make_app()
    helpers = _helpers(app.infer({"op": "helper", "kind": kind}).result(30).status["helpers"])
    assert alive(helpers), "the helper should run after its request returned"
    app.close()
    wait_for(lambda: not alive(helpers), timeout=10)
    assert "stopped 1 process(es) the model had left running" in app.env.log_file.read_text()


@pytest.mark.parametrize("how", ["terminate", "timeout", "crash"])
def test_no_helper_survives_a_restart(make_app, how: str) -> None:
    app = make_app(stop_grace=0.5)  # "hang" never checks for a stop: terminate kills it
    first = _helpers(app.infer({"op": "helper", "kind": "doublefork"}).result(30).status["helpers"])
    if how == "terminate":
        fut = app.infer({"op": "hang"})
        wait_for(lambda: fut.state == "running", timeout=10)
        assert fut.terminate()
    elif how == "timeout":
        with pytest.raises(cg.InferenceTimeoutError):
            app.infer({"op": "hang"}, timeout=0.5).result(30)
    else:
        with pytest.raises(cg.WorkerCrashedError):
            app.infer({"op": "crash"}).result(30)
    wait_for(lambda: not alive(first), timeout=10)
    app.wait_ready(30)
    wait_for(lambda: app.workers()[0].state == "idle", timeout=30)
    assert app.infer({"op": "echo", "value": 1}).result(30).status["echo"] == 1


def test_no_helper_survives_the_app_being_killed(tmp_path: Path) -> None:
    tail = (
        'helpers = []\nfor kind in ("setsid", "doublefork", "ignore_term"):\n'
        '    helpers += app.infer({"op": "helper", "kind": kind}).result(30).status["helpers"]\n'
        'print(" ".join(map(str, helpers)), flush=True)\n'
        "import time\ntime.sleep(600)\n"
    )
    script = parent_script(tmp_path, tail)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    parent = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert parent.stdout is not None
        workers = [int(p) for p in parent.stdout.readline().split()]
        helpers = _helpers([int(p) for p in parent.stdout.readline().split()])
        assert len(helpers) == 3 and alive(helpers) == helpers
        parent.kill()  # SIGKILL: no atexit, no cleanup runs in the app's process
        parent.wait(10)
        wait_for(lambda: not alive(workers + helpers), timeout=10)
    finally:
        parent.kill()


# -- a model that hangs while loading -------------------------------------------------------------
def test_a_hanging_factory_times_out_naming_the_rank_and_its_last_lines(make_app) -> None:
    app = make_app(factory_function="hanging_factory", startup_timeout=1.5)
    queued = app.infer({"op": "echo"})
    t0 = time.monotonic()
    with pytest.raises(cg.WorkerStartupError) as info:
        app.wait_ready(30)
    assert time.monotonic() - t0 < 10
    err = info.value
    assert err.rank == 0 and "STARTUP_TIMEOUT" in str(err)
    assert "loading weights from /nfs/stuck" in str(err)
    with pytest.raises(cg.WorkerStartupError):
        queued.result(5)
    status = json.loads((queued.output_dir / "status.json").read_text())
    assert status["state"] == "failed" and status["error"]["type"] == "WorkerStartupError"
    wait_for(lambda: not worker_pids(), timeout=10)  # the stuck process was stopped


def test_gradio_app_returns_when_the_factory_hangs(deploy_dirs: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    t0 = time.monotonic()
    with pytest.raises(cg.WorkerStartupError, match="STARTUP_TIMEOUT"):
        cg.GradioApp(None, "models", "hanging_factory", startup_timeout=1.0)
    assert time.monotonic() - t0 < 10


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_stops_on_a_signal_while_workers_load(tmp_path: Path, sig: int) -> None:
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), str(REPO)]),
        OUTPUT_DIR=str(tmp_path / "out"),
        LOG_FILE=str(tmp_path / "out" / "log"),
    )
    cmd = [sys.executable, "-m", "cosmos_gradio_nb", "serve", "--factory", "models:hanging_factory"]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        import psutil

        me = psutil.Process(proc.pid)
        wait_for(
            lambda: (
                "loading weights" in (tmp_path / "out" / "log").read_text()
                if (tmp_path / "out" / "log").exists()
                else False
            ),
            timeout=30,
        )
        workers = [c.pid for c in me.children(recursive=True)]
        assert workers
        t0 = time.monotonic()
        proc.send_signal(sig)
        proc.wait(15)
        assert time.monotonic() - t0 < 8
        wait_for(lambda: not alive(workers), timeout=10)
    finally:
        proc.kill()
        proc.wait(5)


# -- floods ---------------------------------------------------------------------------------------
def test_a_200_mb_line_neither_stalls_the_other_group_nor_fills_memory(make_app) -> None:
    app = make_app(num_gpus=2, gpus_per_model=1)
    app.wait_ready(30)
    for _ in range(5):  # warm
        app.infer({"op": "echo"}).result(30)
    flood = app.infer({"op": "flood", "mb": 200})
    wait_for(lambda: flood.state == "running", timeout=10)
    times: list[float] = []
    while not flood.done() or len(times) < 50:
        t = time.perf_counter()
        app.infer({"op": "echo"}).result(30)
        times.append(time.perf_counter() - t)
    flood.result(60)
    assert percentile(times, 0.99) < 0.050, f"p99 {percentile(times, 0.99) * 1000:.1f} ms"
    log = flood.result().log
    assert len(log) == 1 and "[line cut: 209715200 bytes, 65536 shown]" in log[0]
    assert sum(len(line) for line in log) < 70_000
    longest = max(len(line) for line in app.env.log_file.read_text().splitlines())
    assert longest < 70_000


def test_a_requests_log_is_bounded_in_lines(make_app) -> None:
    app = make_app()
    res = app.infer({"op": "print", "lines": 12_000}).result(60)
    assert len(res.log) == 10_000 and "log cut" in res.log[-1]
    assert "line 11999 of request" in app.env.log_file.read_text()


# -- callbacks ------------------------------------------------------------------------------------
def test_a_blocking_done_callback_does_not_delay_another_groups_crash(make_app) -> None:
    app = make_app(num_gpus=2, gpus_per_model=1)
    app.wait_ready(30)
    release = threading.Event()
    first = app.infer({"op": "sleep", "seconds": 0.1})
    first.add_done_callback(lambda _: release.wait(5))
    first.result(30)
    hung = app.infer({"op": "hang"})
    wait_for(lambda: hung.state == "running", timeout=10)
    pid = next(w.pid for w in app.workers() if w.request_id == hung.request_id)
    t0 = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(cg.WorkerCrashedError):
        hung.result(10)
    assert time.monotonic() - t0 < 1.0
    t0 = time.monotonic()
    with pytest.raises(cg.InferenceTimeoutError):  # nor a timeout
        app.infer({"op": "hang"}, timeout=0.3).result(10)
    assert time.monotonic() - t0 < 1.5
    release.set()


def test_a_callback_that_waits_for_another_result_does_not_deadlock(make_app) -> None:
    app = make_app()
    second_box: list[cg.InferenceFuture] = []
    got: list[object] = []
    done = threading.Event()

    def wait_for_second(_: object) -> None:
        got.append(second_box[0].result(10).status["echo"])
        done.set()

    first = app.infer({"op": "echo", "value": 1})
    first.add_done_callback(wait_for_second)
    second_box.append(app.infer({"op": "echo", "value": 2}))
    assert done.wait(10) and got == [2]


def test_a_callback_that_closes_the_app_is_prompt(make_app) -> None:
    app = make_app()
    closed = threading.Event()

    def close(_: object) -> None:
        app.close()
        closed.set()

    fut = app.infer({"op": "echo"})
    t0 = time.monotonic()
    fut.add_done_callback(close)
    assert closed.wait(10)
    assert time.monotonic() - t0 < 3 and app.closed


# -- results and errors that break the contract -------------------------------------------------
@pytest.mark.parametrize(
    ("what", "fragment"), [("nan", "NaN"), ("set", "set"), ("lambda", "function")]
)
def test_a_return_value_json_cannot_hold_fails_naming_the_key(
    make_app, what: str, fragment: str
) -> None:
    app = make_app()
    pid = app.infer({"op": "echo"}).result(30).status["pid"]
    fut = app.infer({"op": "bad_return", "what": what})
    with pytest.raises(cg.InferenceError, match=r"metrics\.score") as info:
        fut.result(30)
    assert fragment in str(info.value)
    json.loads((fut.output_dir / "status.json").read_text())  # strict JSON, always
    assert app.infer({"op": "echo"}).result(30).status["pid"] == pid  # the worker stayed up


def test_sys_exit_inside_infer_is_reported_as_such(make_app) -> None:
    app = make_app()
    pid = app.infer({"op": "echo"}).result(30).status["pid"]
    with pytest.raises(cg.InferenceError, match=r"called sys.exit\(3\)") as info:
        app.infer({"op": "sysexit", "code": 3}).result(30)
    assert "sys.exit" in info.value.remote_traceback and "SystemExit" in info.value.remote_traceback
    assert app.infer({"op": "echo"}).result(30).status["pid"] == pid


# -- restarts and batches -------------------------------------------------------------------------
def test_an_idle_group_killed_again_and_again_is_back_each_time_at_once(make_app) -> None:
    """A restart that reached ready resets the crash backoff: the 7th kill costs one start-up."""
    app = make_app()
    app.wait_ready(30)
    took = []
    for _ in range(7):
        killed = app.workers()[0].pid
        t0 = time.monotonic()
        os.kill(killed, signal.SIGKILL)

        def back(killed: int | None = killed) -> bool:
            worker = app.workers()[0]
            return worker.pid != killed and worker.state == "idle"

        wait_for(back, timeout=20)
        took.append(time.monotonic() - t0)
    print("kill to ready again, s:", [round(t, 2) for t in took])
    assert max(took) < 3.0, took  # one start-up each; the old backoff waited 16 s, then 30 s
    assert app.workers()[0].restarts == 7
    assert app.infer({"op": "echo", "value": 7}).result(30).status["echo"] == 7


def test_map_queues_all_or_nothing(make_app) -> None:
    app = make_app(max_queue_size=2)
    running = app.infer({"op": "hang"})
    wait_for(lambda: running.state == "running", timeout=30)
    with pytest.raises(cg.QueueFullError, match="max_queue_size=2"):
        app.map([{"op": "echo", "value": i} for i in range(3)], progress=False)
    assert app.queue_length == 0 and app.history == [running]  # nothing queued, nothing lost
    batch = app.map([{"op": "echo", "value": i} for i in range(2)], progress=False)
    assert app.queue_length == 2 and app.history == [running, *batch]
    with pytest.raises(cg.QueueFullError):
        app.infer({"op": "echo"})
    assert running.terminate()
    assert [f.result(30).status["echo"] for f in batch] == [0, 1]
