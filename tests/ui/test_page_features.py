"""The page's header, history, file browser, uploads, messages and API, in real Chromium.

Same set-up as ``test_page``: a NotebookApp with two sample-model workers behind
the real page on a real Gradio server (``ui_server``); plus, for the validator
message, a second app whose validator is a plain function.
"""

from __future__ import annotations

import ast
import io
import json
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from ui_helpers import (
    TINY,
    UIServer,
    free_port,
    open_page,
    request_id_of,
    set_request,
    shot,
    wait_for,
    wait_status,
)

pytestmark = pytest.mark.browser


def _git(*args: str) -> str:
    out = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
    return out.stdout.strip() if out.returncode == 0 else ""


def test_header_names_model_start_time_device_and_git_checkout(
    page: Any, ui_server: UIServer, artifacts_dir: Path
) -> None:
    from cosmos_gradio_nb._backends.process import nvidia_present

    open_page(page, ui_server)
    info = page.inner_text("#cg-header-info")
    assert f"model {ui_server.app.env.model_name}" in info
    assert "serving since 20" in info and "UTC" in info
    commit = _git("rev-parse", "--short=12", "HEAD")
    if commit:  # the tests run from the checkout
        assert commit in info and _git("rev-parse", "--abbrev-ref", "HEAD") in info
    workers = page.inner_text("#cg-workers")
    if nvidia_present():
        assert "GPU" in info and "(GPU " in workers
    else:
        assert "on CPU" in info and "(CPU)" in workers and "device" not in workers
    shot(page, artifacts_dir, "11-header")


def _png(path: Path, color: tuple[int, int, int]) -> Path:
    from PIL import Image

    Image.new("RGB", (40, 30), color).save(path)
    return path


def test_several_files_upload_in_one_go(
    page: Any, ui_server: UIServer, artifacts_dir: Path, tmp_path: Path
) -> None:
    open_page(page, ui_server)
    a = _png(tmp_path / "first.png", (200, 0, 0))
    b = tmp_path / "prompts.json"
    b.write_text('{"prompts": ["a", "b"]}')
    c = tmp_path / "evil.html"  # refused: script in the page's origin
    c.write_text("<script>alert(1)</script>")
    with page.expect_file_chooser() as chooser:
        page.click("#cg-upload")
    chooser.value.set_files([str(a), str(b)])
    wait_for(lambda: page.inner_text("#cg-upload-msg").count("Stored as") == 2, 20, "both uploads")
    stored = sorted(p.name for p in ui_server.uploads_dir.rglob("*") if p.is_file())
    assert "first.png" in stored and "prompts.json" in stored
    page.click("#cg-earlier input")
    page.wait_for_selector("text=prompts.json", timeout=10_000)
    shot(page, artifacts_dir, "12-multi-upload")
    page.keyboard.press("Escape")
    from gradio_client import Client, handle_file

    svg = tmp_path / "drawing.svg"  # refused too: SVG can carry script
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')
    client = Client(ui_server.url, verbose=False)
    for refused in (c, svg):
        with pytest.raises(Exception, match="not accepted"):
            client.predict(handle_file(str(refused)), api_name="/upload_file")
    assert not any(p.suffix in (".html", ".svg") for p in ui_server.uploads_dir.rglob("*"))


def _cached_zips() -> set[Path]:
    from gradio.utils import get_upload_folder

    return set(Path(get_upload_folder()).rglob("*.zip"))


def _pick(page: Any, label_start: str) -> None:
    page.click(f"#cg-fb-file label:has-text('{label_start}')")


