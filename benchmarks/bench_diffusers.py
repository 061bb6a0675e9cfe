"""Diffusers adapter benchmark: its overhead, the cost of previews, and stopping vs reloading.

In one run, on the tiny Cosmos 2.5 pipeline (``cosmos_gradio_nb.samples.tiny_diffusers``:
a real ``Cosmos2_5_PredictBasePipeline`` with random weights, 128x128, 9 frames: 0.7-1.7 s
at 20 steps on one CPU thread):

1. **Overhead**: the pipeline called directly (in a process of its own, with the
   worker's thread settings) vs the same request through ``NotebookApp`` (validation, queue, dispatch to the worker, the step
   callback, writing the mp4 and poster, status.json, the reply), medians of
   interleaved runs. Goal: the difference is at most 5 % of the pipeline's own time.
   Also against the worker's own timing of the same call, which leaves out the
   difference between two processes running the same pipeline.
2. **Previews**: the cost of one preview (latents -> RGB through the linear map, and
   the upscale) for these latents and for latents the size of a real Cosmos 2.5
   request (704x1280, 93 frames), and the end-to-end difference with previews off.
3. **terminate() -> next request**: how long after ``fut.terminate()`` on a running
   request the next queued request starts on the same group (cooperative stop:
   diffusers' interrupt, the model stays loaded), against killing the worker (what a
   stop cost before: the group restarts and reloads the pipeline). The cooperative
   figure needs the engine's cooperative ``terminate()``; without it, terminate()
   kills, and both figures measure a reload.

Prints the figures and, last, one JSON line (``BENCH_DIFFUSERS {...}``). Usage::

    PYTHONPATH=. python benchmarks/bench_diffusers.py [--runs 5] [--steps 20] [--threads 1]
    PYTHONPATH=. python benchmarks/bench_diffusers.py --device cuda   # on a GPU machine
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

GOAL_OVERHEAD = 0.05


def _request(args: argparse.Namespace) -> dict[str, Any]:
    from cosmos_gradio_nb.samples import tiny_diffusers as tiny

    request = {**tiny.VIDEO_DEFAULTS, "num_inference_steps": args.steps, "seed": 1}
    request.update(height=args.size, width=args.size, num_frames=args.frames)
    return request


def _app(root: Path, args: argparse.Namespace, previews: bool, name: str) -> Any:
    from diffusers import Cosmos2_5_PredictBasePipeline

    from cosmos_gradio_nb import NotebookApp
    from cosmos_gradio_nb.diffusers import pipeline_factory, pipeline_params
    from cosmos_gradio_nb.samples import tiny_diffusers as tiny

    app = NotebookApp(
        pipeline_params(Cosmos2_5_PredictBasePipeline),
        factory=pipeline_factory(build=tiny.cosmos_predict, device=args.device, previews=previews),
        name=f"bench-diffusers-{name}",
        output_dir=root / name,
        log_file=root / f"{name}.log",
        worker_env={"OMP_NUM_THREADS": str(args.threads)},
    )
    app.wait_ready(timeout=600)
    return app


# Runs in a fresh process with the worker's environment: one timed pipeline call per line.
DIRECT = """
import json, sys, time, torch
from cosmos_gradio_nb.samples import tiny_diffusers as tiny
device = sys.argv[1]
pipe = tiny.cosmos_predict().to(device)
pipe.set_progress_bar_config(disable=True)
for line in sys.stdin:
    kwargs = json.loads(line)
    started = time.perf_counter()
    pipe(**kwargs, generator=torch.Generator("cpu").manual_seed(1), output_type="np")
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    print(time.perf_counter() - started, flush=True)
"""


class DirectRunner:
    """The pipeline called directly, in its own process with the worker's thread settings."""

    def __init__(self, device: str, threads: int) -> None:
        import subprocess
        import sys

        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", DIRECT, device],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )

    def run(self, request: dict[str, Any]) -> float:
        assert self.proc.stdin and self.proc.stdout
        kwargs = {k: v for k, v in request.items() if k not in ("seed", "fps")}
        self.proc.stdin.write(json.dumps(kwargs) + "\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


def overhead(app: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Interleaved: the pipeline called directly, then the same request through the app."""
    import torch

    device = args.device or ("cuda:0" if torch.cuda.is_available() else "cpu")
    runner = DirectRunner(device, args.threads)
    request = _request(args)
    try:
        runner.run(request)  # warm-up both sides
        app.infer(request).result(timeout=600)
        direct, through, inside, write = [], [], [], []
        for _ in range(args.runs):
            direct.append(runner.run(request))
            started = time.perf_counter()
            status = app.infer(request).result(timeout=600).status
            through.append(time.perf_counter() - started)
            inside.append(status["denoise_seconds"] + status["decode_seconds"])
            write.append(status["write_seconds"])
    finally:
        runner.close()
    d, t, w = statistics.median(direct), statistics.median(through), statistics.median(inside)
    return {
        "direct_s": round(d, 4),
        "app_s": round(t, 4),
        "overhead_s": round(t - d, 4),
        "overhead_fraction": round((t - d) / d, 4),
        "worker_pipeline_s": round(w, 4),
        "worker_write_s": round(statistics.median(write), 4),
        "around_pipeline_fraction": round((t - w) / w, 4),
        "goal_met": (t - d) / d <= GOAL_OVERHEAD,
    }


def preview_cost(app_off: Any, app_on_s: float, args: argparse.Namespace) -> dict[str, Any]:
    """One preview's compute for small and Cosmos-sized latents; previews off end to end."""
    import torch

    from cosmos_gradio_nb._models.diffusers.preview import LatentPreviewer

    out: dict[str, Any] = {}
    torch.set_num_threads(args.threads)  # as in the worker
    device = args.device or ("cuda:0" if torch.cuda.is_available() else "cpu")
    real_size = (1, 16, 24, 88, 160)  # 704x1280, 93 frames through the Wan VAE
    small = (1, 16, (args.frames - 1) // 4 + 1, args.size // 8, args.size // 8)
    for label, shape in (("tiny", small), ("cosmos_720p", real_size)):
        previewer = LatentPreviewer(16, 8)
        latents = torch.randn(shape, device=device)
        previewer.learn(latents, torch.rand(shape[3] * 8, shape[4] * 8, 3).mul(255).byte().numpy())
        previewer.image(latents)
        started = time.perf_counter()
        for _ in range(20):
            previewer.image(latents)
        out[f"{label}_ms"] = round((time.perf_counter() - started) / 20 * 1000, 3)
    request = _request(args)
    app_off.infer(request).result(timeout=600)
    off = []
    for _ in range(args.runs):
        started = time.perf_counter()
        app_off.infer(request).result(timeout=600)
        off.append(time.perf_counter() - started)
    off_s = statistics.median(off)
    out["app_previews_off_s"] = round(off_s, 4)
    out["app_previews_on_s"] = round(app_on_s, 4)
    out["per_step_ms"] = round((app_on_s - off_s) / args.steps * 1000, 3)
    return out


def _started_after(fut: Any, since: float) -> float:
    fut.result(timeout=600)
    return float(fut.result().status["started_at"]) - since


def stop_then_next(app: Any, args: argparse.Namespace) -> dict[str, Any]:
    """terminate() vs SIGKILL of a running request: when does the queued next one start?"""
    request = _request(args)
    out: dict[str, Any] = {}
    for how in ("terminate", "kill"):
        times = []
        for _ in range(max(1, args.runs // 2)):
            long = app.infer({**request, "num_inference_steps": 1000})
            following = app.infer({**request, "num_inference_steps": 1})
            deadline = time.monotonic() + 600
            while (long.progress or 0) <= 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            pid = app.workers()[0].pid
            since = time.time()
            if how == "terminate":
                long.terminate()
            else:
                os.kill(pid, signal.SIGKILL)
            times.append(_started_after(following, since))
            out.setdefault(f"{how}_same_pid", []).append(app.workers()[0].pid == pid)
        out[f"{how}_next_start_s"] = round(statistics.median(times), 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=128, help="height and width (multiple of 16)")
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads, here and in the worker"
    )
    parser.add_argument("--device", default=None, help="cpu, cuda:0 (default: CUDA if present)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_diffusers_"))
    app = _app(root, args, previews=True, name="on")
    try:
        over = overhead(app, args)
        print(
            f"overhead at {args.steps} steps: direct {over['direct_s']:.3f} s, through the app "
            f"{over['app_s']:.3f} s: +{over['overhead_s'] * 1000:.0f} ms = "
            f"{over['overhead_fraction']:.1%} (goal <= {GOAL_OVERHEAD:.0%}: "
            f"{'met' if over['goal_met'] else 'NOT met'}); against the worker's own timing of "
            f"the same call ({over['worker_pipeline_s']:.3f} s): "
            f"+{over['around_pipeline_fraction']:.1%}, of which writing the mp4 and poster "
            f"{over['worker_write_s'] * 1000:.0f} ms"
        )
        app_off = _app(root, args, previews=False, name="off")
        try:
            prev = preview_cost(app_off, over["app_s"], args)
        finally:
            app_off.close()
        print(
            f"previews: one costs {prev['tiny_ms']:.2f} ms (these latents), "
            f"{prev['cosmos_720p_ms']:.2f} ms (704x1280x93 latents); end to end "
            f"{prev['per_step_ms']:+.2f} ms per step (on {prev['app_previews_on_s']:.3f} s, off "
            f"{prev['app_previews_off_s']:.3f} s)"
        )
        stop = stop_then_next(app, args)
        print(
            f"terminate() -> next request started after {stop['terminate_next_start_s']:.3f} s "
            f"(same worker: {stop['terminate_same_pid']}); kill -9 -> "
            f"{stop['kill_next_start_s']:.3f} s (reload)"
        )
    finally:
        app.close()
    print("BENCH_DIFFUSERS " + json.dumps({"overhead": over, "previews": prev, "stop": stop}))


if __name__ == "__main__":
    main()
