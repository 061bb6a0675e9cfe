"""The queue and fault policy of ``WorkerPool``, driven through the in-process fake backend.

No process is started here: every start, reply, death and failed start is an
event the test makes the fake emit, so each fault is reproduced exactly and the
tests run in milliseconds.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from enginetest import wait_for
from fake_backend import FakeBackend
from pooltest import MakePool, engine_config, states, status_of, submit

import cosmos_gradio_nb as cg
from cosmos_gradio_nb._engine import deadlines as _deadlines
from cosmos_gradio_nb._engine import supervisor as _supervisor
from cosmos_gradio_nb._engine.backend import Died, Gone, Output, Ready
from cosmos_gradio_nb._engine.groups import TRANSITIONS, Group, GroupState, move
from cosmos_gradio_nb._engine.pool import WorkerPool


def test_fifo_queue_routes_to_the_idle_group_that_waited_longest(make_pool: MakePool) -> None:
    pool, fake = make_pool(groups=2, setup=lambda f: setattr(f, "hold_replies", True))
    futs = [submit(pool, i=i) for i in range(5)]
    assert [f.state for f in futs] == ["running", "running", "queued", "queued", "queued"]
    assert [f.queue_position for f in futs[2:]] == [0, 1, 2]
    first, second = fake.sent(0)[0]["id"], fake.sent(1)[0]["id"]
    assert {first, second} == {futs[0].request_id, futs[1].request_id}
    fake.answer(1, second, answer=1)
    fake.sync()
    assert futs[1].result(1).status["answer"] == 1
    assert (
        fake.sent(1)[-1]["id"] == futs[2].request_id
    )  # the freed group took the head of the queue
    fake.answer(0, first)
    fake.sync()
    assert fake.sent(0)[-1]["id"] == futs[3].request_id
    assert futs[4].queue_position == 0


def test_results_carry_the_requests_log_and_progress(make_pool: MakePool) -> None:
    pool, fake = make_pool(groups=1, setup=lambda f: setattr(f, "hold_replies", True))
    fut = submit(pool)
    seen: list[float | None] = []
    fut.add_progress_callback(lambda f: seen.append(f.progress))
    fake.output(0, ["loading", "step 1"])
    fake.progress(0, fut.request_id, 0.5, "half")
    fake.answer(0, fut.request_id, files={"videos": ["/x/a.mp4"], "images": [], "other": []})
    res = fut.result(2)
    assert res.log == ["[g0 r0] loading", "[g0 r0] step 1"]
    assert [str(p) for p in res.videos] == ["/x/a.mp4"] and res.files == res.videos
    wait_for(lambda: seen == [0.5], timeout=2)
    assert fut.progress == 0.5 and fut.progress_message == "half"


def test_events_of_an_old_incarnation_are_dropped(make_pool: MakePool) -> None:
    pool, fake = make_pool(groups=1, setup=lambda f: setattr(f, "hold_replies", True))
    fut = submit(pool)
    fake.die(0)
    with pytest.raises(cg.WorkerCrashedError):
        fut.result(2)
    fake.sync()
    assert fake.incarnation(0) == 2
    late = submit(pool)
    fake.emit_raw(Output(0, 1, 0, ["from the dead process"]))
    fake.answer(0, late.request_id)
    assert late.result(2).log == []


def test_crash_fails_the_request_restarts_the_group_and_keeps_the_queue(
    make_pool: MakePool,
) -> None:
    pool, fake = make_pool(groups=1, setup=lambda f: setattr(f, "hold_replies", True))
    running = submit(pool)
    queued = [submit(pool, i=i) for i in range(3)]
    fake.output(0, ["about to die"])
    fake.die(0, how="SIGKILL")
    with pytest.raises(cg.WorkerCrashedError) as info:
        running.result(2)
    assert info.value.signal_name == "SIGKILL" and info.value.last_log_lines == [
        "[g0 r0] about to die"
    ]
    assert status_of(running)["error"]["type"] == "WorkerCrashedError"
    fake.sync()
    assert [f.state for f in queued] == ["running", "queued", "queued"]
    assert fake.sent(0)[0]["id"] == queued[0].request_id  # the new incarnation got the head
    assert pool.workers()[0].restarts == 1


def test_a_broken_factory_is_given_up_at_once_and_retried_later(make_pool: MakePool) -> None:
    pool, fake = make_pool(
        groups=1,
        retry_after=0.3,
        setup=lambda f: f.fail_start.update({0: "ValueError: no weights"}),
    )
    with pytest.raises(cg.WorkerStartupError, match="no weights"):
        pool.wait_ready(2)
    with pytest.raises(cg.WorkerStartupError):
        submit(pool)
    assert states(pool) == ["failed"]
    fake.fail_start.clear()  # the cause is fixed (a file was copied, say)
    wait_for(lambda: states(pool) == ["idle"], timeout=5)  # the retry after retry_after s
    assert pool.ready
    assert submit(pool).result(2).status["state"] == "succeeded"


def test_restart_failed_retries_at_once(make_pool: MakePool) -> None:
    pool, fake = make_pool(groups=1, setup=lambda f: f.fail_start.update({0: "OSError: disk"}))
    with pytest.raises(cg.WorkerStartupError):
        pool.wait_ready(2)
    fake.fail_start.clear()
    assert pool.restart_failed() == 1
    queued = submit(pool)  # no longer refused: it waits for the retry
    pool.wait_ready(2)
    assert queued.result(2).status["state"] == "succeeded"


def test_transient_kills_never_give_a_working_replica_up(make_pool: MakePool, monkeypatch) -> None:
    """Killed three times while idle, then once while restarting: it still serves."""
    monkeypatch.setattr(_supervisor, "_backoff", lambda n: 0.0)
    pool, fake = make_pool(groups=1)
    for incarnation in (2, 3, 4):
        fake.die(0)
        wait_for(lambda i=incarnation: fake.incarnation(0) == i and states(pool) == ["idle"], 10)
    fake.hold_start = True
    fake.die(0)
    wait_for(lambda: fake.incarnation(0) == 5 and states(pool) == ["starting"], timeout=10)
    fake.die(0)  # dies while restarting
    wait_for(lambda: fake.incarnation(0) == 6 and states(pool) == ["starting"], timeout=10)
    fake.ready(0)
    wait_for(lambda: states(pool) == ["idle"], timeout=5)
    assert submit(pool).result(2).status["state"] == "succeeded"


def test_five_failed_starts_in_a_row_give_up_only_then(make_pool: MakePool, monkeypatch) -> None:
    monkeypatch.setattr(_supervisor, "_backoff", lambda n: 0.0)
    pool, fake = make_pool(groups=1)
    fake.hold_start = True
    fake.die(0)
    for attempt in range(1, 6):
        wait_for(lambda a=attempt: fake.incarnation(0) == 1 + a, timeout=5)
        assert states(pool) == ["starting"]
        fake.fail(0)
        fake.sync()
    assert states(pool) == ["failed"]
    with pytest.raises(cg.WorkerStartupError, match="no weights"):
        submit(pool)


def test_startup_timeout_fails_the_group_naming_the_rank_and_its_last_lines(
    make_pool: MakePool,
) -> None:
    pool, fake = make_pool(
        groups=1, size=2, startup_timeout=0.3, setup=lambda f: setattr(f, "hold_start", True)
    )
    fake.ready(0, rank=0)
    fake.output(0, ["loading shard 3 of 8 from /nfs/weights"], rank=1)
    queued = submit(pool)
    t0 = time.monotonic()
    with pytest.raises(cg.WorkerStartupError) as info:
        pool.wait_ready(5)
    assert time.monotonic() - t0 < 2
    assert info.value.rank == 1 and "STARTUP_TIMEOUT" in str(info.value)
    assert "loading shard 3 of 8" in str(info.value)
    with pytest.raises(cg.WorkerStartupError):
        queued.result(1)
    assert status_of(queued)["state"] == "failed"


def test_request_timeout_and_terminate(make_pool: MakePool) -> None:
    pool, fake = make_pool(
        groups=1, stop_grace=0.2, setup=lambda f: setattr(f, "hold_replies", True)
    )
    fut = submit(pool, timeout=0.2)
    with pytest.raises(cg.InferenceTimeoutError):
        fut.result(3)
    assert status_of(fut)["error"]["type"] == "InferenceTimeoutError"
    fake.sync()
    wait_for(lambda: states(pool) == ["idle"], timeout=5)
    fut = submit(pool)
    assert fut.terminate() and fut.cancelled()  # the fake ignores the stop: killed after 0.2 s
    assert status_of(fut)["state"] == "cancelled" and status_of(fut)["stop"]["how"] == "restarted"
    assert (0, {"type": "stop", "id": fut.request_id}) in fake.messages
    assert (0, False) in fake.stops


def test_a_peer_that_never_answers_after_another_failed_is_stopped(
    make_pool: MakePool, monkeypatch
) -> None:
    monkeypatch.setattr(_deadlines, "PEER_GRACE", 0.2)
    pool, fake = make_pool(groups=1, size=2, setup=lambda f: setattr(f, "hold_replies", True))
    fut = submit(pool)
    fake.raise_error(0, fut.request_id, rank=1, message="rank 1 broke")
    with pytest.raises(cg.InferenceError, match="rank 1 broke"):
        fut.result(2)
    wait_for(lambda: fake.incarnation(0) == 2, timeout=3)
    # status.json is written once the lock is released, maybe after the restart began.
    wait_for(lambda: (fut.output_dir / "status.json").exists(), timeout=3)
    assert status_of(fut)["error"]["message"] == "rank 1 broke"


def test_a_send_to_a_group_that_just_died_requeues_the_request(make_pool: MakePool) -> None:
    pool, fake = make_pool(groups=1, setup=lambda f: setattr(f, "hold_replies", True))
    fake.groups[0].alive = False  # dead, and its Died event is still on the way
    fut = submit(pool)
    assert fut.state == "queued"
    fake.emit_raw(Died(0, 1, 0, "SIGKILL"))
    fake.emit_raw(Gone(0, 1))
    fake.sync()
    wait_for(lambda: fut.state == "running", timeout=3)
    assert fake.incarnation(0) == 2


def test_every_accepted_request_leaves_its_status(make_pool: MakePool) -> None:
    pool, _ = make_pool(groups=1, setup=lambda f: setattr(f, "hold_replies", True))
    running = submit(pool)
    cancelled = submit(pool)
    assert cancelled.cancel()
    pending = submit(pool)
    pool.close(0.5)
    assert status_of(cancelled)["state"] == "cancelled"
    for fut in (running, pending):
        assert isinstance(fut.exception(1), cg.AppClosedError)
        status = status_of(fut)
        assert status["state"] == "failed" and status["error"]["type"] == "AppClosedError"
    assert status_of(pending)["started_at"] is None


def test_close_stops_idle_groups_gracefully_and_kills_after_the_timeout(
    make_pool: MakePool,
) -> None:
    pool, fake = make_pool(groups=2, setup=lambda f: setattr(f, "ignore_graceful", True))
    t0 = time.monotonic()
    pool.close(0.3)
    assert 0.25 < time.monotonic() - t0 < 3
    assert (0, True) in fake.stops and (0, False) in fake.stops  # asked, then forced
    assert fake.closed
    assert all(w.state == "stopped" for w in pool.workers())
    with pytest.raises(cg.AppClosedError):
        submit(pool)


def test_a_blocking_callback_does_not_delay_another_groups_crash(make_pool: MakePool) -> None:
    pool, fake = make_pool(groups=2, setup=lambda f: setattr(f, "hold_replies", True))
    first, second = submit(pool), submit(pool)
    release = threading.Event()
    first.add_done_callback(lambda _: release.wait(5))
    group_of = {fake.sent(g)[0]["id"]: g for g in (0, 1)}
    fake.answer(group_of[first.request_id], first.request_id)
    first.result(2)
    t0 = time.monotonic()
    fake.die(group_of[second.request_id])
    with pytest.raises(cg.WorkerCrashedError):
        second.result(2)
    assert time.monotonic() - t0 < 1.0
    release.set()


def test_ready_is_counted_per_rank(make_pool: MakePool) -> None:
    pool, fake = make_pool(groups=1, size=3, setup=lambda f: setattr(f, "hold_start", True))
    fake.ready(0, rank=2)
    fake.ready(0, rank=2)  # twice from one rank is still one rank
    fake.ready(0, rank=0)
    fake.sync()
    assert not pool.ready and states(pool) == ["starting"]
    fake.emit_raw(Ready(0, fake.incarnation(0), 1))
    fake.sync()
    assert pool.ready


def test_a_backend_that_cannot_start_a_group_fails_it_without_hanging(make_pool: MakePool) -> None:
    def broken(fake: FakeBackend) -> None:
        def start(spec: object) -> None:
            raise OSError("no free port")

        fake.start = start  # type: ignore[method-assign]

    pool, _ = make_pool(groups=1, setup=broken)
    with pytest.raises(cg.WorkerStartupError, match="OSError: no free port"):
        pool.wait_ready(2)
    assert states(pool) == ["failed"]


def test_the_transition_table_is_enforced() -> None:
    group = Group(0, 1)
    assert group.state is GroupState.STARTING
    move(group, GroupState.IDLE)
    with pytest.raises(RuntimeError, match="idle -> restarting"):
        move(group, GroupState.RESTARTING)
    assert all(GroupState.STOPPING in TRANSITIONS[s] for s in (GroupState.IDLE, GroupState.BUSY))
    assert TRANSITIONS[GroupState.STOPPED] == frozenset()


def test_closing_a_pool_that_never_started_is_immediate(tmp_path: Path) -> None:
    made: list[FakeBackend] = []
    pool = WorkerPool(
        engine_config(tmp_path),
        lambda emit: made.append(FakeBackend(emit, size=1)) or made[-1],
    )
    t0 = time.monotonic()
    pool.close(5.0)
    assert time.monotonic() - t0 < 1 and made[0].closed and made[0].starts == []
