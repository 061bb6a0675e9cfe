"""The Queue, System, History-delete and Compare handlers without a page, on a real app.

A real NotebookApp (one worker of the ``Steps`` model) behind the handler objects,
driven as Gradio drives them. ``app.requests()`` (the engine's listing of running
and queued requests, with each one's source) is what the Queue panel shows.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from ui_helpers import wait_for

from cosmos_gradio_nb import NotebookApp
from cosmos_gradio_nb._page.backend import Backend
from cosmos_gradio_nb._page.compare_panel import ComparePanel
from cosmos_gradio_nb._page.history_panel import HistoryPanel
from cosmos_gradio_nb._page.ops_api import OpsEndpoints
from cosmos_gradio_nb._page.queue_panel import QueuePanel
from cosmos_gradio_nb._page.system_panel import SystemPanel

SLOW = {"steps": 400, "delay": 0.05}  # 20 s unless stopped


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NotebookApp]:
    root = tmp_path_factory.mktemp("ops")
    with NotebookApp(
        factory="cg_ui_models:create_steps",
        name=f"ops-{root.name}",
        output_dir=str(root / "outputs"),
        uploads_dir=str(root / "uploads"),
        log_file=str(root / "outputs" / "app.log"),
    ) as a:
        a.wait_ready(timeout=60)
        yield a


def _arun(coro: Any) -> Any:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _drain(app: NotebookApp) -> None:
    for fut in app.history:
        if not fut.done():
            fut.terminate()
    wait_for(lambda: all(f.done() for f in app.history), 30, "every request to end")


def test_the_queue_lists_every_request_in_order_with_its_source(app: NotebookApp) -> None:
    """Needs the engine's ``app.requests()`` (running, then queued, each with its source)."""
    backend = Backend(app.infer)
    queue = QueuePanel(backend, defaults={"steps": 1})
    running = app.submit({**SLOW, "tag": "first"})
    wait_for(lambda: running.state == "running", 30, "the first request to run")
    mine = app.submit({"steps": 1, "tag": "python"})
    call = backend.start({"steps": 1, "tag": "from the api"}, source="api")
    wait_for(lambda: call.live is not None, 10, "the api's request")
    page_call = backend.start({"steps": 1, "tag": "from the page"})
    wait_for(lambda: page_call.live is not None, 10, "the page's request")
    try:
        rows = queue.rows()
        ids = [r.request_id for r in rows]
        assert ids == [
            running.request_id,
            mine.request_id,
            call.live.request_id,
            page_call.live.request_id,
        ]
        assert [r.source for r in rows] == ["python", "python", "api", "page"]
        assert [r.position for r in rows] == [None, 0, 1, 2] and rows[0].running
        assert 'tag="from the api"' in rows[2].summary and "steps" not in rows[2].summary
        html, sig = queue.render()
        assert html.index(running.request_id) < html.index(mine.request_id)
        assert queue.refresh(sig)[0] == {"__type__": "update"}  # nothing changed: nothing sent
        listed = OpsEndpoints(queue, SystemPanel(backend), HistoryPanel(backend).ops).api_queue()
        assert [e["id"] for e in listed] == ids and listed[2]["source"] == "api"
        json.dumps(listed)
    finally:
        _drain(app)


def test_stop_from_the_queue_ends_the_right_request(app: NotebookApp) -> None:
    queue = QueuePanel(Backend(app.infer))
    running = app.submit({**SLOW, "tag": "runs"})
    waiting = app.submit({"steps": 1, "tag": "waits"})
    other = app.submit({"steps": 1, "tag": "stays"})
    wait_for(lambda: running.state == "running", 30, "the first request to run")
    try:
        answer = _arun(queue.stop(waiting.request_id))
        assert (
            answer["stopped"] and answer["state"] == "queued" and "cancelled" in answer["message"]
        )
        assert waiting.cancelled() and not other.done() and running.state == "running"
        answer = _arun(queue.stop(running.request_id))
        assert answer["stopped"] and answer["state"] == "running"
        wait_for(running.done, 30, "the running request to stop")
        assert running.cancelled()
        assert other.result(timeout=30).status["echo"] == "stays"  # the next one ran
        gone = _arun(queue.stop(running.request_id))
        assert not gone["stopped"] and "not queued or running" in gone["message"]
        unknown = _arun(queue.stop("0123456789ab"))
        assert not unknown["stopped"] and unknown["state"] == "unknown"
        assert not _arun(queue.stop("../etc"))["stopped"]
    finally:
        _drain(app)


def test_the_system_panel_shows_each_worker_rank_with_its_process(app: NotebookApp) -> None:
    system = SystemPanel(Backend(app.infer))
    data = system.as_json()
    pids = {w.pid for w in app.workers()}
    assert {r["pid"] for r in data["ranks"]} == pids and data["ranks"][0]["group"] == 0
    node = data["nodes"][0]
    assert node["memory_total"] > 0 and node["cpu_count"] >= 1
    assert node["cpu_percent"] is not None  # a rate from the very first answer
    rank = data["ranks"][0]
    if not data["gpus"]:  # CPU only: process CPU and memory instead
        assert rank["rss"] > 0 and rank["cpu_percent"] is not None and node["gpu_note"]
    assert system.sampler is SystemPanel(Backend(app.infer)).sampler  # one per app
    html = system.render()
    assert str(rank["pid"]) in html


