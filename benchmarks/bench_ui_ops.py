"""The operations tabs' figures for ``bench_ui.py``: the Queue tab, the machine figures, delete.

Imported by ``bench_ui.py`` (run that); kept apart so each file stays readable.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]

__all__ = ["bench_delete", "bench_queue_panel", "bench_state_filter", "bench_stats"]


def bench_queue_panel(app: Any, demo: Any, url: str, queued: int) -> dict[str, float]:
    """Both groups held, ``queued`` more waiting: the Queue tab's cost in process and Chromium."""
    from playwright.sync_api import sync_playwright

    holders = [app.submit({"hang": True}) for _ in range(2)]
    deadline = time.monotonic() + 60
    while not all(h.state == "running" for h in holders):
        if time.monotonic() > deadline:
            raise RuntimeError("the holding requests never started")
        time.sleep(0.01)
    waiting = [app.submit({"i": i}) for i in range(queued)]
    panel = demo.cosmos_ops.queue
    out: dict[str, float] = {}
    try:
        renders, refreshes, listings = [], [], []
        html, sig = panel.render()
        out["queue_html_kb"] = len(html.encode()) / 1024
        for _ in range(20):
            t0 = time.perf_counter()
            panel.render()
            renders.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            panel.refresh(sig)
            refreshes.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            demo.cosmos_ops.api.api_queue()
            listings.append(time.perf_counter() - t0)
        out["queue_render_ms"] = statistics.median(renders) * 1000
        out["queue_refresh_unchanged_ms"] = statistics.median(refreshes) * 1000
        out["queue_api_list_ms"] = statistics.median(listings) * 1000
        rows = queued + 2
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
            )
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(url)
                page.wait_for_selector("#cg-tab-queue-button", timeout=60_000)
                t0 = time.perf_counter()
                page.click("#cg-tab-queue-button")
                page.wait_for_function(
                    "(n) => document.querySelectorAll('#cg-queue tr[data-request]').length === n",
                    arg=rows,
                    timeout=60_000,
                )
                out["queue_tab_open_ms"] = (time.perf_counter() - t0) * 1000
                gone = waiting[queued // 2]
                t0 = time.perf_counter()
                gone.cancel()
                page.wait_for_function(
                    "(id) => !document.querySelector(`#cg-queue tr[data-request='${id}']`)",
                    arg=gone.request_id,
                    timeout=30_000,
                )
                out["queue_change_shown_ms"] = (time.perf_counter() - t0) * 1000
            finally:
                browser.close()
    finally:
        for fut in waiting + holders:
            fut.terminate()
        _settle(waiting)
    return out


def _settle(futures: list[Any], timeout: float = 120.0) -> None:
    """Wait until every cancelled request's status.json says so: the records are written by
    the app's own thread, and 500 of them must not run into the next figures."""
    import json

    deadline = time.monotonic() + timeout
    left = list(futures)
    while left and time.monotonic() < deadline:
        still = []
        for fut in left:
            try:
                state = json.loads((fut.output_dir / "status.json").read_text()).get("state")
            except (OSError, ValueError):
                state = None
            if state not in ("cancelled", "succeeded", "failed"):
                still.append(fut)
        left = still
        if left:
            time.sleep(0.05)


def bench_stats(app: Any) -> dict[str, float]:
    """One fresh sample, the cached answer, the HTML; and the samples 20 pollers cause."""
    import threading

    from cosmos_gradio_nb._app.system import SystemSampler
    from cosmos_gradio_nb._notebook.ops_html import stats_html

    fresh = SystemSampler(app, min_interval=0.0)
    fresh.stats()  # the first call takes a baseline for the rates
    samples, cached, htmls = [], [], []
    shared = SystemSampler(app)
    shared.stats()
    for _ in range(20):
        t0 = time.perf_counter()
        stats = fresh.stats()
        samples.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        shared.stats()
        cached.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        stats_html(stats)
        htmls.append(time.perf_counter() - t0)
    polled = SystemSampler(app)
    polled.stats()
    before = polled.samples_taken
    stop = time.monotonic() + 3.0

    def poll() -> None:
        while time.monotonic() < stop:
            polled.stats()
            time.sleep(0.1)

    threads = [threading.Thread(target=poll) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {
        "stats_sample_ms": statistics.median(samples) * 1000,
        "stats_cached_ms": statistics.median(cached) * 1000,
        "stats_html_ms": statistics.median(htmls) * 1000,
        "stats_samples_for_20_pollers_3s": float(polled.samples_taken - before),
        "stats_gpus": float(stats.has_gpus),
    }


def bench_delete(output_dir: Path, n: int) -> dict[str, float]:
    """Delete ``n`` past runs (History's Delete: to the trash) and undo it, in process."""
    from cosmos_gradio_nb._core.history import list_run_names
    from cosmos_gradio_nb._page.backend import Backend
    from cosmos_gradio_nb._page.run_ops import RunOps

    ops = RunOps(Backend(lambda params: params))
    ops.backend.output_dir = output_dir
    ids = [name.rsplit("_", 1)[-1] for name in list_run_names(output_dir)[:n]]
    t0 = time.perf_counter()
    outcome = ops.delete(ids)
    deleted = time.perf_counter() - t0
    if len(outcome.deleted) != n:
        raise RuntimeError(f"deleted {len(outcome.deleted)} of {n}: {outcome.words()}")
    t0 = time.perf_counter()
    back = ops.restore(outcome.batch)
    restored = time.perf_counter() - t0
    if len(back["restored"]) != n:
        raise RuntimeError(f"restored {len(back['restored'])} of {n}")
    return {"delete_runs": float(n), "delete_ms": deleted * 1000, "undo_ms": restored * 1000}


def bench_state_filter(demo: Any) -> dict[str, float]:
    """The History tab's state filter over every past run: the first time, then again."""
    panel = demo.cosmos_history
    t0 = time.perf_counter()
    first = panel.render(0, "", "succeeded")
    cold = time.perf_counter() - t0
    warm = []
    for _ in range(5):
        t0 = time.perf_counter()
        panel.render(0, "", "succeeded")
        warm.append(time.perf_counter() - t0)
    if not first[3]:
        raise RuntimeError("the filter found no succeeded run")
    return {
        "filter_first_ms": cold * 1000,
        "filter_again_ms": statistics.median(warm) * 1000,
    }
