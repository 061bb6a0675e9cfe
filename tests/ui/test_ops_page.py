"""The Queue, History (delete, undo, filter), Compare and System tabs in real Chromium,
and the operations endpoints through ``gradio_client``.

Same set-up as ``test_page``: a NotebookApp with two sample-model workers behind the
real page on a real Gradio server (``ui_server``, one per module).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ui_helpers import TINY, UIServer, open_page, shot, wait_for

pytestmark = pytest.mark.browser

SLOW = {**TINY, "num_frames": 300, "frame_delay": 0.1}  # 30 s unless stopped


def _drain(server: UIServer) -> None:
    for fut in server.app.history:
        if not fut.done():
            fut.terminate()
    wait_for(lambda: all(f.done() for f in server.app.history), 60, "every request to end")


def _queue_ids(page: Any) -> list[str]:
    return list(
        page.eval_on_selector_all(
            "#cg-queue tr[data-request]", "rows => rows.map(r => r.dataset.request)"
        )
    )


def _open_tab(page: Any, name: str) -> None:
    page.click(f"#cg-tab-{name}-button")


def test_queue_tab_shows_every_request_in_order_and_stops_the_right_one(
    page: Any, ui_server: UIServer, artifacts_dir: Path
) -> None:
    """Needs the engine's ``app.requests()``: the queue of every source, in order."""
    from gradio_client import Client

    app = ui_server.app
    running = [app.submit({**SLOW, "seed": s}) for s in (1, 2)]  # both groups busy
    wait_for(lambda: all(f.state == "running" for f in running), 60, "both groups to run")
    queued = [app.submit({**TINY, "seed": 10})]
    client = Client(ui_server.url, verbose=False)
    jobs = []
    for seed in (11, 12):  # from the API, in this order
        before = len(app.history)
        jobs.append(client.submit(json.dumps({**TINY, "seed": seed}), api_name="/generate"))
        wait_for(lambda b=before: len(app.history) > b, 30, "the API's request to queue")
        queued.append(app.history[-1])
    queued.append(app.submit({**TINY, "seed": 13}))
    try:
        open_page(page, ui_server)
        _open_tab(page, "queue")
        expected = [f.request_id for f in running] + [f.request_id for f in queued]
        wait_for(lambda: set(_queue_ids(page)[:2]) == set(expected[:2]), 20, "the running rows")
        assert _queue_ids(page)[2:] == expected[2:]  # the queue, in order
        sources = page.eval_on_selector_all(
            "#cg-queue tr[data-request] td:nth-child(3)", "cells => cells.map(c => c.innerText)"
        )
        assert sources[2:] == ["python", "api", "api", "python"]
        text = page.inner_text("#cg-queue")
        assert "2 running · 4 queued" in text and "next in line" in text and "3 ahead" in text
        shot(page, artifacts_dir, "30-queue")
        # Cancel the first API request from its row: only it goes.
        target = queued[1]
        page.click(f"#cg-queue tr[data-request='{target.request_id}'] button")
        wait_for(target.cancelled, 20, "the row's request to be cancelled")
        wait_for(lambda: target.request_id not in _queue_ids(page), 20, "its row to go")
        assert "cancelled request" in page.inner_text("#cg-queue-note").lower()
        assert not any(f.done() for f in (*running, queued[0], queued[2], queued[3]))
        # Reloaded, the page shows the running request again, and Stop stops it.
        page.reload()
        page.wait_for_selector("#cg-generate", timeout=30_000)
        _open_tab(page, "queue")
        stop = running[0]
        page.wait_for_selector(f"#cg-queue tr[data-request='{stop.request_id}']", timeout=20_000)
        page.click(f"#cg-queue tr[data-request='{stop.request_id}'] button")
        wait_for(stop.done, 60, "the running request to stop")
        assert stop.cancelled() and not running[1].done()
        wait_for(lambda: queued[0].state != "queued", 30, "the next request to start")
    finally:
        _drain(ui_server)


