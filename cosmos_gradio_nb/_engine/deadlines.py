"""The timer's arithmetic: when it must wake next, and which deadline is due.

Design
------
The pool keeps every deadline as a plain ``time.monotonic()`` timestamp on the
group or request it concerns: a running request's timeout, the grace given to
the other ranks after one failed, the moment a peer's error reply held back
(in case a rank's death is on its way) is let through, a stopping request's
grace (``STOP_GRACE``), an idle group's next health ping and the moment its
answer is overdue, a starting group's start-up deadline, the moment a
backing-off group restarts or a given-up group is retried, and the close
deadline after which stopping groups are killed. One timer thread meets them
all.

The functions here only *read* those timestamps and compare them with ``now``,
which the caller passes in: no clock, no thread, no lock. So every rule of
"what is due when" is tested with made-up times (``tests/engine/test_deadlines.py``).
The pool's timer thread (``timer.py``) calls them under the pool's lock and
hands on what is due; the actions, which change state and queue effects, are
the supervisor's.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from .groups import Group, GroupState

__all__ = [
    "HOLD_S",
    "MAX_SLEEP",
    "PEER_GRACE",
    "Due",
    "close_due",
    "due",
    "group_deadlines",
    "next_wakeup",
    "wakes_sooner",
]

MAX_SLEEP = 1.0  # the timer re-plans at least this often (seconds)
PEER_GRACE = 10.0  # seconds the other ranks get to finish after one rank failed
HOLD_S = 1.0  # seconds a peer's lost-connection error waits for news of a rank's death
S = GroupState


class Due(enum.Enum):
    """A deadline of one group that has passed, hence what the pool must do about it."""

    STOP_GRACE = "the request asked to stop is still running"
    REQUEST_TIMEOUT = "the running request ran past its timeout"
    HELD_ERROR = "a peer's error reply was held long enough"
    PEER_GRACE = "the other ranks are still busy after one failed"
    HEALTH_MISSED = "a rank did not answer its health check in time"
    HEALTH_PING = "an idle group is due for a health check"
    STARTUP = "the group is not ready by its start-up deadline"
    RESTART = "a backing-off group's restart, or a given-up group's retry"


def group_deadlines(group: Group) -> list[float]:
    """The moments the timer must wake for ``group``.

    A running request's timeout always counts; a STOPPING group's other
    deadlines do not (it waits for its ``Gone`` event, not for the clock), nor
    do a STOPPED group's (nothing is left to time).
    """
    out = []
    if group.request is not None and group.request.deadline is not None:
        out.append(group.request.deadline)
    if group.state not in (S.STOPPING, S.STOPPED):
        for when in (group.peer_deadline, group.start_deadline, group.restart_at):
            if when is not None:
                out.append(when)
    watched: tuple[float | None, ...] = ()  # only where due() acts on them
    if group.state is S.BUSY:
        watched = (group.hold_deadline, group.stop_deadline, group.ping_deadline)
    elif group.state is S.IDLE:
        watched = (group.ping_deadline, group.health_at)
    out.extend(when for when in watched if when is not None)
    return out


def next_wakeup(groups: Iterable[Group], now: float, close_deadline: float | None) -> float:
    """Seconds the timer may wait from ``now``: to the earliest deadline, at most MAX_SLEEP.

    ``close_deadline`` is the pool's close deadline while it still matters (the
    pool is closing and has not killed its stopping groups yet), else None. A
    deadline already past gives 0: the timer acts at once.
    """
    deadlines = [now + MAX_SLEEP]
    for group in groups:
        deadlines.extend(group_deadlines(group))
    if close_deadline is not None:
        deadlines.append(close_deadline)
    return max(0.0, min(deadlines) - now)


def due(group: Group, now: float) -> Due | None:
    """Which of ``group``'s deadlines has passed at ``now``, if any: at most one.

    A BUSY group's stop grace comes first (the caller asked to stop), then its
    request timeout, a held error, its peers' grace (the timeout is the error the
    request gets) and a missed health check; an IDLE group's missed health check
    comes before its next ping. A RESTARTING or FAILED group without a restart
    time restarts at once.
    """

    def passed(when: float | None) -> bool:
        return when is not None and now >= when

    if group.state is S.BUSY:
        request = group.request
        if passed(group.stop_deadline):
            return Due.STOP_GRACE
        if request is not None and passed(request.deadline):
            return Due.REQUEST_TIMEOUT
        if passed(group.hold_deadline):
            return Due.HELD_ERROR
        if passed(group.peer_deadline):
            return Due.PEER_GRACE
        if passed(group.ping_deadline):
            return Due.HEALTH_MISSED
    elif group.state is S.IDLE:
        if passed(group.ping_deadline):
            return Due.HEALTH_MISSED
        if passed(group.health_at):
            return Due.HEALTH_PING
    elif group.state is S.STARTING:
        if group.start_deadline is not None and now >= group.start_deadline:
            return Due.STARTUP
    elif group.state in (S.RESTARTING, S.FAILED) and now >= (group.restart_at or now):
        return Due.RESTART
    return None


def close_due(now: float, close_deadline: float | None) -> bool:
    """True when the graceful stops of closing took too long: what still stops is killed.

    ``close_deadline`` is None when no close is pending (see :func:`next_wakeup`).
    """
    return close_deadline is not None and now >= close_deadline


def wakes_sooner(when: float, asleep_until: float) -> bool:
    """True when a new deadline at ``when`` needs the sleeping timer woken to re-plan.

    ``asleep_until`` is when the timer's current wait ends, 0 while it is awake
    (it re-plans before it sleeps again, so it need not be woken).
    """
    return when < asleep_until
