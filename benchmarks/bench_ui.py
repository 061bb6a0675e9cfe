"""UI benchmarks: what the Gradio path adds per request, and how fast errors show.

Run: ``python benchmarks/bench_ui.py [--quick]``. Prints the figures, then one JSON
line (prefixed ``BENCH_UI``).

1. Per-request overhead of the UI path: ``gradio_client.Client.predict(...,
   api_name="/generate")`` against a no-op model (2 replicas), beside the direct
   ``app.submit(...).result()`` on the same app; p50 and p99 of each and the
   difference. Goal: the UI path adds < 50 ms (p50).
2. Time from clicking Generate with invalid JSON to the error being visible in
   Chromium (median of several clicks). Goal: < 300 ms.
3. With 10,000 past request folders in OUTPUT_DIR (synthetic status.json files, a
   few of them broken, a poster in each): the page's load time in Chromium (to
   Generate visible and the workers line shown), the History tab's first list
   (click to "Runs 1-20 of 10,..."), and a history page change (Older, then
   Newer) in Chromium; plus
   the history handler's own time in process (a render, and a timer refresh that
   finds nothing changed). Pages without a history panel (the code before it)
   report the load time only.
4. The Queue tab with 500 queued requests (both groups held by requests that wait):
   in process, a full render of the table, a timer refresh that finds nothing
   changed, and ``/queue``; in Chromium, opening the tab until all 502 rows are
   shown, and a change (one request cancelled from Python) until its row is gone.
5. The machine figures: one sample of this machine (psutil, and NVML where there
   is a GPU), the cached answer every other caller gets within the second, the
   System tab's HTML; and how many samples 20 callers asking 10 times a second for
   3 s cause (one sampler for every page: about 3).
6. With the 10,000 past runs: History's state filter (the first time reads every
   run's status.json, later ones only those that have not finished), and deleting
   100 past runs (to the trash) and undoing it, in process.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))  # noop_model, importable by the workers too
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from bench_ui_ops import (  # noqa: E402
    bench_delete,
    bench_queue_panel,
    bench_state_filter,
    bench_stats,
)

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_overhead(app: Any, url: str, n: int) -> dict[str, float]:
    """p50/p99 of direct futures and of gradio_client predict, interleaved to share noise."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    direct: list[float] = []
    ui: list[float] = []
    for i in range(5):  # warm both paths
        app.submit({"i": i}).result()
        client.predict(json.dumps({"i": i}), api_name="/generate")
    for i in range(n):
        t0 = time.perf_counter()
        res = app.submit({"i": i}).result()
        direct.append(time.perf_counter() - t0)
        assert res.status["i"] == i
        t0 = time.perf_counter()
        status, _files = client.predict(json.dumps({"i": i}), api_name="/generate")
        ui.append(time.perf_counter() - t0)
        assert status["i"] == i and status["state"] == "succeeded", status
    out = {
        "direct_p50_ms": percentile(direct, 0.5) * 1000,
        "direct_p99_ms": percentile(direct, 0.99) * 1000,
        "ui_p50_ms": percentile(ui, 0.5) * 1000,
        "ui_p99_ms": percentile(ui, 0.99) * 1000,
    }
    out["http_p50_ms"], out["http_p99_ms"] = _raw_http(app, url, n)
    out["added_p50_ms"] = out["ui_p50_ms"] - out["direct_p50_ms"]
    out["added_http_p50_ms"] = out["http_p50_ms"] - out["direct_p50_ms"]
    out["added_p99_ms"] = out["ui_p99_ms"] - out["direct_p99_ms"]
    return out


def gradio_client_floor(n: int) -> float:
    """p50 of gradio_client predict on a bare async echo: Gradio's own floor, no model."""
    import gradio as gr
    from gradio_client import Client

    async def echo(text: str) -> dict[str, Any]:
        return {"text": text}

    with gr.Blocks(analytics_enabled=False) as demo:
        box, out, btn = gr.Textbox(), gr.JSON(), gr.Button()
        btn.click(echo, box, out, api_name="echo", concurrency_limit=None)
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_port=port, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        times = []
        for i in range(n + 5):
            t0 = time.perf_counter()
            client.predict(str(i), api_name="/echo")
            if i >= 5:
                times.append(time.perf_counter() - t0)
    finally:
        demo.close()
    return percentile(times, 0.5) * 1000


