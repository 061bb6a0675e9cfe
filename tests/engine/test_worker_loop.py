"""The worker loop in-process, with a fake connection and fake models (no subprocess)."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hostile import expected, hostile_values

from cosmos_gradio_nb import StopRequested, report_progress, stop_requested
from cosmos_gradio_nb._core.wire import FrameReader, encode
from cosmos_gradio_nb._worker.loop import build_model, serve
from cosmos_gradio_nb._worker.progress import install_tqdm_hook


class FakeConn:
    """Messages in from a queue, messages out into a list, through the real wire encoding."""

    def __init__(self, incoming: list[dict[str, Any]]) -> None:
        self.incoming: queue.Queue[dict[str, Any] | None] = queue.Queue()
        for msg in incoming:
            self.incoming.put(msg)
        self.sent: list[dict[str, Any]] = []
        self.changed = threading.Event()

    def recv(self) -> Any:
        msg = self.incoming.get(timeout=10)
        if msg is None:
            raise EOFError
        return msg

    def send(self, obj: Any) -> None:
        frame = encode(obj)  # strict JSON, as the real channel sends it
        self.sent.append(FrameReader().feed(frame)[0])
        self.changed.set()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in list(self.sent) if m["type"] == kind]


def infer_msg(tmp_path: Path, rid: str = "r1", **params: Any) -> dict[str, Any]:
    out = tmp_path / rid
    return {
        "type": "infer",
        "id": rid,
        "params": {**params, "output_dir": str(out)},
        "output_dir": str(out),
        "queued_at": 1.0,
        "started_at": 2.0,
    }


class Writer:
    def infer(self, args: dict[str, Any]) -> dict[str, Any]:
        out = Path(args["output_dir"])
        (out / "v.mp4").write_bytes(b"v")
        (out / "sub").mkdir()
        (out / "sub" / "i.png").write_bytes(b"i")
        for i in range(4):
            report_progress((i + 1) / 4, f"step {i + 1}")
        return {"videos": ["v.mp4"], "score": 0.5, "state": "ignored: reserved key"}


class Raiser:
    def infer(self, args: dict[str, Any]) -> None:
        raise KeyError("missing prompt")


def test_success_replies_what_infer_returned_and_the_files(tmp_path: Path) -> None:
    conn = FakeConn([infer_msg(tmp_path, seed=3), {"type": "shutdown"}])
    serve(conn, Writer(), rank=0)
    progress = conn.of("progress")
    done = conn.sent[-1]
    assert done["type"] == "done" and done["id"] == "r1" and done["rank"] == 0
    assert done["returned"] == {"videos": ["v.mp4"], "score": 0.5, "state": "ignored: reserved key"}
    assert done["files"]["videos"] == [str(tmp_path / "r1" / "v.mp4")]
    assert done["files"]["images"] == [str(tmp_path / "r1" / "sub" / "i.png")]
    assert done["finished_at"] > 2
    assert not (tmp_path / "r1" / "status.json").exists()  # the app writes it, never the worker
    # the final report (1.0) always goes through the 50 ms throttle
    assert progress[0]["fraction"] == 0.25 and progress[-1]["fraction"] == 1.0


def test_error_keeps_serving_and_records_traceback(tmp_path: Path) -> None:
    conn = FakeConn([infer_msg(tmp_path, "a"), infer_msg(tmp_path, "b"), {"type": "shutdown"}])
    serve(conn, Raiser(), rank=0)
    errors = conn.of("error")
    assert [e["id"] for e in errors] == ["a", "b"]
    assert errors[0]["error_type"] == "KeyError" and "missing prompt" in errors[0]["message"]
    assert 'raise KeyError("missing prompt")' in errors[0]["traceback"]
    assert not (tmp_path / "a" / "status.json").exists()


def test_non_lead_rank_reports_no_progress_and_no_files(tmp_path: Path) -> None:
    conn = FakeConn([infer_msg(tmp_path), {"type": "shutdown"}])
    (tmp_path / "r1").mkdir()
    serve(conn, Writer(), rank=1)
    assert conn.sent == [{"type": "done", "id": "r1", "rank": 1}]


def test_eof_ends_the_loop(tmp_path: Path) -> None:
    conn = FakeConn([None])  # type: ignore[list-item]
    thread = threading.Thread(target=serve, args=(conn, Writer()))
    thread.start()
    thread.join(5)
    assert not thread.is_alive()


def test_infer_returning_a_non_dict_is_an_error(tmp_path: Path) -> None:
    class Bad:
        def infer(self, args: dict[str, Any]) -> Any:
            return [1, 2]

    conn = FakeConn([infer_msg(tmp_path), {"type": "shutdown"}])
    serve(conn, Bad())
    assert conn.sent[-1]["type"] == "error" and "return a dict" in conn.sent[-1]["message"]


def test_tqdm_bars_are_forwarded(tmp_path: Path) -> None:
    from tqdm import tqdm

    class Looper:
        def infer(self, args: dict[str, Any]) -> None:
            for _ in tqdm(range(10), desc="denoise", mininterval=0, disable=False):
                pass

    assert install_tqdm_hook()
    conn = FakeConn([infer_msg(tmp_path), {"type": "shutdown"}])
    serve(conn, Looper())
    progress = conn.of("progress")
    assert progress, "no progress forwarded from tqdm"
    assert progress[-1]["fraction"] == 1.0 and progress[-1]["message"] == "denoise 10/10"


def test_hidden_bars_and_a_model_reporting_itself_are_not_forwarded(tmp_path: Path) -> None:
    """A disabled bar reports nothing; once ``infer`` calls report_progress, its bars
    (a pipeline's inner loop, a VAE's) no longer overwrite what it says."""
    from tqdm import tqdm

    class Mixed:
        def infer(self, args: dict[str, Any]) -> None:
            for _ in tqdm(range(10), desc="hidden", mininterval=0, disable=True):
                pass
            report_progress(0.5, "mine")
            for _ in tqdm(range(10), desc="inner", mininterval=0, disable=False):
                pass

    assert install_tqdm_hook()
    conn = FakeConn([infer_msg(tmp_path), infer_msg(tmp_path, "r2"), {"type": "shutdown"}])
    serve(conn, Mixed())
    messages = [m["message"] for m in conn.of("progress")]
    assert messages == ["mine", "mine"], messages  # one per request: bars silent after it


def test_a_stop_is_seen_through_a_hidden_bar(tmp_path: Path) -> None:
    """A pipeline whose bar is disabled still stops at its next step (diffusers calls
    ``update()`` on its bar; tqdm iterates a disabled bar without any call we could see)."""
    from tqdm import tqdm

    class Hidden:
        def __init__(self) -> None:
            self.started = threading.Event()

        def infer(self, args: dict[str, Any]) -> dict[str, Any]:
            self.started.set()
            with tqdm(total=1000, disable=True) as bar:
                for _ in range(1000):
                    time.sleep(0.01)
                    bar.update()
            return {}

    assert install_tqdm_hook()
    model = Hidden()
    (tmp_path / "r1").mkdir()
    conn = FakeConn([infer_msg(tmp_path)])
    thread = run_in_thread(conn, model)
    assert model.started.wait(5)
    conn.incoming.put({"type": "stop", "id": "r1"})
    assert wait_sent(conn, "stopped")[0]["how"] == "raised StopRequested"
    conn.incoming.put({"type": "shutdown"})
    thread.join(5)
    assert not thread.is_alive() and not conn.of("progress")


def test_report_progress_outside_a_worker_is_a_no_op() -> None:
    report_progress(0.5, "nothing listens")  # must not raise


def test_build_model_errors_are_clear() -> None:
    with pytest.raises(AttributeError, match="no factory function 'nope'"):
        build_model({"module": "json", "function": "nope"})
    with pytest.raises(TypeError, match="no infer"):
        build_model({"module": "collections", "function": "OrderedDict"})


@pytest.mark.parametrize(
    ("returned", "fragment"),
    [
        ({"score": float("nan")}, "'score'"),
        ({"m": {"tags": {"a", "b"}}}, "'m.tags'"),
        ({"fn": print}, "'fn'"),
        ({"deep": [1, {"x": float("inf")}]}, "'deep[1].x'"),
    ],
)
def test_a_return_value_json_cannot_hold_is_an_error_naming_the_key(
    tmp_path: Path, returned: dict[str, Any], fragment: str
) -> None:
    class Returns:
        def infer(self, args: dict[str, Any]) -> dict[str, Any]:
            return returned

    conn = FakeConn([infer_msg(tmp_path), infer_msg(tmp_path, "r2"), {"type": "shutdown"}])
    serve(conn, Returns())
    errors = conn.of("error")
    assert len(errors) == 2 and fragment in errors[0]["message"]  # and it served the next one


def test_sys_exit_inside_infer_is_an_error_and_the_loop_goes_on(tmp_path: Path) -> None:
    class Exits:
        def infer(self, args: dict[str, Any]) -> None:
            raise SystemExit(4)

    conn = FakeConn([infer_msg(tmp_path), infer_msg(tmp_path, "r2"), {"type": "shutdown"}])
    serve(conn, Exits())
    errors = conn.of("error")
    assert len(errors) == 2
    assert errors[0]["message"] == "the model called sys.exit(4) inside infer()"
    assert "SystemExit" in errors[0]["traceback"]


# -- the control thread: stops and pings while infer runs ---------------------------------------
class Looping:
    """Reports progress until stopped (or ``steps`` are done); ``ignore`` never checks."""

    def __init__(self, steps: int = 1000, ignore: bool = False) -> None:
        self.steps = steps
        self.ignore = ignore
        self.started = threading.Event()
        self.release = threading.Event()

    def infer(self, args: dict[str, Any]) -> dict[str, Any]:
        self.started.set()
        if self.ignore:
            self.release.wait(10)
            return {"ignored": True}
        for i in range(self.steps):
            report_progress(i / self.steps, f"step {i}")
            self.release.wait(0.01)
        return {"done": True}


def run_in_thread(conn: FakeConn, model: Any, rank: int = 0) -> threading.Thread:
    thread = threading.Thread(target=serve, args=(conn, model), kwargs={"rank": rank})
    thread.start()
    return thread


def wait_sent(conn: FakeConn, kind: str, count: int = 1) -> list[dict[str, Any]]:
    """The messages of ``kind`` sent, once there are ``count`` (bounded: 10 s)."""
    for _ in range(500):
        found = conn.of(kind)
        if len(found) >= count:
            return found
        conn.changed.clear()
        conn.changed.wait(0.02)
    raise AssertionError(f"no {count} {kind!r} message(s) sent: {conn.sent}")


@pytest.mark.parametrize("rank", [0, 1])
def test_a_stop_raises_stop_requested_at_the_next_report(tmp_path: Path, rank: int) -> None:
    model = Looping()
    (tmp_path / "r1").mkdir()
    conn = FakeConn([infer_msg(tmp_path)])
    thread = run_in_thread(conn, model, rank)
    assert model.started.wait(5)
    conn.incoming.put({"type": "stop", "id": "r1"})
    stopped = wait_sent(conn, "stopped")
    assert stopped == [{"type": "stopped", "id": "r1", "rank": rank, "how": "raised StopRequested"}]
    # the worker serves on: the next request is not stopped
    model.steps = 3
    conn.incoming.put(infer_msg(tmp_path, "r2"))
    done = wait_sent(conn, "done")
    assert done[0]["id"] == "r2"
    conn.incoming.put({"type": "shutdown"})
    thread.join(5)
    assert not thread.is_alive()


def test_a_model_that_returns_after_a_stop_is_stopped_and_a_late_stop_is_ignored(
    tmp_path: Path,
) -> None:
    started = threading.Event()

    class Polls:
        def infer(self, args: dict[str, Any]) -> dict[str, Any]:
            started.set()
            for _ in range(1000):
                if stop_requested():
                    return {"partial": True}
                threading.Event().wait(0.01)
            return {}

    conn = FakeConn([{"type": "stop", "id": "r0"}, infer_msg(tmp_path)])  # r0 is not running
    thread = run_in_thread(conn, Polls())
    assert started.wait(5)
    conn.incoming.put({"type": "stop", "id": "r1"})
    assert wait_sent(conn, "stopped")[0]["how"] == "returned"
    conn.incoming.put({"type": "shutdown"})
    thread.join(5)
    assert conn.of("error") == []


def test_a_stop_that_arrives_before_the_request_starts_still_stops_it(tmp_path: Path) -> None:
    model = Looping()
    release = threading.Event()

    class Gate:
        """The first request blocks the main thread while the second one and its stop arrive."""

        def infer(self, args: dict[str, Any]) -> dict[str, Any]:
            if args["output_dir"].endswith("r1"):
                release.wait(10)
                return {}
            return model.infer(args)

    conn = FakeConn([infer_msg(tmp_path, "r1"), infer_msg(tmp_path, "r2")])
    thread = run_in_thread(conn, Gate())
    conn.incoming.put({"type": "stop", "id": "r2"})
    conn.incoming.put({"type": "ping", "n": 1})  # read after the stop: the stop was taken
    wait_sent(conn, "pong")
    release.set()
    assert wait_sent(conn, "stopped")[0]["id"] == "r2"
    conn.incoming.put({"type": "shutdown"})
    thread.join(5)


def test_a_ping_is_answered_while_infer_runs(tmp_path: Path) -> None:
    model = Looping(ignore=True)
    conn = FakeConn([infer_msg(tmp_path)])
    thread = run_in_thread(conn, model, rank=1)
    assert model.started.wait(5)
    conn.incoming.put({"type": "ping", "n": 7})
    assert wait_sent(conn, "pong") == [{"type": "pong", "n": 7, "rank": 1}]
    model.release.set()
    wait_sent(conn, "done")
    conn.incoming.put({"type": "shutdown"})
    thread.join(5)


def test_stop_requested_and_report_progress_outside_a_request() -> None:
    assert stop_requested() is False
    report_progress(0.5, preview="not even an image")  # nothing listens: not even checked


# -- replies the wire cannot carry -----------------------------------------------------------
@pytest.mark.parametrize("case", sorted(hostile_values()))
def test_a_reply_the_wire_cannot_carry_fails_the_request_naming_the_key(
    tmp_path: Path, case: str
) -> None:
    class Returns:
        def infer(self, args: dict[str, Any]) -> Any:
            return hostile_values()[case] if args.get("bad") else {"fine": True}

    conn = FakeConn(
        [infer_msg(tmp_path, bad=True), infer_msg(tmp_path, "r2"), {"type": "shutdown"}]
    )
    serve(conn, Returns())
    error, done = conn.sent
    assert error["type"] == "error" and error["id"] == "r1"
    assert expected(case) in error["message"], error["message"]
    assert done == {
        "type": "done",
        "id": "r2",
        "rank": 0,
        "returned": {"fine": True},
        "files": {"videos": [], "images": [], "other": []},
        "finished_at": done["finished_at"],
    }


def test_an_exception_whose_str_raises_is_reported_by_its_type(tmp_path: Path) -> None:
    class Nasty(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str for you")

    class Raises:
        def infer(self, args: dict[str, Any]) -> None:
            raise Nasty()

    conn = FakeConn([infer_msg(tmp_path), {"type": "shutdown"}])
    serve(conn, Raises())
    (error,) = conn.sent
    assert error["error_type"] == "Nasty"
    assert error["message"] == "<Nasty whose str() raised RuntimeError>"
    assert "Nasty" in error["traceback"]


def test_progress_messages_are_always_plain_and_a_bad_preview_fails_the_request(
    tmp_path: Path,
) -> None:
    class Weird(str):
        pass

    class Nasty:
        def __str__(self) -> str:
            raise RuntimeError("no")

    class Reports:
        def infer(self, args: dict[str, Any]) -> None:
            report_progress(0.1, Weird("weird"))
            report_progress(1.0, Nasty())  # type: ignore[arg-type]
            if args.get("preview"):
                report_progress(0.5, preview=[[1, 2, 3]])

    conn = FakeConn(
        [infer_msg(tmp_path), infer_msg(tmp_path, "r2", preview=True), {"type": "shutdown"}]
    )
    serve(conn, Reports())
    messages = [m["message"] for m in conn.of("progress")]
    assert messages[:2] == ["weird", "<Nasty whose str() raised RuntimeError>"]
    error = conn.of("error")[0]
    assert error["id"] == "r2" and "preview" in error["message"] and "list" in error["message"]


# -- previews --------------------------------------------------------------------------------
def test_previews_are_rate_limited_shrunk_and_written_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np
    from PIL import Image

    from cosmos_gradio_nb._worker import progress

    clock = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])

    class Previews:
        def infer(self, args: dict[str, Any]) -> None:
            frame = np.zeros((720, 1280, 3), np.uint8)
            frame[:, :640] = 255
            report_progress(0.1, "first", preview=frame)  # the first always goes
            clock[0] += 0.3
            report_progress(0.2, "too soon", preview=frame)  # progress, no new preview
            clock[0] += 0.8
            report_progress(0.3, "next", preview=Image.new("RGB", (64, 32), "red"))
            clock[0] += 1.1
            path = Path(args["output_dir"]) / "frame.png"
            Image.new("RGB", (600, 900), "blue").save(path)
            report_progress(0.4, "from a file", preview=str(path))

    conn = FakeConn([infer_msg(tmp_path), {"type": "shutdown"}])
    serve(conn, Previews())
    progress_msgs = conn.of("progress")
    folder = tmp_path / "r1"
    assert [m.get("preview") for m in progress_msgs] == [
        str(folder / "preview.jpg"),
        None,
        str(folder / "preview.jpg"),
        str(folder / "preview.jpg"),
    ]
    with Image.open(folder / "preview.jpg") as img:
        assert img.format == "JPEG" and img.size == (341, 512)  # 600x900 shrunk to 512 tall
    assert sorted(p.name for p in folder.iterdir()) == ["frame.png", "preview.jpg"]  # no temp left
    done = conn.sent[-1]
    assert done["files"]["images"] == [str(folder / "frame.png")]  # the preview is no output


def test_the_preview_shrinks_an_array_to_512_on_its_long_side(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    from cosmos_gradio_nb._worker.preview import write_preview

    path = write_preview(np.full((720, 1280, 3), 200, np.uint8), str(tmp_path))
    with Image.open(path) as img:
        assert img.size == (512, 288)
    with pytest.raises(ValueError, match=r"HxWx3 uint8 array; got shape \(3, 8, 8\) of float32"):
        write_preview(np.zeros((3, 8, 8), np.float32), str(tmp_path))
    with pytest.raises(TypeError, match="got dict"):
        write_preview({}, str(tmp_path))


# -- CUDA out of memory ------------------------------------------------------------------------
class OutOfMemoryError(RuntimeError):
    """Named as torch's is: recognised by name, torch never imported for it."""