def test_file_browser_previews_and_downloads_a_file_and_a_folder_zip(
    page: Any, ui_server: UIServer, artifacts_dir: Path
) -> None:
    res = ui_server.app.submit({**TINY, "seed": 808}).result(timeout=60)
    folder = res.output_dir.name
    open_page(page, ui_server)
    page.click("#cg-tab-files-button")
    wait_for(lambda: page.input_value("#cg-fb-folder input") == folder, 10, "the newest folder")
    page.wait_for_selector("#cg-fb-file label:has-text('poster.png')", timeout=10_000)
    _pick(page, "poster.png")
    img = page.wait_for_selector("#cg-fb-image img", timeout=10_000)
    assert img is not None
    wait_for(
        lambda: (
            page.eval_on_selector("#cg-fb-image img", "i => i.complete && i.naturalWidth") == 64
        ),
        10,
        "the poster preview",
    )
    with page.expect_download() as dl:
        page.click("#cg-fb-download")
    got = Path(dl.value.path()).read_bytes()
    assert got == (res.output_dir / "poster.png").read_bytes()
    _pick(page, "status.json")
    wait_for(lambda: "succeeded" in page.inner_text("#cg-fb-json"), 10, "the JSON preview")
    _pick(page, "video.mp4")
    page.wait_for_function(
        "() => { const v = document.querySelector('#cg-fb-video video');"
        " return !!v && v.readyState >= 2 }",
        timeout=20_000,
    )
    shot(page, artifacts_dir, "13-file-browser")
    zips = ui_server.demo.cosmos_files.zips
    cached_before = _cached_zips()
    page.click("#cg-fb-zip")
    page.wait_for_selector("#cg-fb-zip-download", state="visible", timeout=20_000)
    first = zips.files()
    assert len(first) == 1
    page.click("#cg-fb-zip")  # again: this page's first zip is replaced, not kept
    wait_for(lambda: zips.files() and zips.files() != first, 20, "the second zip")
    assert len(zips.files()) == 1 and not first[0].exists()
    page.wait_for_selector("#cg-fb-zip-download", state="visible", timeout=20_000)
    with page.expect_download() as dl:
        page.click("#cg-fb-zip-download")
    with zipfile.ZipFile(io.BytesIO(Path(dl.value.path()).read_bytes())) as zf:
        names = sorted(zf.namelist())
        assert names == sorted(f"{folder}/{n}" for n in ("poster.png", "status.json", "video.mp4"))
        assert zf.read(f"{folder}/video.mp4") == (res.output_dir / "video.mp4").read_bytes()
    wait_for(lambda: zips.files() == [], 10, "the zip deleted once served")
    assert _cached_zips() == cached_before, "no copy of the zip in Gradio's cache"
    # The uploads folder is browsable too.
    page.click("#cg-fb-root label:has-text('Uploads')")
    wait_for(
        lambda: f"in {ui_server.uploads_dir}" in page.inner_text("#cg-fb-folder-note"),
        10,
        "the uploads folder's listing",
    )


def test_history_shows_a_python_run_and_load_into_editor_then_generate_runs_it_edited(
    page: Any, ui_server: UIServer, artifacts_dir: Path
) -> None:
    res = ui_server.app.submit({**TINY, "seed": 4242, "prompt": "from python"}).result(timeout=60)
    open_page(page, ui_server)
    page.click("#cg-tab-history-button")
    cell = f"#cg-hist-table >> text={res.request_id} >> visible=true"
    page.wait_for_selector(cell, timeout=15_000)
    assert "seed=4242" in page.inner_text("#cg-hist-table")
    thumb = page.wait_for_selector("#cg-hist-table img.cg-thumb >> visible=true", timeout=10_000)
    assert thumb is not None
    page.click(cell)
    wait_for(lambda: "4242" in page.inner_text("#cg-hist-params"), 10, "the run's parameters")
    page.wait_for_function(
        "() => { const v = document.querySelector('#cg-hist-video video');"
        " return !!v && v.readyState >= 2 }",
        timeout=20_000,
    )
    shot(page, artifacts_dir, "14-history")
    page.click("#cg-hist-load")
    wait_for(
        lambda: '"seed": 4242' in page.inner_text("#cg-editor .cm-content"), 10, "loaded params"
    )
    assert page.get_attribute("#cg-tab-generate-button", "aria-selected") == "true"
    params = json.loads(page.inner_text("#cg-editor .cm-content"))
    assert params["prompt"] == "from python" and "output_dir" not in params
    set_request(page, {**params, "seed": 4343})
    page.click("#cg-generate")
    wait_status(page, ("succeeded",), timeout=60)
    new_id = request_id_of(page)
    status = json.loads((ui_server.future(new_id).output_dir / "status.json").read_text())
    assert status["params"]["seed"] == 4343 and status["params"]["prompt"] == "from python"
    page.click("#cg-tab-history-button")
    page.wait_for_selector(f"#cg-hist-table >> text={new_id} >> visible=true", timeout=15_000)
    # The same history from Python, as a notebook shows it: a table with thumbnails.
    from cosmos_gradio_nb import load_results

    results = load_results(ui_server.output_dir, limit=5)
    assert results[0].request_id == new_id and results[1].request_id == res.request_id
    assert results[0].status["params"]["seed"] == 4343 and results[0].videos
    html = results._repr_html_()
    assert html.count('<img src="data:image/png;base64,') >= 2 and new_id in html


