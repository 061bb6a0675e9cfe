"""Machine figures for the GPUs panel: NVIDIA GPUs through NVML, CPU and memory through psutil.

:func:`sample_node` reads one machine as raw counters (a :class:`NodeSample`:
plain data that travels as JSON from a Ray node); :func:`system_stats` turns the
samples of every node, the sample before each, and the app's workers into what
the panels show (:class:`SystemStats`): per node its CPU and memory use and its
GPUs, per worker rank its device, memory and utilisation and the request it runs.
Rates (CPU %) are computed between two samples, so sampling keeps no state on the
node and costs nothing between calls.

NVML is NVIDIA's management library (the one ``nvidia-smi`` uses), reached through
``pynvml`` from the ``nvidia-ml-py`` package; it is optional. Without it, without
a driver, or on a machine with no NVIDIA GPU, a node reports its CPU and memory
and says why there are no GPU figures. :class:`Nvml` takes the module to use, so
tests hand it a fake one.

Which GPU a rank uses: the GPU whose compute processes include the rank's process
(exact, once the model has touched CUDA); else the rank's ``CUDA_VISIBLE_DEVICES``:
a ``GPU-``/``MIG-`` UUID is matched to NVML's, an index to NVML's index (NVML
counts in PCI bus order, CUDA by default fastest first: the two agree on machines
of one GPU model, and always with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``).
"""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "GpuSample",
    "NodeSample",
    "NodeStats",
    "Nvml",
    "ProcSample",
    "RankStats",
    "SystemStats",
    "sample_node",
    "system_stats",
]

NVIDIA_DRIVER = "/proc/driver/nvidia"  # there when the NVIDIA kernel driver is loaded


@dataclass(frozen=True)
class GpuSample:
    """One GPU as NVML reads it now."""

    index: int
    uuid: str
    name: str
    memory_used: int
    memory_total: int
    utilization: int | None
    """Percent of the last sample period a kernel ran (NVML's ``gpu`` rate); None if unknown."""
    processes: dict[int, int] = field(default_factory=dict)
    """Compute processes on it: pid -> GPU memory used (bytes; 0 when NVML cannot say)."""


@dataclass(frozen=True)
class ProcSample:
    """One worker process (and its children) as psutil reads it: raw CPU seconds, memory."""

    pid: int
    cpu_seconds: float
    rss: int


