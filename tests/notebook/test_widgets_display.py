"""The widget UI, live panels and static HTML against a real NotebookApp (real workers).

ipywidgets run without a front end here (their comm is a dummy), so these drive
the widgets' Python side exactly as button clicks and edits in a browser would.
"""

from __future__ import annotations

import base64
import datetime
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nb_harness import wait_for

from cosmos_gradio_nb import NotebookApp, ValidationError
from cosmos_gradio_nb._notebook import display as _display
from cosmos_gradio_nb._notebook import form, panels
from cosmos_gradio_nb.samples import FACTORY_MODULE, SampleParams

pytestmark = pytest.mark.notebook

TINY = {"width": 64, "height": 48, "num_frames": 6, "fps": 6}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    base = tmp_path_factory.mktemp("widgets")
    # Through the environment, not constructor arguments: the sample's validator checks
    # asset paths against DeploymentEnv read from the environment.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OUTPUT_DIR", str(base / "outputs"))
        mp.setenv("UPLOADS_DIR", str(base / "uploads"))
        mp.setenv("LOG_FILE", str(base / "outputs" / "app.log"))
        with NotebookApp(SampleParams, FACTORY_MODULE, "create_worker", name="widget-tests") as a:
            a.wait_ready(timeout=120)
            yield a


@pytest.fixture(scope="module")
def result(app: Any) -> Any:
    return app.submit({**TINY, "seed": 3}).result(timeout=120)


def _png_bytes() -> bytes:
    from io import BytesIO

    from PIL import Image

    buf = BytesIO()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


# -- static HTML ----------------------------------------------------------------------------------
def test_result_html_embeds_small_media_as_data_uris(result: Any) -> None:
    html = _display.result_html(result)
    video_src = re.search(r'<video[^>]* src="data:video/mp4;base64,([^"]+)"', html)
    assert video_src, html[:500]
    assert base64.b64decode(video_src.group(1)) == result.videos[0].read_bytes()
    img_src = re.search(r'<img[^>]* src="data:image/png;base64,([^"]+)"', html)
    assert img_src and base64.b64decode(img_src.group(1)) == result.images[0].read_bytes()
    assert result.request_id in html and "succeeded" in html


