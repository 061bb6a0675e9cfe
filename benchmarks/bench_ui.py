"""UI benchmarks: what the Gradio path adds per request, and how fast errors show.

Run: ``python benchmarks/bench_ui.py [--quick]``. Prints the figures, then one JSON
line (prefixed ``BENCH_UI``).

1. Per-request overhead of the UI path: ``gradio_client.Client.predict(...,
   api_name="/generate")`` against a no-op model (2 replicas), beside the direct
   ``app.submit(...).result()`` on the same app; p50 and p99 of each and the
   difference. Goal: the UI path adds < 50 ms (p50).
2. Time from clicking Generate with invalid JSON to the error being visible in
   Chromium (median of several clicks). Goal: < 300 ms.
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
                            const e = document.querySelector('#cg-status [data-state=error]');
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests (for a smoke run)")
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
