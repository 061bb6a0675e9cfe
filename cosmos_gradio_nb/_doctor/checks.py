"""The doctor's checks: real workers, started as an app would start them, on this machine.

With GPUs: one sample-model worker pinned to each GPU (what ``CUDA_VISIBLE_DEVICES``
it sees, which device the model used), a 2-rank NCCL all-reduce when there are two
or more, and the GPU memory after ``terminate()`` and after ``close()`` (no compute
process of ours left in NVML). Without: a sample request end to end on the CPU,
``terminate()`` of a running request, a 2-rank gloo all-reduce, and no worker left
after ``close()``. Each check is bounded in time and turns any exception into a
failed check with its message, so one broken thing never hides the others.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .nvml import GpuInfo, Nvml

__all__ = ["Check", "GpuTarget", "cpu_checks", "gpu_checks", "run_check"]

SAMPLE = "cosmos_gradio_nb.samples.video_model:create_worker"
ALLREDUCE = "cosmos_gradio_nb.samples.allreduce:create_worker"
TINY = {"prompt": "doctor check", "seed": 1, "num_frames": 4, "fps": 4, "width": 64, "height": 64}
SLOW = {**TINY, "num_frames": 600, "frame_delay": 0.05}  # half a minute unless stopped
TIMEOUT = 300.0  # seconds for any one wait (a first CUDA start can be slow)
MEMORY_SLACK_MIB = 64.0


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    seconds: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GpuTarget:
    """A GPU the app would use: its ``CUDA_VISIBLE_DEVICES`` id and, when known, NVML's view."""

    device_id: str
    info: GpuInfo | None


def run_check(name: str, fn: Callable[[], tuple[bool, str, dict[str, Any]]]) -> Check:
    started = time.monotonic()
    try:
        ok, detail, data = fn()
    except Exception as exc:
        ok, detail, data = False, f"{type(exc).__name__}: {exc}".splitlines()[0][:400], {}
    return Check(name, ok, detail, round(time.monotonic() - started, 2), data)


def _app(root: Path, factory: str, num_gpus: int, group_size: int) -> Any:
    from .._app.apps import NotebookApp

    return NotebookApp(
        factory=factory,
        name=f"doctor-{uuid.uuid4().hex[:8]}",
        num_gpus=num_gpus,
        gpus_per_model=group_size,
        output_dir=root / "outputs",
        uploads_dir=root / "uploads",
        log_file=root / "doctor.log",
        startup_timeout=TIMEOUT,
    )


def _our_pids() -> set[int]:
    import psutil

    return {p.pid for p in psutil.Process().children(recursive=True)}