class FakeCuda:
    def current_device(self) -> int:
        return 0

    def mem_get_info(self, index: int) -> tuple[int, int]:
        return int(1.2 * 2**30), int(139.8 * 2**30)

    def memory_allocated(self, index: int) -> int:
        return int(128.9 * 2**30)

    def memory_reserved(self, index: int) -> int:
        return int(130.1 * 2**30)

    def get_device_name(self, index: int) -> str:
        return "NVIDIA H200"


def test_cuda_out_of_memory_is_said_in_one_line_with_the_gpus_figures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from types import SimpleNamespace

    from cosmos_gradio_nb._worker.oom import oom_message

    torch = SimpleNamespace(cuda=FakeCuda())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    error = OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; ...)")
    assert oom_message(error, torch) == (
        "CUDA out of memory on GPU 3 (NVIDIA H200): 1.2 GiB free of 139.8 GiB, this process "
        "holds 130.1 GiB (allocated 128.9 GiB): lower the resolution or frames, or use more "
        "GPUs per model"
    )
    assert oom_message(RuntimeError("CUDA out of memory. Tried to allocate 2 MiB"), torch)
    assert oom_message(ValueError("no"), torch) is None
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    broken = SimpleNamespace(cuda=None)
    assert oom_message(error, broken) == (
        "CUDA out of memory (its memory figures could not be read): lower the resolution or "
        "frames, or use more GPUs per model"
    )


def test_an_out_of_memory_error_in_infer_is_reported_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys
    from types import SimpleNamespace

    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=FakeCuda()))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    class Big:
        def infer(self, args: dict[str, Any]) -> None:
            raise OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")

    conn = FakeConn([infer_msg(tmp_path), {"type": "shutdown"}])
    serve(conn, Big())
    (error,) = conn.sent
    assert error["error_type"] == "OutOfMemoryError"
    assert error["message"].startswith("CUDA out of memory on GPU 0 (NVIDIA H200): 1.2 GiB free")
    assert "\n" not in error["message"] and "Tried to allocate 80.00 GiB" in error["traceback"]


def test_stop_requested_is_a_cosmos_error_outside_the_worker_errors() -> None:
    import cosmos_gradio_nb as cg

    assert issubclass(StopRequested, cg.CosmosGradioError)
    assert not issubclass(StopRequested, cg.WorkerError)