def test_cancel_with_nothing_running_answers_in_the_page(page: Any, ui_server: UIServer) -> None:
    open_page(page, ui_server)
    page.click("#cg-cancel")
    wait_for(lambda: "Nothing to cancel" in page.inner_text("#cg-cancel-msg"), 10, "the answer")


def test_a_stopped_run_offers_partial_files_never_a_video(
    page: Any, ui_server: UIServer, artifacts_dir: Path
) -> None:
    wait_for(lambda: all(w.state == "idle" for w in ui_server.app.workers()), 90, "idle workers")
    open_page(page, ui_server)
    # The encoder writes its first bytes after ~40 frames of look-ahead: run past that.
    set_request(page, {**TINY, "num_frames": 300, "frame_delay": 0.05})
    page.click("#cg-generate")
    wait_for(lambda: "%" in page.inner_text("#cg-status"), 60, "progress")
    rid = request_id_of(page)
    fut = ui_server.future(rid)
    wait_for(lambda: (fut.output_dir / "video.mp4").exists(), 30, "a half-written video")
    page.click("#cg-cancel")
    wait_status(page, ("cancelled",), timeout=30)
    status = wait_for(
        lambda: json.loads((fut.output_dir / "status.json").read_text()), 20, "status.json"
    )
    assert status["state"] == "cancelled" and status["files"]["videos"] == []
    assert str(fut.output_dir / "video.mp4") in status["files"]["partial"]
    assert "Partial files (the run was stopped)" in page.inner_text("#cg-files")
    assert page.query_selector("#cg-video video") is None
    shot(page, artifacts_dir, "15-partial")


def test_the_log_viewer_follows_its_newest_line(page: Any, ui_server: UIServer) -> None:
    open_page(page, ui_server)
    with ui_server.log_file.open("a") as fh:  # more lines than the viewer shows
        for i in range(40):
            fh.write(f"00:00:00 [test] filler line {i}\n")
    wait_for(lambda: "filler line 39" in page.input_value("#cg-log textarea"), 10, "the new lines")
    wait_for(
        lambda: page.eval_on_selector(
            "#cg-log textarea",
            "t => t.scrollHeight > t.clientHeight + 20 &&"
            " t.scrollTop + t.clientHeight >= t.scrollHeight - 4",
        ),
        5,
        "the log viewer to scroll to its last line",
    )


# -- a validator given as a plain function ------------------------------------------------------
def plain_validate(params: dict[str, Any]) -> dict[str, Any]:
    """The seed's style: a plain function; it lets pydantic's ValidationError out."""
    from cg_ui_models import TestParams

    return TestParams.model_validate(params).model_dump(mode="json")


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UIServer]:
    from cosmos_gradio_nb import NotebookApp, create_gradio_UI

    root = tmp_path_factory.mktemp("plain")
    app = NotebookApp(
        plain_validate,
        factory="cg_ui_models:create_steps",
        name=f"plain-{root.name}",
        output_dir=str(root / "outputs"),
        uploads_dir=str(root / "uploads"),
        log_file=str(root / "outputs" / "app.log"),
    )
    demo = None
    try:
        demo = create_gradio_UI(app.infer, header="plain validator", default_request={})
        port = free_port()
        demo.launch(prevent_thread_lock=True, server_port=port, quiet=True)
        yield UIServer(app=app, demo=demo, url=f"http://127.0.0.1:{port}/", root=root)
    finally:
        if demo is not None:
            demo.close()
        app.close()


