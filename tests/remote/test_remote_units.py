"""The pieces of connected apps without a server: records, the error codec, specs, the stream
parser, the client's API surface; and two real ``serve`` lifetimes (idle timeout, names)."""

from __future__ import annotations

import concurrent.futures
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from remote_helpers import start_serve

import cosmos_gradio_nb as cg
from cosmos_gradio_nb._core import apicodec, runtime
from cosmos_gradio_nb._core.exceptions import CosmosGradioError
from cosmos_gradio_nb._remote.app import RemoteApp
from cosmos_gradio_nb._remote.spec import (
    AppSpec,
    code_hash,
    describe_differences,
    load_spec,
    write_spec,
)
from cosmos_gradio_nb._remote.stream import parse_sse


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -- runtime records -------------------------------------------------------------------------
def test_records_are_owner_only_and_stale_ones_are_removed(tmp_path: Path) -> None:
    folder = runtime.runtime_dir(tmp_path / "rt")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    me = runtime.RuntimeRecord(
        name="a:b", url="http://127.0.0.1:1/", pid=os.getpid(), token="secret",
        pid_started=runtime.process_started(os.getpid()),
    )  # fmt: skip
    path = runtime.write_record(folder, me)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert runtime.find_record(folder, "a:b").token == "secret"  # type: ignore[union-attr]
    dead = runtime.RuntimeRecord(name="dead", url="http://x/", pid=_dead_pid(), token="t")
    reused = runtime.RuntimeRecord(  # a live pid, but not the process that wrote the record
        name="reused", url="http://y/", pid=os.getpid(), token="t", pid_started=1.0
    )
    for record in (dead, reused):
        runtime.write_record(folder, record)
    assert [r.name for r in runtime.live_records(folder)] == ["a:b"]
    assert not runtime.record_path(folder, "dead").exists()
    assert not runtime.record_path(folder, "reused").exists()
    runtime.remove_record(folder, "a:b", pid=12345)  # not its writer: kept
    assert runtime.find_record(folder, "a:b") is not None
    runtime.remove_record(folder, "a:b", pid=os.getpid())
    assert runtime.find_record(folder, "a:b") is None
    loose = folder / "server-loose.json"
    loose.write_text(me.to_json())
    os.chmod(loose, 0o644)  # readable by others: not a record this user wrote alone
    assert runtime.private_file_problem(loose) and runtime.live_records(folder) == []


def test_the_name_lock_keeps_a_second_starter_waiting(tmp_path: Path) -> None:
    folder = runtime.runtime_dir(tmp_path)
    outcome: list[str] = []
    with runtime.name_lock(folder, "model"):

        def second() -> None:
            try:
                with runtime.name_lock(folder, "model", timeout=0.3):
                    outcome.append("got it")
            except TimeoutError as exc:
                outcome.append(str(exc))

        thread = threading.Thread(target=second)
        thread.start()
        thread.join(10)
    assert outcome and "another process has been starting the server 'model'" in outcome[0]
    with runtime.name_lock(folder, "model", timeout=1):
        pass  # released


# -- errors across the API ------------------------------------------------------------------
def test_our_errors_cross_with_class_message_and_attributes() -> None:
    errors = [
        cg.ValidationError("item 2: seed: bad", key="seed", index=2),
        cg.InferenceError("RuntimeError: boom", request_id="r1", rank=0, remote_traceback="tb"),
        cg.WorkerCrashedError("died", exitcode=-9, signal_name="SIGKILL", last_log_lines=["x"]),
        cg.InferenceTimeoutError("slow", timeout=3.0),
        cg.WorkerStartupError("no", rank=1, remote_traceback="tb"),
        cg.QueueFullError("full"),
        cg.AppClosedError("closed"),
    ]
    for error in errors:
        back = apicodec.decode_error(apicodec.encode_error(error))
        assert type(back) is type(error) and str(back) == str(error)
        assert {k: v for k, v in vars(back).items()} == vars(error)
    assert isinstance(apicodec.decode_error(apicodec.encode_error(errors[0])), ValueError)
    cancelled = apicodec.decode_error(apicodec.encode_error(concurrent.futures.CancelledError()))
    assert isinstance(cancelled, concurrent.futures.CancelledError)