@dataclass(frozen=True)
class NodeSample:
    """Raw counters of one machine at ``time``; JSON-able with :meth:`to_dict`."""

    node: str
    time: float
    cpu_count: int
    cpu_busy: float
    """Seconds every CPU spent not idle since boot (summed over CPUs)."""
    cpu_total: float
    memory_used: int
    memory_total: int
    gpus: list[GpuSample] = field(default_factory=list)
    gpu_note: str = ""
    """Why there are no GPU figures (``""`` when NVML answered)."""
    procs: dict[int, ProcSample] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["procs"] = {str(pid): p for pid, p in data["procs"].items()}
        for gpu in data["gpus"]:
            gpu["processes"] = {str(pid): used for pid, used in gpu["processes"].items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NodeSample:
        gpus = [
            GpuSample(**{**g, "processes": {int(k): int(v) for k, v in g["processes"].items()}})
            for g in data.get("gpus", [])
        ]
        procs = {int(k): ProcSample(**v) for k, v in (data.get("procs") or {}).items()}
        return cls(**{**data, "gpus": gpus, "procs": procs})


class NvmlModule(Protocol):
    """What is used of ``pynvml`` (a fake in the tests)."""

    NVMLError: type[Exception]

    def nvmlInit(self) -> None: ...
    def nvmlDeviceGetCount(self) -> int: ...
    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any: ...
    def nvmlDeviceGetName(self, handle: Any) -> str | bytes: ...
    def nvmlDeviceGetUUID(self, handle: Any) -> str | bytes: ...
    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> Any: ...
    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any: ...
    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> list[Any]: ...


def _text(value: str | bytes) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class Nvml:
    """NVML for one process: initialised once, on first use; every failure said in words.

    Parameters
    ----------
    module:
        The ``pynvml`` module to use; default: import it (``nvidia-ml-py``) when first needed.
    """

    def __init__(self, module: NvmlModule | None = None) -> None:
        self._module = module
        self._lock = threading.Lock()
        self._ready: bool | None = None
        self.note = ""

    def _start(self) -> NvmlModule | None:
        with self._lock:
            if self._ready is None:
                self._ready = False
                try:
                    if self._module is None:
                        import pynvml  # nvidia-ml-py: optional

                        self._module = pynvml
                    self._module.nvmlInit()
                    self._ready = True
                except ImportError:
                    self.note = (
                        "NVML not installed (pip install nvidia-ml-py)"
                        if os.path.exists(NVIDIA_DRIVER)
                        else "no NVIDIA driver on this machine"
                    )
                except Exception as exc:  # no driver, no GPU, a container without the library
                    self.note = f"NVML unavailable: {exc or type(exc).__name__}"
            return self._module if self._ready else None

    def gpus(self) -> tuple[list[GpuSample], str]:
        """Every GPU NVML sees, and a note when it sees none or cannot be asked."""
        nvml = self._start()
        if nvml is None:
            return [], self.note
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except nvml.NVMLError as exc:
            return [], f"NVML could not count GPUs: {exc}"
        out = [self._one(nvml, index) for index in range(count)]
        found = [g for g in out if g is not None]
        return found, "" if found else "NVML sees no GPU on this machine"

    @staticmethod
    def _one(nvml: NvmlModule, index: int) -> GpuSample | None:
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            name = _text(nvml.nvmlDeviceGetName(handle))
            uuid = _text(nvml.nvmlDeviceGetUUID(handle))
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        except nvml.NVMLError:
            return None  # a GPU that fell off the bus: leave it out rather than fail the rest
        try:
            utilization: int | None = int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        except nvml.NVMLError:  # not supported on every device (MIG instances)
            utilization = None
        processes: dict[int, int] = {}
        try:
            for proc in nvml.nvmlDeviceGetComputeRunningProcesses(handle):
                used = getattr(proc, "usedGpuMemory", None)
                processes[int(proc.pid)] = int(used) if isinstance(used, int) else 0
        except nvml.NVMLError:
            pass
        return GpuSample(
            index=index,
            uuid=uuid,
            name=name,
            memory_used=int(memory.used),
            memory_total=int(memory.total),
            utilization=utilization,
            processes=processes,
        )


_nvml = Nvml()


def _proc(pid: int) -> ProcSample | None:
    """A worker process and everything it started: CPU seconds so far and resident memory."""
    import psutil

    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    cpu = 0.0
    rss = 0
    for proc in tree:
        try:
            times = proc.cpu_times()
            cpu += times.user + times.system
            rss += proc.memory_info().rss
        except psutil.Error:
            continue
    return ProcSample(pid=pid, cpu_seconds=cpu, rss=rss)


def sample_node(
    pids: Iterable[int] = (), *, nvml: Nvml | None = None, node: str | None = None
) -> NodeSample:
    """Read this machine now: CPU and memory, every GPU (NVML), and the given processes.

    Raw counters only (no rate needs an earlier call here): safe to run as a
    one-off task on a Ray node.
    """
    import psutil

    times = psutil.cpu_times()
    total = float(sum(times))
    idle = float(getattr(times, "idle", 0.0)) + float(getattr(times, "iowait", 0.0))
    memory = psutil.virtual_memory()
    gpus, note = (nvml or _nvml).gpus()
    procs = {}
    for pid in pids:
        found = _proc(int(pid))
        if found is not None:
            procs[found.pid] = found
    return NodeSample(
        node=node or socket.gethostname(),
        time=time.time(),
        cpu_count=os.cpu_count() or 1,
        cpu_busy=total - idle,
        cpu_total=total,
        memory_used=int(memory.total - memory.available),
        memory_total=int(memory.total),
        gpus=gpus,
        gpu_note=note,
        procs=procs,
    )


# -- what the panels show ------------------------------------------------------------------------
class WorkerLike(Protocol):
    """What is read of a worker (``WorkerInfo``)."""

    group: int
    rank: int
    gpu: str
    pid: int | None
    state: str
    request_id: str | None
    node: str


@dataclass
class NodeStats:
    """One machine: CPU and memory use, its GPUs, and which ranks use each."""

    node: str
    cpu_percent: float | None
    cpu_count: int
    memory_used: int
    memory_total: int
    gpus: list[GpuSample]
    gpu_note: str
    users: dict[int, list[str]] = field(default_factory=dict)
    """GPU index -> the ranks on it, as ``g0 r1``."""
    error: str = ""
    """Why this node could not be read (a Ray node that did not answer)."""


@dataclass
class RankStats:
    """One worker rank: where it runs, what it runs, and its device's figures."""

    group: int
    rank: int
    node: str
    pid: int | None
    state: str
    request_id: str | None
    device: str
    """``CUDA_VISIBLE_DEVICES`` of the rank (``""``: CPU)."""
    gpu: GpuSample | None
    gpu_memory: int | None
    """What this rank's process holds on its GPU (bytes), when NVML says."""
    cpu_percent: float | None
    rss: int | None


@dataclass
class SystemStats:
    """The panels' figures at ``sampled_at``: every node, every rank."""

    sampled_at: float
    nodes: list[NodeStats]
    ranks: list[RankStats]

    @property
    def has_gpus(self) -> bool:
        return any(n.gpus for n in self.nodes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (the ``/system_stats`` endpoint): bytes as integers, rates in percent."""
        data = dataclasses.asdict(self)
        data["gpus"] = self.has_gpus
        for node in data["nodes"]:
            node["users"] = {str(k): v for k, v in node["users"].items()}
            for gpu in node["gpus"]:
                gpu["processes"] = {str(k): v for k, v in gpu["processes"].items()}
        for rank in data["ranks"]:
            if rank["gpu"] is not None:
                rank["gpu"] = {k: rank["gpu"][k] for k in ("index", "uuid", "name")}
        return data


def _rate(busy: float, total: float) -> float | None:
    return round(100.0 * busy / total, 1) if total > 0 else None


def _gpu_of(worker: WorkerLike, gpus: Sequence[GpuSample]) -> GpuSample | None:
    if worker.pid is not None:
        for gpu in gpus:
            if worker.pid in gpu.processes:
                return gpu
    device = (worker.gpu or "").split(",")[0].strip()
    if not device:
        return None
    if device.startswith(("GPU-", "MIG-")):
        return next((g for g in gpus if g.uuid == device), None)
    if device.isdigit():
        return next((g for g in gpus if g.index == int(device)), None)
    return None


def _proc_rates(
    pid: int | None, now: NodeSample | None, before: NodeSample | None
) -> tuple[float | None, int | None]:
    if pid is None or now is None or pid not in now.procs:
        return None, None
    cur = now.procs[pid]
    prev = before.procs.get(pid) if before is not None else None
    wall = now.time - before.time if before is not None else 0.0
    if prev is None or wall <= 0:
        return None, cur.rss
    return round(100.0 * max(0.0, cur.cpu_seconds - prev.cpu_seconds) / wall, 1), cur.rss


def system_stats(
    workers: Sequence[WorkerLike],
    samples: dict[str, NodeSample | str],
    previous: dict[str, NodeSample] | None = None,
) -> SystemStats:
    """The panels' figures from each node's sample (or why it has none) and the one before.

    ``samples`` maps a node name, as the workers give it, to its :class:`NodeSample`
    or to a sentence saying why it could not be read.
    """
    previous = previous or {}
    nodes: list[NodeStats] = []
    for name, sample in samples.items():
        if isinstance(sample, str):
            nodes.append(NodeStats(name, None, 0, 0, 0, [], "", error=sample))
            continue
        before = previous.get(name)
        cpu = None
        if before is not None:
            cpu = _rate(sample.cpu_busy - before.cpu_busy, sample.cpu_total - before.cpu_total)
        nodes.append(
            NodeStats(
                node=name,
                cpu_percent=cpu,
                cpu_count=sample.cpu_count,
                memory_used=sample.memory_used,
                memory_total=sample.memory_total,
                gpus=list(sample.gpus),
                gpu_note=sample.gpu_note,
            )
        )
    by_name = {n.node: n for n in nodes}
    ranks: list[RankStats] = []
    for w in workers:
        found = samples.get(w.node)
        now = found if isinstance(found, NodeSample) else None
        gpu = _gpu_of(w, now.gpus) if now is not None else None
        cpu, rss = _proc_rates(w.pid, now, previous.get(w.node))
        if gpu is not None:
            by_name[w.node].users.setdefault(gpu.index, []).append(f"g{w.group} r{w.rank}")
        ranks.append(
            RankStats(
                group=w.group,
                rank=w.rank,
                node=w.node,
                pid=w.pid,
                state=w.state,
                request_id=w.request_id,
                device=w.gpu,
                gpu=gpu,
                gpu_memory=gpu.processes.get(w.pid) if gpu is not None and w.pid else None,
                cpu_percent=cpu,
                rss=rss,
            )
        )
    return SystemStats(sampled_at=time.time(), nodes=nodes, ranks=ranks)
