"""The Ray backend on a local Ray instance: the sample model, faults, close."""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import psutil
import pytest
from conftest import our_placement_groups
from enginetest import alive, wait_for

import cosmos_gradio_nb as cg
from cosmos_gradio_nb.samples import FACTORY_MODULE, SampleParams

TINY = {"num_frames": 6, "width": 64, "height": 48, "fps": 6}


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    import ray

    ray.init(address="local", num_cpus=4, include_dashboard=False)  # never a Ray running here
    yield ray
    ray.shutdown()


def decoded_frames(path) -> int:
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def agent_pid(worker_pid: int) -> int:
    """The rank actor's process: the worker's keeper's parent."""
    return psutil.Process(worker_pid).parent().parent().pid


def test_sample_model_on_two_replicas(make_ray_app) -> None:
    app = make_ray_app(
        validator=SampleParams, factory_module=FACTORY_MODULE, num_gpus=2, gpus_per_model=1
    )
    app.wait_ready(120)
    assert {w.node for w in app.workers()} == {"127.0.0.1"}
    futs = app.map([{"seed": s, "frame_delay": 0.05, **TINY} for s in range(6)], progress=False)
    results = [f.result(120) for f in futs]
    for seed, res in enumerate(results):
        assert res.status["params"]["seed"] == seed and res.status["state"] == "succeeded"
        assert res.videos[0].parent == res.output_dir and decoded_frames(res.videos[0]) == 6
        assert res.images and res.images[0].name == "poster.png"
    assert {r.status["group"] for r in results} == {0, 1}
    assert futs[0].progress == 1.0


def test_sample_model_as_one_two_rank_gloo_group(make_ray_app) -> None:
    app = make_ray_app(validator=SampleParams, factory_module=FACTORY_MODULE, num_gpus=2)
    res = app.infer({"prompt": "two ranks on ray", "seed": 4, **TINY}).result(120)
    assert res.status["world_size"] == 2 and decoded_frames(res.videos[0]) == 6
    assert {line.split("]")[0] + "]" for line in res.log} == {"[g0 r0]", "[g0 r1]"}


def test_torchrun_variables_progress_and_logs(make_ray_app) -> None:
    app = make_ray_app(num_gpus=2)
    env = app.infer({"op": "echo"}).result(60).status["env"]
    assert env["WORLD_SIZE"] == "2" and env["RANK"] == "0" and env["MASTER_ADDR"] == "127.0.0.1"
    assert int(env["MASTER_PORT"]) > 0 and env["CUDA_VISIBLE_DEVICES"] == ""
    fut = app.infer({"op": "progress", "steps": 4})
    seen: list[float] = []
    fut.add_progress_callback(lambda f: seen.append(f.progress))
    fut.result(60)
    wait_for(lambda: seen and seen[-1] == 1.0, timeout=5)
    res = app.infer({"op": "print", "lines": 2, "value": "r"}).result(60)
    assert "[g0 r0] line 1 of request r" in res.log and "[g0 r1] to stderr" in res.log
    assert "[g0 r1] line 0 of request r" in app.env.log_file.read_text()


@pytest.mark.parametrize("victim", ["actor", "worker"])
def test_a_killed_actor_fails_its_request_at_once_and_the_group_is_recreated(
    make_ray_app, victim: str
) -> None:
    app = make_ray_app(num_gpus=2, gpus_per_model=1)
    app.wait_ready(60)
    hung = app.infer({"op": "hang"})
    wait_for(lambda: hung.state == "running", timeout=10)
    info = next(w for w in app.workers() if w.request_id == hung.request_id)
    queued = [app.infer({"op": "sleep", "seconds": 0.3}) for _ in range(3)]
    pid = agent_pid(info.pid) if victim == "actor" else info.pid
    t0 = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(cg.WorkerCrashedError) as crash:
        hung.result(10)
    assert time.monotonic() - t0 < 1.0
    assert crash.value.group == info.group
    assert all(q.result(60).status["slept"] == 0.3 for q in queued)  # nothing queued was lost
    wait_for(lambda: next(w for w in app.workers() if w.group == info.group).restarts == 1, 60)
    again = next(w for w in app.workers() if w.group == info.group)
    assert again.pid != info.pid and again.state in ("idle", "busy")


def test_a_hung_request_times_out_and_terminate_stops_one(make_ray_app) -> None:
    app = make_ray_app(stop_grace=1.0)  # "hang" ignores the stop: killed after 1 s
    with pytest.raises(cg.InferenceTimeoutError):
        app.infer({"op": "hang"}, timeout=0.5).result(30)
    fut = app.infer({"op": "hang"})
    wait_for(lambda: fut.state == "running", timeout=30)
    assert fut.terminate() and fut.cancelled()
    assert app.infer({"op": "echo", "value": 7}).result(60).status["echo"] == 7