def test_system_tab_shows_each_worker_with_its_machine(
    page: Any, ui_server: UIServer, artifacts_dir: Path
) -> None:
    open_page(page, ui_server)
    _open_tab(page, "system")
    pids = [str(w.pid) for w in ui_server.app.workers()]
    page.wait_for_selector("#cg-system .cg-stats", timeout=20_000)
    wait_for(lambda: all(p in page.inner_text("#cg-system") for p in pids), 20, "both workers")
    text = page.inner_text("#cg-system")
    assert "group 0 · rank 0" in text and "group 1 · rank 0" in text
    first = page.inner_text("#cg-system .cg-stats > div")
    wait_for(
        lambda: page.inner_text("#cg-system .cg-stats > div") != first, 10, "a refresh each second"
    )
    if "CPU only" in text:
        assert "showing CPU and memory use instead" in text and "memory" in text
    shot(page, artifacts_dir, "31-system")
    _open_tab(page, "generate")  # its timer stops with the tab: no more samples asked for
    sampler = ui_server.demo.cosmos_ops.system.sampler
    taken = sampler.samples_taken
    page.wait_for_timeout(2500)  # a window for ticks that must not come
    assert sampler.samples_taken <= taken + 1  # at most one tick already in flight


def _tick(page: Any, request_id: str, selected: int) -> None:
    """Tick a run's box and wait for the page to count ``selected`` runs."""
    row = page.locator("#cg-hist-table .virtual-row", has_text=request_id)
    row.locator("input[type=checkbox]").click()
    words = f"{selected} run{'s' * (selected != 1)} selected"
    wait_for(lambda: words in page.inner_text("#cg-hist-pick-note"), 10, words)


def _row_shown(page: Any, request_id: str) -> None:
    page.wait_for_selector(f"#cg-hist-table >> text={request_id} >> visible=true", timeout=15_000)


def test_history_filters_deletes_with_a_confirmation_and_undoes(
    page: Any, ui_server: UIServer, artifacts_dir: Path
) -> None:
    app = ui_server.app
    runs = [app.submit({**TINY, "seed": 70 + i}).result(timeout=60) for i in range(2)]
    failed = app.submit({**TINY, "fault": "raise"})
    assert failed.exception(timeout=60) is not None
    open_page(page, ui_server)
    _open_tab(page, "history")
    for res in runs:
        _row_shown(page, res.request_id)
    # the state filter beside the search
    page.click("#cg-hist-state")
    page.click("li[role=option]:has-text('Failed')")
    wait_for(lambda: runs[0].request_id not in page.inner_text("#cg-hist-table"), 15, "the filter")
    assert failed.request_id in page.inner_text("#cg-hist-table")
    assert page.inner_text("#cg-hist-label").startswith("Failed 1-")
    page.click("#cg-hist-state")
    page.click("li[role=option]:has-text('All states')")
    _row_shown(page, runs[0].request_id)
    for n, res in enumerate(runs, 1):
        _tick(page, res.request_id, n)
    page.click("#cg-hist-delete")
    page.wait_for_selector("#cg-hist-confirm", state="visible", timeout=10_000)
    assert "Delete these 2 runs" in page.inner_text("#cg-hist-confirm-text")
    shot(page, artifacts_dir, "32-history-delete-confirm")
    assert all(r.output_dir.is_dir() for r in runs)  # nothing happens before the answer
    page.click("#cg-hist-confirm-yes")
    wait_for(lambda: "Moved 2 runs" in page.inner_text("#cg-hist-ops-note"), 15, "the delete")
    wait_for(lambda: runs[0].request_id not in page.inner_text("#cg-hist-table"), 15, "rows to go")
    trash = ui_server.output_dir / ".trash"
    assert not any(r.output_dir.exists() for r in runs)
    assert sorted(p.name for p in trash.glob("*/*") if p.is_dir()) == sorted(
        r.output_dir.name for r in runs
    )
    from cosmos_gradio_nb import load_results

    assert {r.request_id for r in runs}.isdisjoint(
        r.request_id for r in load_results(ui_server.output_dir)
    )
    shot(page, artifacts_dir, "33-history-deleted")
    page.click("#cg-hist-undo")
    wait_for(lambda: "Restored 2 runs" in page.inner_text("#cg-hist-ops-note"), 15, "the undo")
    _row_shown(page, runs[0].request_id)
    assert all(r.output_dir.is_dir() for r in runs) and not list(trash.iterdir())


