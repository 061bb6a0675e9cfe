"""The pool's one timer thread: it sleeps until the next deadline, then has what is due done.

Design
------
Every deadline of the engine is a ``time.monotonic()`` timestamp on the group
or request it concerns (``deadlines.py`` lists them and the rules). One thread
meets them all: under the pool's lock it asks :func:`~.deadlines.due` what
each group must have done and hands each answer to ``on_due`` (the pool wires
it to its supervisor), then waits on a condition of that same lock for
:func:`~.deadlines.next_wakeup` seconds. Whoever sets a deadline sooner than
the current wait's end wakes it (:meth:`Timer.set_deadline`,
:meth:`Timer.wake_for`), so a deadline is met late by no more than the time
the lock is held.

While the pool closes, group deadlines no longer matter: only the close
deadline does, after which the groups still stopping are killed
(``on_close_overdue``), once.

The timer decides nothing and changes no group itself: the supervisor acts,
on this thread, with the lock held, and queues its effects; the thread runs
those effects (:meth:`~.effects.Effects.flush`) after releasing the lock,
before it sleeps again. It was a loop inside the pool; on its own it keeps the
thread's state (its condition, the end of its wait, the close deadline) out of
the pool's class, and the rest of the engine uses five calls: ``set_deadline``,
``wake_for``, ``wake``, ``close_by`` and ``shut_down``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from . import deadlines
from .deadlines import Due
from .effects import Effects
from .groups import Group

__all__ = ["Timer"]


class Timer:
    """One thread that meets the deadlines of ``groups`` (see the module docstring).

    Every method but :meth:`start` and :meth:`join` is called with ``lock`` held.
    """

    def __init__(
        self,
        lock: threading.Lock,
        groups: list[Group],
        effects: Effects,
        *,
        closing: Callable[[], bool],
        on_due: Callable[[Group, Due], None],
        on_close_overdue: Callable[[], None],
        name: str,
    ) -> None:
        self._lock = lock
        self._wake = threading.Condition(lock)
        self._groups = groups
        self._effects = effects
        self._closing = closing  # the pool is closing: only the close deadline counts
        self._on_due = on_due  # a group's deadline passed: act on it
        self._on_close_overdue = on_close_overdue  # closing took too long: kill what still stops
        self._until = 0.0  # when the current wait ends (0: the thread is awake)
        self._close_deadline = 0.0
        self._forced = False  # the close deadline passed and was acted on
        self._shut_down = False  # the thread ends
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def set_deadline(self, group: Group, name: str, seconds: float) -> None:
        """Set ``group``'s deadline attribute ``name`` to ``seconds`` from now."""
        when = time.monotonic() + seconds
        setattr(group, name, when)
        self.wake_for(when)

    def wake_for(self, when: float) -> None:
        """A deadline at ``when`` was just set: wake the thread if it sleeps past it."""
        if deadlines.wakes_sooner(when, self._until):
            self._wake.notify()

    def wake(self) -> None:
        """Wake the thread: it checks what is due and plans its next wait again."""
        self._wake.notify()

    def close_by(self, deadline: float) -> None:
        """The pool is closing: groups still stopping at ``deadline`` are killed."""
        self._close_deadline = deadline

    def shut_down(self) -> None:
        """End the thread (the backend is closed: nothing is left to time)."""
        self._shut_down = True
        self._wake.notify()

    def join(self, timeout: float) -> None:
        """Wait for the thread to end (unless called on it)."""
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._shut_down:
                    return
                self._check()
                if not self._effects.pending:
                    now = time.monotonic()
                    # While closing, no group deadline is acted on (see _check): counting
                    # one (a stopped group's past restart time) would make this loop spin.
                    groups = [] if self._closing() else self._groups
                    timeout = deadlines.next_wakeup(groups, now, self._pending_close())
                    self._until = time.monotonic() + timeout
                    self._wake.wait(timeout)
                    self._until = 0.0
                    continue
            self._effects.flush()

    def _check(self) -> None:
        now = time.monotonic()
        if self._closing():
            if deadlines.close_due(now, self._pending_close()):
                self._forced = True
                self._on_close_overdue()
            return
        for group in self._groups:
            what = deadlines.due(group, now)
            if what is not None:
                self._on_due(group, what)

    def _pending_close(self) -> float | None:
        """The close deadline while it still matters: closing, and not acted on yet."""
        return self._close_deadline if self._closing() and not self._forced else None