def _wait(cond: Callable[[], Any], timeout: float, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def _terminate_running(app: Any) -> tuple[bool, str, dict[str, Any]]:
    """terminate() a running request; the next request must run. Returns the check's parts."""
    fut = app.infer(dict(SLOW))
    if not _wait(lambda: fut.state == "running" and (fut.progress or 0) > 0, TIMEOUT):
        return False, f"the slow request never started running ({fut.state})", {}
    asked, asked_epoch = time.monotonic(), time.time()
    fut.terminate()
    if not _wait(fut.done, TIMEOUT):
        return False, "terminate() did not end the request", {}
    stopped = time.monotonic() - asked
    after = app.infer(dict(TINY)).result(timeout=TIMEOUT)
    next_start = float(after.status.get("started_at") or asked_epoch) - asked_epoch
    data = {
        "state": fut.state,
        "stop_seconds": round(stopped, 3),
        "next_request_started_after_seconds": round(next_start, 3),
    }
    detail = f"{fut.state} in {stopped:.2f} s; the next request started {next_start:.2f} s later"
    return fut.cancelled(), detail, data


def cpu_checks(root: Path | None = None) -> list[Check]:
    """No GPU: the CPU path, end to end."""
    root = root or Path(tempfile.mkdtemp(prefix="cosmos_doctor_"))
    checks: list[Check] = []
    before = _our_pids()
    app = _app(root, SAMPLE, 1, 1)
    try:

        def sample() -> tuple[bool, str, dict[str, Any]]:
            app.wait_ready(TIMEOUT)
            res = app.infer(dict(TINY)).result(timeout=TIMEOUT)
            device = res.status.get("device")
            ok = bool(res.videos) and device == "cpu"
            name = res.videos[0].name if res.videos else "no video"
            return ok, f"{name} ({TINY['num_frames']} frames) on {device}", {"device": device}

        checks.append(run_check("sample request on CPU", sample))
        checks.append(
            run_check("terminate() of a running request", lambda: _terminate_running(app))
        )
    finally:
        workers = {w.pid for w in app.workers() if w.pid} | (_our_pids() - before)
        app.close()

    def gone() -> tuple[bool, str, dict[str, Any]]:
        def left() -> list[int]:
            return sorted(set(workers) & _our_pids())

        _wait(lambda: not left(), 30)
        leftover = left()
        return not leftover, f"still running: {leftover}" if leftover else "no worker left", {}

    checks.append(run_check("workers gone after close()", gone))
    checks.append(run_check("gloo all-reduce (2 ranks)", lambda: _all_reduce(root, "gloo")))
    return checks


def _all_reduce(root: Path, backend: str) -> tuple[bool, str, dict[str, Any]]:
    app = _app(root, ALLREDUCE, 2, 2)
    try:
        app.wait_ready(TIMEOUT)
        status = app.infer({}).result(timeout=TIMEOUT).status
    finally:
        app.close()
    ok = status.get("backend") == backend and status.get("sum") == status.get("expected")
    detail = f"1 + 2 = {status.get('sum'):g} over {status.get('backend')} on {status.get('device')}"
    return ok, detail, {k: status.get(k) for k in ("sum", "expected", "backend", "device")}


def gpu_checks(
    targets: list[GpuTarget], nvml: Nvml | None, root: Path | None = None
) -> list[Check]:
    """With GPUs: a worker per GPU, memory after terminate() and close(), NCCL with two or more."""
    root = root or Path(tempfile.mkdtemp(prefix="cosmos_doctor_"))
    indexes = [t.info.index for t in targets if t.info is not None]
    baseline = {i: _gpu_state(nvml, i, set()) for i in indexes} if nvml else {}
    checks: list[Check] = []
    app = _app(root, SAMPLE, len(targets), 1)
    try:
        checks.extend(_pinned(app, targets))
        loaded = {i: _gpu_state(nvml, i, _our_pids()) for i in indexes} if nvml else {}
        checks.append(
            run_check("terminate() of a running request", lambda: _terminate_running(app))
        )
        if nvml:
            checks.append(
                run_check(
                    "GPU memory after terminate()", lambda: _after_terminate(app, nvml, loaded)
                )
            )
    finally:
        workers = set(_our_pids())
        app.close()
    if nvml:
        checks.append(
            run_check("GPU memory after close()", lambda: _after_close(nvml, baseline, workers))
        )
    if len(targets) >= 2:
        checks.append(run_check("NCCL all-reduce (2 ranks)", lambda: _all_reduce(root, "nccl")))
    return checks


def _pinned(app: Any, targets: list[GpuTarget]) -> list[Check]:
    """One request per GPU at once: each idle group gets one; what did each worker see?"""
    started = time.monotonic()
    try:
        app.wait_ready(TIMEOUT)
        results = [f.result(timeout=TIMEOUT) for f in [app.infer(dict(TINY)) for _ in targets]]
        error = None
    except Exception as exc:
        results, error = [], f"{type(exc).__name__}: {exc}".splitlines()[0][:400]
    seconds = round(time.monotonic() - started, 2)
    by_gpu = {w.gpu: w.group for w in app.workers()}
    by_group = {r.status.get("group"): r.status for r in results}
    checks = []
    for target in targets:
        name = f"worker on GPU {target.device_id}"
        if target.device_id not in by_gpu:
            given = ", ".join(repr(g) for g in sorted(by_gpu)) or "none"
            detail = f"no worker was given this GPU (CUDA_VISIBLE_DEVICES of the workers: {given})"
            checks.append(Check(name, False, error or detail, seconds))
            continue
        status = by_group.get(by_gpu[target.device_id])
        if status is None:
            checks.append(Check(name, False, error or "no request reached its worker", seconds))
            continue
        seen, device = status.get("cuda_visible_devices"), status.get("device")
        gpu_name = status.get("gpu_name")
        ok = seen == target.device_id and str(device).startswith("cuda")
        detail = f"CUDA_VISIBLE_DEVICES={seen} inside, model on {device} ({gpu_name})"
        if target.info is not None and gpu_name and gpu_name != target.info.name:
            detail += f"; NVML names GPU {target.info.index} {target.info.name}: set CUDA_DEVICE_ORDER=PCI_BUS_ID"
        data = {"cuda_visible_devices": seen, "device": device, "gpu_name": gpu_name}
        checks.append(Check(name, ok, detail, seconds, data))
    return checks


def _gpu_state(nvml: Nvml | None, index: int, ours: set[int]) -> dict[str, Any]:
    assert nvml is not None
    procs = nvml.processes(index)
    return {
        "used_mib": round(nvml.memory_used_mib(index), 1),
        "processes": len(procs),
        "ours": sorted(p.pid for p in procs if p.pid in ours),
    }


def _after_terminate(
    app: Any, nvml: Nvml, loaded: dict[int, dict[str, Any]]
) -> tuple[bool, str, dict[str, Any]]:
    """After terminate(): on the GPUs only current workers of ours, memory not above loaded."""
    _wait(lambda: app.ready and app.queue_length == 0, TIMEOUT)
    current = {w.pid for w in app.workers() if w.pid}
    now = {}
    for i, before in loaded.items():
        known = set(before["ours"]) | _our_pids()  # the stopped worker's pid, if it lingers
        now[i] = _gpu_state(nvml, i, known)
    stale = {i: [p for p in s["ours"] if p not in current] for i, s in now.items()}
    over = [i for i, s in now.items() if s["used_mib"] > loaded[i]["used_mib"] + MEMORY_SLACK_MIB]
    ok = not any(stale.values()) and not over
    parts = [
        f"GPU {i}: {s['used_mib']:.0f} MiB (loaded {loaded[i]['used_mib']:.0f})"
        for i, s in now.items()
    ]
    if any(stale.values()):
        parts.append(f"stopped workers still on the GPU: {stale}")
    return ok, "; ".join(parts), {"loaded": loaded, "now": now, "stale": stale}


def _after_close(
    nvml: Nvml, baseline: dict[int, dict[str, Any]], ours: set[int]
) -> tuple[bool, str, dict[str, Any]]:
    """After close(): no compute process of ours in NVML, memory back to the baseline."""

    def state() -> dict[int, dict[str, Any]]:
        return {i: _gpu_state(nvml, i, ours) for i in baseline}

    def clean() -> bool:
        return all(
            not s["ours"] and s["used_mib"] <= baseline[i]["used_mib"] + MEMORY_SLACK_MIB
            for i, s in state().items()
        )

    _wait(clean, 30)
    now = state()
    left = {i: s["ours"] for i, s in now.items() if s["ours"]}
    parts = [
        f"GPU {i}: {s['used_mib']:.0f} MiB (baseline {baseline[i]['used_mib']:.0f})"
        for i, s in now.items()
    ]
    if left:
        return False, f"processes of ours still on the GPU: {left}", {"now": now}
    high = [i for i, s in now.items() if s["used_mib"] > baseline[i]["used_mib"] + MEMORY_SLACK_MIB]
    note = f" (GPU {high} above: another process?)" if high else ""
    return True, "; ".join(parts) + note, {"baseline": baseline, "now": now}


def visible_targets(nvml: Nvml | None, torch_count: int) -> list[GpuTarget]:
    """The GPUs an app started here would use, as ``CUDA_VISIBLE_DEVICES`` ids."""
    infos = {g.index: g for g in nvml.gpus()} if nvml else {}
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        ids = [str(i) for i in (sorted(infos) or range(torch_count))]
    else:
        ids = [d.strip() for d in visible.split(",") if d.strip()]
    by_uuid = {g.uuid: g for g in infos.values()}
    return [GpuTarget(d, infos.get(int(d)) if d.isdigit() else by_uuid.get(d)) for d in ids]
