"""Engine benchmarks: dispatch overhead, throughput, start-up and crash detection.

Run: ``python benchmarks/bench_engine.py [--quick]``. Prints the figures, then one
JSON line (prefixed ``BENCH_ENGINE``) with the same numbers for tracking.

Goals (from the engine issue):
1. dispatch p50 within 3x of a bare ``multiprocessing.Pipe`` JSON echo;
2. 10,000 queued no-op requests, every result checked, parent memory growth < 20 MB;
3. start-up overhead beyond the model's initializer, for 2 workers, < 2 s;
4. SIGKILL of a busy worker to the failed future < 1 s.

And from the hardening issue:
5. while one worker floods its output (one 200 MB line), the other group's p99 < 50 ms;
6. crash detection while a done-callback of another request blocks for 5 s: < 1 s.

And from the models issue:
7. what a live preview costs a model per ``report_progress(..., preview=frame)`` call
   (a 1280x720 frame): when one is written (shrunk, JPEG, atomic rename), when the
   rate limit skips it, and through the engine (a request of 20 reports with a
   preview each against the same without);
8. a cooperative stop: ``terminate()`` to the next request starting on the same worker.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing as mp
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cosmos_gradio_nb import NotebookApp, WorkerCrashedError


class NoOp:
    """Returns at once: everything measured is the engine's own cost."""

    def __init__(self) -> None:
        self.started = time.time()

    def infer(self, args: dict[str, Any]) -> dict[str, Any]:
        if args.get("hang"):
            time.sleep(3600)
        if args.get("reports") or args.get("steps"):
            return self._reports(args)
        time.sleep(float(args.get("sleep") or 0))
        flood = int(args.get("flood_mb") or 0)
        if flood:  # one line of flood_mb MB, as a model printing a huge tensor would
            chunk = "x" * 2**20
            for _ in range(flood):
                sys.stdout.write(chunk)
            sys.stdout.write("\n")
            sys.stdout.flush()
        return {"i": args.get("i")}

    def _reports(self, args: dict[str, Any]) -> dict[str, Any]:
        """``reports`` progress reports (with a 1280x720 preview each), or ``steps`` until stopped."""
        from cosmos_gradio_nb import report_progress

        frame = None
        if args.get("preview"):
            import numpy as np

            frame = np.zeros((720, 1280, 3), np.uint8)
        n = int(args.get("reports") or args.get("steps"))
        for i in range(n):
            report_progress((i + 1) / n, f"step {i + 1}/{n}", preview=frame)
            if args.get("steps"):
                time.sleep(0.001)
        return {}


def create_noop() -> NoOp:  # defined in __main__: shipped to the workers with cloudpickle
    return NoOp()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _echo(conn: Any) -> None:
    while True:
        try:
            data = conn.recv_bytes()
        except EOFError:
            return
        conn.send_bytes(json.dumps(json.loads(data)).encode())


