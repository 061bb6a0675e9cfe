"""The timer's arithmetic, with made-up times: no process, no thread, no clock.

``now`` is an arbitrary number here; the pool passes ``time.monotonic()``.
"""

from __future__ import annotations

import pytest

from cosmos_gradio_nb._engine.deadlines import (
    MAX_SLEEP,
    Due,
    close_due,
    due,
    group_deadlines,
    next_wakeup,
    wakes_sooner,
)
from cosmos_gradio_nb._engine.groups import Group, GroupState, move
from cosmos_gradio_nb._engine.request import Request

S = GroupState
NOW = 1000.0


class Owner:
    """A request's owner that is never asked anything here."""

    def queue_position(self, request: Request) -> int | None:
        raise AssertionError("not used")

    def forget(self, request: Request) -> None:
        raise AssertionError("not used")

    def terminate(self, request: Request) -> bool:
        raise AssertionError("not used")


def group(state: GroupState = S.IDLE, **deadlines: float | None) -> Group:
    g = Group(0, 1, state=state)
    for name, when in deadlines.items():
        setattr(g, name, when)
    return g


def busy(request_deadline: float | None, **deadlines: float | None) -> Group:
    g = group(S.BUSY, **deadlines)
    request = Request(id="r1", params={}, output_dir="/tmp/r1", timeout=None, pool=Owner())
    request.deadline = request_deadline
    g.request = request
    return g


# -- next_wakeup ----------------------------------------------------------------------------
def test_with_nothing_due_the_timer_sleeps_max_sleep() -> None:
    assert next_wakeup([], NOW, None) == MAX_SLEEP
    assert next_wakeup([group(S.IDLE), group(S.STOPPED)], NOW, None) == MAX_SLEEP


def test_the_timer_wakes_for_the_earliest_deadline() -> None:
    groups = [
        busy(NOW + 0.5, peer_deadline=NOW + 0.25),
        group(S.STARTING, start_deadline=NOW + 0.125),
        group(S.RESTARTING, restart_at=NOW + 0.75),
    ]
    assert next_wakeup(groups, NOW, None) == 0.125
    assert next_wakeup(groups[:1], NOW, None) == 0.25
    assert next_wakeup(groups[2:], NOW, None) == 0.75
    assert next_wakeup([group(S.FAILED, restart_at=NOW + 60)], NOW, None) == MAX_SLEEP


def test_a_deadline_already_past_wakes_at_once() -> None:
    assert next_wakeup([busy(NOW - 5)], NOW, None) == 0.0
    assert next_wakeup([group(S.FAILED, restart_at=NOW - 1)], NOW, None) == 0.0


def test_a_stopping_group_waits_for_its_gone_not_for_its_deadlines() -> None:
    stopping = group(S.STOPPING, restart_at=NOW + 0.5, start_deadline=NOW + 0.25)
    assert group_deadlines(stopping) == []
    assert next_wakeup([stopping], NOW, None) == MAX_SLEEP


def test_a_running_requests_timeout_counts_in_any_state() -> None:
    g = busy(NOW + 0.5, peer_deadline=NOW + 0.25)
    g.state = S.STOPPING  # set directly: only what the timer reads matters here
    assert group_deadlines(g) == [NOW + 0.5]


def test_the_close_deadline_counts_while_it_matters() -> None:
    assert next_wakeup([busy(NOW + 0.5)], NOW, NOW + 0.25) == 0.25
    assert next_wakeup([], NOW, NOW - 1) == 0.0
    assert next_wakeup([], NOW, None) == MAX_SLEEP


# -- due ------------------------------------------------------------------------------------
def test_a_request_is_due_at_its_deadline_not_before() -> None:
    assert due(busy(NOW + 0.001), NOW) is None
    assert due(busy(NOW), NOW) is Due.REQUEST_TIMEOUT
    assert due(busy(NOW - 1), NOW) is Due.REQUEST_TIMEOUT
    assert due(busy(None), NOW) is None  # no timeout


def test_the_request_timeout_comes_before_the_peers_grace() -> None:
    assert due(busy(NOW - 1, peer_deadline=NOW - 1), NOW) is Due.REQUEST_TIMEOUT
    assert due(busy(None, peer_deadline=NOW - 1), NOW) is Due.PEER_GRACE
    assert due(busy(NOW + 1, peer_deadline=NOW), NOW) is Due.PEER_GRACE
    assert due(busy(None, peer_deadline=NOW + 1), NOW) is None


