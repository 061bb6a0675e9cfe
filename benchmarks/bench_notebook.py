"""Notebook benchmark: time to the first result, and kernel memory over 1,000 requests.

Everything is measured inside a real ipykernel (started with jupyter_client), so
the figures are a kernel's, with ipykernel's output machinery in the loop:

1. Time from ``NotebookApp(...)`` on the sample model to its first result (a tiny render).
2. Kernel RSS growth over 1,000 scripted requests (``app.map`` in batches, with the
   tqdm bar) while the Gradio UI is launched in the kernel and open in a headless
   Chromium page (when Chromium is available). Goal: under 20 MB. This includes
   ``app.history`` filling up to its bound (1000 futures); a second round of 1,000
   then shows the steady state.

Prints the figures and, last, one JSON line. Usage::

    PYTHONPATH=. python benchmarks/bench_notebook.py [--requests 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
GOAL_MB = 20.0

SETUP = """
import gc, json, time, psutil
t0 = time.perf_counter()
from cosmos_gradio_nb import NotebookApp, create_gradio_UI
from cosmos_gradio_nb.samples import FACTORY_MODULE, SampleParams
t_import = time.perf_counter() - t0
t1 = time.perf_counter()
app = NotebookApp(SampleParams, FACTORY_MODULE, "create_worker", name="bench")
first = app.infer({"width": 32, "height": 32, "num_frames": 2, "fps": 2}).result(timeout=300)
t_first = time.perf_counter() - t1
interface = create_gradio_UI(infer_func=app.infer, header="bench")
interface.launch(height=600)
print("@@" + json.dumps({"import_s": t_import, "first_result_s": t_first,
                         "port": interface.server_port}))
"""

RUN = """
import gc, json, time, psutil
_proc = psutil.Process()
_tiny = {{"width": 32, "height": 32, "num_frames": 2, "fps": 2}}
def _rss_mb():
    gc.collect()
    return _proc.memory_info().rss / 2**20
for _f in app.map([dict(_tiny, seed=s) for s in range(100)], progress=False):
    _f.result(timeout=300)   # warm-up: caches, history, first progress bars
_before = _rss_mb()
_t = time.perf_counter()
_done = 0
for _start in range(0, {n}, {batch}):
    _futs = app.map([dict(_tiny, seed=s) for s in range(_start, min({n}, _start + {batch}))])
    for _f in _futs:
        assert _f.result(timeout=300).videos
        _done += 1
_elapsed = time.perf_counter() - _t
_after = _rss_mb()
print("@@" + json.dumps({{"requests": _done, "elapsed_s": _elapsed, "rss_before_mb": _before,
                         "rss_after_mb": _after, "history": len(app.history)}}))
"""

CLOSE = """
interface.close()
app.close()
print("@@" + json.dumps({"closed": app.closed}))
"""


def _run(kc: Any, code: str, timeout: float) -> dict[str, Any]:
    """Execute in the kernel; return the JSON it printed after ``@@``; raise on an error."""
    lines: list[str] = []
    errors: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        kind = msg["header"]["msg_type"]
        if kind == "stream":
            lines.extend(msg["content"]["text"].splitlines())
        elif kind == "error":
            errors.append("\n".join(msg["content"]["traceback"]))

    reply = kc.execute_interactive(code, timeout=timeout, output_hook=hook)
    if errors or reply["content"]["status"] != "ok":
        raise RuntimeError("kernel error:\n" + "\n".join(errors))
    marked = [ln for ln in lines if ln.startswith("@@")]
    return dict(json.loads(marked[-1][2:]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args(argv)

    from jupyter_client.manager import KernelManager

    tmp = Path(tempfile.mkdtemp(prefix="bench_notebook_"))
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        OUTPUT_DIR=str(tmp / "outputs"),
        UPLOADS_DIR=str(tmp / "uploads"),
        LOG_FILE=str(tmp / "outputs" / "app.log"),
        GRADIO_ANALYTICS_ENABLED="False",
        HF_HUB_DISABLE_TELEMETRY="1",
        JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
    )
    for name in ("JUPYTERHUB_SERVICE_PREFIX", "COSMOS_GRADIO_PROXY", "VSCODE_PID"):
        env.pop(name, None)
    km = KernelManager(kernel_name="python3")
    km.start_kernel(env=env, cwd=str(tmp))
    kc = km.client()
    kc.start_channels()
    browser_ctx: Any = None
    try:
        kc.wait_for_ready(timeout=60)
        setup = _run(kc, SETUP, timeout=300)
        print(f"import cosmos_gradio_nb + sample: {setup['import_s']:.2f} s")
        print(f"NotebookApp(...) to first result: {setup['first_result_s']:.2f} s")
        ui_open = False
        if Path(CHROMIUM).exists():
            from playwright.sync_api import sync_playwright

            pw = sync_playwright().start()
            browser = pw.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
            )
            browser_ctx = (pw, browser)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{setup['port']}/")
            page.locator("#cg-generate").wait_for(timeout=60_000)
            ui_open = True
        print(f"UI launched in the kernel; open in Chromium: {ui_open}")
        run = _run(kc, RUN.format(n=args.requests, batch=args.batch), timeout=3600)
        growth = run["rss_after_mb"] - run["rss_before_mb"]
        print(
            f"{run['requests']} requests in {run['elapsed_s']:.1f} s "
            f"({run['requests'] / run['elapsed_s']:.1f} req/s)"
        )
        print(
            f"kernel RSS {run['rss_before_mb']:.1f} MB -> {run['rss_after_mb']:.1f} MB: "
            f"growth {growth:+.1f} MB (goal < {GOAL_MB:.0f} MB); history holds {run['history']}"
        )
        # A second round: the history (bounded at 1000) is full now, so this is steady state.
        again = _run(kc, RUN.format(n=args.requests, batch=args.batch), timeout=3600)
        steady = again["rss_after_mb"] - again["rss_before_mb"]
        print(f"second {again['requests']} requests (history full): growth {steady:+.1f} MB")
        closed = _run(kc, CLOSE, timeout=60)
    finally:
        if browser_ctx is not None:
            browser_ctx[1].close()
            browser_ctx[0].stop()
        kc.stop_channels()
        km.shutdown_kernel(now=False)
    summary = {
        "benchmark": "notebook",
        "first_result_s": round(setup["first_result_s"], 3),
        "import_s": round(setup["import_s"], 3),
        "requests": run["requests"],
        "requests_per_s": round(run["requests"] / run["elapsed_s"], 1),
        "kernel_rss_growth_mb": round(growth, 2),
        "kernel_rss_growth_steady_mb": round(steady, 2),
        "rss_goal_mb": GOAL_MB,
        "rss_ok": growth < GOAL_MB,
        "ui_open_in_browser": ui_open,
        "closed": closed["closed"],
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