def test_an_error_of_any_other_class_is_never_built_from_its_name() -> None:
    for name in ("ValueError", "os.system", "subprocess.Popen", "__import__"):
        error = apicodec.decode_error({"type": name, "message": "m", "attrs": {"args": "rm -rf"}})
        assert type(error) is CosmosGradioError and str(error) == f"{name}: m"
    try:
        raise cg.InferenceError("boom")
    except cg.InferenceError as exc:
        sent = apicodec.encode_error(exc)
    back = apicodec.decode_error(sent)
    assert isinstance(back.__cause__, apicodec.RemoteTraceback)
    assert "raise cg.InferenceError" in str(back.__cause__)


# -- specs ----------------------------------------------------------------------------------
def test_differences_are_listed_one_by_one() -> None:
    here = AppSpec("n", "pkg.m", "make", settings={"num_gpus": 8, "output_dir": "/o"}).fingerprint()
    there = AppSpec(
        "n", "pkg.m", "other", settings={"num_gpus": 1, "output_dir": "/o"}
    ).fingerprint()
    assert describe_differences(there, here) == [
        "factory: pkg.m:other there, pkg.m:make here",
        "NUM_GPUS: 1 there, 8 here",
    ]
    assert describe_differences(here, dict(here)) == []
    idle = AppSpec(
        "n", "pkg.m", "make", settings={"num_gpus": 8, "output_dir": "/o", "idle_timeout": 60}
    )
    assert describe_differences(idle.fingerprint(), here) == []  # when it stops: no reason


def test_a_notebook_function_is_compared_by_its_code(tmp_path: Path) -> None:
    namespace: dict[str, object] = {"__name__": "__main__"}
    exec("def make():\n    return 1\n", namespace)
    first = code_hash(namespace["make"])
    exec("def make():\n    return 1\n", namespace)
    assert code_hash(namespace["make"]) == first  # defined again, same code
    exec("def make():\n    return 2\n", namespace)
    assert code_hash(namespace["make"]) != first
    assert code_hash(test_differences_are_listed_one_by_one) is None  # importable: by name


def test_a_spec_file_is_loaded_once_and_only_if_owner_only(tmp_path: Path) -> None:
    folder = runtime.runtime_dir(tmp_path / "rt")
    spec = AppSpec("n", "pkg.m", "make", settings={"num_gpus": 2})
    path = write_spec(folder, spec)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = load_spec(path)
    assert loaded.settings == {"num_gpus": 2} and loaded.fingerprint() == spec.fingerprint()
    assert not path.exists()
    path = write_spec(folder, spec)
    os.chmod(path, 0o664)
    with pytest.raises(PermissionError, match="writable by others"):
        load_spec(path)


# -- the client -----------------------------------------------------------------------------
def test_the_event_stream_parser_reads_numbers_comments_and_data() -> None:
    lines = [
        'data: {"kind": "hello"}',
        "",
        ": keepalive",
        "",
        "id: 7",
        'data: {"a":',
        "data: 1}",
        "",
    ]
    assert list(parse_sse(iter(lines))) == [(None, {"kind": "hello"}), (7, {"a": 1})]


def test_an_answer_older_than_an_applied_event_changes_nothing() -> None:
    from cosmos_gradio_nb._remote.follow import Follower
    from cosmos_gradio_nb._remote.http import ApiClient

    client = ApiClient("http://127.0.0.1:9/", "token", None)  # nothing here calls the server
    follower = Follower(client)
    seen: list[float | None] = []
    fut = follower.adopt(
        {"id": "a", "state": "running", "progress": 0.5, "message": "m", "seq": 10}
    )
    fut.add_progress_callback(lambda f: seen.append(f.progress))
    assert isinstance(fut, cg.InferenceFuture) and fut.state == "running"
    follower.adopt({"id": "a", "state": "queued", "progress": None, "message": "", "seq": 7})
    assert (fut.state, fut.progress, fut.progress_message) == ("running", 0.5, "m")
    follower.adopt({"id": "a", "state": "running", "progress": 0.75, "message": "", "seq": 11})
    assert fut.progress == 0.75
    error = apicodec.encode_error(cg.InferenceError("boom", request_id="a"))
    follower.adopt({"id": "a", "state": "failed", "final": {"error": error}, "seq": 3})
    assert isinstance(fut.exception(0), cg.InferenceError)  # an outcome is never stale
    assert None not in seen
    client.close()


