"""Robustness of the pool's policy and callbacks (issue 15), through the in-process fake backend.

Refusals raise a fresh exception each time, a restart that reached ready resets
the crash backoff, the timer never spins while the pool closes, a pool whose
backend broke still closes everything, a callback that calls ``sys.exit()``
stops no other, and blocked user callbacks delay neither another future's
callbacks nor ``asyncio.wrap_future``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import sys
import threading
import time
import traceback
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from enginetest import wait_for
from fake_backend import FakeBackend
from test_policy import MakePool, engine_config, states, submit

import cosmos_gradio_nb as cg
from cosmos_gradio_nb._engine import deadlines as _deadlines
from cosmos_gradio_nb._engine.backend import BackendBroken
from cosmos_gradio_nb._engine.pool import WorkerPool
from cosmos_gradio_nb._engine.request import new_request


def _in_a_thread(coro: Any) -> Any:
    """``asyncio.run(coro)`` in a thread of its own: once the session's Playwright browser
    is up, the main thread has a running event loop and asyncio.run() refuses to start."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result(180)


@pytest.fixture()
def make_pool(tmp_path: Path) -> Iterator[MakePool]:
    """Pools on the fake backend, as ``test_policy.py`` makes them; closed at the end."""
    pools: list[WorkerPool] = []

    def make(groups: int = 2, *, setup: Any = None, retry_after: float = 60.0) -> Any:
        made: list[FakeBackend] = []

        def backend(emit: Any) -> FakeBackend:
            made.append(FakeBackend(emit, size=1))
            if setup is not None:
                setup(made[0])
            return made[0]

        config = engine_config(tmp_path / "out", groups, 1, retry_after=retry_after)
        pools.append(WorkerPool(config, backend))
        pools[-1].start()
        made[0].sync()
        return pools[-1], made[0]

    yield make
    for pool in pools:
        pool.close(1.0)


def _refusal(pool: Any, request: Any) -> BaseException:
    try:
        pool.submit(request)
    except cg.WorkerStartupError as exc:
        return exc
    raise AssertionError("submit was not refused")


def test_refusals_raise_a_fresh_exception_whose_traceback_stays_short(
    make_pool: MakePool,
) -> None:
    pool, _ = make_pool(groups=1, setup=lambda f: f.fail_start.update({0: "OSError: no GPU"}))
    with pytest.raises(cg.WorkerStartupError, match="no GPU"):
        pool.wait_ready(2)
    # One request submitted again and again: what is measured is the refusal alone.
    request = new_request(pool, {}, pool.config.log_file.parent, None)
    first = _refusal(pool, request)
    frames = len(traceback.extract_tb(first.__traceback__))
    for _ in range(200):  # warm: every allocation a refusal makes has been made once
        _refusal(pool, request)
    tracemalloc.start()
    try:
        gc.collect()  # what is measured is what stays reachable
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(10_000):
            last = _refusal(pool, request)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(traceback.extract_tb(last.__traceback__)) == frames <= 4
    assert grown < 50_000, f"10,000 refusals kept {grown} bytes"
    assert last is not first and "no GPU" in str(last) and last.rank == 0  # type: ignore[attr-defined]
    with pytest.raises(cg.WorkerStartupError) as info:
        pool.wait_ready(1)  # wait_ready raises a fresh one too
    assert info.value is not last and len(traceback.extract_tb(info.value.__traceback__)) <= 3


def test_a_restart_that_reached_ready_resets_the_crash_backoff(make_pool: MakePool) -> None:
    """An idle group killed 7 times in a row, each restart ready: the 7th is back at once."""
    pool, fake = make_pool(groups=1)
    for kill in range(1, 8):
        t0 = time.monotonic()
        fake.die(0)
        wait_for(lambda k=kill: fake.incarnation(0) == 1 + k and states(pool) == ["idle"], 5)
        assert time.monotonic() - t0 < 0.5, f"kill {kill}: back after {time.monotonic() - t0} s"
    assert pool.workers()[0].restarts == 7


def test_failed_restarts_still_back_off(make_pool: MakePool) -> None:
    """What the backoff is for: a restart that keeps failing waits longer each time."""
    pool, fake = make_pool(groups=1)
    fake.hold_start = True
    fake.die(0)  # a crash: restarted at once
    wait_for(lambda: fake.incarnation(0) == 2, timeout=5)
    fake.fail(0)  # the first failed start: again at once
    wait_for(lambda: fake.incarnation(0) == 3, timeout=5)
    fake.fail(0)  # the second in a row: waits 1 s
    fake.sync()
    assert states(pool) == ["restarting"]
    wait_for(lambda: fake.incarnation(0) == 4, timeout=5)


