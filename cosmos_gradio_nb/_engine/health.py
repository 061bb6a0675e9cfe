"""Health checks: an idle group that stopped answering is restarted, not found an hour later.

A worker can be alive and useless: stopped (SIGSTOP, a frozen cgroup), or
deadlocked. Without a check it is noticed only when a request sent to it
reaches ``WORKER_TIMEOUT``. So every ``HEALTH_INTERVAL`` seconds the pool sends
each IDLE group a ``ping``; each rank's control thread answers at once with a
``pong`` (``_worker/control.py``), whatever the model does. A group whose ranks
have not all answered within ``HEALTH_TIMEOUT`` is restarted, with a line in the
log, and shows as ``unresponsive`` in ``workers()`` until it is ready again. A
request dispatched to it while the ping is out fails as a crash would.

Busy groups are not pinged: a request's own timeout covers them, and a model
holding the interpreter in a long C call must not be taken for a dead one.
Every method is called with the pool's lock held.
"""

from __future__ import annotations

from collections.abc import Callable

from .backend import Pong, SendError, WorkerBackend
from .effects import Effects
from .failures import unresponsive
from .groups import AfterStop, Group, GroupState
from .timer import Timer

__all__ = ["Health"]

S = GroupState


class Health:
    """Pings idle groups and restarts the ones that do not answer (see the module docstring)."""

    def __init__(
        self,
        *,
        interval: float,
        timeout: float,
        timer: Timer,
        effects: Effects,
        backend: Callable[[], WorkerBackend],
        stop: Callable[[Group, AfterStop], None],
    ) -> None:
        self.interval = interval
        self.timeout = timeout
        self._timer = timer
        self._effects = effects
        self._backend = backend  # the pool makes its backend after this object
        self._stop = stop

    def idle(self, group: Group) -> None:
        """``group`` became IDLE (ready, or a request ended): its next ping is due in an interval."""
        group.unresponsive = False
        if group.ping_deadline is None:
            self._timer.set_deadline(group, "health_at", self.interval)

    def ping(self, group: Group) -> None:
        """The IDLE ``group``'s ping is due: send it; every rank must answer within the timeout."""
        group.health_at = None
        group.ping_n += 1
        group.pongs.clear()
        try:
            self._backend().send(group.index, {"type": "ping", "n": group.ping_n})
        except SendError:
            return  # its processes are going: their death is on its way
        self._timer.set_deadline(group, "ping_deadline", self.timeout)

    def pong(self, group: Group, event: Pong) -> None:
        if group.ping_deadline is None or event.n != group.ping_n:
            return  # an answer to an older ping, or after the group was restarted
        group.pongs.add(event.rank)
        if len(group.pongs) < group.size:
            return
        group.ping_deadline = None
        if group.state is S.IDLE:
            self._timer.set_deadline(group, "health_at", self.interval)

    def missed(self, group: Group) -> None:
        """A ping went unanswered: restart the group (and fail a request sent to it meanwhile)."""
        silent = sorted(set(range(group.size)) - group.pongs)
        ranks = ", ".join(str(r) for r in silent)
        self._effects.app_line(
            f"group {group.index} did not answer a health check within {self.timeout:g} s: "
            f"restarting (silent: rank {ranks})"
        )
        request = group.request
        if request is not None:
            self._effects.fail(request, unresponsive(group, request, silent, self.timeout))
        group.unresponsive = True
        self._stop(group, AfterStop.RESTART)
