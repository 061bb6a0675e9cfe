"""``connect()`` to a real ``serve``: the futures' semantics one by one, and the API's guard.

One server for the module (``conftest.served``: one worker of ``remote_models``,
page auth ``alice:s3cret``). Each test connects its own client; requests run on
the real worker; faults are real (the model raises, kills its own worker, a TCP
link is cut, the server is SIGKILLed).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from remote_helpers import Served, alive, start_serve, wait_for
from tcp_proxy import TcpProxy

import cosmos_gradio_nb as cg
from cosmos_gradio_nb._core.outputs import request_folder, write_status

API = "cosmos/api/v1"


def _in_a_thread(coro: Any) -> Any:
    """``asyncio.run(coro)`` in a thread of its own: once the session's Playwright browser
    is up, the main thread has a running event loop and asyncio.run() refuses to start."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result(180)


@pytest.fixture()
def app(served: Served) -> Iterator[Any]:
    client = cg.connect(name=served.name)
    try:
        client.wait_ready(120)
        yield client
    finally:
        client.close()


def _status(fut: Any) -> dict[str, Any]:
    import json

    try:
        return dict(json.loads((fut.output_dir / "status.json").read_text()))
    except (OSError, ValueError):
        return {}


def test_connect_gives_a_notebook_app_with_the_servers_facts(served: Served, app: Any) -> None:
    assert isinstance(app, cg.NotebookApp)
    assert app.name == served.name and app.url == served.url
    assert app.ready and not app.closed and app.queue_length == 0
    assert app.default_request == {
        "op": "echo",
        "value": 0,
        "steps": 3,
        "step_seconds": 0.05,
        "seconds": 0.1,
    }
    assert "seconds" in (app.params_schema or {})["properties"]
    [worker] = app.workers()
    assert isinstance(worker, cg.WorkerInfo) and worker.pid in served.descendants()
    assert str(app.env.output_dir) == str(served.root / "outputs")
    for other in (cg.connect(served.url), cg.connect()):  # by URL; the one server running
        try:  # the token comes from the record of that server
            assert other.validate({"value": 3})["value"] == 3 and other.name == served.name
        finally:
            other.close()
    with pytest.raises(cg.CosmosGradioError, match=r"no server named 'nope' runs.*remote-test"):
        cg.connect(name="nope")
    assert "connected" in repr(app) and "ready" in repr(app)


def test_a_result_names_the_servers_files_on_a_shared_disk(served: Served, app: Any) -> None:
    fut = app.infer({"op": "write", "value": 5})
    assert isinstance(fut, cg.InferenceFuture) and isinstance(fut, concurrent.futures.Future)
    res = fut.result(60)
    assert isinstance(res, cg.InferenceResult)
    assert res.status["state"] == "succeeded" and res.status["echo"] == 5
    assert [p.name for p in res.images] == ["frame.png"]
    assert res.images[0].parent == fut.output_dir
    assert fut.output_dir.parent == served.root / "outputs"  # the server's own folder
    assert res.images[0].read_bytes().startswith(b"\x89PNG")
    assert fut.state == "succeeded" and fut.done() and fut.params["value"] == 5


