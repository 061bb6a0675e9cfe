"""The local and the Ray backend side by side, in one run, on the same no-op model.

Run: ``python benchmarks/bench_backends.py [--quick]``. Prints the figures, then one
JSON line (prefixed ``BENCH_BACKENDS``).

For each backend: start-up of 2 replicas, sequential dispatch p50/p99, throughput
with 1,000 requests in flight, crash detection after SIGKILL (of a worker
process locally; of the rank actor's process on Ray). For Ray also: a bare actor
method call with the same payload, measured in this run (goal: our dispatch p50
within 2x of it); the threads the app adds with 2 and with 8 ranks; and the time to
copy a 100 MB output back from another node of a simulated two-node cluster
(``SHARED_OUTPUT_DIR=0`` forces the copy, since both nodes share this machine's
disk), against the floor: a plain ``ray.get`` of as many bytes made on that node,
measured in the same run (goal: at least half of its MB/s; each the best of 3),
with the app's peak private RSS growth during the copy (memory stays bounded:
never a whole file).

Everything Ray starts listens on loopback only (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import psutil

from cosmos_gradio_nb import NotebookApp, WorkerCrashedError

PAYLOAD = {"prompt": "a red car", "seed": 1}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(app: NotebookApp, n_seq: int, n_burst: int, n_crash: int, kill: Any) -> dict[str, Any]:
    for i in range(30):
        app.infer({**PAYLOAD, "i": i}).result(60)
    times = []
    for i in range(n_seq):
        t = time.perf_counter()
        res = app.infer({**PAYLOAD, "i": i}).result(60)
        times.append(time.perf_counter() - t)
        assert res.status["i"] == i
    t = time.perf_counter()
    futures = [app.infer({"i": i}) for i in range(n_burst)]
    results = [f.result(300) for f in futures]
    burst = time.perf_counter() - t
    assert [r.status["i"] for r in results] == list(range(n_burst)), "a result went astray"
    detections = []
    for _ in range(n_crash):
        fut = app.infer({"hang": True})
        while fut.state != "running":
            time.sleep(0.001)
        pid = next(w.pid for w in app.workers() if w.request_id == fut.request_id)
        t = time.perf_counter()
        os.kill(kill(pid), signal.SIGKILL)
        try:
            fut.result(30)
        except WorkerCrashedError:
            detections.append(time.perf_counter() - t)
        app.wait_ready(60)
        while any(w.state != "idle" for w in app.workers()):
            time.sleep(0.005)
    return {
        "dispatch_p50_ms": round(percentile(times, 0.5) * 1000, 3),
        "dispatch_p99_ms": round(percentile(times, 0.99) * 1000, 3),
        "in_flight": n_burst,
        "req_per_s": round(n_burst / burst, 1),
        "crash_detect_median_ms": round(statistics.median(detections) * 1000, 1),
        "crash_detect_max_ms": round(max(detections) * 1000, 1),
    }


def bare_actor_call(ray: Any, n: int) -> list[float]:
    @ray.remote(num_cpus=0)
    class Echo:
        def echo(self, payload: dict[str, Any]) -> dict[str, Any]:
            return payload

    actor = Echo.remote()
    ray.get(actor.echo.remote(PAYLOAD))
    times = []
    for i in range(n + 30):
        t = time.perf_counter()
        ray.get(actor.echo.remote({**PAYLOAD, "i": i, "output_dir": "/tmp/x" * 8}))
        if i >= 30:
            times.append(time.perf_counter() - t)
    ray.kill(actor)
    return times


def start(backend: str, out: Path, ranks: int = 2) -> tuple[NotebookApp, float]:
    t = time.perf_counter()
    app = NotebookApp(
        factory_module="noop_model",
        factory_function="create_worker",
        backend=backend,  # type: ignore[arg-type]
        num_gpus=ranks,
        gpus_per_model=1,
        output_dir=out / f"{backend}-{ranks}",
        log_file=out / f"{backend}-{ranks}.log",
        name=f"bench-{backend}-{ranks}",
    )
    app.wait_ready(120)
    return app, time.perf_counter() - t


def app_threads(out: Path, ranks: int) -> int:
    """Python threads a Ray app of ``ranks`` ranks adds to this process once ready and idle."""
    before = threading.active_count()
    app, _ = start("ray", out, ranks)
    app.infer({"i": 0}).result(60)
    added = threading.active_count() - before
    app.close()
    return added


def private_rss() -> int:
    """This process's anonymous resident memory (RssAnon), in bytes.

    Not the whole RSS: the object store's shared memory that Ray maps into the
    process counts in RSS once touched, and stays mapped, without being this
    process's own memory.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


