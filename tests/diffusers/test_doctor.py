"""``cosmos-gradio-nb doctor``: the CPU path end to end, and the NVML code against a fake pynvml.

The end-to-end test runs ``python -m cosmos_gradio_nb doctor --json`` as a user
would on this (GPU-less) machine: real workers, a real gloo group. The NVML code
is exercised with a fake ``pynvml`` module, since no GPU is here.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cosmos_gradio_nb._doctor import checks, report
from cosmos_gradio_nb._doctor.nvml import NvmlUnavailable, open_nvml

REPO = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024


def test_doctor_json_on_the_cpu_path() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cosmos_gradio_nb", "doctor", "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
        env={**_env(), "CUDA_VISIBLE_DEVICES": ""},
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    doc = json.loads(done.stdout)
    assert doc["ok"] is True and doc["mode"] == "cpu" and doc["cuda_available"] is False
    assert doc["python"] == ".".join(map(str, sys.version_info[:3]))
    assert doc["torch"].startswith("2.") and doc["gpus"] == []
    assert doc["nvml"] != "ok"  # no driver here: it says why
    names = [c["name"] for c in doc["checks"]]
    assert names == [
        "sample request on CPU",
        "terminate() of a running request",
        "workers gone after close()",
        "gloo all-reduce (2 ranks)",
    ]
    by_name = {c["name"]: c for c in doc["checks"]}
    assert by_name["sample request on CPU"]["data"]["device"] == "cpu"
    assert by_name["gloo all-reduce (2 ranks)"]["data"] == {
        "sum": 3.0,
        "expected": 3.0,
        "backend": "gloo",
        "device": "cpu",
    }
    assert by_name["terminate() of a running request"]["data"]["state"] == "cancelled"


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k not in ("OUTPUT_DIR", "LOG_FILE")}


class FakeNVMLError(Exception):
    pass


def fake_pynvml(gpus: list[dict[str, Any]], driver: Any = b"570.86.15") -> Any:
    """A module with pynvml's functions over ``gpus`` (name, total/used MiB, processes)."""
    state = {"init": 0, "shutdown": 0}

    def handle(i: int) -> dict[str, Any]:
        if i >= len(gpus):
            raise FakeNVMLError("Invalid Argument")
        return gpus[i]

    def memory(h: dict[str, Any]) -> Any:
        used = h["used"]() if callable(h["used"]) else h["used"]
        return SimpleNamespace(total=h["total"] * MIB, used=used * MIB, free=0)

    def procs(h: dict[str, Any]) -> list[Any]:
        listed = h["procs"]() if callable(h["procs"]) else h["procs"]
        return [SimpleNamespace(pid=pid, usedGpuMemory=mib * MIB) for pid, mib in listed]

    return SimpleNamespace(
        state=state,
        NVMLError=FakeNVMLError,
        nvmlInit=lambda: state.__setitem__("init", state["init"] + 1),
        nvmlShutdown=lambda: state.__setitem__("shutdown", state["shutdown"] + 1),
        nvmlSystemGetDriverVersion=lambda: driver,
        nvmlSystemGetCudaDriverVersion=lambda: 12080,
        nvmlDeviceGetCount=lambda: len(gpus),
        nvmlDeviceGetHandleByIndex=handle,
        nvmlDeviceGetName=lambda h: h["name"].encode(),  # old pynvml returns bytes
        nvmlDeviceGetUUID=lambda h: h["uuid"],
        nvmlDeviceGetMemoryInfo=memory,
        nvmlDeviceGetComputeRunningProcesses=procs,
    )


def _gpu(i: int, used: Any = 500.0, procs: Any = ()) -> dict[str, Any]:
    return {
        "name": "NVIDIA H200",
        "uuid": f"GPU-{i}",
        "total": 143771,
        "used": used,
        "procs": procs,
    }


def test_nvml_reads_gpus_versions_and_processes() -> None:
    module = fake_pynvml([_gpu(0, procs=[(101, 900)]), _gpu(1, used=1200.5)])
    nvml = open_nvml(module)
    assert nvml.driver_version() == "570.86.15" and nvml.cuda_driver_version() == "12.8"
    [first, second] = nvml.gpus()
    assert (first.name, first.uuid, first.memory_total_mib) == ("NVIDIA H200", "GPU-0", 143771)
    assert second.memory_used_mib == 1200.5
    assert [(p.pid, p.used_mib) for p in nvml.processes(0)] == [(101, 900)]
    env = report.environment(nvml, None)
    assert env["driver"] == "570.86.15" and [g["index"] for g in env["gpus"]] == [0, 1]
    nvml.close()
    assert module.state == {"init": 1, "shutdown": 1}