def test_compare_two_runs_side_by_side_with_videos_in_sync(
    page: Any, ui_server: UIServer, artifacts_dir: Path
) -> None:
    app = ui_server.app
    a = app.submit({**TINY, "seed": 81, "num_frames": 24}).result(timeout=60)
    b = app.submit({**TINY, "seed": 82, "num_frames": 24, "prompt": "other"}).result(timeout=60)
    open_page(page, ui_server)
    _open_tab(page, "history")
    for n, res in enumerate((a, b), 1):
        _row_shown(page, res.request_id)
        _tick(page, res.request_id, n)
    assert "Compare or Delete" in page.inner_text("#cg-hist-pick-note")
    page.click("#cg-hist-compare")
    wait_for(
        lambda: page.get_attribute("#cg-tab-compare-button", "aria-selected") == "true",
        10,
        "the Compare tab",
    )
    page.wait_for_function(
        "() => { const v = [...document.querySelectorAll('#cg-compare video.cg-cmp-video')];"
        " return v.length === 2 && v.every(x => x.readyState >= 2) }",
        timeout=20_000,
    )
    params = page.inner_text("#cg-compare .cg-cmp-params")
    assert "seed" in params and "prompt" in params and "width" not in params
    assert "81" in params and "82" in params
    videos = "#cg-compare video.cg-cmp-video"
    page.eval_on_selector(videos, "v => v.pause()")
    wait_for(
        lambda: page.eval_on_selector_all(videos, "vs => vs.every(v => v.paused)"),
        10,
        "pausing one to pause both",
    )
    page.eval_on_selector(videos, "v => { v.currentTime = 0.5; }")
    wait_for(
        lambda: page.eval_on_selector_all(
            videos, "vs => vs.every(v => Math.abs(v.currentTime - 0.5) < 0.06)"
        ),
        10,
        "seeking one to seek both",
    )
    page.click("#cg-compare .cg-cmp-play")
    wait_for(
        lambda: page.eval_on_selector_all(videos, "vs => vs.every(v => !v.paused)"),
        10,
        "Play all to play both",
    )
    shot(page, artifacts_dir, "34-compare")


def test_the_operations_endpoints_through_gradio_client(ui_server: UIServer) -> None:
    from gradio_client import Client

    client = Client(ui_server.url, verbose=False)
    app = ui_server.app
    stats = client.predict(api_name="/system_stats")
    assert {r["pid"] for r in stats["ranks"]} == {w.pid for w in app.workers()}
    assert stats["nodes"][0]["memory_total"] > 0 and isinstance(stats["gpus"], bool)
    unknown = client.predict("0123456789ab", api_name="/stop_request")
    assert unknown["stopped"] is False and "not queued or running" in unknown["message"]
    slow = [app.submit({**SLOW, "seed": s}) for s in (3, 4)]
    waiting = app.submit({**TINY, "seed": 5})
    try:
        wait_for(lambda: all(f.state == "running" for f in slow), 60, "both groups to run")
        listed = client.predict(api_name="/queue")  # needs the engine's app.requests()
        assert [e["id"] for e in listed][2:] == [waiting.request_id]
        assert listed[2]["state"] == "queued" and listed[2]["position"] == 0
        assert listed[0]["state"] == "running" and listed[0]["source"] == "python"
        answer = client.predict(slow[0].request_id, api_name="/stop_request")
        assert answer["stopped"] and answer["state"] == "running"
        wait_for(slow[0].done, 60, "the stopped request to end")
        assert slow[0].cancelled() and not slow[1].done()
        refused = client.predict(slow[1].request_id, api_name="/delete_runs")
        assert refused["deleted"] == [] and slow[1].request_id in refused["refused"]
        done = waiting.result(timeout=60)  # it ran where the stopped one was
    finally:
        _drain(ui_server)
    gone = client.predict(f"{done.request_id}, 0123456789ab", api_name="/delete_runs")
    assert gone["deleted"] == [done.request_id] and gone["not_found"] == ["0123456789ab"]
    assert not done.output_dir.exists()
    back = client.predict(gone["trash_batch"], api_name="/restore_runs")
    assert back["restored"] == [done.request_id] and done.output_dir.is_dir()
    assert client.predict("20260101-000000_0123abcd", api_name="/restore_runs")["restored"] == []