def test_an_older_answer_applied_on_another_thread_never_lands_after_a_newer_event() -> None:
    """The submit answer's thread judges its record fresh, then is overtaken by the stream's
    thread applying a newer event: the older record must not be applied after it."""
    from cosmos_gradio_nb._remote.follow import Follower
    from cosmos_gradio_nb._remote.future import RemoteFuture
    from cosmos_gradio_nb._remote.http import ApiClient

    client = ApiClient("http://127.0.0.1:9/", "token", None)  # nothing here calls the server
    follower = Follower(client)
    fut = follower.adopt({"id": "b", "state": "queued", "progress": None, "message": "", "seq": 1})
    newer_applied = threading.Event()
    first = [True]
    original = RemoteFuture._apply

    def overtaken(self: RemoteFuture, record: dict[str, object]) -> None:
        if first[0]:  # the older record: let the newer event in before applying it
            first[0] = False
            newer = threading.Thread(
                target=follower.apply,
                args=(
                    fut,
                    {"id": "b", "state": "running", "progress": 0.5, "message": "half", "seq": 3},
                ),
            )
            newer.start()
            newer_applied.wait(0.5)  # without the lock it lands now; with it, after us
        original(self, record)
        if not first[0] and record.get("seq") == 3:
            newer_applied.set()

    fut._apply = overtaken.__get__(fut)  # type: ignore[method-assign]
    follower.apply(fut, {"id": "b", "state": "running", "progress": None, "message": "", "seq": 2})
    assert newer_applied.wait(10), "the newer event was never applied"
    assert (fut.progress, fut.progress_message, fut._seen) == (0.5, "half", 3)
    client.close()


def test_detach_and_replace_are_checked_before_anything_starts() -> None:
    with pytest.raises(TypeError, match="detach=True is for NotebookApp, not GradioApp"):
        cg.GradioApp(factory_module="remote_models", detach=True)
    with pytest.raises(TypeError, match="replace=True goes with detach=True"):
        cg.NotebookApp(factory_module="remote_models", replace=True)
    with pytest.raises(cg.ValidationError, match="NUM_GPUS"):  # a bad setting: no server starts
        cg.NotebookApp(factory_module="remote_models", detach=True, num_gpus=0)


def test_a_connected_app_has_every_public_name_of_a_notebook_app() -> None:
    public = {n for n in dir(cg.NotebookApp) if not n.startswith("_")}
    missing = sorted(n for n in public if not hasattr(RemoteApp, n))
    assert not missing, f"RemoteApp lacks {missing}"
    assert issubclass(RemoteApp, cg.NotebookApp)
    for extra in ("attach", "shutdown", "launch"):
        assert callable(getattr(RemoteApp, extra))


# -- real server lifetimes ------------------------------------------------------------------
def test_an_idle_server_stops_by_itself_and_removes_its_record(tmp_path: Path) -> None:
    server = start_serve(tmp_path, "idle-test", "--idle-timeout", "2")
    try:
        assert server.proc.wait(timeout=90) == 0
        assert "idle for 2 s (IDLE_TIMEOUT): stopping" in server.text()
        assert server.record() is None and not list(server.runtime_dir.glob("server-*.json"))
    finally:
        server.stop()


def test_a_name_is_taken_once_and_a_default_name_is_made_unique(tmp_path: Path) -> None:
    from remote_helpers import server_env

    from cosmos_gradio_nb._server.lifecycle import free_name

    folder = runtime.runtime_dir(tmp_path / "runtime")
    assert free_name(folder, "m:f") == "m:f"
    for name in ("m:f", "taken"):  # a live server's records (this process stands in for it)
        record = runtime.RuntimeRecord(
            name=name, url="http://127.0.0.1:9/", pid=os.getpid(), token="t",
            pid_started=runtime.process_started(os.getpid()),
        )  # fmt: skip
        runtime.write_record(folder, record)
    assert free_name(folder, "m:f") == "m:f-2"
    again = subprocess.run(
        [sys.executable, "-m", "cosmos_gradio_nb", "serve", "--name", "taken", "--port", "0"],
        env={**os.environ, **server_env(tmp_path)}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert again.returncode == 2, again.stderr
    assert "a server named 'taken' already runs" in again.stderr
    assert "starting workers" not in again.stdout  # refused before any worker started
