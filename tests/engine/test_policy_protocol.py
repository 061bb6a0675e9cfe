"""The pool's new rules on the fake backend: who ends a request, stops, held errors, pings.

Each fault is an event the test makes the fake emit at the moment it chooses, so
every race of issue 15 is reproduced exactly: a rank dying while rank 0 finishes,
a peer's lost-connection error arriving before the death, a stop racing a reply.
"""

from __future__ import annotations

import threading
import time

import pytest
from enginetest import wait_for
from fake_backend import FakeBackend
from pooltest import MakePool, states, status_of, submit

import cosmos_gradio_nb as cg
from cosmos_gradio_nb._engine import deadlines as _deadlines
from cosmos_gradio_nb._engine.backend import Reply


def holding(fake: FakeBackend) -> None:
    fake.hold_replies = True


def lost_peer_error(fake: FakeBackend, request_id: str, rank: int) -> None:
    msg = {"type": "error", "id": request_id, "rank": rank, "error_type": "DistBackendError"}
    msg.update(message="Connection closed by peer [127.0.0.1]:29500", traceback="")
    fake.emit_raw(Reply(0, fake.incarnation(0), rank, msg))


# -- the first outcome wins ---------------------------------------------------------------------
def test_a_rank_dying_after_rank_0_replied_fails_the_request_and_its_record(
    make_pool: MakePool,
) -> None:
    pool, fake = make_pool(groups=1, size=2, setup=holding)
    fut = submit(pool)
    fake.answer(0, fut.request_id, rank=0, answer=1)  # rank 0 is done...
    fake.die(0, rank=1)  # ...and rank 1 dies before replying
    with pytest.raises(cg.WorkerCrashedError):
        fut.result(2)
    status = status_of(fut)
    assert status["state"] == "failed" and status["error"]["type"] == "WorkerCrashedError"
    assert "answer" not in status


def test_a_late_success_never_overwrites_a_failure_or_a_stop(make_pool: MakePool) -> None:
    pool, fake = make_pool(groups=1, size=2, stop_grace=0.3, setup=holding)
    fut = submit(pool)
    fake.raise_error(0, fut.request_id, rank=1, message="rank 1 broke")
    with pytest.raises(cg.InferenceError, match="rank 1 broke"):
        fut.result(2)
    assert status_of(fut)["state"] == "failed"  # on disk when result() raised, not after 10 s
    fake.answer(0, fut.request_id, rank=0, answer=1)  # rank 0 finishes later
    fake.sync()
    assert status_of(fut)["state"] == "failed" and "answer" not in status_of(fut)
    assert states(pool) == ["idle"]


def test_records_go_queued_running_then_final(make_pool: MakePool) -> None:
    pool, fake = make_pool(groups=1, setup=holding)
    running = submit(pool, i=1)
    queued = submit(pool, i=2)
    wait_for(lambda: (queued.output_dir / "status.json").exists(), timeout=2)
    wait_for(lambda: status_of(running)["state"] == "running", timeout=2)
    assert status_of(queued)["state"] == "queued" and status_of(queued)["params"]["i"] == 2
    assert status_of(running)["group"] == 0 and status_of(running)["source"] == "python"
    fake.answer(0, running.request_id, answer=1)
    assert running.result(2).status == status_of(running)
    wait_for(lambda: status_of(queued)["state"] == "running", timeout=2)


def test_requests_lists_running_then_queued_in_order(make_pool: MakePool) -> None:
    pool, fake = make_pool(groups=2, setup=holding)
    futs = [submit(pool, i=i) for i in range(5)]
    assert futs[3].cancel()
    fake.progress(0, fake.sent(0)[0]["id"], 0.5, "half")
    fake.sync()
    info = pool.requests()
    assert [r["id"] for r in info] == [futs[i].request_id for i in (0, 1, 2, 4)]
    assert [r["state"] for r in info] == ["running", "running", "queued", "queued"]
    assert [r["position"] for r in info] == [None, None, 0, 1]
    assert [r["group"] for r in info] == [0, 1, None, None]
    assert info[0]["progress"] == 0.5 and info[0]["message"] == "half"
    assert info[2]["params"]["i"] == 2 and info[2]["source"] == "python"


# -- stopping a running request -----------------------------------------------------------------
def test_a_stop_honoured_by_the_model_keeps_the_group(make_pool: MakePool) -> None:
    pool, fake = make_pool(groups=1, size=2, setup=holding)
    fake.honour_stop = True
    fut = submit(pool)
    queued = submit(pool)
    assert fut.terminate() and fut.cancelled()
    assert status_of(fut)["stop"]["how"] == "cooperative"
    assert fake.stops == [] and fake.incarnation(0) == 1  # not restarted
    fake.sync()
    assert queued.state == "running"  # the group went on with the next request


def test_a_stop_ignored_by_the_model_restarts_the_group_after_the_grace(
    make_pool: MakePool,
) -> None:
    pool, fake = make_pool(groups=1, stop_grace=0.3, setup=holding)
    fut = submit(pool)
    t0 = time.monotonic()
    assert fut.terminate()
    assert 0.3 <= time.monotonic() - t0 < 2.0 and fut.cancelled()
    assert status_of(fut)["stop"]["how"] == "restarted"
    wait_for(lambda: fake.incarnation(0) == 2, timeout=3)