def _raw_http(app: Any, url: str, n: int) -> tuple[float, float]:
    """The same endpoint over Gradio's documented HTTP API (POST, then the SSE result).

    gradio_client polls its message queue every 50 ms, a floor of its own; this
    path shows what the server side (Gradio's queue plus this UI) adds.
    """
    import requests

    session = requests.Session()
    base = url.rstrip("/") + "/gradio_api/call/generate"
    times: list[float] = []
    for i in range(n + 5):
        t0 = time.perf_counter()
        event = session.post(base, json={"data": [json.dumps({"i": i})]}, timeout=30).json()
        with session.get(f"{base}/{event['event_id']}", stream=True, timeout=30) as resp:
            kind = ""
            for line in resp.iter_lines(decode_unicode=True):
                if line.startswith("event:"):
                    kind = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and kind in ("complete", "error"):
                    data = json.loads(line[5:])
                    if kind == "error" or data[0]["i"] != i:
                        raise RuntimeError(f"bad answer for {i}: {kind} {data}")
                    break
        if i >= 5:
            times.append(time.perf_counter() - t0)
    return percentile(times, 0.5) * 1000, percentile(times, 0.99) * 1000


def bench_error_latency(url: str, clicks: int) -> dict[str, float]:
    """Click Generate with invalid JSON; time until the error panel is visible."""
    from playwright.sync_api import sync_playwright

    times: list[float] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            page.wait_for_selector("#cg-generate", timeout=30_000)
            for k in range(clicks):
                # A different column each time, so every click changes the panel.
                page.click("#cg-editor .cm-content")
                page.keyboard.press("Control+A")
                page.keyboard.insert_text('{"i": ' + " " * k)
                expected = f"column {7 + k}"
                elapsed = page.evaluate(
                    """(expected) => new Promise((resolve) => {
                        const t0 = performance.now();
                        const done = () => {
                            const e = document.querySelector('#cg-status [data-state=error], #cg-status [data-state=refused]');
                            return e && e.innerText.includes(expected);
                        };
                        const obs = new MutationObserver(() => {
                            if (done()) { obs.disconnect(); resolve(performance.now() - t0); }
                        });
                        obs.observe(document.body, {subtree: true, childList: true, characterData: true});
                        document.querySelector('#cg-generate').click();
                        setTimeout(() => { obs.disconnect(); resolve(-1); }, 10000);
                    })""",
                    expected,
                )
                if elapsed < 0:
                    raise RuntimeError(f"click {k}: the error never showed")
                times.append(elapsed / 1000)
        finally:
            browser.close()
    return {
        "error_visible_median_ms": statistics.median(times) * 1000,
        "error_visible_max_ms": max(times) * 1000,
    }


# A 1x1 PNG: every synthetic run gets a poster, so the list shows thumbnails.
_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc00000030101005cc6e1"
    "ba0000000049454e44ae426082"
)


def make_history(output_dir: Path, n: int, broken: int = 5) -> None:
    """``n`` request folders as the engine leaves them, ``broken`` of them half-written."""
    base = time.time() - n - 60
    for i in range(n):
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(base + i))
        rid = f"{i:012x}"
        folder = output_dir / f"{stamp}_{rid}"
        folder.mkdir(parents=True)
        (folder / "poster.png").write_bytes(_PNG)
        if i >= n - broken:  # the newest few: half-written, so the first page shows them
            (folder / "status.json").write_text('{"id": "' + rid + '", "state": "succ')
            continue
        status = {
            "id": rid,
            "state": "succeeded",
            "params": {"prompt": f"synthetic run {i}", "seed": i, "num_frames": 24},
            "output_dir": str(folder),
            "queued_at": base + i,
            "duration": 1.0,
            "files": {"videos": [], "images": [str(folder / "poster.png")], "other": []},
            "error": None,
        }
        (folder / "status.json").write_text(json.dumps(status))


def bench_history_in_process(demo: Any, rounds: int) -> dict[str, float]:
    """The history handler itself: a full render of the first page, a no-change refresh."""
    panel = getattr(demo, "cosmos_history", None)
    if panel is None:
        return {}
    renders, refreshes = [], []
    _t, _l, _o, _ids, sig = panel.render(0, "")
    for _ in range(rounds):
        t0 = time.perf_counter()
        panel.render(0, "")
        renders.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        panel.refresh(0, "", sig)
        refreshes.append(time.perf_counter() - t0)
    return {
        "history_render_ms": statistics.median(renders) * 1000,
        "history_refresh_unchanged_ms": statistics.median(refreshes) * 1000,
    }