def test_terminate_stops_a_cooperative_model_and_its_worker_stays_loaded(make_ray_app) -> None:
    """The stop reaches the worker through its actor; the ``stopped`` reply ends the call."""
    app = make_ray_app(stop_grace=30.0)  # a kill would take 30 s: the stop must be cooperative
    fut = app.infer({"op": "steps"})
    wait_for(lambda: fut.progress is not None, timeout=60)
    worker = app.workers()[0].pid
    assert fut.terminate() and fut.cancelled()
    status = json.loads((fut.output_dir / "status.json").read_text())
    assert status["state"] == "cancelled" and status["stop"]["how"] == "cooperative"
    assert app.infer({"op": "echo", "value": 3}).result(30).status["echo"] == 3
    assert app.workers()[0].pid == worker  # not restarted
    # no Ray call is left waiting for a reply that came as ``stopped``: only the long poll
    waiter = app._pool.backend._waiter  # type: ignore[attr-defined]
    wait_for(lambda: waiter.pending == 1, timeout=10)


def test_no_helper_survives_its_keeper_being_killed_on_the_node(make_ray_app) -> None:
    """The rank agent reaps what carries its worker's tag once the worker is gone."""
    app = make_ray_app()
    helpers: list[int] = []
    for kind in ("plain", "setsid", "doublefork"):
        helpers += app.infer({"op": "helper", "kind": kind}).result(60).status["helpers"]
    worker = app.workers()[0].pid
    assert alive(helpers) == helpers and worker is not None
    try:
        os.kill(psutil.Process(worker).ppid(), signal.SIGKILL)  # the keeper
        wait_for(lambda: not alive(helpers), timeout=20)
    finally:
        for pid in alive(helpers):
            os.kill(pid, signal.SIGKILL)
    wait_for(lambda: app.workers()[0].pid not in (None, worker), timeout=60)
    assert app.infer({"op": "echo", "value": 2}).result(60).status["echo"] == 2


def test_close_removes_exactly_what_the_app_created(make_ray_app, local_ray) -> None:
    ray = local_ray

    @ray.remote(num_cpus=0)
    class Bystander:
        def ping(self) -> str:
            return "pong"

    other = Bystander.remote()
    assert ray.get(other.ping.remote()) == "pong"
    app = make_ray_app(num_gpus=2, gpus_per_model=1)
    app.wait_ready(60)
    app.infer({"op": "echo"}).result(60)
    actors = [r.actor for g in app._pool.backend._groups.values() for r in g.ranks]
    workers = [w.pid for w in app.workers()]
    assert len(actors) == 2 and our_placement_groups(app) == ["CREATED", "CREATED"]
    app.close()
    for actor in actors:
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(actor.describe.remote(), timeout=30)
    wait_for(lambda: set(our_placement_groups(app)) == {"REMOVED"}, timeout=10)
    wait_for(lambda: not any(psutil.pid_exists(p) for p in workers), timeout=10)
    assert ray.is_initialized()  # the test started Ray, so the app left it running
    assert ray.get(other.ping.remote()) == "pong"


def test_without_ray_installed_the_error_says_how_to_install_it(monkeypatch, deploy_dirs) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(cg.CosmosGradioError, match=r"pip install 'cosmos_gradio_nb\[ray\]'"):
        cg.NotebookApp(factory_module="models", backend="ray", name="no-ray")


def test_serve_with_the_ray_backend_generates_through_the_page(local_ray, tmp_path) -> None:
    import subprocess
    import threading
    from pathlib import Path

    import requests
    from gradio_client import Client

    address = local_ray.get_runtime_context().gcs_address
    port = _free_port()
    repo = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]),
        "OUTPUT_DIR": str(tmp_path / "outputs"),
        "UPLOADS_DIR": str(tmp_path / "uploads"),
        "LOG_FILE": str(tmp_path / "outputs" / "app.log"),
    }
    cmd = [sys.executable, "-m", "cosmos_gradio_nb", "serve", "--port", str(port)]
    cmd += ["--backend", "ray", "--ray-address", address, "--num-gpus", "1"]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    out: list[str] = []
    assert proc.stdout is not None
    reader = threading.Thread(
        target=lambda: out.extend(iter(proc.stdout.readline, "")), daemon=True
    )
    reader.start()
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for(lambda: any(url in line for line in out) or proc.poll() is not None, 180)
        assert proc.poll() is None, "".join(out)
        assert requests.get(url, timeout=10).status_code == 200
        client = Client(url, verbose=False)
        status, files = client.predict(
            '{"num_frames": 6, "width": 64, "height": 48}', api_name="/generate"
        )
        assert status["state"] == "succeeded" and any(str(f).endswith("video.mp4") for f in files)
        assert "@ 127.0.0.1" in (tmp_path / "outputs" / "app.log").read_text()  # a Ray worker
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, "".join(out)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert local_ray.is_initialized()  # the server joined our Ray; it did not stop it


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
