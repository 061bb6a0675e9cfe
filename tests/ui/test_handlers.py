"""The page's handlers without a page: infer_func is called, whatever it is, and followed.

A real NotebookApp (one worker of the ``Steps`` model) behind the panels' handler
objects, built the way ``create_gradio_UI`` builds them, driven as Gradio drives them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cosmos_gradio_nb import GradioApp, NotebookApp
from cosmos_gradio_nb._page.backend import Backend
from cosmos_gradio_nb._page.files import FileBrowser
from cosmos_gradio_nb._page.generate import GeneratePanel
from cosmos_gradio_nb._page.history_panel import HistoryPanel


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


def test_history_panel_and_file_browser_without_a_page(app: NotebookApp) -> None:
    res = app.infer({"steps": 1, "tag": "listed"}).result(timeout=30)
    backend = Backend(app.infer)
    panel = HistoryPanel(backend)
    table, label, offset, ids, _sig = panel.render(0, "")
    assert ids[0] == res.request_id and offset == 0 and "newest first" in label
    assert table["value"][0][4] == res.request_id
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
