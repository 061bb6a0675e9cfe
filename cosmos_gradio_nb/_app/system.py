"""One sampler of the machine figures per app, shared by every page and notebook panel.

The GPUs panels (each open page's System tab, the notebook's app panel) and the
``/system_stats`` endpoint all ask :func:`sampler_for` (app) for
:meth:`SystemSampler.stats`. The sampler reads the machines only when asked and
at most about once a second (``min_interval``): ten open pages cost one sample a
second, and no page open costs nothing (there is no thread of its own). Callers
that arrive while a sample is being taken wait for it rather than start another.

Local workers are read here (NVML and psutil in this process); Ray workers on
their nodes (``_backends/ray/stats.py``), each sample with the one before it so
that CPU use is a rate over the last interval.
"""

from __future__ import annotations

import socket
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any, Protocol

from .._core.stats import NodeSample, SystemStats, WorkerLike, sample_node, system_stats

__all__ = ["SystemSampler", "sampler_for"]


class StatsApp(Protocol):
    """What the sampler reads of an app."""

    env: Any

    def workers(self) -> Sequence[WorkerLike]: ...


class SystemSampler:
    """The figures of one app's machines, sampled on demand, at most once per ``min_interval``.

    Parameters
    ----------
    app:
        The app (held weakly: a sampler never keeps an app alive).
    min_interval:
        Seconds a sample is reused for: a little under the panels' one second, so a
        panel's tick never gets the sample its previous tick got.
    """

    def __init__(self, app: StatsApp | None, min_interval: float = 0.9) -> None:
        self._app = weakref.ref(app) if app is not None else lambda: None
        self.min_interval = min_interval
        self.ray = app is not None and getattr(app.env, "backend", "local") == "ray"
        self._lock = threading.Lock()
        self._last: SystemStats | None = None
        self._last_at = 0.0
        self._previous: dict[str, NodeSample] = {}
        self._remote: Any = None
        self.samples_taken = 0

    def stats(self) -> SystemStats:
        """The latest figures: reused if younger than ``min_interval``, else sampled now."""
        with self._lock:
            if self._last is not None and time.monotonic() - self._last_at < self.min_interval:
                return self._last
            self._last = self._sample()
            self._last_at = time.monotonic()
            self.samples_taken += 1
            return self._last

    def _workers(self) -> list[WorkerLike]:
        app = self._app()
        if app is None or getattr(app, "closed", False):
            return []
        try:
            return list(app.workers())
        except Exception:  # an app closing under us: the machine is still worth showing
            return []

    def _sample(self) -> SystemStats:
        workers = self._workers()
        pids: dict[str, list[int]] = {}
        for w in workers:
            pids.setdefault(w.node, [])
            if w.pid is not None:
                pids[w.node].append(w.pid)
        samples = self._read(pids)
        fresh = {
            k: v
            for k, v in samples.items()
            if isinstance(v, NodeSample) and k not in self._previous
        }
        if fresh:
            # A node's first sample has nothing to take a rate against: it becomes the
            # baseline of a second one a fifth of a second later (as psutil.cpu_percent
            # (interval=0.2) does). A node that does not answer that one in time keeps its
            # first sample, without rates, for this call.
            self._previous.update(fresh)
            threading.Event().wait(0.2)
            again = self._read(pids)
            samples = {
                k: fresh[k] if k in fresh and not isinstance(v, NodeSample) else v
                for k, v in again.items()
            }
        stats = system_stats(workers, samples, self._previous)
        self._previous.update({k: v for k, v in samples.items() if isinstance(v, NodeSample)})
        return stats

    def _read(self, pids: dict[str, list[int]]) -> dict[str, NodeSample | str]:
        if self.ray:
            if self._remote is None:
                from .._backends.ray.stats import RayNodeStats

                self._remote = RayNodeStats()
            found: dict[str, NodeSample | str] = self._remote.sample(pids)
            return found
        here = socket.gethostname()
        mine = [p for found in pids.values() for p in found]  # local: all on this machine
        return {here: sample_node(mine, node=here)}


_samplers: weakref.WeakKeyDictionary[Any, SystemSampler] = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()


_machine: SystemSampler | None = None


def sampler_for(app: StatsApp | None) -> SystemSampler:
    """The one sampler of ``app`` (made on first use, gone with the app).

    ``None`` (a page whose ``infer_func`` is no app's) gets this machine's figures alone.
    """
    global _machine
    with _registry_lock:
        if app is None:
            if _machine is None:
                _machine = SystemSampler(None)
            return _machine
        sampler = _samplers.get(app)
        if sampler is None:
            sampler = _samplers[app] = SystemSampler(app)
        return sampler