def test_a_plain_function_validator_message_in_the_page(
    page: Any, plain_server: UIServer, artifacts_dir: Path
) -> None:
    page.goto(plain_server.url)
    page.wait_for_selector("#cg-generate", timeout=30_000)
    long_prompt = "x" * 2500  # over max_length: a long value must wrap, not run off the edge
    set_request(page, {"num_frame": 3})  # one problem: one line after the title
    page.click("#cg-generate")
    text = wait_status(page, ("refused",), timeout=15)
    assert text.count("Invalid parameters") == 1 and "invalid parameters" not in text
    assert "Invalid parameters: num_frame: unknown parameter; did you mean 'num_frames'?" in text
    assert "validation error for" not in text
    set_request(page, {"width": 63, "height": 33, "prompt": long_prompt})
    page.click("#cg-generate")
    wait_for(lambda: "width" in page.inner_text("#cg-status"), 15, "the width problem")
    items = page.eval_on_selector_all(
        "#cg-status .cg-problems li", "ls => ls.map(l => l.innerText)"
    )
    assert len(items) == 3, items  # one line per problem, each naming its key
    assert any(i.startswith("width: width must be even") for i in items), items
    assert any(i.startswith("height: height must be even") for i in items), items
    assert any(i.startswith("prompt: ") for i in items), items
    overflow = page.eval_on_selector(
        "#cg-status .cg-problems", "u => u.scrollWidth - u.clientWidth"
    )
    assert overflow <= 1, f"the message runs {overflow} px off the panel's edge"
    shot(page, artifacts_dir, "16-plain-validator")


# -- the API for scripts ------------------------------------------------------------------------
def test_every_api_endpoint_through_gradio_client(ui_server: UIServer, tmp_path: Path) -> None:
    from gradio_client import Client, handle_file

    client = Client(ui_server.url, verbose=False)
    default = client.predict(api_name="/generate_default_request")
    assert json.loads(default) == TINY
    status, files = client.predict(default, api_name="/generate")
    assert status["state"] == "succeeded" and len(files) == 2
    # Follow a request: every state it passed through, then its status and files.
    job = client.submit(
        json.dumps({**TINY, "num_frames": 12, "frame_delay": 0.1}), api_name="/generate_stream"
    )
    final_status, final_files = job.result(timeout=120)
    seen = [out[0] for out in job.outputs()]
    assert any(s.get("state") == "running" and s.get("request_id") for s in seen[:-1]), seen
    assert any((s.get("progress") or 0) > 0 for s in seen[:-1]), seen
    assert final_status["state"] == "succeeded" and sorted(Path(f).name for f in final_files) == [
        "poster.png",
        "video.mp4",
    ]
    rid = final_status["id"]
    assert client.predict(rid, api_name="/request_status")["state"] == "succeeded"
    running = ui_server.app.submit({**TINY, "num_frames": 30, "frame_delay": 0.1})
    wait_for(lambda: running.state == "running", 60, "a running request")
    live = client.predict(running.request_id, api_name="/request_status")
    assert live["state"] in ("running", "succeeded") and live["id"] == running.request_id
    with pytest.raises(Exception, match="not a request id"):
        client.predict("../../etc", api_name="/request_status")
    running.result(timeout=60)
    # Upload, then list.
    src = _png(tmp_path / "api upload.png", (0, 90, 0))
    stored = client.predict(handle_file(str(src)), api_name="/upload_file")
    assert Path(stored).read_bytes() == src.read_bytes()
    listed = client.predict(api_name="/upload_file_list")
    assert listed[0]["server_path"] == stored and listed[0]["name"] == "api_upload.png"
    # "Use via API": the sample call is a real request and runs as shown.
    info = requests.get(ui_server.url + "gradio_api/info", timeout=10).json()
    endpoint = info["named_endpoints"]["/generate"]
    example = endpoint["parameters"][0]["example_input"]
    snippet = f'text="{example}"'  # how Gradio's Python snippet writes a str example
    shown = ast.literal_eval(snippet.split("=", 1)[1])
    assert json.loads(shown) == TINY
    assert "``" not in json.dumps(info)
    status, _ = client.predict(shown, api_name="/generate")
    assert status["state"] == "succeeded"
