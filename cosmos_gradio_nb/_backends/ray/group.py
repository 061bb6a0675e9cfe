"""One model group of the Ray backend: its ranks' actors, and how they are started.

A :class:`Group` is one incarnation of a model group: its placement group, one
:class:`Rank` per actor, and whether it runs, stops or was released. A
:class:`Rank` also keeps, for the backend's one waiting thread, the order of
what its actor sent back (:meth:`Rank.arrived`): answers are numbered batches
(``agent.py``), which may arrive out of order.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

from ..._engine.backend import GroupSpec
from .agent import Batch
from .files import NodeFiles
from .placement import Placement

__all__ = ["Group", "Rank", "start_ranks"]


@dataclass(eq=False)
class Rank:
    """One rank's actor and, on the waiter's thread, what has come back from it in order."""

    rank: int
    actor: Any
    info: dict[str, Any] = field(default_factory=dict)
    worker_pid: int | None = None
    alive: bool = True
    reported: bool = False  # its death was told
    finished: bool = False  # its last event ("exit") came: no more long polls
    next_batch: int = 0  # the number of the next batch to hand on
    held: dict[int, list[tuple[Any, ...]]] = field(default_factory=dict)  # came early
    backlog: collections.deque[tuple[Any, ...]] = field(default_factory=collections.deque)
    copying: bool = False  # a reply's outputs are being copied back: the backlog waits

    def arrived(self, batch: Batch) -> None:
        """Put a batch in its place; what is now in order moves to the backlog."""
        number, items = batch
        if number is None:
            return
        self.held[number] = items
        while self.next_batch in self.held:
            self.backlog.extend(self.held.pop(self.next_batch))
            self.next_batch += 1

    def flush_held(self) -> None:
        """The actor is gone: what came, in order, gaps and all."""
        for number in sorted(self.held):
            self.backlog.extend(self.held.pop(number))


@dataclass(eq=False)
class Group:
    spec: GroupSpec
    placement: Placement | None = None
    ranks: list[Rank] = field(default_factory=list)
    running: bool = False  # every rank's worker was started
    stopping: bool = False
    released: bool = False
    files: NodeFiles | None = None  # its node does not share our folders


def start_ranks(ray: Any, agent: Any, group: Group, *, token: str, gpus: bool) -> None:
    """Create one actor per rank in the group's placed bundles and start their workers.

    ``MASTER_ADDR`` is rank 0's node and ``MASTER_PORT`` a port free there. Raises
    what Ray raised (a rank died while starting, a timeout).
    """
    spec, placement = group.spec, group.placement
    assert placement is not None
    for r in range(spec.size):
        actor = agent.options(
            num_cpus=1,
            num_gpus=1 if gpus else 0,
            scheduling_strategy=placement.strategy(r),
            max_concurrency=16,  # the long poll, a request, a stop, chunks of files...
        ).remote(spec.index, r, f"{token}-g{spec.index}")
        group.ranks.append(Rank(r, actor))
    infos = ray.get([rank.actor.describe.remote() for rank in group.ranks], timeout=300)
    for rank, info in zip(group.ranks, infos, strict=True):
        rank.info = info
    lead = group.ranks[0]
    port = ray.get(lead.actor.free_port.remote(), timeout=60)
    init = {
        "type": "init",
        "factory": spec.factory,
        "sys_path": spec.sys_path,
        "group": spec.index,
        "world_size": spec.size,
    }
    ray.get(
        [
            rank.actor.start.remote(
                spec.env,
                size=spec.size,
                master_addr=str(lead.info["ip"]),
                master_port=int(port),
                init={**init, "rank": rank.rank},
                cwd=spec.cwd,
                gpus=gpus,
            )
            for rank in group.ranks
        ],
        timeout=120,
    )
