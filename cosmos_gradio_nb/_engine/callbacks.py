"""Where user callbacks run: never on the thread that watches the workers.

Done-callbacks and progress callbacks are other people's code: a script's
function, a tqdm bar, a notebook widget, the page's wake-up of its event loop.
Run on the pool's dispatcher thread, one that blocks would stop the engine from
noticing a dead worker or a timeout, one that waits for another request's result
would deadlock, and one that calls ``app.close()`` would wait for itself.

So the engine only sets a future's state (which wakes ``result()``, ``wait()``
and ``as_completed()`` at once) and hands the callbacks to a :class:`CallbackRunner`:
a few daemon threads, grown on demand up to a bound, with one *lane* per future
so that a future's callbacks keep their order (progress, then done) while a
blocked callback of one future never delays another's. Daemon threads, because
a callback stuck forever must not hold the interpreter open at exit.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Hashable

__all__ = ["CallbackRunner", "run_callback"]

logger = logging.getLogger("cosmos_gradio_nb")

MAX_THREADS = 32  # past this many blocked callbacks, new ones wait their turn
IDLE_EXIT_S = 30.0  # an idle runner thread exits after this long


class CallbackRunner:
    """Runs callables on daemon threads; callables of one key run in order, one at a time."""

    def __init__(self, max_threads: int = MAX_THREADS, idle_exit_s: float = IDLE_EXIT_S) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._lanes: dict[Hashable, collections.deque[Callable[[], object]]] = {}
        self._ready: collections.deque[Hashable] = collections.deque()
        self._threads = 0
        self._idle = 0
        self._max = max_threads
        self._idle_exit_s = idle_exit_s

    def submit(self, key: Hashable, fn: Callable[[], object]) -> None:
        """Run ``fn()`` soon, after the callables already submitted with the same ``key``."""
        with self._cond:
            lane = self._lanes.get(key)
            if lane is not None:  # a thread is on this lane, or it waits in the ready queue
                lane.append(fn)
                return
            self._lanes[key] = collections.deque([fn])
            self._ready.append(key)
            if self._idle > len(self._ready) - 1:
                self._cond.notify()
            elif self._threads < self._max:
                self._threads += 1
                threading.Thread(
                    target=self._work, name="cosmos-gradio-callbacks", daemon=True
                ).start()

    @property
    def threads(self) -> int:
        return self._threads

    def _next_lane(self) -> Hashable | None:
        with self._cond:
            self._idle += 1
            try:
                while not self._ready:
                    if not self._cond.wait(self._idle_exit_s) and not self._ready:
                        self._threads -= 1
                        return None
                return self._ready.popleft()
            finally:
                self._idle -= 1

    def _work(self) -> None:
        while (key := self._next_lane()) is not None:
            while True:
                with self._cond:
                    lane = self._lanes[key]
                    if not lane:
                        del self._lanes[key]
                        break
                    fn = lane.popleft()
                try:
                    fn()
                except Exception:
                    logger.exception("a cosmos_gradio_nb callback raised")


_runner: CallbackRunner | None = None
_runner_lock = threading.Lock()


def run_callback(key: Hashable, fn: Callable[[], object]) -> None:
    """Run ``fn`` on the process's callback threads, in order with others of ``key``."""
    global _runner
    if _runner is None:
        with _runner_lock:
            if _runner is None:
                _runner = CallbackRunner()
    _runner.submit(key, fn)
