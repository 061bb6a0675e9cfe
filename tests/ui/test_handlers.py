"""The page's handlers without a page: infer_func is called, whatever it is, and followed.

A real NotebookApp (one worker of the ``Steps`` model) behind the panels' handler
objects (Generate, the API, uploads, the status bar, history, files), built the
way ``create_gradio_UI`` builds them and driven as Gradio drives them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cosmos_gradio_nb import GradioApp, NotebookApp
from cosmos_gradio_nb._page.api import ApiEndpoints
from cosmos_gradio_nb._page.backend import Backend
from cosmos_gradio_nb._page.files import FileBrowser
from cosmos_gradio_nb._page.generate import GeneratePanel
from cosmos_gradio_nb._page.history_panel import HistoryPanel
from cosmos_gradio_nb._page.live import snapshot
from cosmos_gradio_nb._page.statusbar import StatusBar
from cosmos_gradio_nb._page.uploads_panel import UploadsPanel


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NotebookApp]:
    root = tmp_path_factory.mktemp("handlers")
    with NotebookApp(
        factory="cg_ui_models:create_steps",
        name=f"handlers-{root.name}",
        output_dir=str(root / "outputs"),
        uploads_dir=str(root / "uploads"),
        log_file=str(root / "outputs" / "app.log"),
    ) as a:
        a.wait_ready(timeout=60)
        yield a


def _arun(coro: Any) -> Any:
    """``asyncio.run`` in a thread of its own, as Gradio runs handlers on its server's loop.

    Not in the test's thread: once the session's Playwright browser is up, its loop
    runs in the main thread, and ``asyncio.run`` refuses to start a second one there.
    """
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _generate(infer_func: Any) -> GeneratePanel:
    return GeneratePanel(Backend(infer_func), "{}")


def _run(
    panel: GeneratePanel, params: dict[str, Any], session: str = "s1"
) -> list[tuple[Any, ...]]:
    """Drive Generate as Gradio does: iterate the async generator to its end."""

    async def drive() -> list[tuple[Any, ...]]:
        out = []
        async for update in panel.run_request(
            json.dumps(params), SimpleNamespace(session_hash=session)
        ):  # type: ignore[arg-type]
            out.append(update)
        return out

    return _arun(drive())


def _panel(update: tuple[Any, ...]) -> str:
    return str(update[0])


def test_a_wrapper_is_called_and_its_future_followed_with_progress(app: NotebookApp) -> None:
    calls: list[dict[str, Any]] = []

    def wrapped(params: dict[str, Any]) -> Any:  # edits the request, returns a future
        calls.append(params)
        return app.infer({**params, "tag": "wrapped"})

    updates = _run(_generate(wrapped), {"steps": 4, "delay": 0.15})
    assert calls == [{"steps": 4, "delay": 0.15}]
    panels = [_panel(u) for u in updates]
    assert any('data-state="running"' in p and "%" in p for p in panels), panels
    final = updates[-1]
    assert 'data-state="succeeded"' in _panel(final)
    assert final[4]["params"]["tag"] == "wrapped" and final[4]["echo"] == "wrapped"


def test_a_lambda_around_the_blocking_infer_keeps_progress_and_cancel(app: NotebookApp) -> None:
    h = _generate(lambda p: app.infer(p).result())
    session = SimpleNamespace(session_hash="cancel-me")

    async def scenario() -> tuple[list[str], str]:
        panels: list[str] = []
        gen = h.run_request(json.dumps({"steps": 60, "delay": 0.1}), session)  # type: ignore[arg-type]
        answer = ""
        async for update in gen:
            panels.append(_panel(update))
            if "%" in panels[-1] and not answer:
                answer = await h.cancel(session)  # type: ignore[arg-type]
        return panels, answer

    panels, answer = _arun(scenario())
    assert answer.startswith("Stopping"), answer
    assert 'data-state="cancelled"' in panels[-1] and "stopped while running" in panels[-1]
    rid = app.history[-1].request_id
    assert f"request {rid}" in panels[-1]
    assert app.history[-1].cancelled()


def test_an_overridden_infer_is_not_bypassed(tmp_path: Path) -> None:
    class TaggingApp(GradioApp):
        def infer(self, params: dict[str, Any], *, timeout: float | None = None) -> Any:
            return super().infer({**params, "tag": "overridden"}, timeout=timeout)

    with TaggingApp(
        factory="cg_ui_models:create_steps",
        name="tagging",
        output_dir=str(tmp_path / "o"),
        log_file=str(tmp_path / "o" / "log"),
    ) as tagging:
        updates = _run(_generate(tagging.infer), {"steps": 1})
        assert 'data-state="succeeded"' in _panel(updates[-1])
        assert updates[-1][4]["echo"] == "overridden"
        assert "request " in _panel(updates[-1])  # the app's future was followed


def test_a_plain_function_result_is_shown_and_its_error_titled(tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\0\0\0\x18ftypmp42")

    final = _run(_generate(lambda p: {"videos": [str(video)], "n": p["n"]}), {"n": 3})[-1]
    assert 'data-state="succeeded"' in _panel(final) and final[1] == str(video.resolve())
    assert final[4]["n"] == 3

    def refuse(p: dict[str, Any]) -> Any:
        from cosmos_gradio_nb import ValidationError

        raise ValidationError("seed: must be positive (got -1)", key="seed")

    final = _run(_generate(refuse), {"seed": -1})[-1]
    assert 'data-state="refused"' in _panel(final) and "Invalid parameters" in _panel(final)
    assert "Invalid parameters: invalid" not in _panel(final)


def test_cancel_with_nothing_running_answers_in_the_page(app: NotebookApp) -> None:
    answer = _arun(_generate(app.infer).cancel(SimpleNamespace(session_hash="idle")))  # type: ignore[arg-type]
    assert answer.startswith("Nothing to cancel")


_STREAM_KEYS = [
    "state",
    "request_id",
    "queue_position",
    "progress",
    "message",
    "preview",
    "elapsed",
]


def _api(infer_func: Any, uploads_dir: Path | None = None) -> ApiEndpoints:
    backend = Backend(infer_func)
    if uploads_dir is not None:
        backend.uploads_dir = uploads_dir
    return ApiEndpoints(backend, '{"steps": 1}', UploadsPanel(backend, upload_limit_mb=1.0))


def _stream(api: ApiEndpoints, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    async def drive() -> list[tuple[Any, ...]]:
        return [out async for out in api.api_generate_stream(json.dumps(params))]

    return _arun(drive())


def test_the_api_stream_follows_as_the_page_does(app: NotebookApp) -> None:
    outs = _stream(_api(app.infer), {"steps": 4, "delay": 0.15, "tag": "streamed"})
    *live, (status, files) = outs
    assert live and all(list(info) == _STREAM_KEYS and f == [] for info, f in live), live
    assert any(i["state"] == "running" and (i["progress"] or 0) > 0 for i, _ in live), live
    rid = status["id"]
    # None only before the app's future is registered (the first 0.1 s, on a slow machine).
    assert {i["request_id"] for i, _ in live} <= {rid, None}, live
    assert any(i["request_id"] == rid for i, _ in live), live
    unchanged = [
        (a, b)
        for (a, _), (b, _) in itertools.pairwise(live)
        if {**a, "elapsed": 0} == {**b, "elapsed": 0}
    ]
    assert not unchanged, "a yield that only the clock changed"
    assert status["state"] == "succeeded" and [Path(f).name for f in files] == ["echo.json"]

    # A plain function: no future to read, so the state alone (and the clock), once.
    def plain(p: dict[str, Any]) -> dict[str, Any]:
        time.sleep(0.6)
        return {"n": p["n"]}

    outs = _stream(_api(plain), {"n": 2})
    assert [list(i) for i, _ in outs[:-1]] == [["state", "request_id", "elapsed"]], outs
    assert outs[0][0]["state"] == "running" and outs[0][0]["request_id"] is None
    assert outs[-1] == ({"n": 2}, [])


def test_the_api_titles_errors_and_refuses_bad_text(app: NotebookApp) -> None:
    import gradio as gr

    def refuse(p: dict[str, Any]) -> Any:
        from cosmos_gradio_nb import ValidationError

        raise ValidationError("seed: must be positive (got -1)", key="seed")

    with pytest.raises(gr.Error) as refused:
        _stream(_api(refuse), {"seed": -1})
    assert refused.value.message.startswith("Invalid parameters: seed"), refused.value.message
    with pytest.raises(gr.Error) as not_json:
        _arun(_api(app.infer).api_generate("{not json"))
    assert not_json.value.message.startswith("Not a request: "), not_json.value.message
    status, files = _arun(_api(app.infer).api_generate('{"steps": 1}'))
    assert status["state"] == "succeeded" and len(files) == 1
    assert _api(app.infer).api_request_status(status["id"])["state"] == "succeeded"


def test_a_snapshot_renders_the_panel_and_the_stream_alike() -> None:
    waiting = SimpleNamespace(
        request_id="abc123",
        state="queued",
        queue_position=2,
        progress=None,
        progress_message="",
        done=lambda: False,
    )
    snap = snapshot(waiting, elapsed=1.23456)  # type: ignore[arg-type]
    assert snap.stream_info() == {
        "state": "queued",
        "request_id": "abc123",
        "queue_position": 2,
        "progress": None,
        "message": "",
        "preview": None,
        "elapsed": 1.235,
    }
    html = snap.panel_html()
    assert 'data-state="queued"' in html and "request abc123" in html and "1.2 s" in html
    # The clock alone is no change.
    assert snap == snapshot(waiting, elapsed=9.0)  # type: ignore[arg-type]
    nothing = snapshot(None, elapsed=0.5)
    assert nothing.stream_info() == {"state": "running", "request_id": None, "elapsed": 0.5}
    assert "running (no progress reported)" in nothing.panel_html()


def test_uploads_and_status_bar_without_a_page(app: NotebookApp, tmp_path: Path) -> None:
    api = _api(app.infer, uploads_dir=tmp_path / "uploads")
    uploads = api.uploads
    src = tmp_path / "a clip.mp4"
    src.write_bytes(b"\0\0\0\x18ftypmp42")
    update, last, message = uploads.on_upload([str(src)])
    assert Path(last).parent.parent == tmp_path / "uploads" and "Stored as" in message
    assert update["value"] == last and update["choices"][0][1] == last
    assert src.exists(), "a file outside Gradio's cache is never deleted"
    text, note = uploads.on_insert("{}", last)
    assert json.loads(text) == {"video": last} and last in note
    assert [f["server_path"] for f in api.api_upload_file_list()] == [last]
    _skip, _skip2, refused = uploads.on_upload([str(tmp_path / "missing.mp4")])
    assert "Upload refused" in refused
    api.backend.log_file = tmp_path / "server.log"
    api.backend.log_file.write_text("first line\n")
    bar = StatusBar(api.backend)
    log, workers, sig = bar.on_load()
    assert "first line" in log and sig is None and "group 0" in workers
    log, workers, sig = bar.refresh(None)
    assert "first line" in log and sig is not None
    assert bar.refresh(sig)[0] == {"__type__": "update"}  # unchanged file: skipped
    with api.backend.log_file.open("a") as f:
        f.write("second line\n")
    assert "second line" in bar.refresh(sig)[0]


def test_history_panel_and_file_browser_without_a_page(app: NotebookApp) -> None:
    res = app.infer({"steps": 1, "tag": "listed"}).result(timeout=30)
    backend = Backend(app.infer)
    panel = HistoryPanel(backend)
    table, label, offset, ids, _sig = panel.render(0, "")
    assert ids[0] == res.request_id and offset == 0 and "newest first" in label
    assert table["value"][0][5] == res.request_id
    shown = panel.show(res.request_id)
    assert json.loads(shown[4])["tag"] == "listed"
    text, _tabs, note = panel.load_into_editor(res.request_id)
    assert json.loads(text) == {"steps": 1, "tag": "listed"} and res.request_id in note
    fb = FileBrowser(backend)
    names = fb.folder_names("outputs")
    assert names[0] == res.output_dir.name
    files = [p.name for p in fb.file_list("outputs", names[0])]
    assert files == ["echo.json", "status.json"]
    assert fb.resolve("outputs", names[0], "../../../etc/passwd") is None
    assert fb.resolve("outputs", "..", "etc/passwd") is None
