"""How each failure on the workers is worded: one place for every message the pool raises.

A user reads these in a traceback, on the page and in status.json, usually
while something is on fire; each says what happened, where (group, rank, pid),
and what the engine did about it.
"""

from __future__ import annotations

import copy
import re
from typing import Any, TypeVar

from .._core.exceptions import (
    InferenceError,
    InferenceTimeoutError,
    WorkerCrashedError,
    WorkerStartupError,
)
from .backend import Died
from .groups import Group
from .request import Request

__all__ = [
    "crashed",
    "fresh",
    "inference_failed",
    "lost_peer",
    "start_failed",
    "timed_out",
    "unresponsive",
]

E = TypeVar("E", bound=BaseException)


def inference_failed(
    group: Group, rank: int, request: Request, msg: dict[str, Any]
) -> InferenceError:
    """``infer`` raised on ``rank`` (its ``error`` reply is ``msg``)."""
    where = f" (group {group.index}, rank {rank})" if group.size > 1 else ""
    return InferenceError(
        f"{msg.get('error_type')}: {msg.get('message')}{where}",
        request_id=request.id,
        rank=rank,
        error_type=msg.get("error_type", ""),
        remote_traceback=msg.get("traceback", ""),
    )


def crashed(group: Group, event: Died, request: Request, tail: list[str]) -> WorkerCrashedError:
    """A rank died while running ``request``; ``tail`` is what it printed last."""
    pid = f" (pid {event.pid})" if event.pid else ""
    return WorkerCrashedError(
        f"worker group {group.index} rank {event.rank}{pid} died ({event.how}) while "
        f"running request {request.id}; the group is being restarted and queued "
        "requests will run after it. Last lines:\n" + "\n".join(tail[-10:]),
        request_id=request.id,
        group=group.index,
        rank=event.rank,
        exitcode=event.exitcode,
        signal_name=event.signal_name,
        last_log_lines=tail,
    )


def timed_out(group: Group, request: Request) -> InferenceTimeoutError:
    return InferenceTimeoutError(
        f"request {request.id} ran longer than its timeout of {request.timeout:g} s; "
        f"worker group {group.index} was restarted",
        request_id=request.id,
        timeout=request.timeout,
    )


def start_failed(group: Group, rank: int, summary: str, details: str) -> WorkerStartupError:
    return WorkerStartupError(
        f"worker group {group.index} rank {rank} failed to start: {summary}\n{details}".rstrip(),
        group=group.index,
        rank=rank,
        remote_traceback=details,
    )


def fresh(error: E) -> E:
    """A new exception like ``error`` (class, message, attributes), with no traceback yet.

    An exception object that is raised again and again keeps every raise in its
    traceback (a few frames each, and the frames hold their locals), so a stored
    reason raised at each refused ``submit()`` grew without bound. Raise a copy.
    """
    try:
        new = copy.copy(error)
    except Exception:  # an exception class that cannot be rebuilt: reuse it, traceback cut
        return error.with_traceback(None)
    new.__traceback__ = None
    return new


def unresponsive(
    group: Group, request: Request, silent: list[int], timeout: float
) -> WorkerCrashedError:
    """``group`` got ``request`` while a health check was out, and did not answer it."""
    ranks = ", ".join(str(r) for r in silent)
    return WorkerCrashedError(
        f"worker group {group.index} (rank {ranks}) did not answer a health check within "
        f"{timeout:g} s while running request {request.id} (stopped or deadlocked); the group "
        "is being restarted and queued requests will run after it",
        request_id=request.id,
        group=group.index,
        rank=silent[0] if silent else None,
    )


_LOST_PEER = re.compile(
    r"connection (closed|reset|refused)|broken pipe|by peer|ECONNRESET|EPIPE|"
    r"DistBackendError|ProcessGroup|NCCL|gloo|socket",
    re.IGNORECASE,
)


def lost_peer(msg: dict[str, Any]) -> bool:
    """Whether an error reply looks like the rank lost a peer (a collective's connection broke).

    Such an error is usually the *echo* of another rank's death: the pool holds it
    briefly (``deadlines.HOLD_S``) so that the death, the cause, is what the request
    fails with.
    """
    text = f"{msg.get('error_type', '')}: {msg.get('message', '')}"
    return bool(_LOST_PEER.search(text))