def test_nvml_missing_or_without_a_driver_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_driver() -> None:
        raise FakeNVMLError("Driver Not Loaded")

    module = fake_pynvml([])
    module.nvmlInit = no_driver
    with pytest.raises(NvmlUnavailable, match="NVML did not start: Driver Not Loaded"):
        open_nvml(module)
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    with pytest.raises(NvmlUnavailable, match=r"pynvml is not installed \(pip install"):
        open_nvml()


def test_visible_targets_follow_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = open_nvml(fake_pynvml([_gpu(0), _gpu(1), _gpu(2)]))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert [t.device_id for t in checks.visible_targets(nvml, 3)] == ["0", "1", "2"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,GPU-0")
    found = checks.visible_targets(nvml, 2)
    assert [(t.device_id, t.info and t.info.index) for t in found] == [("2", 2), ("GPU-0", 0)]
    assert [t.device_id for t in checks.visible_targets(None, 2)] == ["2", "GPU-0"]


def test_memory_back_to_baseline_after_close(monkeypatch: pytest.MonkeyPatch) -> None:
    """Processes of ours that leave within the wait pass; one that stays fails, named."""
    polls = {"n": 0}

    def leaving() -> list[tuple[int, float]]:
        polls["n"] += 1
        return [(4242, 800.0)] if polls["n"] < 3 else [(7, 100.0)]  # pid 7: not ours

    nvml = open_nvml(
        fake_pynvml([_gpu(0, used=lambda: 600.0 if polls["n"] >= 3 else 1400.0, procs=leaving)])
    )
    baseline = {0: {"used_mib": 590.0, "processes": 1, "ours": []}}
    ok, detail, _ = checks._after_close(nvml, baseline, {4242})
    assert ok and "GPU 0: 600 MiB (baseline 590)" in detail and polls["n"] >= 3

    stuck = open_nvml(fake_pynvml([_gpu(0, used=1400.0, procs=[(4242, 800.0)])]))
    monkeypatch.setattr(checks, "_wait", lambda cond, timeout, every=0.1: cond())  # no 30 s
    ok, detail, _ = checks._after_close(stuck, baseline, {4242})
    assert not ok and "processes of ours still on the GPU: {0: [4242]}" in detail


def test_after_terminate_flags_a_stopped_worker_left_on_the_gpu() -> None:
    app = SimpleNamespace(ready=True, queue_length=0, workers=lambda: [SimpleNamespace(pid=5001)])
    loaded = {0: {"used_mib": 1000.0, "processes": 1, "ours": [5000]}}
    clean = open_nvml(fake_pynvml([_gpu(0, used=1010.0, procs=[(5001, 500.0)])]))
    ok, detail, data = checks._after_terminate(app, clean, loaded)
    assert ok and "GPU 0: 1010 MiB (loaded 1000)" in detail
    stale = open_nvml(fake_pynvml([_gpu(0, used=1500.0, procs=[(5000, 500.0), (5001, 500.0)])]))
    ok, detail, data = checks._after_terminate(app, stale, loaded)
    assert not ok and data["stale"] == {0: [5000]} and "stopped workers still on the GPU" in detail


def test_the_table_and_the_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    doc = {
        "ok": False,
        "mode": "gpu",
        "cosmos_gradio_nb": "0.1.0",
        "python": "3.11.7",
        "torch": "2.13.0",
        "torch_cuda": "12.8",
        "driver": "570.86.15",
        "driver_cuda": "12.8",
        "nvml": "ok",
        "gpus": [
            {"index": 0, "name": "NVIDIA H200", "memory_total_mib": 143771, "memory_used_mib": 500}
        ],
        "checks": [
            {"name": "worker on GPU 0", "ok": True, "detail": "cuda:0", "seconds": 1.0, "data": {}},
            {
                "name": "GPU memory after close()",
                "ok": False,
                "detail": "left",
                "seconds": 2.0,
                "data": {},
            },
        ],
        "seconds": 3.0,
    }
    monkeypatch.setattr(report, "report", lambda nvml_module=None: doc)
    out = io.StringIO()
    assert report.main(out=out) == 1
    text = out.getvalue()
    assert "GPU 0: NVIDIA H200, 140.4 GiB" in text and "torch 2.13.0 (CUDA 12.8)" in text
    assert "FAIL GPU memory after close()" in text and "1 of 2 checks failed" in text
    doc["ok"] = True
    out = io.StringIO()
    assert report.main(as_json=True, out=out) == 0 and json.loads(out.getvalue())["ok"]