class _Spins:
    """Counts the timer's plans that end in a zero-second wait."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.zero = 0
        real = _deadlines.next_wakeup

        def counting(*args: Any) -> float:
            wait = real(*args)
            self.zero += wait == 0.0
            return wait

        monkeypatch.setattr(_deadlines, "next_wakeup", counting)


def _slow_close(fake: FakeBackend, seconds: float) -> None:
    real = fake.close

    def close() -> None:
        threading.Event().wait(seconds)  # a backend that takes its time (Ray's shutdown, say)
        real()

    fake.close = close  # type: ignore[method-assign]


def test_the_timer_does_not_spin_while_the_backend_closes(
    make_pool: MakePool, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool, fake = make_pool(groups=2, setup=lambda f: _slow_close(f, 1.0))
    spins = _Spins(monkeypatch)
    t0 = time.monotonic()
    pool.close(1.0)
    assert time.monotonic() - t0 >= 1.0 and fake.closed
    assert spins.zero < 20, f"{spins.zero} zero-second waits while the backend closed"


def test_close_after_the_backend_broke_still_frees_everything(
    make_pool: MakePool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Broken while one group is stopping and one backs off: close() closes it all."""
    pool, fake = make_pool(groups=2, setup=lambda f: setattr(f, "hold_replies", True))
    fut = submit(pool)
    group = next(g for g in (0, 1) if fake.sent(g))
    real_stop = fake.stop

    def stop(g: int, *, graceful: bool = False) -> None:  # this group's stop never ends
        if g != group:
            real_stop(g, graceful=graceful)

    fake.stop = stop  # type: ignore[method-assign]
    assert fut.terminate()  # its group is stopping, and no Gone will come
    fake.fail_start[1 - group] = "OSError: disk"
    fake.die(1 - group)  # the other group dies; its restarts fail: it backs off
    wait_for(lambda: sorted(states(pool)) == ["restarting", "stopping"], timeout=5)
    spins = _Spins(monkeypatch)
    fake.emit_raw(BackendBroken("the connection to the cluster was lost"))
    fake.sync()
    with pytest.raises(cg.AppClosedError):
        submit(pool)
    # The window in which a spinning timer is counted: longer than the timer's longest
    # sleep (MAX_SLEEP), since nothing wakes it when the backend breaks.
    threading.Event().wait(_deadlines.MAX_SLEEP + 0.2)
    pool.close(1.0)
    assert fake.closed, "close() returned without closing the backend"
    assert not pool._timer._thread.is_alive(), "the timer thread outlived close()"
    assert pool._effects.log_file._closed, "the log file was left open"
    assert spins.zero < 20, f"{spins.zero} zero-second waits after the backend broke"


# -- callbacks ------------------------------------------------------------------------------------
def _held(make_pool: MakePool, groups: int = 1) -> tuple[WorkerPool, FakeBackend]:
    return make_pool(groups=groups, setup=lambda f: setattr(f, "hold_replies", True))


def _answer_all(fake: FakeBackend, groups: int = 1) -> None:
    for group in range(groups):
        for msg in fake.sent(group):
            fake.answer(group, msg["id"])


def test_callbacks_that_call_sys_exit_stop_no_other_callback(make_pool: MakePool) -> None:
    pool, fake = _held(make_pool)
    futures = [submit(pool) for _ in range(40)]
    for fut in futures:
        fut.add_done_callback(lambda _: sys.exit(3))
    ran = threading.Event()
    last = submit(pool)
    last.add_done_callback(lambda _: ran.set())
    for _ in range(41):  # one group: each answer lets the next request run
        fake.sync()
        _answer_all(fake)
    # (futures complete after their status.json is written, off the event thread: wait)
    wait_for(lambda: all(f.done() for f in futures), timeout=10)
    assert ran.wait(5), "a normal callback never ran"


def test_blocked_user_callbacks_delay_neither_another_callback_nor_asyncio(
    make_pool: MakePool,
) -> None:
    """32 user callbacks blocked (20 s in the issue): another future's done-callback and
    ``asyncio.wrap_future`` (the page's /generate) still answer at once."""
    pool, fake = _held(make_pool, groups=2)
    release = threading.Event()
    blocked: list[int] = []

    def block(_: object) -> None:
        blocked.append(1)
        release.wait(60)

    try:
        for _ in range(32):
            fut = submit(pool)
            fut.add_done_callback(block)
            fake.sync()
            _answer_all(fake, groups=2)
            fut.result(5)
        wait_for(lambda: len(blocked) == 32, timeout=10)

        async def await_one() -> tuple[float, float]:
            fut = submit(pool)
            ran = threading.Event()
            fut.add_done_callback(lambda _: ran.set())
            wrapped = asyncio.wrap_future(fut)
            fake.sync()
            t0 = time.monotonic()
            _answer_all(fake, groups=2)
            await asyncio.wait_for(wrapped, 10)
            awaited = time.monotonic() - t0
            assert await asyncio.to_thread(ran.wait, 10)
            return awaited, time.monotonic() - t0

        awaited, called = _in_a_thread(await_one())
        assert awaited < 1.0, f"asyncio.wrap_future answered after {awaited:.1f} s"
        assert called < 1.0, f"another future's done-callback ran after {called:.1f} s"
    finally:
        release.set()
