"""GPU, CPU and memory figures of the Ray nodes that run an app's workers.

The app's process cannot see a remote node's GPUs, so each node reads itself: a
small Ray task pinned to the node (``NodeAffinitySchedulingStrategy``, no CPU
reserved, so it runs even on a node whose CPUs the models hold) runs
:func:`~..._core.stats.sample_node` there and returns plain JSON. Nothing runs
between calls: the caller (the app's one sampler, asked at most once a second
and only while a panel is shown) decides when.

A node that does not answer within ``timeout`` is reported as such, and is not
asked again while its earlier task is still pending, so a stuck node never piles
up tasks; its answer is taken by a later call. The first task on a node may take a
few seconds (Ray starts a worker process there for it): until it answers, the node
is reported as waiting for its first answer. The node list (Ray's ``ray.nodes()``, to turn a worker's node address
into a node id) is cached for ``NODES_TTL`` seconds.

Kept apart from the backend: this reads Ray's cluster state, never the groups'.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from ..._core.stats import NodeSample, sample_node

__all__ = ["RayNodeStats"]

NODES_TTL = 10.0


def _sample_here(pids: list[int], node: str) -> dict[str, Any]:
    """The task's body, on the node: its sample as JSON."""
    return sample_node(pids, node=node).to_dict()


class RayNodeStats:
    """Samples of Ray nodes by their address, one pinned task per node and call.

    Parameters
    ----------
    timeout:
        Seconds to wait for the nodes' answers in one call.
    """

    def __init__(self, timeout: float = 2.0) -> None:
        self.timeout = timeout
        self._lock = threading.Lock()
        self._remote: Any = None
        self._nodes: dict[str, str] = {}
        self._nodes_at = 0.0
        self._pending: dict[str, Any] = {}
        self._answered: set[str] = set()

    def _ray(self) -> Any:
        import ray

        if self._remote is None:
            self._remote = ray.remote(num_cpus=0, max_retries=0)(_sample_here)
        return ray

    def _node_ids(self, ray: Any) -> dict[str, str]:
        """Alive nodes: address -> node id (the first one, for simulated clusters on one host)."""
        now = time.monotonic()
        if now - self._nodes_at > NODES_TTL:
            found: dict[str, str] = {}
            for node in ray.nodes():
                if node.get("Alive"):
                    found.setdefault(str(node.get("NodeManagerAddress")), str(node.get("NodeID")))
            self._nodes, self._nodes_at = found, now
        return self._nodes

    def sample(self, pids_by_node: dict[str, Iterable[int]]) -> dict[str, NodeSample | str]:
        """Each node's sample, or a sentence saying why there is none."""
        out: dict[str, NodeSample | str] = {}
        with self._lock:
            try:
                ray = self._ray()
                if not ray.is_initialized():
                    return dict.fromkeys(pids_by_node, "Ray is not running in this process")
                ids = self._node_ids(ray)
            except Exception as exc:  # Ray shut down under us
                return dict.fromkeys(pids_by_node, f"Ray could not list its nodes: {exc}")
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            asked: dict[str, Any] = {}
            for node, pids in pids_by_node.items():
                node_id = ids.get(node)
                if node_id is None:
                    out[node] = f"no live Ray node at {node}"
                    continue
                ref = self._pending.get(node)
                if ref is None:
                    strategy = NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)
                    ref = self._remote.options(scheduling_strategy=strategy).remote(
                        [int(p) for p in pids], node
                    )
                    self._pending[node] = ref
                asked[node] = ref
            if asked:
                ready, _ = ray.wait(
                    list(asked.values()), num_returns=len(asked), timeout=self.timeout
                )
                done = set(ready)
                for node, ref in asked.items():
                    if ref not in done:
                        out[node] = (
                            f"node {node} did not answer within {self.timeout:g} s"
                            if node in self._answered
                            else f"waiting for node {node}'s first answer (Ray starts a "
                            "process there for it)"
                        )
                        continue
                    del self._pending[node]
                    self._answered.add(node)
                    try:
                        out[node] = NodeSample.from_dict(ray.get(ref))
                    except Exception as exc:  # the node died, or the task failed there
                        out[node] = f"node {node} could not be read: {type(exc).__name__}: {exc}"
        return out