class PeakRss:
    """The process's largest private RSS while in the ``with`` block, sampled every 2 ms."""

    def __init__(self) -> None:
        self.start = self.peak = private_rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, private_rss())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.start) / 2**20


def ray_get_floor(
    ray: Any, node_id: str, mb: int, tries: int = 3, write_to: Path | None = None
) -> tuple[float, float]:
    """Seconds for a plain ``ray.get`` here of ``mb`` MB put in the object store on ``node_id``;
    and for the same ``ray.get`` followed by writing the bytes to a file in ``write_to`` (the
    copy's real floor: a copy ends in a file, and this disk's sustained writes are slower
    than Ray's transfer)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=0)
    class Maker:
        def make(self, n: int) -> list[Any]:
            import numpy as np

            return [ray.put(np.frombuffer(os.urandom(n), dtype=np.uint8))]

    maker = Maker.options(  # type: ignore[attr-defined]
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)
    ).remote()
    best = best_written = float("inf")
    for i in range(tries):
        [ref] = ray.get(maker.make.remote(mb * 2**20))
        t = time.perf_counter()
        value = ray.get(ref)
        got = time.perf_counter() - t
        best = min(best, got)
        assert value.nbytes == mb * 2**20
        if write_to is not None:
            target = write_to / f"floor-{i}.bin"
            t = time.perf_counter()
            with open(target, "wb") as f:
                f.write(value)
            best_written = min(best_written, got + time.perf_counter() - t)
            target.unlink()
        del value, ref
    ray.kill(maker)
    return best, best_written


def copy_figures(out: Path, mb: int) -> dict[str, Any]:
    """A 100 MB output made on the GPU node of a simulated cluster, copied back here."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    gpu_node = cluster.add_node(num_cpus=2, num_gpus=1)
    ray.init(address=cluster.address)
    try:
        app = NotebookApp(
            factory_module="noop_model",
            backend="ray",
            shared_output_dir=False,
            output_dir=out / "copied",
            log_file=out / "copied.log",
            name="bench-copy",
        )
        app.wait_ready(120)
        app.infer({"write_mb": 1}).result(120)  # warm
        (out / "copied").mkdir(parents=True, exist_ok=True)
        floor, floor_written = ray_get_floor(ray, gpu_node.node_id, mb, write_to=out / "copied")
        totals, alones, peaks = [], [], []
        for _ in range(3):  # the best of 3 of each, as for the floor: this machine is noisy
            with PeakRss() as rss_during:
                t = time.perf_counter()
                res = app.infer({"write_mb": mb}).result(300)
                totals.append(time.perf_counter() - t)
            peaks.append(rss_during.growth_mb)
            size = (res.output_dir / "out.bin").stat().st_size
            assert size == mb * 2**20
            t = time.perf_counter()
            app.infer({"write_mb": mb, "skip": True}).result(300)  # the same, nothing to copy
            alones.append(time.perf_counter() - t)
        total, alone = min(totals), min(alones)
        rss = psutil.Process().memory_info().rss / 2**20
        app.close()
    finally:
        ray.shutdown()
        cluster.shutdown()
    return {
        "copy_mb": mb,
        "copy_request_s": round(total, 3),
        "same_request_without_output_s": round(alone, 3),
        "copy_s": round(total - alone, 3),
        "copy_mb_per_s": round(mb / max(1e-9, total - alone), 1),
        "ray_get_floor_s": round(floor, 3),
        "ray_get_floor_mb_per_s": round(mb / max(1e-9, floor), 1),
        "copy_vs_floor": round(floor / max(1e-9, total - alone), 2),
        "ray_get_and_write_floor_s": round(floor_written, 3),
        "copy_vs_get_and_write_floor": round(floor_written / max(1e-9, total - alone), 2),
        "app_private_rss_peak_growth_mb_during_copy": round(max(peaks), 1),
        "app_rss_mb_after_copy": round(rss, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts (a smoke run)")
    args = parser.parse_args()
    n_seq, n_burst, n_crash = (100, 200, 3) if args.quick else (1000, 1000, 10)
    out_dir = Path(tempfile.mkdtemp(prefix="cosmos-bench-backends-"))
    figures: dict[str, Any] = {}

    app, startup = start("local", out_dir)
    local = {"startup_s": round(startup, 3), **measure(app, n_seq, n_burst, n_crash, lambda p: p)}
    app.close()
    figures["local"] = local

    import ray

    ray.init(address="local", num_cpus=8, include_dashboard=False)
    bare = bare_actor_call(ray, n_seq)
    threads = {n: app_threads(out_dir, n) for n in (2, 8)}
    app, startup = start("ray", out_dir)

    def actor_of(worker_pid: int) -> int:  # the rank actor: the worker's keeper's parent
        return psutil.Process(worker_pid).parent().parent().pid

    remote = {"startup_s": round(startup, 3), **measure(app, n_seq, n_burst, n_crash, actor_of)}
    app.close()
    ray.shutdown()
    remote["bare_actor_call_p50_ms"] = round(percentile(bare, 0.5) * 1000, 3)
    remote["bare_actor_call_p99_ms"] = round(percentile(bare, 0.99) * 1000, 3)
    remote["dispatch_ratio_p50_vs_bare_actor"] = round(
        remote["dispatch_p50_ms"] / remote["bare_actor_call_p50_ms"], 2
    )
    remote["app_threads_2_ranks"] = threads[2]
    remote["app_threads_8_ranks"] = threads[8]
    remote.update(copy_figures(out_dir, 20 if args.quick else 100))
    figures["ray"] = remote

    for name, f in figures.items():
        print(f"{name}:")
        print(f"  start-up, 2 replicas of a no-op model: {f['startup_s'] * 1000:.0f} ms")
        print(
            f"  dispatch over {n_seq} sequential requests: p50 {f['dispatch_p50_ms']:.2f} ms, "
            f"p99 {f['dispatch_p99_ms']:.2f} ms"
        )
        print(f"  throughput, {f['in_flight']} requests in flight: {f['req_per_s']:.0f} req/s")
        print(
            f"  crash detection over {n_crash} SIGKILLs: median {f['crash_detect_median_ms']:.1f} ms, "
            f"max {f['crash_detect_max_ms']:.1f} ms (goal < 1000 ms)"
        )
    r = figures["ray"]
    print(
        f"ray: bare actor call p50 {r['bare_actor_call_p50_ms']:.2f} ms, p99 "
        f"{r['bare_actor_call_p99_ms']:.2f} ms; our dispatch p50 is "
        f"{r['dispatch_ratio_p50_vs_bare_actor']:.2f}x of it (goal < 2x)"
    )
    print(
        f"ray: threads the app adds: {r['app_threads_2_ranks']} with 2 ranks, "
        f"{r['app_threads_8_ranks']} with 8 ranks"
    )
    print(
        f"ray: a {r['copy_mb']} MB output copied back from another node: {r['copy_s']:.2f} s "
        f"({r['copy_mb_per_s']:.0f} MB/s; request {r['copy_request_s']:.2f} s, the same request "
        f"without the copy {r['same_request_without_output_s']:.2f} s)"
    )
    print(
        f"ray: floor, a plain ray.get of {r['copy_mb']} MB from that node: "
        f"{r['ray_get_floor_s']:.2f} s ({r['ray_get_floor_mb_per_s']:.0f} MB/s); the copy is "
        f"{r['copy_vs_floor']:.2f}x of it (goal >= 0.5x); the app's private RSS grew "
        f"at most {r['app_private_rss_peak_growth_mb_during_copy']:.0f} MB during a copy; "
        f"its RSS (object store mappings included) {r['app_rss_mb_after_copy']:.0f} MB after"
    )
    print(
        f"ray: the same ray.get, then its bytes written to a file beside the copy: "
        f"{r['ray_get_and_write_floor_s']:.2f} s; the copy is "
        f"{r['copy_vs_get_and_write_floor']:.2f}x of that"
    )
    print("BENCH_BACKENDS " + json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