def bench_page_with_history(url: str, loads: int, flips: int) -> dict[str, float]:
    """Page load with 10,000 past runs, the history's first render, and page changes."""
    from playwright.sync_api import sync_playwright

    load_times: list[float] = []
    first_list: list[float] = []
    flip_times: list[float] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            for _ in range(loads):
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                t0 = time.perf_counter()
                page.goto(url)
                page.wait_for_selector("#cg-generate", timeout=60_000)
                page.wait_for_function(
                    "() => (document.querySelector('#cg-workers')?.innerText || '')"
                    ".includes('queue')",
                    timeout=60_000,
                )
                load_times.append(time.perf_counter() - t0)
                if page.query_selector("#cg-tab-history-button") is not None:
                    t1 = time.perf_counter()  # the tab's content is built when first shown
                    page.click("#cg-tab-history-button")
                    page.wait_for_function(
                        "() => (document.querySelector('#cg-hist-label')?.innerText || '')"
                        ".includes('Runs 1-')",
                        timeout=60_000,
                    )
                    first_list.append(time.perf_counter() - t1)
                page.close()
            if first_list:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(url)
                page.wait_for_selector("#cg-tab-history-button", timeout=60_000)
                page.click("#cg-tab-history-button")
                page.wait_for_function(
                    "() => document.querySelector('#cg-hist-label').innerText.includes('Runs 1-')",
                    timeout=60_000,
                )
                for k in range(flips):
                    button, expect = (
                        ("#cg-hist-older", "Runs 21-")
                        if k % 2 == 0
                        else ("#cg-hist-newer", "Runs 1-")
                    )
                    t0 = time.perf_counter()
                    page.click(button)
                    page.wait_for_function(
                        "(e) => document.querySelector('#cg-hist-label').innerText.includes(e)",
                        arg=expect,
                        timeout=30_000,
                    )
                    flip_times.append(time.perf_counter() - t0)
                page.close()
        finally:
            browser.close()
    out = {"page_load_median_ms": statistics.median(load_times) * 1000}
    if first_list:
        out["history_first_list_median_ms"] = statistics.median(first_list) * 1000
        out["history_page_change_median_ms"] = statistics.median(flip_times) * 1000
        out["history_page_change_max_ms"] = max(flip_times) * 1000
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests (for a smoke run)")
    parser.add_argument(
        "--history-runs", type=int, default=10_000, help="past request folders to make (10,000)"
    )
    parser.add_argument(
        "--queued", type=int, default=500, help="requests waiting in the Queue tab (500)"
    )
    args = parser.parse_args()
    n = 50 if args.quick else 300
    clicks = 5 if args.quick else 15

    from cosmos_gradio_nb import NotebookApp, create_gradio_UI

    tmp = Path(tempfile.mkdtemp(prefix="bench_ui_"))
    app = NotebookApp(
        factory="noop_model:create_worker",
        num_gpus=2,
        gpus_per_model=1,
        output_dir=str(tmp / "outputs"),
        uploads_dir=str(tmp / "uploads"),
        log_file=str(tmp / "outputs" / "app.log"),
        name="bench-ui",
    )
    demo = None
    try:
        demo = create_gradio_UI(app.infer, header="bench", default_request={"i": 0})
        port = free_port()
        demo.launch(prevent_thread_lock=True, server_port=port, quiet=True)
        app.wait_ready(timeout=120)
        url = f"http://127.0.0.1:{port}/"
        results: dict[str, Any] = {"requests": n}
        results.update(bench_overhead(app, url, n))
        print(
            f"UI path overhead ({n} sequential no-op requests, 2 replicas):\n"
            f"  direct future   p50 {results['direct_p50_ms']:7.2f} ms   p99 {results['direct_p99_ms']:7.2f} ms\n"
            f"  gradio_client   p50 {results['ui_p50_ms']:7.2f} ms   p99 {results['ui_p99_ms']:7.2f} ms\n"
            f"  HTTP call API   p50 {results['http_p50_ms']:7.2f} ms   p99 {results['http_p99_ms']:7.2f} ms\n"
            f"  added, gradio_client p50 {results['added_p50_ms']:7.2f} ms (client polls every 50 ms)\n"
            f"  added, HTTP API      p50 {results['added_http_p50_ms']:7.2f} ms   (goal < 50 ms)",
            flush=True,
        )
        results["client_floor_p50_ms"] = gradio_client_floor(min(n, 100))
        print(
            f"  gradio_client on a bare echo endpoint (Gradio's floor): p50 "
            f"{results['client_floor_p50_ms']:.2f} ms",
            flush=True,
        )
        results.update(bench_error_latency(url, clicks))
        print(
            f"Invalid JSON -> error visible in Chromium ({clicks} clicks): median "
            f"{results['error_visible_median_ms']:.1f} ms, max {results['error_visible_max_ms']:.1f} ms"
            f"   (goal < 300 ms)",
            flush=True,
        )
        results["goal_overhead_met"] = results["added_http_p50_ms"] < 50
        results["goal_error_met"] = results["error_visible_median_ms"] < 300
        if getattr(demo, "cosmos_ops", None) is not None:
            results.update(bench_queue_panel(app, demo, url, args.queued))
            results["queued"] = args.queued
            print(
                f"Queue tab with {args.queued} queued + 2 running: in process, render "
                f"{results['queue_render_ms']:.1f} ms ({results['queue_html_kb']:.0f} KB), "
                f"unchanged refresh {results['queue_refresh_unchanged_ms']:.2f} ms, /queue "
                f"{results['queue_api_list_ms']:.1f} ms\n"
                f"  in Chromium: tab opened with every row {results['queue_tab_open_ms']:.0f} ms, "
                f"a cancelled request's row gone {results['queue_change_shown_ms']:.0f} ms",
                flush=True,
            )
            app.wait_ready(timeout=120)  # the holders' groups restart after their stop
            results.update(bench_stats(app))
            print(
                f"Machine figures: a sample {results['stats_sample_ms']:.1f} ms, the cached answer "
                f"{results['stats_cached_ms'] * 1000:.1f} us, the HTML "
                f"{results['stats_html_ms']:.2f} ms; 20 pollers at 10/s for 3 s caused "
                f"{results['stats_samples_for_20_pollers_3s']:.0f} samples",
                flush=True,
            )
        demo.close()
        t0 = time.perf_counter()
        make_history(tmp / "outputs", args.history_runs)
        results["history_runs"] = args.history_runs
        print(
            f"made {args.history_runs} past request folders in {time.perf_counter() - t0:.1f} s",
            flush=True,
        )
        port = free_port()
        demo.launch(prevent_thread_lock=True, server_port=port, quiet=True)
        url = f"http://127.0.0.1:{port}/"
        results.update(bench_history_in_process(demo, 20))
        results.update(
            bench_page_with_history(url, 3 if args.quick else 5, 6 if args.quick else 10)
        )
        print(
            f"With {args.history_runs} past runs in OUTPUT_DIR: page load median "
            f"{results['page_load_median_ms']:.0f} ms",
            flush=True,
        )
        if getattr(demo, "cosmos_ops", None) is not None:
            results.update(bench_state_filter(demo))
            results.update(bench_delete(tmp / "outputs", 100))
            print(
                f"History's state filter over every run: first {results['filter_first_ms']:.0f} ms,"
                f" again {results['filter_again_ms']:.0f} ms\n"
                f"Delete 100 of the past runs (to the trash): {results['delete_ms']:.0f} ms, "
                f"undo {results['undo_ms']:.0f} ms",
                flush=True,
            )
        if "history_render_ms" in results:
            print(
                f"  history tab: opened and listed {results['history_first_list_median_ms']:.0f} ms, "
                f"page change in Chromium median {results['history_page_change_median_ms']:.0f} ms "
                f"(max {results['history_page_change_max_ms']:.0f} ms)\n"
                f"  in process: render of a page {results['history_render_ms']:.1f} ms, "
                f"timer refresh with nothing changed {results['history_refresh_unchanged_ms']:.2f} ms",
                flush=True,
            )
    finally:
        if demo is not None:
            demo.close()
        app.close()
    print(
        "BENCH_UI "
        + json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in results.items()})
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
