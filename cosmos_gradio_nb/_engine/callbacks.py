"""Where callbacks run: never on the thread that watches the workers.

Done-callbacks and progress callbacks are other people's code: a script's
function, a tqdm bar, a notebook widget, the page's wake-up of its event loop.
Run on the pool's dispatcher thread, one that blocks would stop the engine from
noticing a dead worker or a timeout, one that waits for another request's result
would deadlock, and one that calls ``app.close()`` would wait for itself.

So the engine only sets a future's state (which wakes ``result()``, ``wait()``
and ``as_completed()`` at once) and hands the callbacks to a :class:`CallbackRunner`:
daemon threads, grown on demand, with one *lane* per future so that a future's
callbacks keep their order (progress, then done) while a blocked callback of one
future does not delay another's. Daemon threads, because a callback stuck
forever must not hold the interpreter open at exit.

Two runners, so user code cannot starve the library
---------------------------------------------------
The library's own completions are callbacks too: the page's ``/generate``
awaits a future through ``asyncio.wrap_future`` (a done-callback that calls
``loop.call_soon_threadsafe``), the page's live view and the notebook's
progress bars are woken by progress and done callbacks, ``map`` advances its
bar by one. Each of them returns in microseconds. Had they shared the threads
of user callbacks, a user's 32 callbacks waiting 20 s would have held every
thread, and the page's answer to a 0.5 s request would have waited for them.

So every callable defined in this package, and asyncio's bridge from a
``concurrent.futures`` future to an event loop (module ``asyncio.*``), runs on
the *library* runner, which only such short callables ever occupy
(:func:`is_library`); everything else runs on the *user* runner. Both keep the
per-future order. The user runner starts a thread for each lane that finds no
idle one, up to :data:`MAX_THREADS` at once: that many user callbacks may block
at the same time before a new one waits its turn (the bound keeps a callback
that blocks on 10,000 futures from making 10,000 threads).

Whatever a callback raises is caught and logged, ``SystemExit`` and
``KeyboardInterrupt`` included: a callback that calls ``sys.exit()`` ends
neither its runner thread nor the count of threads, so it stops nothing else.
"""

from __future__ import annotations

import collections
import functools
import logging
import threading
from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["CallbackRunner", "ProgressCallbacks", "is_library", "run_callback"]

logger = logging.getLogger("cosmos_gradio_nb")

MAX_THREADS = 256  # user callbacks that may block at once; past this, new ones wait their turn
LIBRARY_THREADS = 4  # the library's callbacks never block: a few threads serve them all
IDLE_EXIT_S = 30.0  # an idle runner thread exits after this long
_LIBRARY_MODULES = ("cosmos_gradio_nb.", "asyncio.")


class CallbackRunner:
    """Runs callables on daemon threads; callables of one key run in order, one at a time."""

    def __init__(
        self,
        max_threads: int = MAX_THREADS,
        idle_exit_s: float = IDLE_EXIT_S,
        name: str = "cosmos-gradio-callbacks",
    ) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._lanes: dict[Hashable, collections.deque[Callable[[], object]]] = {}
        self._ready: collections.deque[Hashable] = collections.deque()
        self._threads = 0
        self._idle = 0
        self._max = max_threads
        self._idle_exit_s = idle_exit_s
        self._name = name

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
                return
            if self._threads >= self._max:
                return  # every thread is busy: the lane waits for the first one free
            self._threads += 1
        try:
            threading.Thread(target=self._work, name=self._name, daemon=True).start()
        except RuntimeError:  # no thread can be started now: the running ones take the lane
            with self._cond:
                self._threads -= 1
            logger.warning("cosmos_gradio_nb: could not start a callback thread")

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
                except BaseException:  # sys.exit() in a callback must not end this thread
                    logger.exception("a cosmos_gradio_nb callback raised")


def is_library(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` is one of the library's own short callbacks (see the module docstring)."""
    module = getattr(fn, "__module__", None)
    return isinstance(module, str) and module.startswith(_LIBRARY_MODULES)


_runners: dict[bool, CallbackRunner] = {}
_runners_lock = threading.Lock()


def _runner(library: bool) -> CallbackRunner:
    runner = _runners.get(library)
    if runner is None:
        with _runners_lock:
            runner = _runners.get(library)
            if runner is None:
                runner = _runners[library] = (
                    CallbackRunner(LIBRARY_THREADS, name="cosmos-gradio-library-callbacks")
                    if library
                    else CallbackRunner()
                )
    return runner


def run_callback(key: Hashable, fn: Callable[[], object], *, of: Callable[..., Any]) -> None:
    """Run ``fn`` (which calls the callback ``of``) on the runner ``of`` belongs to, in order
    with the others of ``key`` there."""
    _runner(is_library(of)).submit(key, fn)


class ProgressCallbacks:
    """One future's progress callbacks, the library's and the user's apart.

    A report queues one run of each list on its runner; reports that arrive
    while that run still waits or runs are folded into the next one.
    """

    def __init__(self) -> None:
        self._fns: dict[bool, list[Callable[[Any], object]]] = {True: [], False: []}
        self._queued = {True: False, False: False}

    def add(self, fn: Callable[[Any], object]) -> None:
        self._fns[is_library(fn)].append(fn)

    def notify(self, future: Any) -> None:
        """A report arrived for ``future``: run each list soon, on its own runner."""
        for library, fns in self._fns.items():
            if fns and not self._queued[library]:
                self._queued[library] = True
                _runner(library).submit(future, functools.partial(self._run, library, future))

    def _run(self, library: bool, future: Any) -> None:
        self._queued[library] = False  # a report from now on queues another call
        for fn in list(self._fns[library]):
            try:
                fn(future)
            except BaseException:  # a display callback must never break another
                logger.exception("a progress callback of request %s raised", future.request_id)