def bare_pipe_round_trip(n: int) -> list[float]:
    """The floor: a JSON dict through a Pipe to a spawned process and back."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_echo, args=(child,), daemon=True)
    proc.start()
    payload = {"prompt": "a red car", "seed": 1, "i": 0}
    times = []
    for i in range(n + 50):
        payload["i"] = i
        t0 = time.perf_counter()
        parent.send_bytes(json.dumps(payload).encode())
        json.loads(parent.recv_bytes())
        if i >= 50:
            times.append(time.perf_counter() - t0)
    parent.close()
    proc.join(5)
    return times


def filesystem_floor(root: Path, n: int) -> list[float]:
    """What every request pays on disk whatever the IPC: its folder and an atomic status.json."""
    from cosmos_gradio_nb._core.outputs import base_status, finish_status, write_status

    times = []
    for i in range(n):
        folder = str(root / f"floor-{i}")
        t0 = time.perf_counter()
        os.mkdir(folder)
        status = base_status(
            request_id=f"{i:012d}",
            model_name="m",
            params={"i": i, "output_dir": folder},
            output_dir=folder,
            queued_at=time.time(),
            started_at=time.time(),
            group=0,
        )
        write_status(folder, finish_status(status, "succeeded", returned={"i": i}))
        times.append(time.perf_counter() - t0)
    return times


def flood_figures(app: NotebookApp, flood_mb: int) -> dict[str, Any]:
    """5. Latency of group B's requests while group A's worker prints one huge line."""
    gc.collect()
    before = rss_mb()
    flood = app.infer({"flood_mb": flood_mb})
    while flood.state == "queued":
        time.sleep(0.001)
    times = []
    peak = before
    t_flood = time.perf_counter()
    while not flood.done() or len(times) < 20:
        t = time.perf_counter()
        app.infer({"i": len(times)}).result(60)
        times.append(time.perf_counter() - t)
        if len(times) % 50 == 0:
            peak = max(peak, rss_mb())
        if time.perf_counter() - t_flood > 120:
            break
    flood_s = time.perf_counter() - t_flood
    flood.result(120)
    gc.collect()
    after = rss_mb()
    p50, p99, worst = percentile(times, 0.5), percentile(times, 0.99), max(times)
    print(
        f"flood: one {flood_mb} MB line on group A's stdout ({flood_s:.1f} s); group B's requests "
        f"meanwhile ({len(times)}): p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms, max "
        f"{worst * 1000:.1f} ms (goal p99 < 50 ms); parent RSS +{peak - before:.0f} MB at peak, "
        f"+{after - before:.0f} MB after; the request's log holds "
        f"{sum(len(x) for x in flood.result().log) / 2**20:.2f} MB"
    )
    return {
        "flood_mb": flood_mb,
        "flood_other_group_p50_ms": round(p50 * 1000, 2),
        "flood_other_group_p99_ms": round(p99 * 1000, 2),
        "flood_other_group_max_ms": round(worst * 1000, 1),
        "flood_rss_peak_growth_mb": round(peak - before, 1),
        "flood_rss_growth_after_mb": round(after - before, 1),
    }


def callback_block_figures(app: NotebookApp, block_s: float = 5.0) -> dict[str, Any]:
    """6. A done-callback of group A's request blocks; how fast is group B's crash noticed?"""
    import threading

    release = threading.Event()
    first = app.infer({"sleep": 0.3})
    first.add_done_callback(lambda _: release.wait(block_s))
    first.result(30)
    hung = app.infer({"hang": True})
    t0 = time.perf_counter()
    while hung.state != "running" and time.perf_counter() - t0 < 10:
        time.sleep(0.001)
    pid = next(w.pid for w in app.workers() if w.request_id == hung.request_id)
    t = time.perf_counter()
    os.kill(pid, signal.SIGKILL)
    try:
        hung.result(30)
    except WorkerCrashedError:
        pass
    detect = time.perf_counter() - t
    release.set()
    print(
        f"crash detection while another request's done-callback blocks {block_s:g} s: "
        f"{detect * 1000:.1f} ms (goal < 1000 ms)"
    )
    app.wait_ready(30)
    return {"crash_detect_while_callback_blocks_ms": round(detect * 1000, 1)}


def preview_figures(app: NotebookApp, tmp: Path) -> dict[str, Any]:
    """7. The cost of a preview, in the worker's own code and through the engine."""
    import threading

    import numpy as np

    from cosmos_gradio_nb._worker import progress
    from cosmos_gradio_nb._worker.preview import write_preview

    frame = np.random.default_rng(0).integers(0, 255, (720, 1280, 3), dtype=np.uint8)
    folder = tmp / "preview-bench"
    folder.mkdir()
    writes = []
    for _ in range(30):
        t = time.perf_counter()
        write_preview(frame, str(folder))
        writes.append(time.perf_counter() - t)
    progress.begin_request("bench", threading.Event(), folder=str(folder), send=lambda m: None)
    progress.report_progress(0.0, preview=frame)  # the first always goes: later ones are skipped
    skipped = []
    for i in range(2000):
        t = time.perf_counter()
        progress.report_progress(i / 2000, "step", preview=frame)
        skipped.append(time.perf_counter() - t)
    progress.end_request()
    engine = {}
    for with_preview in (False, True):
        times = []
        for _ in range(5):
            t = time.perf_counter()
            app.infer({"reports": 20, "preview": with_preview}).result(60)
            times.append(time.perf_counter() - t)
        engine[with_preview] = statistics.median(times)
    per_call = (engine[True] - engine[False]) / 20
    w50, s50 = statistics.median(writes), statistics.median(skipped)
    print(
        f"previews (1280x720 frame): writing one (512 px JPEG, atomic) {w50 * 1000:.1f} ms; "
        f"a call the rate limit skips {s50 * 1e6:.1f} us; through the engine, 20 reports with a "
        f"preview each (one written per second, the first at once) cost {per_call * 1e6:.0f} us "
        "per call more than without"
    )
    return {
        "preview_write_ms": round(w50 * 1000, 2),
        "preview_skipped_call_us": round(s50 * 1e6, 2),
        "preview_engine_per_call_us": round(per_call * 1e6, 1),
    }