def test_a_starting_group_is_due_at_its_start_deadline() -> None:
    assert due(group(S.STARTING, start_deadline=NOW + 1), NOW) is None
    assert due(group(S.STARTING, start_deadline=NOW), NOW) is Due.STARTUP
    assert due(group(S.STARTING), NOW) is None


@pytest.mark.parametrize("state", [S.RESTARTING, S.FAILED])
def test_a_backing_off_or_given_up_group_restarts_at_its_time(state: GroupState) -> None:
    assert due(group(state, restart_at=NOW + 1), NOW) is None
    assert due(group(state, restart_at=NOW), NOW) is Due.RESTART
    assert due(group(state), NOW) is Due.RESTART  # no time set: at once


@pytest.mark.parametrize("state", [S.IDLE, S.STOPPING, S.STOPPED])
def test_deadlines_left_on_a_group_in_another_state_are_never_due(state: GroupState) -> None:
    past = NOW - 1
    assert due(group(state, peer_deadline=past, start_deadline=past, restart_at=past), NOW) is None


def test_a_busy_groups_start_and_restart_times_are_not_its_business() -> None:
    assert due(busy(None, start_deadline=NOW - 1, restart_at=NOW - 1), NOW) is None


# -- stops, held errors and health checks ---------------------------------------------------
def test_a_stop_grace_comes_before_the_timeout_and_a_held_error_before_the_peers() -> None:
    past = NOW - 1
    assert due(busy(past, stop_deadline=past, peer_deadline=past), NOW) is Due.STOP_GRACE
    assert due(busy(NOW + 1, hold_deadline=past, peer_deadline=past), NOW) is Due.HELD_ERROR
    assert due(busy(NOW + 1, stop_deadline=NOW + 1, hold_deadline=NOW + 1), NOW) is None


def test_an_idle_group_is_pinged_at_its_time_and_a_missed_answer_comes_first() -> None:
    assert due(group(S.IDLE, health_at=NOW + 1), NOW) is None
    assert due(group(S.IDLE, health_at=NOW), NOW) is Due.HEALTH_PING
    assert due(group(S.IDLE, health_at=NOW, ping_deadline=NOW), NOW) is Due.HEALTH_MISSED
    assert due(busy(None, ping_deadline=NOW), NOW) is Due.HEALTH_MISSED  # sent work meanwhile
    assert due(busy(None, health_at=NOW - 1), NOW) is None  # busy groups are not pinged


def test_the_timer_wakes_for_a_ping_only_while_the_group_is_idle() -> None:
    assert next_wakeup([group(S.IDLE, health_at=NOW + 0.3)], NOW, None) == pytest.approx(0.3)
    assert next_wakeup([busy(None, health_at=NOW + 0.3)], NOW, None) == MAX_SLEEP
    assert next_wakeup([busy(None, ping_deadline=NOW + 0.2)], NOW, None) == pytest.approx(0.2)


def test_stopping_a_group_ends_what_was_watched_on_its_processes() -> None:
    g = group(S.IDLE, health_at=NOW, ping_deadline=NOW, hold_deadline=NOW, stop_deadline=NOW)
    g.pongs.add(0)
    move(g, S.STOPPING)
    assert (g.health_at, g.ping_deadline, g.hold_deadline, g.stop_deadline) == (None,) * 4
    assert g.pongs == set()


# -- closing and waking ---------------------------------------------------------------------
def test_close_is_due_at_its_deadline_and_only_while_it_matters() -> None:
    assert not close_due(NOW, NOW + 0.1)
    assert close_due(NOW, NOW)
    assert close_due(NOW, NOW - 1)
    assert not close_due(NOW, None)  # not closing, or the stopping groups were killed already


def test_the_timer_is_woken_only_for_a_deadline_before_its_wait_ends() -> None:
    assert wakes_sooner(NOW + 0.5, NOW + 1)
    assert not wakes_sooner(NOW + 1, NOW + 1)
    assert not wakes_sooner(NOW + 2, NOW + 1)
    assert not wakes_sooner(NOW, 0.0)  # awake: it re-plans before sleeping again