def test_result_html_names_large_files_instead_of_embedding(
    result: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COSMOS_GRADIO_EMBED_MAX_MB", "0.0001")  # ~100 bytes
    html = _display.result_html(result)
    assert "data:video" not in html and "data:image" not in html
    assert str(result.videos[0]) in html and "too large to embed" in html


def test_result_html_escapes_file_names(tmp_path: Path) -> None:
    from cosmos_gradio_nb import InferenceResult

    evil = tmp_path / r'x"><script>alert(1)<\script>.txt'
    evil.write_text("hi")
    res = InferenceResult(request_id="<b>id</b>", output_dir=tmp_path, files=[evil])
    html = _display.result_html(res)
    assert "<script>" not in html and "&lt;script&gt;" in html and "&lt;b&gt;id" in html


def test_future_html_follows_the_request(app: Any) -> None:
    slow = app.submit({**TINY, "num_frames": 30, "frame_delay": 0.1})
    queued = app.submit({**TINY, "seed": 11})
    assert "ahead" in _display.future_html(queued) or "next in line" in (
        _display.future_html(queued)
    )
    wait_for(lambda: slow.progress, 60, "progress on the slow request")
    assert "<progress" in _display.future_html(slow) and "running" in _display.future_html(slow)
    assert slow.terminate()
    assert "cancelled" in _display.future_html(slow)
    queued.result(timeout=60)
    assert "<video" in _display.future_html(queued)


def test_app_html_lists_workers_and_jobs(app: Any, result: Any) -> None:
    html = _display.app_html(app, jobs=1000)
    pid = app.workers()[0].pid
    assert f"<td>{pid}</td>" in html
    assert result.request_id in html


# -- live panels ---------------------------------------------------------------------------------
def test_future_widget_progress_then_result(app: Any) -> None:
    fut = app.submit({**TINY, "num_frames": 12, "frame_delay": 0.05})
    box = panels.future_widget(fut)
    bar = box.children[0].children[0]
    seen: list[float] = []
    fut.add_progress_callback(lambda f: seen.append(bar.value))
    fut.result(timeout=60)
    html = wait_for(
        lambda: (
            len(box.children) == 1 and "<video" in box.children[0].value and box.children[0].value
        ),
        10,
        "the widget to show the result",
    )
    assert fut.request_id in html
    assert seen and max(seen) > 0.0, "the bar never moved"


def test_app_panel_refreshes_and_stops_when_the_app_closes(tmp_path: Path) -> None:
    def noop_factory() -> Any:
        class Noop:
            def infer(self, args: dict[str, Any]) -> dict[str, Any]:
                return {"echo": args.get("n")}

        return Noop()

    small = NotebookApp(
        factory=noop_factory,
        name="panel-test",
        output_dir=tmp_path / "o",
        log_file=tmp_path / "o" / "log.txt",
    )
    try:
        panel = panels.app_panel(small, interval=0.1).children[0]
        small.wait_ready(timeout=60)
        pid = small.workers()[0].pid
        wait_for(lambda: f"<td>{pid}</td>" in panel.value, 10, "the panel to show the worker pid")
        fut = small.submit({"n": 1})
        fut.result(timeout=30)
        wait_for(lambda: fut.request_id in panel.value, 10, "the panel to list the request")
    finally:
        small.close()
    wait_for(lambda: "closed" in panel.value, 10, "the panel to say closed")


# -- the widget UI --------------------------------------------------------------------------------
def test_widget_ui_validates_as_you_type(app: Any) -> None:
    ui = form.create_widget_UI(app).cosmos_ui
    assert json.loads(ui.editor.value) == app.default_request
    assert "valid request" in ui.feedback.value
    ui.editor.value = '{"prompt": "x",\n  "seed": }'
    assert "line 2, column" in ui.feedback.value
    ui.editor.value = json.dumps({"width": 33})
    assert "width must be even" in ui.feedback.value
    ui.editor.value = json.dumps({"num_frame": 3})
    assert "num_frames" in ui.feedback.value  # the sample's validator suggests the right key
    assert ui.submit() is None  # refused, nothing queued
    ui.root.close()


def test_widget_ui_upload_guard_and_insert(app: Any) -> None:
    ui = form.create_widget_UI(app, upload_limit_mb=0.001).cosmos_ui
    with pytest.raises(ValidationError, match="widget upload limit"):
        ui.save_upload("big.png", b"\0" * 5000)
    ui.upload_limit = 10 * 1024 * 1024
    with pytest.raises(ValidationError, match="not accepted"):
        ui.save_upload("run.sh", b"echo hi")
    path = ui.save_upload("../../etc/My Photo.png", _png_bytes())
    assert path.is_file() and path.parent.parent == Path(app.env.uploads_dir).resolve()
    assert ".." not in path.name and " " not in path.name
    assert json.loads(ui.editor.value)["image"] == str(path)
    assert "valid request" in ui.feedback.value  # the validator accepts the stored upload
    # Through the FileUpload widget's own value change, as the browser sends it:
    big = 20_000_000
    ui.upload.value = (
        {
            "name": "clip.webp",
            "type": "image/webp",
            "size": big,
            "content": memoryview(b"\0" * big),
            "last_modified": datetime.datetime.now(datetime.timezone.utc),
        },
    )
    assert "widget upload limit" in ui.upload_note.value
    assert ui.upload.value == ()  # the bytes are dropped from the widget state
    ui.root.close()


def test_widget_ui_generate_shows_video_and_image(app: Any) -> None:
    ui = form.create_widget_UI(app).cosmos_ui
    ui.editor.value = json.dumps({**TINY, "seed": 5})
    ui.generate.click()
    fut = ui.future
    assert fut is not None
    fut.result(timeout=60)
    wait_for(lambda: len(ui.outputs.children) == 2, 10, "the outputs")
    video, image = ui.outputs.children
    assert video.format == "mp4" and bytes(video.value)[4:8] == b"ftyp"
    assert bytes(image.value)[:8] == b"\x89PNG\r\n\x1a\n"
    assert ui.progress.value == 1.0 and ui.progress.bar_style == "success"
    assert fut.request_id in ui.state.value and "succeeded" in ui.state.value
    assert "status.json" in ui.status.value
    wait_for(lambda: "[g0 r0]" in ui.log.value, 10, "the log tail to show worker lines")
    ui.root.close()


def test_widget_ui_cancel_stops_a_running_request(app: Any) -> None:
    ui = form.create_widget_UI(app).cosmos_ui
    ui.editor.value = json.dumps({**TINY, "num_frames": 60, "frame_delay": 0.1})
    ui.generate.click()
    fut = ui.future
    wait_for(lambda: fut.state == "running" and fut.progress, 60, "the request to run")
    wait_for(lambda: (fut.output_dir / "video.mp4").exists(), 30, "the encoder to open its file")
    assert not ui.cancel.disabled
    ui.cancel.click()
    wait_for(fut.done, 30, "the request to stop")
    assert fut.state == "cancelled"
    wait_for(lambda: "cancelled" in ui.state.value, 10, "the state to show cancelled")
    assert ui.cancel.disabled
    # _on_done runs on a callback thread: wait for it rather than race it
    wait_for(lambda: "Partial files" in ui.status.value, 10, "the partial files to be listed")
    assert "video.mp4" in ui.status.value
    # the app keeps serving after the restart
    assert app.submit(TINY).result(timeout=60).videos
    ui.root.close()


def test_widget_ui_shows_a_model_error(tmp_path: Path) -> None:
    def failing_factory() -> Any:
        class Failing:
            def infer(self, args: dict[str, Any]) -> dict[str, Any]:
                raise RuntimeError(f"no luck with {args.get('x')}")

        return Failing()

    with NotebookApp(
        factory=failing_factory,
        name="failing-widgets",
        output_dir=tmp_path / "o",
        log_file=tmp_path / "o" / "log.txt",
    ) as bad:
        ui = form.create_widget_UI(bad).cosmos_ui
        ui.editor.value = '{"x": 42}'
        ui.generate.click()
        with pytest.raises(Exception, match="no luck with 42"):
            ui.future.result(timeout=60)
        wait_for(lambda: "no luck with 42" in ui.status.value, 10, "the error in the status")
        assert "traceback" in ui.status.value and ui.progress.bar_style == "danger"
        ui.root.close()


def test_tail_lines_reads_only_the_end(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    with open(log, "w") as fh:
        for i in range(200_000):
            fh.write(f"line {i}\n")
    assert form.tail_lines(log, 3) == ["line 199997", "line 199998", "line 199999"]
    assert form.tail_lines(tmp_path / "missing.log") == []


def test_the_app_panel_shows_device_and_node_and_every_group_state() -> None:
    from types import SimpleNamespace

    from cosmos_gradio_nb._core.presentation import GROUP_STATES
    from cosmos_gradio_nb._engine.groups import GroupState
    from cosmos_gradio_nb._engine.request import WorkerInfo
    from cosmos_gradio_nb._notebook.display import app_html

    # one table: every group state, and the one shown while a group that missed a ping restarts
    assert set(GROUP_STATES) == {s.value for s in GroupState} | {"unresponsive"}
    workers = [
        WorkerInfo(0, 0, "", 11, "busy", "abc", 0, node="10.0.0.7"),
        WorkerInfo(1, 0, "3", 12, "stopping", None, 2, node="10.0.0.8"),
    ]
    app = SimpleNamespace(
        name="demo", closed=False, workers=lambda: workers, history=[], queue_length=0
    )
    html = app_html(app)
    assert "<th>node</th>" in html and "10.0.0.7" in html and "10.0.0.8" in html
    assert ">CPU<" in html and ">GPU 3<" in html
    assert GROUP_STATES["stopping"].color in html
