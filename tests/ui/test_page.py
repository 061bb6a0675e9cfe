"""The default page in a real Chromium against a real server with two sample-model workers."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
import requests
from ui_helpers import (
    TINY,
    UIServer,
    open_page,
    request_id_of,
    set_request,
    shot,
    wait_for,
    wait_status,
)

pytestmark = pytest.mark.browser


def _status_json(server: UIServer, request_id: str) -> dict[str, Any]:
    fut = server.future(request_id)
    data: dict[str, Any] = json.loads((fut.output_dir / "status.json").read_text())
    return data


def test_page_loads_with_default_request_and_help(
    page: Any, ui_server: UIServer, artifacts_dir: Path
) -> None:
    open_page(page, ui_server)
    assert "UI test: sample model" in page.inner_text("#cg-header")
    text = page.inner_text("#cg-editor .cm-content")
    assert json.loads(text) == TINY
    workers = page.inner_text("#cg-workers")
    assert "group 0" in workers and "group 1" in workers and "queue" in workers
    # The validator's schema becomes the parameter table.
    page.click("text=Parameters")
    page.wait_for_selector("#cg-help table")
    assert "frame_delay" in page.inner_text("#cg-help")
    shot(page, artifacts_dir, "01-loaded")


def test_generate_plays_video_and_shows_poster(
    page: Any, ui_server: UIServer, artifacts_dir: Path
) -> None:
    open_page(page, ui_server)
    set_request(page, {**TINY, "seed": 11})
    page.click("#cg-generate")
    text = wait_status(page, ("succeeded",), timeout=60)
    assert "1 video, 1 image" in text
    page.wait_for_function(
        "() => { const v = document.querySelector('#cg-video video');"
        " return !!v && v.readyState >= 2 }",
        timeout=20_000,
    )
    poster = page.wait_for_selector("#cg-gallery img", timeout=10_000)
    assert poster is not None
    wait_for(
        lambda: page.eval_on_selector("#cg-gallery img", "i => i.complete && i.naturalWidth") == 64,
        10,
        "the poster image to load at 64 px",
    )
    names = page.inner_text("#cg-files").replace("\n", "")
    assert "video.mp4" in names and "poster.png" in names
    status = _status_json(ui_server, request_id_of(page))
    assert status["state"] == "succeeded" and status["params"]["seed"] == 11
    shot(page, artifacts_dir, "02-video")


def test_invalid_json_shows_line_and_column(
    page: Any, ui_server: UIServer, artifacts_dir: Path
) -> None:
    open_page(page, ui_server)
    before = len(ui_server.app.history)
    set_request(page, '{\n  "prompt": "x",\n  "seed": \n}')
    page.click("#cg-generate")
    text = wait_status(page, ("refused",), timeout=10)
    assert "Invalid JSON at line 4, column 1" in text
    assert len(ui_server.app.history) == before, "nothing may be queued"
    shot(page, artifacts_dir, "03-invalid-json")


def test_validator_error_names_the_key(page: Any, ui_server: UIServer, artifacts_dir: Path) -> None:
    open_page(page, ui_server)
    set_request(page, {**TINY, "num_frame": 3})
    page.click("#cg-generate")
    text = wait_status(page, ("refused",), timeout=10)
    assert "num_frame" in text and "num_frames" in text  # the sample's "did you mean"
    set_request(page, {**TINY, "width": 63})
    page.click("#cg-generate")
    wait_for(lambda: "even" in page.inner_text("#cg-status"), 10, "the width error")
    shot(page, artifacts_dir, "04-validation-error")


def test_worker_error_shows_message_and_remote_traceback(
    page: Any, ui_server: UIServer, artifacts_dir: Path
) -> None:
    open_page(page, ui_server)
    set_request(page, {**TINY, "fault": "raise"})
    page.click("#cg-generate")
    text = wait_status(page, ("failed",), timeout=60)
    assert "The model raised RuntimeError" in text
    assert "boom: the test model was asked to fail" in text
    assert "Traceback" in page.inner_text("#cg-status pre")
    assert "cg_ui_models.py" in page.inner_text("#cg-status pre")
    shot(page, artifacts_dir, "05-worker-error")


def upload_file(page: Any, path: Path) -> None:
    """Click the upload button and pick ``path`` in the file chooser, as a user does."""
    with page.expect_file_chooser() as chooser:
        page.click("#cg-upload")
    chooser.value.set_files(str(path))


def _png(path: Path, color: tuple[int, int, int]) -> Path:
    from PIL import Image

    Image.new("RGB", (48, 40), color).save(path)
    return path


def test_upload_is_stored_inserted_and_used(
    page: Any, ui_server: UIServer, artifacts_dir: Path, tmp_path: Path
) -> None:
    open_page(page, ui_server)
    src = _png(tmp_path / "my red..image.png", (220, 20, 20))
    upload_file(page, src)
    wait_for(
        lambda: "Stored as" in page.inner_text("#cg-upload-msg"), 20, "the upload to be stored"
    )
    stored = Path(page.input_value("#cg-upload-path textarea, #cg-upload-path input"))
    assert stored.is_file() and stored.parent.parent == ui_server.uploads_dir.resolve()
    assert ".." not in stored.name and stored.read_bytes() == src.read_bytes()
    page.click("#cg-insert")
    wait_for(
        lambda: str(stored) in page.inner_text("#cg-editor .cm-content"), 10, "the inserted path"
    )
    params = json.loads(page.inner_text("#cg-editor .cm-content"))
    assert params["image"] == str(stored)
    shot(page, artifacts_dir, "06-upload-inserted")
    page.click("#cg-generate")
    wait_status(page, ("succeeded",), timeout=60)
    status = _status_json(ui_server, request_id_of(page))
    assert status["params"]["image"] == str(stored)
    # A refused type: Chromium's page refuses it before sending, and so does the server.
    bad = tmp_path / "script.sh"
    bad.write_text("echo hi\n")
    before = sorted(ui_server.uploads_dir.rglob("*"))
    upload_file(page, bad)
    page.wait_for_selector("text=Invalid file type", timeout=10_000)
    from gradio_client import Client, handle_file

    client = Client(ui_server.url, verbose=False)
    with pytest.raises(Exception, match="not accepted"):  # the server's own check
        client.predict(handle_file(str(bad)), api_name="/upload_file")
    assert sorted(ui_server.uploads_dir.rglob("*")) == before
    odd = _png(tmp_path / "..\x01evil\\name .PNG", (0, 0, 200))
    path = client.predict(handle_file(str(odd)), api_name="/upload_file")
    assert Path(path).parent.parent == ui_server.uploads_dir.resolve()
    name = Path(path).name
    assert name.endswith(".PNG")
    assert not any(c in name for c in ("..", "/", "\\", "\x01", " ")), name
    # The earlier upload is still offered for reuse after a reload.
    open_page(page, ui_server)
    page.click("#cg-earlier input")
    page.wait_for_selector(f"text={stored.parent.name}/{stored.name}", timeout=10_000)


def test_log_viewer_shows_worker_lines(page: Any, ui_server: UIServer, artifacts_dir: Path) -> None:
    open_page(page, ui_server)
    set_request(page, {**TINY, "prompt": "log viewer check"})
    page.click("#cg-generate")
    wait_status(page, ("succeeded",), timeout=60)
    wait_for(
        lambda: "rendering 6 frames 64x64" in page.input_value("#cg-log textarea"),
        10,
        "the worker's line in the log viewer",
    )
    log = page.input_value("#cg-log textarea")
    assert "[g0 r0]" in log or "[g1 r0]" in log
    href = page.get_attribute("#cg-log-download", "href")
    assert href is not None
    got = requests.get(ui_server.url + href, timeout=10)
    assert got.status_code == 200 and "rendering 6 frames" in got.text
    shot(page, artifacts_dir, "07-log")


def test_cancel_stops_a_running_request(
    page: Any, ui_server: UIServer, artifacts_dir: Path
) -> None:
    open_page(page, ui_server)
    set_request(page, {**TINY, "num_frames": 20, "frame_delay": 0.5})
    page.click("#cg-generate")
    wait_for(lambda: "%" in page.inner_text("#cg-status"), 60, "progress from the worker")
    rid = request_id_of(page)
    assert ui_server.future(rid).state == "running"
    shot(page, artifacts_dir, "08-running")
    page.click("#cg-cancel")
    text = wait_status(page, ("cancelled",), timeout=20)
    # the sample reports progress every frame: it stops there and its worker stays loaded
    assert "stopped while running" in text and "stayed loaded" in text
    fut = ui_server.future(rid)
    assert fut.cancelled() and fut.state == "cancelled"
    shot(page, artifacts_dir, "09-cancelled")
    # The group comes back and serves again.
    set_request(page, {**TINY, "seed": 5})
    page.click("#cg-generate")
    wait_status(page, ("succeeded",), timeout=90)


def test_two_pages_and_a_python_batch_share_the_queue(
    browser: Any, ui_server: UIServer, artifacts_dir: Path
) -> None:
    # Start from two idle replicas (the cancel test restarts one).
    wait_for(lambda: all(w.state == "idle" for w in ui_server.app.workers()), 90, "idle workers")
    contexts = [browser.new_context(viewport={"width": 1280, "height": 900}) for _ in range(2)]
    try:
        pages = [open_page(c.new_page(), ui_server) for c in contexts]
        seeds = [101, 202]
        for pg, seed in zip(pages, seeds, strict=True):
            set_request(pg, {**TINY, "seed": seed, "prompt": f"page {seed}"})
        batch = [{**TINY, "seed": 300 + i, "prompt": f"python {i}"} for i in range(3)]
        futs: list[Any] = []
        start = threading.Thread(target=lambda: futs.extend(ui_server.app.submit(p) for p in batch))
        for pg in pages:
            pg.click("#cg-generate")
        start.start()
        start.join()
        for pg, seed in zip(pages, seeds, strict=True):
            wait_status(pg, ("succeeded",), timeout=90)
            status = _status_json(ui_server, request_id_of(pg))
            assert status["params"]["seed"] == seed and status["params"]["prompt"] == f"page {seed}"
        for fut, params in zip(futs, batch, strict=True):
            res = fut.result(timeout=90)
            assert res.status["params"]["seed"] == params["seed"]
            assert res.videos and res.videos[0].is_file()
        groups = {_status_json(ui_server, request_id_of(pg))["group"] for pg in pages}
        groups |= {f.result().status["group"] for f in futs}
        assert groups == {0, 1}, "both replicas must have served"
        shot(pages[0], artifacts_dir, "10-shared-queue")
    finally:
        for c in contexts:
            c.close()


def test_only_outputs_and_uploads_are_served(ui_server: UIServer) -> None:
    secret = ui_server.root / "secret.txt"
    secret.write_text("do not serve me")
    cwd_file = Path.cwd() / "pyproject.toml"
    fut = ui_server.app.submit({**TINY, "seed": 77})
    video = fut.result(timeout=60).videos[0]
    base = ui_server.url.rstrip("/")
    forbidden = [
        "/etc/passwd",
        str(secret),
        str(cwd_file),
        f"{ui_server.output_dir}/../secret.txt",
        f"{ui_server.uploads_dir}/../../secret.txt",
    ]
    for path in forbidden:
        for route in ("/gradio_api/file=", "/file=", "/gradio_api/file/"):
            r = requests.get(base + route + path, timeout=10)
            assert r.status_code >= 400, f"{route}{path} was served"
            assert "root:" not in r.text and "do not serve me" not in r.text
    r = requests.get(base + "/gradio_api/file=" + str(video), timeout=10)
    assert r.status_code == 200 and r.content == video.read_bytes()


def test_upload_over_the_limit_is_refused_by_the_server(ui_server: UIServer) -> None:
    big = b"\0" * (int(1.5 * 1024 * 1024))
    r = requests.post(
        ui_server.url + "gradio_api/upload",
        files={"files": ("big.png", big, "image/png")},
        timeout=30,
    )
    assert r.status_code >= 400 and "size" in r.text.lower()


def test_gradio_client_generate_endpoint(ui_server: UIServer) -> None:
    from gradio_client import Client

    client = Client(ui_server.url, verbose=False)
    status, files = client.predict(json.dumps({**TINY, "seed": 42}), api_name="/generate")
    assert status["state"] == "succeeded" and status["params"]["seed"] == 42
    assert sorted(Path(f).name for f in files) == ["poster.png", "video.mp4"]
    with pytest.raises(Exception, match="num_frames"):
        client.predict(json.dumps({**TINY, "num_frames": 0}), api_name="/generate")
    with pytest.raises(Exception, match="line 1, column"):
        client.predict("{oops", api_name="/generate")


def test_editor_reset(page: Any, ui_server: UIServer) -> None:
    open_page(page, ui_server)
    set_request(page, {"prompt": "changed"})
    page.click("#cg-reset")
    wait_for(
        lambda: json.loads(page.inner_text("#cg-editor .cm-content") or "{}") == TINY, 10, "reset"
    )