def test_delete_refuses_a_running_run_then_undo_puts_them_back(app: NotebookApp) -> None:
    backend = Backend(app.infer)
    panel = HistoryPanel(backend, page_size=50)
    done = [app.submit({"steps": 1, "tag": f"d{i}"}).result(timeout=30) for i in range(3)]
    running = app.submit({**SLOW, "tag": "busy"})
    wait_for(lambda: running.state == "running", 30, "a running request")
    try:
        ids = [r.request_id for r in done]
        checked, note = panel.on_check(
            [[True, *[""] * 6], [True, *[""] * 6]], ids[:2], ["elsewhere"]
        )  # the header's box: every row of the page
        assert checked == ["elsewhere", ids[0], ids[1]] and "3 runs selected" in note
        assert panel.on_check([[False, *[""] * 6]] * 2, ids[:2], checked)[0] == ["elsewhere"]
        mixed = panel.on_check([[True, *[""] * 6], [False, *[""] * 6]], ids[:2], checked)
        assert mixed == ({"__type__": "update"}, {"__type__": "update"})  # rows' own clicks decide
        ticked = panel.on_tick(ids, ["elsewhere"], SimpleNamespace(index=[2, 0], value=False))
        assert ticked == (["elsewhere", ids[2]], "2 runs selected: Compare or Delete.")
        untick = panel.on_tick(ids, ticked[0], SimpleNamespace(index=[2, 0], value=True))
        assert untick[0] == ["elsewhere"]
        assert panel.on_tick(ids, [], SimpleNamespace(index=[2, 3], value="x"))[0] == {
            "__type__": "update"
        }  # a click elsewhere in the row is not a tick
        row, question, pending = panel.ask_delete([ids[0], ids[1], running.request_id], "")
        assert row["visible"] and "these 3 runs" in question and ".trash" in question
        hidden, said, batch, undo, cleared = panel.delete(pending)
        assert not hidden["visible"] and undo["visible"] and cleared == [] and batch
        assert said.startswith("Moved 2 runs to the trash")
        assert f"{running.request_id} kept: it is still queued or running" in said
        assert not done[0].output_dir.exists() and done[2].output_dir.exists()
        listed = panel.render(0, "")[3]
        assert ids[0] not in listed and ids[2] in listed
        note, batch_after, undo = panel.undo(batch)
        assert note == "Restored 2 runs." and batch_after == "" and not undo["visible"]
        assert done[0].output_dir.is_dir() and ids[0] in panel.render(0, "")[3]
        # one run, the one shown below the list, when nothing is ticked
        assert panel.ask_delete([], ids[2])[2] == [ids[2]]
        assert panel.ask_delete([], "")[0]["visible"] is False
        assert panel.keep()[1] == "Nothing was deleted."
    finally:
        _drain(app)


def test_state_filter_and_compare_of_two_runs(app: NotebookApp) -> None:
    backend = Backend(app.infer)
    panel = HistoryPanel(backend, page_size=50)
    a = app.submit({"steps": 1, "tag": "left"}).result(timeout=30)
    b = app.submit({"steps": 1, "tag": "right"}).result(timeout=30)
    stopped = app.submit(SLOW)
    wait_for(lambda: stopped.state == "running", 30, "a running request")
    stopped.terminate()
    wait_for(stopped.done, 30, "the stopped request to end")
    wait_for(
        lambda: stopped.request_id in panel.render(0, "", "cancelled")[3], 10, "its status.json"
    )
    table, label, _o, ids, _s = panel.render(0, "", "cancelled", [stopped.request_id])
    assert ids[0] == stopped.request_id and label.startswith("Cancelled 1-")
    assert table["value"][0][0] is True  # its box stays ticked
    assert a.request_id not in ids and a.request_id in panel.render(0, "", "succeeded")[3]
    compare = ComparePanel(backend)
    html, note, hist_note, tabs = compare.show([a.request_id, b.request_id])
    assert note == "Comparing 2 runs." and tabs.selected == "compare" and hist_note == ""
    assert "<code>tag</code>" in html and "&quot;left&quot;" in html and "&quot;right&quot;" in html
    assert compare.show([a.request_id])[2] == "Select 2 to 4 runs to compare (1 selected)."
    assert "No run" in compare.show([a.request_id, "ffffffffffff"])[2]


def test_a_running_requests_latest_preview_shows_in_its_row(app: NotebookApp) -> None:
    """Needs the engine's previews (``report_progress(..., preview=...)``, ``requests()``)."""
    queue = QueuePanel(Backend(app.infer))
    running = app.submit({**SLOW, "preview": True})
    try:
        row = wait_for(
            lambda: next((r for r in queue.rows() if r.preview), None), 30, "a preview in its row"
        )
        assert row.request_id == running.request_id and row.preview.endswith("preview.jpg")
        html, sig = queue.render()
        assert f"gradio_api/file={row.preview}?v=" in html and 'class="cg-q-preview"' in html
        first = sig
        wait_for(
            lambda: queue.refresh(first)[1] not in (first, {"__type__": "update"}), 10, "a change"
        )
    finally:
        _drain(app)
