"""Connected-app benchmark: what a detached server costs a notebook, on loopback.

In one run, on a no-op model with one worker (so every millisecond measured is the
library's own):

1. time to attach to a running server: ``NotebookApp(..., detach=True)`` finding and
   reusing it, and ``connect(name=...)`` (median of several);
2. per-request round trip, one request at a time, in-kernel ``NotebookApp`` vs the
   connected app (p50 and p99), and what the connection adds (goal: <= 10 ms);
3. throughput with 100 requests in flight (100 ``infer`` calls, then all waited for),
   in-kernel and connected, and ``map`` of 100 connected;
4. progress latency from the model's ``report_progress`` to the client's progress
   callback (p50, p99; the model sends its clock in the message, same machine).

Prints the figures, then one JSON line (prefixed ``BENCH_CONNECT``).
Usage::

    PYTHONPATH=. python benchmarks/bench_connect.py [--requests 300]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GOAL_ADDED_MS = 10.0


class BenchModel:
    """Returns at once; ``{"progress": n}`` reports n steps 20 ms apart, its clock in the message."""

    def infer(self, args: dict[str, Any]) -> dict[str, Any]:
        from cosmos_gradio_nb import report_progress

        steps = int(args.get("progress") or 0)
        for i in range(steps):
            report_progress((i + 1) / steps, repr(time.time()))
            time.sleep(0.02)
        return {"i": args.get("i")}


def create_worker() -> BenchModel:  # in __main__: shipped to the detached server by cloudpickle
    return BenchModel()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def round_trips(app: Any, n: int) -> list[float]:
    for i in range(20):  # warm-up: connections, caches
        app.infer({"i": i}).result(60)
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        app.infer({"i": i}).result(60)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def throughput(app: Any, n: int = 100, *, use_map: bool = False) -> float:
    t0 = time.perf_counter()
    if use_map:
        futures = app.map([{"i": i} for i in range(n)], progress=False)
    else:
        futures = [app.infer({"i": i}) for i in range(n)]
    for fut in futures:
        fut.result(120)
    return n / (time.perf_counter() - t0)


def progress_latency(app: Any, requests: int = 5, steps: int = 20) -> list[float]:
    seen: list[float] = []
    lock = threading.Lock()
    for _ in range(requests):
        last = threading.Event()

        def on_progress(fut: Any, last: threading.Event = last) -> None:
            now = time.time()
            try:
                sent = float(fut.progress_message)
            except ValueError:
                return
            with lock:
                seen.append((now - sent) * 1000)
            if fut.progress == 1.0:
                last.set()

        fut = app.infer({"progress": steps})
        fut.add_progress_callback(on_progress)
        fut.result(60)
        last.wait(10)  # the last callback runs on a callback thread, after result()
    return seen


def attach_times(factory: Any, name: str, tries: int = 5) -> tuple[list[float], list[float]]:
    import cosmos_gradio_nb as cg

    detach, connect = [], []
    for _ in range(tries):
        t0 = time.perf_counter()
        app = cg.NotebookApp(factory=factory, name=name, detach=True)
        detach.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        other = cg.connect(name=name)
        connect.append(time.perf_counter() - t0)
        other.close()
        app.close()
    return detach, connect


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_connect_"))
    for key, sub in (("OUTPUT_DIR", "outputs"), ("UPLOADS_DIR", "uploads"), ("RUNTIME_DIR", "rt")):
        os.environ[key] = str(root / sub)
    os.environ["LOG_FILE"] = str(root / "outputs" / "app.log")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import cosmos_gradio_nb as cg

    local = cg.NotebookApp(factory=create_worker, name="bench-local")
    local.wait_ready(120)
    local_rt = round_trips(local, args.requests)
    local_tp = throughput(local)
    local_progress = progress_latency(local)
    local.close()

    t0 = time.perf_counter()
    remote = cg.NotebookApp(factory=create_worker, name="bench-remote", detach=True)
    start_s = time.perf_counter() - t0
    remote.wait_ready(120)
    detach_s, connect_s = attach_times(create_worker, "bench-remote")
    remote = cg.NotebookApp(factory=create_worker, name="bench-remote", detach=True)
    remote_rt = round_trips(remote, args.requests)
    remote_tp = throughput(remote)
    remote_map_tp = throughput(remote, use_map=True)
    remote_progress = progress_latency(remote)
    remote.shutdown()

    figures = {
        "server_start_s": round(start_s, 3),
        "attach_detach_s_median": round(statistics.median(detach_s), 4),
        "attach_connect_s_median": round(statistics.median(connect_s), 4),
        "local_p50_ms": round(percentile(local_rt, 0.5), 3),
        "local_p99_ms": round(percentile(local_rt, 0.99), 3),
        "remote_p50_ms": round(percentile(remote_rt, 0.5), 3),
        "remote_p99_ms": round(percentile(remote_rt, 0.99), 3),
        "added_p50_ms": round(percentile(remote_rt, 0.5) - percentile(local_rt, 0.5), 3),
        "added_p99_ms": round(percentile(remote_rt, 0.99) - percentile(local_rt, 0.99), 3),
        "local_throughput_rps": round(local_tp, 1),
        "remote_throughput_rps": round(remote_tp, 1),
        "remote_map_throughput_rps": round(remote_map_tp, 1),
        "local_progress_p50_ms": round(percentile(local_progress, 0.5), 3),
        "remote_progress_p50_ms": round(percentile(remote_progress, 0.5), 3),
        "remote_progress_p99_ms": round(percentile(remote_progress, 0.99), 3),
        "requests": args.requests,
        "goal_added_ms": GOAL_ADDED_MS,
    }
    figures["goal_met"] = figures["added_p50_ms"] <= GOAL_ADDED_MS
    print(f"server start (first detach=True, until it answers): {start_s:.2f} s")
    print(
        f"attach to a running server: detach=True {figures['attach_detach_s_median'] * 1000:.0f} ms,"
        f" connect(name=) {figures['attach_connect_s_median'] * 1000:.0f} ms (median of 5)"
    )
    print(
        f"round trip, one at a time ({args.requests}): in-kernel p50 {figures['local_p50_ms']:.2f}"
        f" / p99 {figures['local_p99_ms']:.2f} ms; connected p50 {figures['remote_p50_ms']:.2f}"
        f" / p99 {figures['remote_p99_ms']:.2f} ms; added p50 {figures['added_p50_ms']:.2f}"
        f" / p99 {figures['added_p99_ms']:.2f} ms (goal <= {GOAL_ADDED_MS:g} ms)"
    )
    print(
        f"100 in flight: in-kernel {local_tp:.0f} req/s, connected {remote_tp:.0f} req/s "
        f"(infer x100), {remote_map_tp:.0f} req/s (map of 100)"
    )
    print(
        f"progress, report_progress -> callback: in-kernel p50 "
        f"{figures['local_progress_p50_ms']:.2f} ms; connected p50 "
        f"{figures['remote_progress_p50_ms']:.2f} / p99 {figures['remote_progress_p99_ms']:.2f} ms"
    )
    print("BENCH_CONNECT " + json.dumps(figures))


if __name__ == "__main__":
    main()
