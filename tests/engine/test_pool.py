"""The engine with real worker subprocesses and real faults."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from enginetest import alive, parent_script, wait_for, worker_pids

import cosmos_gradio_nb as cg
from cosmos_gradio_nb._backends.process import nvidia_present


def test_result_status_files_and_log(make_app) -> None:
    app = make_app()
    res = app.infer({"op": "write", "value": 1}).result(30)
    assert isinstance(res, cg.InferenceResult)
    out = res.output_dir
    assert out.parent == app.env.output_dir and out.name.endswith(res.request_id)
    assert [p.name for p in res.videos] == [f"named-{out.name}.webm", "clip.mp4"]
    assert [p.name for p in res.images] == ["frame.png"]
    assert {p.name for p in res.files} >= {"clip.mp4", "frame.png", "notes.txt"}
    status = json.loads((out / "status.json").read_text())
    assert status == res.status
    assert status["state"] == "succeeded" and status["answer"] == 42
    assert status["params"] == {"op": "write", "value": 1, "output_dir": str(out)}
    assert status["queued_at"] <= status["started_at"] <= status["finished_at"]
    assert res.duration == pytest.approx(status["duration"])

    res = app.infer({"op": "print", "value": "x", "lines": 2}).result(30)
    assert res.log == [
        "[g0 r0] line 0 of request x",
        "[g0 r0] line 1 of request x",
        "[g0 r0] to stderr",
    ]
    log = app.env.log_file.read_text()
    assert "[g0 r0] line 1 of request x" in log and "[app] group 0 ready" in log


def test_output_dir_is_set_by_the_app(make_app) -> None:
    app = make_app()
    fut = app.infer({"op": "echo", "output_dir": "/etc"})
    res = fut.result(30)
    assert res.output_dir != Path("/etc") and fut.params["output_dir"] == str(res.output_dir)
    assert len({app.infer({"op": "echo"}).output_dir for _ in range(20)}) == 20


def test_replicas_run_in_parallel_and_share_one_queue(make_app) -> None:
    app = make_app(num_gpus=2, gpus_per_model=1)
    app.wait_ready(30)
    futs = [app.infer({"op": "sleep", "seconds": 0.3}) for _ in range(4)]
    wait_for(lambda: sum(f.state == "running" for f in futs) == 2, timeout=5)
    assert [f.state for f in futs[2:]] == ["queued", "queued"]
    assert futs[2].queue_position == 0 and futs[3].queue_position == 1
    results = [f.result(30) for f in futs]
    assert {r.status["group"] for r in results} == {0, 1}
    echo = [app.infer({"op": "echo"}).result(30).status for _ in range(4)]
    devices = {e["env"]["CUDA_VISIBLE_DEVICES"] for e in echo}
    assert devices <= ({"0", "1"} if nvidia_present() else {""})  # no GPU here: CPU, said so
    assert {w.gpu for w in app.workers()} == ({"0", "1"} if nvidia_present() else {""})
    assert all(e["env"]["WORLD_SIZE"] == "1" and e["env"]["RANK"] == "0" for e in echo)


def test_cuda_visible_devices_of_the_parent_is_respected(make_app, monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5,7")
    app = make_app(num_gpus=2, gpus_per_model=1)
    assert sorted(w.gpu for w in app.workers()) == ["3", "5"]
    seen = {app.infer({"op": "sleep", "seconds": 0.2}).result(30).status["group"] for _ in range(1)}
    assert seen
    envs = [
        f.result(30).status["env"]["CUDA_VISIBLE_DEVICES"]
        for f in [app.infer({"op": "echo"}) for _ in range(6)]
    ]
    assert set(envs) <= {"3", "5"}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    with pytest.raises(cg.CosmosGradioError, match="lists only 1"):
        make_app(num_gpus=2, gpus_per_model=1)


def test_inference_error_keeps_the_worker(make_app) -> None:
    app = make_app()
    pid = app.infer({"op": "echo"}).result(30).status["pid"]
    fut = app.infer({"op": "raise", "value": "bad seed"})
    with pytest.raises(cg.InferenceError, match="RuntimeError: boom: bad seed") as info:
        fut.result(30)
    assert "raise RuntimeError" in info.value.remote_traceback
    assert fut.state == "failed"
    status = json.loads((fut.output_dir / "status.json").read_text())
    assert status["state"] == "failed" and status["error"]["type"] == "RuntimeError"
    assert app.infer({"op": "echo"}).result(30).status["pid"] == pid


@pytest.mark.parametrize(
    ("op", "signal_name", "exitcode"),
    [("crash", "SIGKILL", -9), ("exit", None, 3), ("segfault", "SIGSEGV", -11)],
)
def test_crash_fails_fast_and_nothing_queued_is_lost(make_app, op, signal_name, exitcode) -> None:
    app = make_app()
    first_pid = app.infer({"op": "echo"}).result(30).status["pid"]
    fut = app.infer({"op": op})
    queued = [app.infer({"op": "echo", "value": i}) for i in range(3)]
    with pytest.raises(cg.WorkerCrashedError) as info:
        fut.result(10)
    err = info.value
    assert err.signal_name == signal_name and err.exitcode == exitcode and err.rank == 0
    assert "fault model ready" in "\n".join(err.last_log_lines)
    status = json.loads((fut.output_dir / "status.json").read_text())
    assert status["state"] == "failed" and status["error"]["type"] == "WorkerCrashedError"
    # the queued requests ran on the restarted group
    results = [q.result(30) for q in queued]
    assert [r.status["echo"] for r in results] == [0, 1, 2]
    assert results[0].status["pid"] != first_pid
    assert app.workers()[0].restarts == 1


def test_external_sigkill_mid_request_is_noticed_within_a_second(make_app) -> None:
    app = make_app(num_gpus=2, gpus_per_model=1)
    app.wait_ready(30)
    busy = app.infer({"op": "hang"})
    wait_for(lambda: busy.state == "running", timeout=5)
    group = next(w for w in app.workers() if w.request_id == busy.request_id)
    other = app.infer({"op": "sleep", "seconds": 0.5})  # the other group keeps serving
    wait_for(lambda: other.state == "running", timeout=5)
    t0 = time.monotonic()
    os.kill(group.pid, signal.SIGKILL)
    with pytest.raises(cg.WorkerCrashedError):
        busy.result(5)
    assert time.monotonic() - t0 < 1.0
    assert other.result(30).status["slept"] == 0.5
    wait_for(lambda: all(w.state == "idle" for w in app.workers()), timeout=15)


def test_timeout_restarts_only_that_group(make_app) -> None:
    app = make_app(num_gpus=2, gpus_per_model=1)
    app.wait_ready(30)
    pids = {w.group: w.pid for w in app.workers()}
    fut = app.infer({"op": "hang"}, timeout=0.5)
    with pytest.raises(cg.InferenceTimeoutError, match=r"timeout of 0\.5 s") as info:
        fut.result(10)
    assert isinstance(info.value, TimeoutError)
    hung_group = json.loads((fut.output_dir / "status.json").read_text())["group"]
    wait_for(lambda: all(w.state == "idle" for w in app.workers()), timeout=15)
    after = {w.group: w.pid for w in app.workers()}
    assert after[hung_group] != pids[hung_group] and after[1 - hung_group] == pids[1 - hung_group]
    assert app.infer({"op": "echo", "value": 9}).result(30).status["echo"] == 9


def test_worker_timeout_from_the_environment(make_app, monkeypatch) -> None:
    monkeypatch.setenv("WORKER_TIMEOUT", "0.4")
    app = make_app()
    with pytest.raises(cg.InferenceTimeoutError):
        app.infer({"op": "hang"}).result(10)


@pytest.mark.parametrize(
    ("factory", "fragment"),
    [
        ("broken_factory", "checkpoint not found"),
        ("dying_factory", "exit code 7"),
        ("no_infer_factory", "no infer"),
        ("missing_function", "no factory function 'missing_function'"),
    ],
)
def test_startup_failure_is_prompt_and_clear(make_app, factory, fragment) -> None:
    t0 = time.monotonic()
    app = make_app(factory_function=factory)
    with pytest.raises(cg.WorkerStartupError, match=fragment):
        app.wait_ready(30)
    assert time.monotonic() - t0 < 5
    with pytest.raises(cg.WorkerStartupError):
        app.infer({"op": "echo"})


def test_startup_failure_fails_queued_requests(make_app) -> None:
    app = make_app(factory_function="broken_factory")
    try:
        fut = app.infer({"op": "echo"})
    except cg.WorkerStartupError:
        return  # the failure won the race: refused at once, also fine
    with pytest.raises(cg.WorkerStartupError, match="ValueError: checkpoint not found"):
        fut.result(30)


def test_gradio_app_blocks_and_raises_startup_errors(deploy_dirs) -> None:
    with pytest.raises(cg.WorkerStartupError, match="checkpoint not found") as info:
        cg.GradioApp(factory_module="models", factory_function="broken_factory")
    assert "broken_factory" in info.value.remote_traceback
    wait_for(lambda: not worker_pids(), timeout=10)
    with cg.GradioApp(None, "models", "create_worker") as app:
        assert app.ready
        res = app.infer({"op": "echo", "value": 2})
        assert isinstance(res, cg.InferenceResult) and res.status["echo"] == 2
        assert isinstance(app.submit({"op": "echo"}), cg.InferenceFuture)


def test_cancel_terminate_and_queue_position(make_app) -> None:
    app = make_app(stop_grace=0.5)  # "hang" never checks for a stop: killed after the grace
    running = app.infer({"op": "hang"})
    wait_for(lambda: running.state == "running", timeout=10)
    queued = [app.infer({"op": "echo", "value": i}) for i in range(3)]
    assert [q.queue_position for q in queued] == [0, 1, 2]
    assert queued[1].cancel() and queued[1].cancelled() and queued[1].state == "cancelled"
    assert queued[2].queue_position == 1 and app.queue_length == 2
    assert not running.cancel()  # standard meaning: a running future cannot be cancelled
    old_pid = app.workers()[0].pid
    assert running.terminate()
    assert running.cancelled() and running.state == "cancelled"
    with pytest.raises(cf.CancelledError):
        running.result(1)
    status = json.loads((running.output_dir / "status.json").read_text())
    assert status["state"] == "cancelled" and status["stop"]["how"] == "restarted"
    assert json.loads((queued[1].output_dir / "status.json").read_text())["stop"] == {
        "how": "dequeued",
        "requested_at": None,
        "requested_at_iso": None,
    }
    assert [queued[i].result(30).status["echo"] for i in (0, 2)] == [0, 2]
    assert app.workers()[0].pid != old_pid
    assert not queued[0].terminate()  # already done


def test_progress_and_tqdm_reach_the_future(make_app) -> None:
    app = make_app()
    seen: list[tuple[float | None, str]] = []
    fut = app.infer({"op": "progress", "steps": 4})
    fut.add_progress_callback(lambda f: seen.append((f.progress, f.progress_message)))
    fut.result(30)
    assert seen[-1] == (1.0, "step 4/4") and len(seen) >= 2
    fut = app.infer({"op": "tqdm", "steps": 4})
    fut.result(30)
    assert fut.progress == 1.0 and fut.progress_message == "denoise 4/4"


def test_futures_work_with_the_standard_tools(make_app) -> None:
    app = make_app(num_gpus=2, gpus_per_model=1)
    futs = app.map([{"op": "echo", "value": i} for i in range(10)], progress=False)
    done, not_done = cf.wait(futs, timeout=30)
    assert not not_done
    assert sorted(f.result().status["echo"] for f in cf.as_completed(futs)) == list(range(10))
    called = []
    futs[0].add_done_callback(called.append)
    assert called == [futs[0]]

    async def main() -> int:
        return (await asyncio.wrap_future(app.infer({"op": "echo", "value": 7}))).status["echo"]

    # In a thread of its own: once a test session's Playwright browser is up, the main
    # thread has a running event loop, and asyncio.run() refuses to start another.
    with cf.ThreadPoolExecutor(1) as pool:
        assert pool.submit(asyncio.run, main()).result(60) == 7
    # cancellation is visible to wait() at once, not when the pool reaches the request
    blocker = app.map([{"op": "sleep", "seconds": 0.5}] * 2, progress=False)
    victim = app.infer({"op": "echo"})
    assert victim.cancel()
    done, _ = cf.wait([victim], timeout=0.1)
    assert victim in done
    cf.wait(blocker, timeout=30)


def test_validation_happens_in_the_caller(make_app) -> None:
    import pydantic

    class Params(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")
        op: str = "echo"
        value: int = 0
        output_dir: str | None = None

    app = make_app(validator=Params)
    assert app.default_request == {"op": "echo", "value": 0}
    assert app.params_schema["properties"]["value"]["type"] == "integer"
    with pytest.raises(cg.ValidationError, match="value") as info:
        app.infer({"value": "many"})
    assert info.value.key == "value"
    with pytest.raises(cg.ValidationError, match="item 1"):
        app.map([{"value": 1}, {"valu": 2}])
    assert app.history == []  # nothing was queued
    assert app.infer({"value": 4}).result(30).status["params"]["value"] == 4
    app2 = make_app()
    with pytest.raises(cg.ValidationError, match="'blob' is not JSON-serializable"):
        app2.infer({"op": "echo", "blob": b"bytes"})
    with pytest.raises(cg.ValidationError, match="JSON object"):
        app2.infer(["not", "a", "dict"])


def test_queue_full_and_closed(make_app) -> None:
    app = make_app(max_queue_size=2)
    running = app.infer({"op": "hang"})
    wait_for(lambda: running.state == "running", timeout=10)
    queued = [app.infer({"op": "echo"}) for _ in range(2)]
    with pytest.raises(cg.QueueFullError, match="max_queue_size=2"):
        app.infer({"op": "echo"})
    pids = worker_pids()
    t0 = time.monotonic()
    app.close(timeout=2)
    assert time.monotonic() - t0 < 5
    for fut in [running, *queued]:
        with pytest.raises(cg.AppClosedError):
            fut.result(1)
    assert not (pids & worker_pids())
    with pytest.raises(cg.AppClosedError):
        app.infer({"op": "echo"})
    app.close()  # twice is fine


def test_history_and_same_name_replacement(deploy_dirs) -> None:
    first = cg.NotebookApp(factory_module="models", name="replace-me")
    first.wait_ready(30)
    first_pids = {w.pid for w in first.workers()}
    first.infer({"op": "echo"}).result(30)
    assert [f.state for f in first.history] == ["succeeded"]
    second = cg.NotebookApp(factory_module="models", name="replace-me")
    try:
        assert first.closed
        wait_for(lambda: not (first_pids & worker_pids()), timeout=10)
        assert second.infer({"op": "echo", "value": 1}).result(30).status["echo"] == 1
    finally:
        second.close()


def test_closure_factory_is_shipped_with_cloudpickle(make_app) -> None:
    greeting = "hello from a closure"

    class Local:
        def infer(self, args: dict) -> dict:
            return {"greeting": greeting, "x": args["x"]}

    app = make_app(factory=lambda: Local(), factory_module=None)
    assert app.infer({"x": 1}).result(30).status["greeting"] == greeting


def test_module_next_to_the_caller_imports_in_workers(make_app, tmp_path, monkeypatch) -> None:
    (tmp_path / "nextdoor.py").write_text(
        "import os\nclass M:\n    def infer(self, a):\n        return {'cwd': os.getcwd()}\n"
        "def create_worker():\n    return M()\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    app = make_app(factory_module="nextdoor")
    assert app.infer({}).result(30).status["cwd"] == str(tmp_path)


def test_distributed_group_with_gloo(make_app, monkeypatch) -> None:
    import cosmos_gradio_nb._engine.deadlines as deadlines

    monkeypatch.setattr(deadlines, "PEER_GRACE", 1.0)  # rank 0 waits in all_reduce for a dead peer
    app = make_app(factory_module="dist_model", num_gpus=2)  # GPUS_PER_MODEL defaults to NUM_GPUS
    app.wait_ready(60)
    assert [(w.group, w.rank) for w in app.workers()] == [(0, 0), (0, 1)]
    res = app.infer({"x": 2}).result(60)
    assert res.status["sum"] == 2 * 1 + 2 * 2 and res.status["world"] == 2
    assert json.loads((res.output_dir / "sum.json").read_text()) == {"sum": 6.0}
    assert "[g0 r1] rank 1/2 joined" in app.env.log_file.read_text()
    # a failure on rank 1 fails the request; rank 0 is then stuck in all_reduce -> group restarts
    with pytest.raises(cg.InferenceError, match="rank 1 refuses") as info:
        app.infer({"fail_rank": 1}).result(60)
    assert info.value.rank == 1
    # a crash of rank 1 fails the request and restarts the whole group
    with pytest.raises(cg.WorkerCrashedError) as crash:
        app.infer({"kill_rank": 1}).result(60)
    assert crash.value.rank == 1
    assert app.infer({"x": 1}).result(60).status["sum"] == 3


def test_workers_die_with_their_parent(tmp_path) -> None:
    script = parent_script(tmp_path, "import time\ntime.sleep(600)\n")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    parent = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        line = parent.stdout.readline()
        pids = [int(p) for p in line.split()]
        assert len(pids) == 2 and all(psutil.pid_exists(p) for p in pids)
        parent.kill()  # SIGKILL: no atexit, no cleanup code runs in the parent
        parent.wait(10)
        wait_for(lambda: not alive(pids), timeout=5)
    finally:
        parent.kill()


def test_interpreter_exit_without_close_stops_workers(tmp_path) -> None:
    # no app.close(): the interpreter exits with a worker still busy
    script = parent_script(tmp_path, 'slow = app.infer({"op": "hang"})\n')
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    t0 = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - t0 < 20
    pids = [int(p) for p in done.stdout.split()]
    assert len(pids) == 2
    wait_for(lambda: not any(psutil.pid_exists(p) for p in pids), timeout=5)


def test_sample_validator_accepts_uploads_in_the_apps_folder(make_app, tmp_path) -> None:
    from PIL import Image

    from cosmos_gradio_nb.samples import SampleParams

    uploads = tmp_path / "app-uploads"
    (uploads / "u1").mkdir(parents=True)
    image = uploads / "u1" / "cat.png"
    Image.new("RGB", (8, 8), "red").save(image)
    app = make_app(validator=SampleParams, uploads_dir=str(uploads))  # UPLOADS_DIR points elsewhere
    assert app.validate({"image": str(image)})["image"] == str(image.resolve())
    with pytest.raises(cg.ValidationError, match="outside the allowed folders"):
        app.validate({"image": "/etc/hostname"})