def stop_figures(app: NotebookApp) -> dict[str, Any]:
    """8. A cooperative stop: terminate() until the next request runs on the same worker."""
    samples = []
    for _ in range(5):
        fut = app.infer({"steps": 100000})
        while fut.progress is None:
            time.sleep(0.001)
        pid = next(w.pid for w in app.workers() if w.request_id == fut.request_id)
        t = time.perf_counter()
        fut.terminate()
        nxt = app.infer({"i": 0})
        nxt.result(30)
        samples.append(time.perf_counter() - t)
        assert pid in {w.pid for w in app.workers()}, "the stopped worker was restarted"
    median = statistics.median(samples)
    print(
        f"cooperative stop: terminate() to the next request done on the same worker: median "
        f"{median * 1000:.1f} ms (no model reload)"
    )
    return {"cooperative_stop_to_next_ms": round(median * 1000, 1)}


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts (a smoke run)")
    args = parser.parse_args()
    n_seq = 200 if args.quick else 2000
    n_burst = 1000 if args.quick else 10_000
    n_crash = 3 if args.quick else 10
    out: dict[str, Any] = {}
    tmp = Path(tempfile.mkdtemp(prefix="cosmos-bench-"))
    os.environ["OUTPUT_DIR"] = str(tmp / "outputs")
    os.environ["LOG_FILE"] = str(tmp / "bench.log")

    # 3. start-up overhead (first, on a cold pool)
    t0 = time.perf_counter()
    app = NotebookApp(factory=create_noop, num_gpus=2, gpus_per_model=1, name="bench")
    app.wait_ready(60)
    startup = time.perf_counter() - t0
    out["startup_s_2_workers"] = round(startup, 3)
    print(f"start-up, 2 workers, no-op model: {startup * 1000:.0f} ms to ready (goal < 2000 ms)")

    # 1. dispatch overhead, sequential
    bare = bare_pipe_round_trip(n_seq)
    params = {"prompt": "a red car", "seed": 1}
    for i in range(50):  # warm-up
        app.infer({**params, "i": i}).result()
    times = []
    for i in range(n_seq):
        t = time.perf_counter()
        res = app.infer({**params, "i": i}).result()
        times.append(time.perf_counter() - t)
        assert res.status["i"] == i
    p50, p99 = percentile(times, 0.5), percentile(times, 0.99)
    b50, b99 = percentile(bare, 0.5), percentile(bare, 0.99)
    floor = filesystem_floor(tmp, n_seq)
    f50 = percentile(floor, 0.5)
    out.update(
        fs_floor_p50_us=round(f50 * 1e6, 1),
        dispatch_ratio_p50_vs_pipe_plus_fs=round(p50 / (b50 + f50), 2),
    )
    out.update(
        dispatch_p50_us=round(p50 * 1e6, 1),
        dispatch_p99_us=round(p99 * 1e6, 1),
        bare_pipe_p50_us=round(b50 * 1e6, 1),
        bare_pipe_p99_us=round(b99 * 1e6, 1),
        dispatch_ratio_p50=round(p50 / b50, 2),
    )
    print(
        f"dispatch round trip over {n_seq} sequential requests: p50 {p50 * 1e6:.0f} us, "
        f"p99 {p99 * 1e6:.0f} us; bare Pipe JSON echo p50 {b50 * 1e6:.0f} us, p99 {b99 * 1e6:.0f} us; "
        f"ratio p50 {p50 / b50:.2f}x (goal < 3x)"
    )
    print(
        f"  of which on disk (request folder + atomic status.json, measured alone): p50 "
        f"{f50 * 1e6:.0f} us; ratio to bare pipe + that floor: {p50 / (b50 + f50):.2f}x"
    )

    # 2. throughput and memory
    gc.collect()
    before = rss_mb()
    t = time.perf_counter()
    futures = [app.infer({"i": i}) for i in range(n_burst)]
    submitted = time.perf_counter() - t
    results = [f.result(300) for f in futures]
    elapsed = time.perf_counter() - t
    assert [r.status["i"] for r in results] == list(range(n_burst)), "a result went astray"
    assert all(r.status["state"] == "succeeded" for r in results)
    peak = rss_mb()
    del futures, results
    app._history.clear()  # the bounded history keeps the last 1000 futures: let them go too
    gc.collect()
    after = rss_mb()
    out.update(
        burst_requests=n_burst,
        burst_req_per_s=round(n_burst / elapsed, 1),
        burst_submit_s=round(submitted, 3),
        rss_growth_mb=round(after - before, 1),
        rss_peak_growth_mb=round(peak - before, 1),
    )
    print(
        f"throughput: {n_burst} requests submitted at once to 2 replicas: {n_burst / elapsed:.0f} req/s "
        f"(submitting took {submitted:.2f} s); every result checked"
    )
    print(
        f"parent memory: +{after - before:.1f} MB after the run (goal < 20 MB), "
        f"+{peak - before:.1f} MB at peak while all {n_burst} results were held"
    )

    # 4. crash detection
    detections = []
    for _ in range(n_crash):
        fut = app.infer({"hang": True})
        while fut.state != "running":
            time.sleep(0.001)
        pid = next(w.pid for w in app.workers() if w.request_id == fut.request_id)
        t = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        try:
            fut.result(10)
        except WorkerCrashedError:
            detections.append(time.perf_counter() - t)
        app.wait_ready(30)
        while any(w.state != "idle" for w in app.workers()):
            time.sleep(0.005)
    out.update(
        crash_detect_median_ms=round(statistics.median(detections) * 1000, 2),
        crash_detect_max_ms=round(max(detections) * 1000, 2),
    )
    print(
        f"crash detection over {n_crash} SIGKILLs of a busy worker: median "
        f"{statistics.median(detections) * 1000:.1f} ms, max {max(detections) * 1000:.1f} ms (goal < 1000 ms)"
    )
    out.update(flood_figures(app, 20 if args.quick else 200))
    out.update(callback_block_figures(app))
    out.update(preview_figures(app, tmp))
    out.update(stop_figures(app))
    app.close()
    print("BENCH_ENGINE " + json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