def test_files_are_downloaded_when_the_disk_is_not_shared(
    served: Served, app: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As if the client ran on another machine: the check of the shared disk says no,
    # and the files come over HTTP (streamed) into the cache folder.
    monkeypatch.setattr("cosmos_gradio_nb._remote.follow.shares_files", lambda result: False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    from cosmos_gradio_nb._remote.follow import _cache_root

    app._follower.cache_root = _cache_root(app.url)
    res = app.infer({"op": "write", "value": 6}).result(60)
    server_dir = served.root / "outputs" / res.output_dir.name
    assert res.output_dir.is_relative_to(tmp_path / "cache") and res.output_dir != server_dir
    assert sorted(p.name for p in res.files) == ["frame.png", "notes.txt"]
    for path in res.files:
        assert path.is_relative_to(res.output_dir)
        assert path.read_bytes() == (server_dir / path.name).read_bytes()
    assert (res.output_dir / "status.json").is_file()


def test_progress_reaches_the_callbacks_and_the_log_is_the_workers(app: Any) -> None:
    seen: list[tuple[float | None, str]] = []
    fut = app.infer({"op": "progress", "steps": 6, "step_seconds": 0.15})
    fut.add_progress_callback(lambda f: seen.append((f.progress, f.progress_message)))
    res = fut.result(60)
    wait_for(lambda: seen and seen[-1][0] == 1.0, 10, "the last progress callback")
    fractions = [p for p, _ in seen]
    assert len(fractions) >= 3 and fractions == sorted(fractions), seen
    assert seen[-1] == (1.0, "step 6/6")
    assert fut.progress == 1.0 and fut.progress_message == "step 6/6"
    assert res.status["state"] == "succeeded"


def test_cancel_queued_and_terminate_running_as_in_the_kernel(served: Served, app: Any) -> None:
    long = app.infer({"op": "sleep", "seconds": 60})
    wait_for(lambda: long.state == "running", 30, "the long request to start")
    queued = app.infer({"op": "echo", "value": 1})
    wait_for(lambda: queued.queue_position == 0, 10, "the queued request's place")
    assert repr(queued).endswith("queued position=0>")
    live = app.requests()
    assert [(r["id"], r["state"], r["position"], r["source"]) for r in live] == [
        (long.request_id, "running", None, "api"),
        (queued.request_id, "queued", 0, "api"),
    ]
    # the server records who submitted it in status.json, from "queued" on
    wait_for(lambda: _status(queued).get("source") == "api", 10, "the queued record's source")
    wait_for(lambda: any("sleeping 60" in line for line in long.log), 10, "its log line")
    assert not long.cancel()  # running: cancel() keeps its standard meaning
    assert queued.cancel() and queued.cancelled() and queued.state == "cancelled"
    done, _ = concurrent.futures.wait([queued], timeout=5)
    assert queued in done
    wait_for(lambda: _status(queued).get("state") == "cancelled", 10, "the server's record")
    assert long.terminate() and long.cancelled()
    with pytest.raises(concurrent.futures.CancelledError):
        long.result(5)
    wait_for(lambda: _status(long).get("state") == "cancelled", 10, "the stopped one's record")
    again = app.infer({"op": "echo", "value": 2})  # the group restarted; the queue goes on

    async def awaited() -> Any:
        return await asyncio.wait_for(asyncio.wrap_future(again), 120)

    assert _in_a_thread(awaited()).status["echo"] == 2
    assert not again.cancel() and not again.terminate()


def test_a_refusal_raises_the_same_validation_error_as_in_the_kernel(app: Any) -> None:
    from remote_models import Params

    from cosmos_gradio_nb._core.validation import make_validator

    bad = {"op": "nope", "seconds": -1}
    with pytest.raises(cg.ValidationError) as local:
        make_validator(Params)(bad)
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        app.infer({"op": "echo"}, timeout=0)
    for call in (app.validate, app.infer, app.submit):
        with pytest.raises(cg.ValidationError) as remote:
            call(bad)
        assert type(remote.value) is cg.ValidationError
        assert str(remote.value) == str(local.value) and remote.value.key == local.value.key
    before = len(app.history)
    with pytest.raises(cg.ValidationError, match=r"^item 1: ") as err:
        app.map([{"op": "echo"}, bad], progress=False)
    assert err.value.index == 1
    many = [{"op": "echo", "value": v} for v in range(1500)] + [bad]  # sent in several bodies
    with pytest.raises(cg.ValidationError, match=r"^item 1500: ") as err:
        app.map(many, progress=False)
    assert err.value.index == 1500
    assert len(app.history) == before and app.queue_length == 0  # nothing was queued
    futures = app.map([{"op": "echo", "value": v} for v in range(4)], progress=False)
    assert [f.result(60).status["echo"] for f in futures] == [0, 1, 2, 3]


def test_a_model_error_and_a_worker_crash_keep_their_class_and_words(app: Any) -> None:
    fut = app.infer({"op": "raise", "value": 7})
    with pytest.raises(cg.InferenceError) as err:
        fut.result(60)
    assert "boom 7" in str(err.value) and err.value.error_type == "RuntimeError"
    assert err.value.request_id == fut.request_id
    assert "remote_models.py" in err.value.remote_traceback
    assert fut.state == "failed" and fut.exception() is err.value
    crash = app.infer({"op": "crash"})
    with pytest.raises(cg.WorkerCrashedError) as died:
        crash.result(60)
    assert died.value.signal_name == "SIGKILL" and died.value.exitcode == -signal.SIGKILL
    assert died.value.request_id == crash.request_id and "SIGKILL" in str(died.value)
    assert app.infer({"op": "echo", "value": 3}).result(120).status["echo"] == 3


def test_attach_and_history_follow_every_request_of_the_server(served: Served, app: Any) -> None:
    other = cg.connect(name=served.name)  # another client: another kernel, say
    try:
        theirs = other.infer({"op": "progress", "steps": 4, "step_seconds": 0.2})
        mine = app.attach(theirs.request_id)
        assert mine is not theirs and mine.request_id == theirs.request_id
        assert mine.result(60).status["id"] == theirs.request_id
        assert theirs.request_id in [f.request_id for f in app.history]
        finished = app.attach(theirs.request_id)
        assert finished.done() and finished.result(0).status["state"] == "succeeded"
    finally:
        other.close()
    # A run from before a restart (another server on this OUTPUT_DIR): read from disk.
    folder = request_folder(served.root / "outputs", "0123456789ab")
    write_status(
        str(folder),
        {"id": "0123456789ab", "state": "succeeded", "params": {"op": "echo"}, "files": {}},
    )
    old = app.attach("0123456789ab")
    assert old.done() and old.result(0).status["id"] == "0123456789ab"
    with pytest.raises(cg.CosmosGradioError, match="no request fedcba987654"):
        app.attach("fedcba987654")


def test_a_lost_connection_is_resumed_without_losing_an_event(served: Served) -> None:
    with TcpProxy(served.port) as proxy:
        record = served.record()
        with pytest.raises(PermissionError, match="401"):
            cg.connect(proxy.url)  # no record names this address: no token
        app = cg.connect(proxy.url, token=record.token)
        try:
            app.wait_ready(60)
            numbers: list[int] = []
            stream = app._link.stream
            forward = stream.on_event
            stream.on_event = lambda e: (
                numbers.append(e["seq"]) if e.get("kind") != "hello" else None,
                forward(e),
            )
            seen: list[float] = []
            fut = app.infer({"op": "progress", "steps": 12, "step_seconds": 0.1})
            fut.add_progress_callback(lambda f: seen.append(f.progress))
            wait_for(lambda: seen, 30, "a first progress report")
            connections = proxy.accepted
            proxy.cut(outage=0.4)  # every link dropped mid-request; 0.4 s without network
            res = fut.result(60)
            assert proxy.accepted > connections, "the client did not reconnect"
            assert res.status["state"] == "succeeded"
            # Every event the server numbered reached the client: the gap was replayed.
            assert numbers == list(range(numbers[0], numbers[-1] + 1)), numbers
            wait_for(lambda: seen[-1] == 1.0, 10, "the last progress report")
            assert app.infer({"op": "echo", "value": 4}).result(60).status["echo"] == 4
        finally:
            app.close()


def test_calls_without_the_token_are_refused_and_the_record_is_owner_only(served: Served) -> None:
    base = f"{served.url}{API}"
    record = served.record()
    assert httpx.get(f"{base}/info").status_code == 401
    bad = httpx.get(f"{base}/info", headers={"Authorization": "Bearer wrong"})
    assert bad.status_code == 401 and "token" in bad.json()["error"]["message"]
    assert httpx.post(f"{base}/submit", json={"requests": [{}]}).status_code == 401
    with httpx.stream("GET", f"{base}/events") as events:
        assert events.status_code == 401
    good = {"Authorization": f"Bearer {record.token}"}
    assert httpx.get(f"{base}/info", headers=good).json()["name"] == served.name
    assert httpx.get(f"{base}/info", auth=("alice", "s3cret")).status_code == 200  # the page's
    assert httpx.get(f"{base}/info", auth=("alice", "nope")).status_code == 401
    outputs = served.root / "outputs"
    for path in ("/etc/hostname", f"{outputs}/../../../../../../etc/hostname", "relative.txt"):
        outside = httpx.get(f"{base}/file", params={"path": path}, headers=good)
        assert outside.status_code == 404, (path, outside.text)
    link = outputs / "link-out.txt"
    link.symlink_to("/etc/hostname")
    refused = httpx.get(f"{base}/file", params={"path": str(link)}, headers=good)
    assert refused.status_code == 403 and "outside" in refused.text
    (outputs / "mine.txt").write_text("served")
    mine = httpx.get(f"{base}/file", params={"path": str(outputs / "mine.txt")}, headers=good)
    assert mine.status_code == 200 and mine.text == "served"
    assert httpx.get(f"{base}/file", params={"path": str(outputs / "mine.txt")}).status_code == 401
    path = served.runtime_dir / next(p.name for p in served.runtime_dir.glob("server-*.json"))
    st = path.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.getuid()
    assert stat.S_IMODE(served.runtime_dir.stat().st_mode) == 0o700
    assert record.token in path.read_text() and record.token not in repr(record)


def test_a_server_killed_mid_request_fails_its_futures_with_clear_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = start_serve(tmp_path / "killed", "kill-test")
    monkeypatch.setenv("RUNTIME_DIR", str(server.runtime_dir))
    try:
        app = cg.connect(server.url)
        app.wait_ready(120)
        fut = app.infer({"op": "sleep", "seconds": 120})
        queued = app.infer({"op": "echo"})
        wait_for(lambda: fut.state == "running", 30, "the request to run")
        family = server.descendants()
        os.kill(server.proc.pid, signal.SIGKILL)
        t0 = time.monotonic()
        with pytest.raises(cg.WorkerCrashedError, match=r"kill-test.*exited") as err:
            fut.result(30)
        assert time.monotonic() - t0 < 30 and err.value.request_id == fut.request_id
        with pytest.raises(cg.WorkerCrashedError, match="exited"):
            queued.result(5)
        assert app.closed
        with pytest.raises(cg.AppClosedError, match="exited"):
            app.infer({"op": "echo"})
        wait_for(lambda: not alive(family), 30, "the dead server's workers to stop")
        with pytest.raises(cg.CosmosGradioError, match="no server named 'kill-test'"):
            cg.connect(name="kill-test")
        assert not list(server.runtime_dir.glob("server-*.json")), "the stale record stays"
        app.close()
    finally:
        server.stop()
