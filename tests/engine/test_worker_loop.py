"""The worker loop in-process, with a fake connection and fake models (no subprocess)."""

from __future__ import annotations

import json
import queue
import threading
from pathlib import Path
from typing import Any

import pytest

from cosmos_gradio_nb import report_progress
from cosmos_gradio_nb._worker.loop import build_model, serve
from cosmos_gradio_nb._worker.progress import install_tqdm_hook


class FakeConn:
    """Messages in from a queue, messages out into a list."""

    def __init__(self, incoming: list[dict[str, Any]]) -> None:
        self.incoming: queue.Queue[dict[str, Any] | None] = queue.Queue()
        for msg in incoming:
            self.incoming.put(msg)
        self.sent: list[dict[str, Any]] = []

    def recv(self) -> Any:
        msg = self.incoming.get(timeout=5)
        if msg is None:
            raise EOFError
        return msg

    def send(self, obj: Any) -> None:
        json.dumps(obj)  # everything on the wire is plain JSON-able data
        self.sent.append(obj)


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


def test_success_writes_status_and_collects_files(tmp_path: Path) -> None:
    conn = FakeConn([infer_msg(tmp_path, seed=3), {"type": "shutdown"}])
    serve(conn, Writer(), rank=0, group=1, model_name="m")
    progress = [m for m in conn.sent if m["type"] == "progress"]
    done = conn.sent[-1]
    assert done["type"] == "done" and done["id"] == "r1"
    status = done["status"]
    assert status["state"] == "succeeded" and status["group"] == 1 and status["model_name"] == "m"
    assert status["params"]["seed"] == 3 and status["score"] == 0.5
    assert status["files"]["videos"] == [str(tmp_path / "r1" / "v.mp4")]
    assert status["files"]["images"] == [str(tmp_path / "r1" / "sub" / "i.png")]
    assert status["queued_at"] == 1.0 and status["started_at"] == 2.0 and status["finished_at"] > 2
    on_disk = json.loads((tmp_path / "r1" / "status.json").read_text())
    assert on_disk == status
    # the final report (1.0) always goes through the 50 ms throttle
    assert progress[0]["fraction"] == 0.25 and progress[-1]["fraction"] == 1.0


def test_error_keeps_serving_and_records_traceback(tmp_path: Path) -> None:
    conn = FakeConn([infer_msg(tmp_path, "a"), infer_msg(tmp_path, "b"), {"type": "shutdown"}])
    serve(conn, Raiser(), rank=0)
    errors = [m for m in conn.sent if m["type"] == "error"]
    assert [e["id"] for e in errors] == ["a", "b"]
    assert errors[0]["error_type"] == "KeyError" and "missing prompt" in errors[0]["message"]
    assert 'raise KeyError("missing prompt")' in errors[0]["traceback"]
    status = json.loads((tmp_path / "a" / "status.json").read_text())
    assert status["state"] == "failed" and status["error"]["type"] == "KeyError"


def test_non_lead_rank_writes_nothing_and_reports_no_progress(tmp_path: Path) -> None:
    conn = FakeConn([infer_msg(tmp_path), {"type": "shutdown"}])
    (tmp_path / "r1").mkdir()
    serve(conn, Writer(), rank=1)
    assert [m["type"] for m in conn.sent] == ["done"]
    assert conn.sent[0]["status"] is None
    assert not (tmp_path / "r1" / "status.json").exists()


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
    progress = [m for m in conn.sent if m["type"] == "progress"]
    assert progress, "no progress forwarded from tqdm"
    assert progress[-1]["fraction"] == 1.0 and progress[-1]["message"] == "denoise 10/10"


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
    errors = [m for m in conn.sent if m["type"] == "error"]
    assert len(errors) == 2 and fragment in errors[0]["message"]  # and it served the next one
    status = json.loads((tmp_path / "r1" / "status.json").read_text())  # strict JSON
    assert status["state"] == "failed" and fragment in status["error"]["message"]


def test_sys_exit_inside_infer_is_an_error_and_the_loop_goes_on(tmp_path: Path) -> None:
    class Exits:
        def infer(self, args: dict[str, Any]) -> None:
            raise SystemExit(4)

    conn = FakeConn([infer_msg(tmp_path), infer_msg(tmp_path, "r2"), {"type": "shutdown"}])
    serve(conn, Exits())
    errors = [m for m in conn.sent if m["type"] == "error"]
    assert len(errors) == 2
    assert errors[0]["message"] == "the model called sys.exit(4) inside infer()"
    assert "SystemExit" in errors[0]["traceback"]
