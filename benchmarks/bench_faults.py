"""How fast a fault fails its request, per backend: the figures the README's fault section states.

Run: ``python benchmarks/bench_faults.py [--quick]``. Prints the figures, then one
JSON line (prefixed ``BENCH_FAULTS``). Each figure is the time from the fault to the
moment the running request's future raises ``WorkerCrashedError``, over N faults:

* local: SIGKILL of the worker process;
* Ray: SIGKILL of the rank actor's process (what ``ray.kill`` and an OOM kill do);
* Ray: a lost node (``Cluster.remove_node`` of a simulated two-node cluster, the
  node that holds the group).

The no-op model hangs on ``{"hang": true}``, so the request is running when the
fault comes. Everything Ray starts listens on loopback only.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import psutil

from cosmos_gradio_nb import NotebookApp, WorkerCrashedError


def _app(backend: str, out: Path, name: str) -> NotebookApp:
    app = NotebookApp(
        factory_module="noop_model",
        factory_function="create_worker",
        backend=backend,  # type: ignore[arg-type]
        num_gpus=1,
        output_dir=out / name,
        log_file=out / f"{name}.log",
        name=f"bench-faults-{name}",
        placement_timeout=120,
    )
    app.wait_ready(180)
    return app


def _running(app: NotebookApp) -> tuple[Any, int]:
    fut = app.infer({"hang": True})
    while fut.state != "running":
        time.sleep(0.001)
    pid = next(w.pid for w in app.workers() if w.request_id == fut.request_id)
    return fut, pid


def _detect(app: NotebookApp, fault: Callable[[int], None], n: int) -> list[float]:
    """Seconds from ``fault(worker pid)`` to the running request's WorkerCrashedError."""
    times = []
    for _ in range(n):
        fut, pid = _running(app)
        t = time.perf_counter()
        fault(pid)
        try:
            fut.result(60)
        except WorkerCrashedError:
            times.append(time.perf_counter() - t)
        app.wait_ready(180)
        while any(w.state != "idle" for w in app.workers()):
            time.sleep(0.005)
    return times


def _summary(times: list[float]) -> dict[str, Any]:
    return {
        "n": len(times),
        "median_ms": round(statistics.median(times) * 1000, 1),
        "min_ms": round(min(times) * 1000, 1),
        "max_ms": round(max(times) * 1000, 1),
    }


def _actor_pid(worker_pid: int) -> int:  # the rank actor: the worker's keeper's parent
    return psutil.Process(worker_pid).parent().parent().pid


def node_loss(out: Path, n: int) -> list[float]:
    """A running request on the node that is removed, ``n`` times (a new node each time)."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    node = cluster.add_node(num_cpus=2, num_gpus=1)
    ray.init(address=cluster.address)
    cluster.wait_for_nodes()
    times = []
    try:
        app = _app("ray", out, "node")
        for _ in range(n):
            fut, _pid = _running(app)
            t = time.perf_counter()
            cluster.remove_node(node)
            try:
                fut.result(60)
            except WorkerCrashedError:
                times.append(time.perf_counter() - t)
            node = cluster.add_node(num_cpus=2, num_gpus=1)
            app.wait_ready(180)
        app.close()
    finally:
        ray.shutdown()
        cluster.shutdown()
    return times


def _print(name: str, f: dict[str, Any]) -> None:
    print(
        f"{name}: request failed after median {f['median_ms']:.0f} ms "
        f"(min {f['min_ms']:.0f}, max {f['max_ms']:.0f}) over {f['n']} faults",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer faults (a smoke run)")
    args = parser.parse_args()
    n = 3 if args.quick else 10
    out = Path(tempfile.mkdtemp(prefix="cosmos-bench-faults-"))
    figures: dict[str, Any] = {}

    app = _app("local", out, "local")
    figures["local_worker_sigkill"] = _summary(
        _detect(app, lambda pid: os.kill(pid, signal.SIGKILL), n)
    )
    app.close()
    _print("local_worker_sigkill", figures["local_worker_sigkill"])

    import ray

    ray.init(num_cpus=4, include_dashboard=False)
    app = _app("ray", out, "ray")
    figures["ray_actor_sigkill"] = _summary(
        _detect(app, lambda pid: os.kill(_actor_pid(pid), signal.SIGKILL), n)
    )
    app.close()
    ray.shutdown()
    _print("ray_actor_sigkill", figures["ray_actor_sigkill"])
    figures["ray_node_lost"] = _summary(node_loss(out, max(2, n // 3)))
    _print("ray_node_lost", figures["ray_node_lost"])
    print("BENCH_FAULTS " + json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
