"""What NVML (``nvidia-ml-py``'s ``pynvml``) says about the GPUs, without touching CUDA.

The doctor reads names, memory and compute processes through NVML so that its own
process never creates a CUDA context (which would itself hold GPU memory and show
up as a process). ``pynvml`` is optional (``pip install "cosmos_gradio_nb[gpu]"``):
without it, or without a driver, :func:`open_nvml` raises :class:`NvmlUnavailable`
saying why, and the doctor says so.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

__all__ = ["GpuInfo", "GpuProcess", "Nvml", "NvmlUnavailable", "open_nvml"]

_MIB = 1024 * 1024


class NvmlUnavailable(RuntimeError):
    """NVML cannot be used here; the message says why (not installed, no driver...)."""


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    uuid: str
    memory_total_mib: float
    memory_used_mib: float


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    used_mib: float | None  # None when the driver does not say (some MIG and WSL setups)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Nvml:
    """An initialised NVML session (``close()`` ends it); every call returns plain data."""

    def __init__(self, module: ModuleType) -> None:
        self._nv = module

    def driver_version(self) -> str:
        return _text(self._nv.nvmlSystemGetDriverVersion())

    def cuda_driver_version(self) -> str | None:
        """The newest CUDA the driver supports (``12.8``), or None if it does not say."""
        try:
            value = int(self._nv.nvmlSystemGetCudaDriverVersion())
        except Exception:
            return None
        return f"{value // 1000}.{value % 1000 // 10}"

    def count(self) -> int:
        return int(self._nv.nvmlDeviceGetCount())

    def gpu(self, index: int) -> GpuInfo:
        nv = self._nv
        handle = nv.nvmlDeviceGetHandleByIndex(index)
        memory = nv.nvmlDeviceGetMemoryInfo(handle)
        return GpuInfo(
            index=index,
            name=_text(nv.nvmlDeviceGetName(handle)),
            uuid=_text(nv.nvmlDeviceGetUUID(handle)),
            memory_total_mib=memory.total / _MIB,
            memory_used_mib=memory.used / _MIB,
        )

    def gpus(self) -> list[GpuInfo]:
        return [self.gpu(i) for i in range(self.count())]

    def memory_used_mib(self, index: int) -> float:
        handle = self._nv.nvmlDeviceGetHandleByIndex(index)
        return float(self._nv.nvmlDeviceGetMemoryInfo(handle).used / _MIB)

    def processes(self, index: int) -> list[GpuProcess]:
        """The compute processes on GPU ``index`` (pids as NVML sees them)."""
        handle = self._nv.nvmlDeviceGetHandleByIndex(index)
        out = []
        for proc in self._nv.nvmlDeviceGetComputeRunningProcesses(handle):
            used = getattr(proc, "usedGpuMemory", None)
            out.append(GpuProcess(int(proc.pid), None if used is None else used / _MIB))
        return out

    def close(self) -> None:
        try:
            self._nv.nvmlShutdown()
        except Exception:
            pass


def open_nvml(module: ModuleType | None = None) -> Nvml:
    """Import ``pynvml`` (or use ``module``) and initialise NVML; NvmlUnavailable says why not."""
    if module is None:
        try:
            module = importlib.import_module("pynvml")
        except ImportError:
            raise NvmlUnavailable(
                'pynvml is not installed (pip install "cosmos_gradio_nb[gpu]", which is '
                "nvidia-ml-py)"
            ) from None
    try:
        module.nvmlInit()
    except Exception as exc:  # pynvml.NVMLError_LibraryNotFound, _DriverNotLoaded...
        raise NvmlUnavailable(f"NVML did not start: {_text(exc) or type(exc).__name__}") from None
    return Nvml(module)
