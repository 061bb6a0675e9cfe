"""``cosmos-gradio-nb doctor``: will cosmos_gradio_nb work on this machine? A table, or JSON.

Collects the versions (Python, torch and its CUDA, the driver), the GPUs NVML (or
torch) sees, runs :mod:`.checks` on GPUs or, without any, on the CPU path, and
prints a table for people or, with ``--json``, one JSON document. Exit code 0 when
every check passed, 1 otherwise.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import asdict
from typing import Any, TextIO

from .checks import Check, cpu_checks, gpu_checks, visible_targets
from .nvml import Nvml, NvmlUnavailable, open_nvml

__all__ = ["environment", "main", "report"]


def environment(nvml: Nvml | None, nvml_problem: str | None) -> dict[str, Any]:
    """Versions and the GPUs visible, without creating a CUDA context in this process."""
    from .. import __version__

    info: dict[str, Any] = {
        "cosmos_gradio_nb": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "nvml": "ok" if nvml else nvml_problem,
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_cuda"] = torch.version.cuda  # None on a CPU build
        info["cuda_available"] = bool(torch.cuda.is_available())
        info["torch_gpu_count"] = torch.cuda.device_count() if info["cuda_available"] else 0
    except ImportError:
        info.update(torch=None, torch_cuda=None, cuda_available=False, torch_gpu_count=0)
    info["driver"] = nvml.driver_version() if nvml else None
    info["driver_cuda"] = nvml.cuda_driver_version() if nvml else None
    gpus = nvml.gpus() if nvml else []
    info["gpus"] = [
        {
            "index": g.index,
            "name": g.name,
            "memory_total_mib": round(g.memory_total_mib),
            "memory_used_mib": round(g.memory_used_mib),
        }
        for g in gpus
    ]
    return info


def report(nvml_module: Any = None) -> dict[str, Any]:
    """Run everything: the environment, then the GPU or the CPU checks."""
    started = time.monotonic()
    try:
        nvml: Nvml | None = open_nvml(nvml_module)
        problem = None
    except NvmlUnavailable as exc:
        nvml, problem = None, str(exc)
    try:
        env = environment(nvml, problem)
        targets = visible_targets(nvml, env["torch_gpu_count"]) if env["cuda_available"] else []
        if targets:
            mode = "gpu"
            checks = gpu_checks(targets, nvml)
        else:
            mode = "cpu"
            checks = cpu_checks()
    finally:
        if nvml is not None:
            nvml.close()
    return {
        "ok": all(c.ok for c in checks),
        "mode": mode,
        **env,
        "checks": [asdict(c) for c in checks],
        "seconds": round(time.monotonic() - started, 2),
    }


def _table(doc: dict[str, Any], out: TextIO) -> None:
    cuda = f"CUDA {doc['torch_cuda']}" if doc.get("torch_cuda") else "a CPU build"
    print("cosmos-gradio-nb doctor", file=out)
    print(
        f"  cosmos_gradio_nb {doc['cosmos_gradio_nb']} · Python {doc['python']} · "
        f"torch {doc.get('torch')} ({cuda})",
        file=out,
    )
    driver = doc.get("driver")
    print(
        f"  driver: {driver} (CUDA {doc.get('driver_cuda')})" if driver else "  driver: none",
        file=out,
    )
    print(f"  NVML: {doc['nvml']}", file=out)
    if doc["gpus"]:
        for g in doc["gpus"]:
            print(
                f"  GPU {g['index']}: {g['name']}, {g['memory_total_mib'] / 1024:.1f} GiB "
                f"({g['memory_used_mib'] / 1024:.1f} GiB in use)",
                file=out,
            )
    if doc["mode"] == "cpu":
        print("  no CUDA GPU visible: checking the CPU path", file=out)
    print(file=out)
    checks = [Check(**c) for c in doc["checks"]]
    width = max((len(c.name) for c in checks), default=10)
    for c in checks:
        mark = "ok  " if c.ok else "FAIL"
        print(f"  {mark} {c.name:<{width}}  {c.detail}  ({c.seconds:.1f} s)", file=out)
    failed = [c for c in checks if not c.ok]
    print(file=out)
    if failed:
        print(f"{len(failed)} of {len(checks)} checks failed", file=out)
    else:
        print(f"all {len(checks)} checks passed in {doc['seconds']:.0f} s", file=out)


def main(as_json: bool = False, out: TextIO | None = None) -> int:
    """Print the report (a table, or JSON); 0 when every check passed, else 1."""
    out = out or sys.stdout
    doc = report()
    if as_json:
        json.dump(doc, out, indent=2)
        print(file=out)
    else:
        _table(doc, out)
    return 0 if doc["ok"] else 1