def test_whatever_ends_a_stopping_request_it_is_cancelled(make_pool: MakePool) -> None:
    pool, fake = make_pool(groups=1, setup=holding)
    fut = submit(pool)
    done = threading.Event()
    threading.Thread(target=lambda: (fut.terminate(), done.set()), daemon=True).start()
    wait_for(lambda: any(m.get("type") == "stop" for _, m in fake.messages), timeout=2)
    fake.answer(0, fut.request_id, answer=1)  # it finished anyway, racing the stop
    assert done.wait(2) and fut.cancelled()
    assert status_of(fut)["state"] == "cancelled" and "answer" not in status_of(fut)
    crashed = submit(pool)
    threading.Thread(target=crashed.terminate, daemon=True).start()
    wait_for(lambda: fake.sent(0)[-1].get("type") == "stop", timeout=2)
    fake.die(0)  # it crashed while stopping
    wait_for(lambda: crashed.cancelled(), timeout=2)
    assert status_of(crashed)["state"] == "cancelled"
    assert status_of(crashed)["stop"]["how"] == "restarted"


# -- a peer's lost connection is held while a death may be on its way ----------------------------
def test_a_death_reported_after_a_peers_lost_connection_error_wins(make_pool: MakePool) -> None:
    pool, fake = make_pool(groups=1, size=2, setup=holding)
    fut = submit(pool)
    lost_peer_error(fake, fut.request_id, rank=0)  # rank 0's all_reduce lost rank 1...
    fake.sync()
    assert not fut.done()  # held: maybe the echo of a death
    fake.die(0, rank=1)  # ...whose death arrives just after
    with pytest.raises(cg.WorkerCrashedError) as info:
        fut.result(2)
    assert info.value.rank == 1
    assert status_of(fut)["error"]["type"] == "WorkerCrashedError"


def test_a_held_error_fails_the_request_when_no_death_follows(
    make_pool: MakePool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_deadlines, "HOLD_S", 0.2)
    pool, fake = make_pool(groups=1, size=2, setup=holding)
    fut = submit(pool)
    t0 = time.monotonic()
    lost_peer_error(fake, fut.request_id, rank=0)
    with pytest.raises(cg.InferenceError, match="Connection closed by peer"):
        fut.result(2)
    assert 0.2 <= time.monotonic() - t0 < 1.5
    fake.answer(0, fut.request_id, rank=1)  # the other rank answers at last: the group is free
    other = submit(pool)  # a model error that is no lost peer fails at once
    fake.raise_error(0, other.request_id, rank=1, message="bad prompt")
    with pytest.raises(cg.InferenceError, match="bad prompt"):
        other.result(0.5)


def test_a_held_error_fails_at_once_when_every_rank_has_answered(make_pool: MakePool) -> None:
    pool, fake = make_pool(groups=1, size=2, setup=holding)
    fut = submit(pool)
    lost_peer_error(fake, fut.request_id, rank=0)
    fake.answer(0, fut.request_id, rank=1)
    with pytest.raises(cg.InferenceError, match="Connection closed"):
        fut.result(0.5)


# -- health checks ------------------------------------------------------------------------------
def test_idle_groups_are_pinged_and_a_silent_one_is_restarted(make_pool: MakePool) -> None:
    pool, fake = make_pool(groups=2, health_interval=0.1, health_timeout=0.3)
    wait_for(lambda: sum(m.get("type") == "ping" for g, m in fake.messages if g == 0) >= 3, 5)
    assert fake.incarnation(0) == 1 and fake.incarnation(1) == 1  # they answer
    fake.answer_pings = False
    wait_for(lambda: fake.incarnation(0) >= 2 and fake.incarnation(1) >= 2, timeout=5)
    line = "group 0 did not answer a health check within 0.3 s: restarting"
    wait_for(lambda: line in pool.config.log_file.read_text(), timeout=5)  # after the lock


def test_a_request_sent_to_a_silent_group_fails_as_a_crash(make_pool: MakePool) -> None:
    pool, fake = make_pool(groups=1, health_interval=0.1, health_timeout=0.5, setup=holding)
    fake.answer_pings = False
    wait_for(lambda: any(m.get("type") == "ping" for _, m in fake.messages), timeout=5)
    fut = submit(pool)  # dispatched while the ping is out
    with pytest.raises(cg.WorkerCrashedError, match="did not answer a health check"):
        fut.result(3)
    assert status_of(fut)["error"]["type"] == "WorkerCrashedError"


def test_a_group_killed_while_a_ping_is_out_is_not_blamed_twice(make_pool: MakePool) -> None:
    pool, fake = make_pool(groups=1, health_interval=0.1, health_timeout=0.3)
    fake.answer_pings = False
    wait_for(lambda: any(m.get("type") == "ping" for _, m in fake.messages), timeout=5)
    fake.answer_pings = True
    fake.die(0)  # its old ping's deadline must not follow it into the next incarnation
    wait_for(lambda: fake.incarnation(0) == 2 and states(pool) == ["idle"], timeout=5)
    group = pool._groups[0]
    pinged = group.ping_n
    wait_for(lambda: group.ping_n >= pinged + 3 and group.ping_deadline is None, timeout=5)
    assert fake.incarnation(0) == 2
    assert "did not answer a health check" not in pool.config.log_file.read_text()
