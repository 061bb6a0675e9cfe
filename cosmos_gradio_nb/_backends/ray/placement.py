"""Where a model group runs on the cluster, and what to say when it cannot run anywhere.

A group's ranks must share a node (torch.distributed with rank 0's node as
``MASTER_ADDR``), so a group is one ``STRICT_PACK`` placement group of one
bundle per rank: ``{"CPU": 1, "GPU": 1}`` on a cluster with GPUs, ``{"CPU": 1}``
on one without. Ray places such a group on one node or not at all, and it never
gives up on its own: a group larger than any node waits forever. So the wait is
bounded (``PLACEMENT_TIMEOUT``); past it the start fails with a summary of what
was asked (:meth:`Placement.unplaced`) and a detail of what each live node has
and what is free now (:func:`cluster_summary`).

When a call to a rank's actor fails, :func:`death_reason` tells a lost node
(Ray marks it dead) from an actor that died on a live one.

Only the Ray backend imports this module, after it has imported Ray; the parts
of Ray used here are imported where they are needed, as there.
"""

from __future__ import annotations

import contextlib
from typing import Any

__all__ = ["Placement", "cluster_summary", "death_reason"]


class Placement:
    """One group's placement group: one bundle per rank, all on one node (``STRICT_PACK``).

    Creating it asks Ray for the resources and returns at once; :meth:`wait` waits
    until they are granted, :meth:`remove` gives them back.
    """

    def __init__(self, ray: Any, *, size: int, gpus: bool, name: str) -> None:
        from ray.util.placement_group import placement_group

        self._ray = ray
        self.size = size
        self.bundle = {"CPU": 1.0, "GPU": 1.0} if gpus else {"CPU": 1.0}
        self.group = placement_group(
            [dict(self.bundle) for _ in range(size)], strategy="STRICT_PACK", name=name
        )

    def wait(self, timeout: float) -> bool:
        """Whether Ray placed the group within ``timeout`` seconds."""
        ready, _ = self._ray.wait([self.group.ready()], timeout=timeout)
        return bool(ready)

    def unplaced(self, index: int, timeout: float) -> str:
        """The start failure's summary when :meth:`wait` gave up after ``timeout`` seconds."""
        asked = f"{self.size} bundle(s) of {_fmt(self.bundle)} on one node (STRICT_PACK)"
        return (
            f"cannot place model group {index}: it asks for {asked}, and no node had "
            f"that free within {timeout:g} s (PLACEMENT_TIMEOUT)"
        )

    def strategy(self, bundle: int) -> Any:
        """The scheduling strategy that puts an actor in bundle ``bundle`` (its rank)."""
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        return PlacementGroupSchedulingStrategy(
            placement_group=self.group, placement_group_bundle_index=bundle
        )

    def remove(self) -> None:
        """Give the resources back (quietly: the cluster may be gone already)."""
        from ray.util.placement_group import remove_placement_group

        with contextlib.suppress(Exception):
            remove_placement_group(self.group)


def cluster_summary(ray: Any) -> str:
    """Each live node's GPUs and CPUs and what is free now: why a group could not be placed."""
    parts = []
    with contextlib.suppress(Exception):
        for n in ray.nodes():
            if n.get("Alive"):
                res = n.get("Resources", {})
                have = {k: res[k] for k in ("GPU", "CPU") if k in res}
                parts.append(f"node {n.get('NodeManagerAddress')}: {_fmt(have)}")
        free = ray.available_resources()
        parts.append(
            f"free now in the cluster: {_fmt({k: free.get(k, 0) for k in ('GPU', 'CPU')})}"
        )
    return "the cluster has " + "; ".join(parts) if parts else "the cluster could not be described"


def death_reason(ray: Any, exc: BaseException, info: dict[str, Any]) -> str:
    """Why a call to a rank's actor failed with ``exc``; ``info`` is what the actor described."""
    node = info.get("node_id")
    with contextlib.suppress(Exception):
        for n in ray.nodes():
            if n.get("NodeID") == node and not n.get("Alive", True):
                return f"node {info.get('ip', '?')} lost"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"its Ray actor died: {first[:200]}"


def _fmt(resources: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in resources.items())
