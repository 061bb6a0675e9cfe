"""Fast tests of the UI's pure parts: log tail, upload names and checks, messages."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from cosmos_gradio_nb._core.logtail import read_tail
from cosmos_gradio_nb._core.request_text import parse_request_json
from cosmos_gradio_nb._core.uploads import (
    UploadRejected,
    insert_path,
    json_key_for,
    list_uploads,
    max_upload_mb,
    sanitize_filename,
    store_upload,
)
from cosmos_gradio_nb._page.backend import collect_outputs
from cosmos_gradio_nb._page.render import (
    failure_html,
    schema_markdown,
    status_html,
)


def test_tail_of_a_multi_gigabyte_log_is_read_from_the_end(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    with log.open("wb") as fh:
        fh.truncate(6 * 1024**3)  # 6 GB, sparse: only the end is real data
        fh.seek(0, 2)
        fh.write(b"".join(b"12:00:00 [g0 r0] line %d\n" % i for i in range(500)))
    t0 = time.perf_counter()
    for _ in range(20):
        tail = read_tail(log, max_lines=100)
    per_call = (time.perf_counter() - t0) / 20
    lines = tail.splitlines()
    assert len(lines) == 100 and lines[-1] == "12:00:00 [g0 r0] line 499"
    assert lines[0] == "12:00:00 [g0 r0] line 400"
    assert per_call < 0.02, f"read_tail took {per_call * 1000:.1f} ms on a 6 GB file"


def test_tail_drops_a_cut_first_line_and_handles_missing_files(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"A" * 100 + b"\nsecond\nthird \xff\n")
    assert read_tail(log, max_bytes=20) == "second\nthird \ufffd"
    assert read_tail(tmp_path / "missing.log") == ""
    assert read_tail(log, max_lines=1) == "third \ufffd"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("photo.png", "photo.png"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\win.ini", "win.ini"),
        ("a\x00b\x1fc.jpg", "abc.jpg"),
        ("...hidden.txt", "hidden.txt"),
        ("my photo (1).PNG", "my_photo_1_.PNG"),
        ("..", "upload"),
        ("", "upload"),
        ("x" * 300 + ".mp4", "x" * 116 + ".mp4"),
    ],
)
def test_sanitize_filename(raw: str, expected: str) -> None:
    assert sanitize_filename(raw) == expected


def test_store_upload_checks_type_and_size_and_uses_a_unique_folder(tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    src.write_bytes(b"\x89PNG" + b"0" * 2000)
    a = store_upload(src, tmp_path / "uploads", original_name="../x.png")
    b = store_upload(src, tmp_path / "uploads", original_name="../x.png")
    assert a != b and a.name == b.name == "x.png"
    assert a.parent.parent == (tmp_path / "uploads").resolve()
    with pytest.raises(UploadRejected, match="not accepted"):
        store_upload(src, tmp_path / "uploads", original_name="run.sh")
    with pytest.raises(UploadRejected, match="upload limit"):
        store_upload(src, tmp_path / "uploads", original_name="big.png", max_mb=0.001)
    assert list_uploads(tmp_path / "uploads")[0] in (a, b)
    assert len(list_uploads(tmp_path / "uploads")) == 2


def test_upload_limit_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAX_UPLOAD_MB", raising=False)
    assert max_upload_mb() == 500
    monkeypatch.setenv("MAX_UPLOAD_MB", "12.5")
    assert max_upload_mb() == 12.5
    monkeypatch.setenv("MAX_UPLOAD_MB", "lots")
    with pytest.raises(ValueError, match="MAX_UPLOAD_MB"):
        max_upload_mb()


def test_insert_path_picks_the_key_by_kind() -> None:
    assert json_key_for("a/b.JPG") == "image"
    assert json_key_for("a/b.mp4") == "video"
    assert json_key_for("a/b.txt") == "input_file"
    text = insert_path('{"prompt": "x"}', "/up/1/a.png")
    assert json.loads(text) == {"prompt": "x", "image": "/up/1/a.png"}
    with pytest.raises(ValueError, match="line 1, column"):
        insert_path('{"prompt": ', "/up/1/a.png")


def test_parse_request_json_messages() -> None:
    with pytest.raises(ValueError, match=r"line 3, column 1: Expecting value"):
        parse_request_json('{\n "a": \n}')
    with pytest.raises(ValueError, match="must be a JSON object"):
        parse_request_json("[1, 2]")
    with pytest.raises(ValueError, match="empty"):
        parse_request_json("  ")
    assert parse_request_json('{"a": 1}') == {"a": 1}


def test_status_and_failure_panels() -> None:
    from cosmos_gradio_nb import InferenceError, InferenceTimeoutError, WorkerCrashedError

    assert "1 ahead" in status_html("queued", queue_position=1)
    assert "20 ahead" in status_html("queued", queue_position=20)
    assert "next in line" in status_html("queued", queue_position=0)
    html = status_html("running", progress=0.5, message="frame <3>")
    assert "50%" in html and "frame &lt;3&gt;" in html and "width:50.0%" in html
    err = InferenceError("bad", error_type="KeyError", remote_traceback="Traceback...\nKeyError")
    html = failure_html(err, "r1", 1.0)
    assert (
        "The model raised KeyError" in html
        and "Traceback..." in html
        and 'data-state="failed"' in html
    )
    crash = WorkerCrashedError("worker died", rank=0, exitcode=-9, signal_name="SIGKILL")
    assert "killed by SIGKILL" in failure_html(crash) and "restarted" in failure_html(crash)
    assert "restarted" in failure_html(InferenceTimeoutError("ran past 5 s"))


def test_schema_table_and_collect_outputs(tmp_path: Path) -> None:
    from cosmos_gradio_nb.samples.params import SampleParams

    md = schema_markdown(SampleParams.model_json_schema(), {"num_frames": 6})
    assert "| `num_frames` |" in md and "`6`" in md
    (tmp_path / "v.mp4").write_bytes(b"x")
    (tmp_path / "p.png").write_bytes(b"x")
    out = collect_outputs({"output_dir": str(tmp_path), "note": 1, "obj": object()})
    assert [Path(p).name for p in out.videos] == ["v.mp4"]
    assert [Path(p).name for p in out.images] == ["p.png"]
    assert out.status == {"output_dir": str(tmp_path), "note": 1}
