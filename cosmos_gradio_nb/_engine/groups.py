"""A model group as the pool sees it: its state machine, and which group takes the next request.

The states and every allowed transition are in :data:`TRANSITIONS`; the pool
and its supervisor change a group's state only through :func:`move`, which
refuses anything else, so the lifecycle can be read here in one screen::

    STARTING --all ranks ready--> IDLE <--request done-- BUSY
        |                          |  --dispatch-->       |
        +-- failed / timed out ----+-- died / closing ----+--> STOPPING
    STOPPING --every rank gone--> RESTARTING (backoff) --> STARTING
                               \\-> FAILED (given up; retried later) --> STARTING
                               \\-> STOPPED (the app is closing; final)

Entering STOPPING ends whatever the pool was watching on the group's processes
(a health check, a stop's grace, a held error): those concern an incarnation
that is going away.
"""

from __future__ import annotations

import collections
import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .._core.exceptions import WorkerStartupError

if TYPE_CHECKING:
    from .request import Request

__all__ = ["TRANSITIONS", "AfterStop", "Group", "GroupState", "IdleFirst", "move"]

TAIL_LINES = 40  # lines kept per rank for crash and startup reports


class GroupState(enum.Enum):
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    STOPPING = "stopping"
    RESTARTING = "restarting"
    FAILED = "failed"
    STOPPED = "stopped"


S = GroupState
TRANSITIONS: dict[GroupState, frozenset[GroupState]] = {
    S.STARTING: frozenset({S.IDLE, S.STOPPING}),
    S.IDLE: frozenset({S.BUSY, S.STOPPING}),
    S.BUSY: frozenset({S.IDLE, S.STOPPING}),
    S.STOPPING: frozenset({S.STARTING, S.RESTARTING, S.FAILED, S.STOPPED}),
    S.RESTARTING: frozenset({S.STARTING, S.STOPPED}),
    S.FAILED: frozenset({S.STARTING, S.STOPPED}),
    S.STOPPED: frozenset(),
}


class AfterStop(enum.Enum):
    """What a STOPPING group does once its last rank is gone."""

    RESTART = "restart"
    GIVE_UP = "give up"
    STOP = "stop"


@dataclass(eq=False)
class Group:
    """One model group: ``size`` ranks that serve one request at a time."""

    index: int
    size: int
    state: GroupState = GroupState.STARTING
    incarnation: int = 0
    ready_ranks: set[int] = field(default_factory=set)
    request: Request | None = None
    restarts: int = 0
    """Times the group became ready again after its first start."""
    start_failures: int = 0
    """Consecutive failed starts; reset when the group becomes ready."""
    give_ups: int = 0
    ever_ready: bool = False
    after_stop: AfterStop = AfterStop.RESTART
    restart_at: float | None = None
    start_deadline: float | None = None
    peer_deadline: float | None = None
    hold_deadline: float | None = None
    """A peer's error reply is held until then, in case a rank's death is on its way."""
    stop_deadline: float | None = None
    """The running request was asked to stop: its group is killed if still busy then."""
    health_at: float | None = None
    """When an IDLE group is pinged next."""
    ping_deadline: float | None = None
    """A ping is out: every rank must answer by then, or the group is restarted."""
    ping_n: int = 0
    pongs: set[int] = field(default_factory=set)
    unresponsive: bool = False
    """Restarted because it missed a health check; cleared when it is ready again."""
    last_used: int = 0
    error: WorkerStartupError | None = None
    """Why the group was given up (None while it may still serve)."""
    tails: dict[int, collections.deque[str]] = field(default_factory=dict)

    def tail(self, rank: int) -> collections.deque[str]:
        if rank not in self.tails:
            self.tails[rank] = collections.deque(maxlen=TAIL_LINES)
        return self.tails[rank]

    @property
    def given_up(self) -> bool:
        """Failed for now, or on its way there."""
        return self.state is S.FAILED or (
            self.state is S.STOPPING and self.after_stop is AfterStop.GIVE_UP
        )


def move(group: Group, new: GroupState) -> None:
    """Change ``group``'s state; a transition not in :data:`TRANSITIONS` is a bug and raises."""
    if new not in TRANSITIONS[group.state]:
        raise RuntimeError(
            f"group {group.index}: {group.state.value} -> {new.value} is not an allowed transition"
        )
    group.state = new
    if new is S.STOPPING:
        group.hold_deadline = group.stop_deadline = None
        group.health_at = group.ping_deadline = None
        group.pongs.clear()


class IdleFirst:
    """Routing: the idle group that has waited longest takes the next request.

    Spreading requests over replicas keeps every model warm and makes a slow or
    failing replica visible at once, rather than leaving it unused at the end.
    """

    def __init__(self) -> None:
        self._clock = 0

    def choose(self, groups: list[Group]) -> Group | None:
        idle = [g for g in groups if g.state is S.IDLE]
        if not idle:
            return None
        group = min(idle, key=lambda g: g.last_used)
        self._clock += 1
        group.last_used = self._clock
        return group
