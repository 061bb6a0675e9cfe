"""How a request's state, its place in the queue and its errors are said, everywhere.

The page (``_page.render``), the notebook's static HTML (``_notebook.display``) and the
widgets (``_notebook.form``) all read this module, so a queued request has the same
word and colour in the browser and in the notebook, a place in the queue is
worded one way, and an error gets the same title from the same rule.

Errors are classified by exception class (``isinstance`` on the two bases of
the error tree), never by matching class-name strings. Standard library only.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from enum import Enum
from typing import Any

from . import exceptions as ex

__all__ = [
    "GROUP_STATES",
    "STATES",
    "ErrorCategory",
    "ErrorView",
    "StateStyle",
    "classify_error",
    "classify_error_record",
    "device_label",
    "esc",
    "group_state_style",
    "queue_wording",
    "state_style",
]


def esc(value: Any) -> str:
    """``value`` as text safe inside HTML, attribute values included: the one escape of
    every HTML this package writes (the page, the notebook's displays, the widgets)."""
    return html.escape(str(value), quote=True)


@dataclass(frozen=True)
class StateStyle:
    """The word a state is shown with and its badge colour (white text on it)."""

    word: str
    color: str


# The one table of request states. "refused" is what the page shows when nothing was
# queued (bad JSON, invalid parameters); "broken" a past request whose status.json
# cannot be read; "idle" the empty status panel.
STATES: dict[str, StateStyle] = {
    "queued": StateStyle("queued", "#a16207"),
    "running": StateStyle("running", "#2563eb"),
    "succeeded": StateStyle("succeeded", "#15803d"),
    "failed": StateStyle("failed", "#b91c1c"),
    "cancelled": StateStyle("cancelled", "#6b7280"),
    "refused": StateStyle("refused", "#b91c1c"),
    "broken": StateStyle("broken", "#7c2d12"),
    "idle": StateStyle("ready", "#6b7280"),
}
_UNKNOWN = StateStyle("unknown", "#374151")

# The one table of model-group states (``WorkerInfo.state``; see ``_groups.GroupState``).
GROUP_STATES: dict[str, StateStyle] = {
    "starting": StateStyle("starting", "#6b7280"),
    "idle": StateStyle("idle", "#15803d"),
    "busy": StateStyle("busy", "#2563eb"),
    "stopping": StateStyle("stopping", "#a16207"),
    "restarting": StateStyle("restarting", "#a16207"),
    "failed": StateStyle("failed", "#b91c1c"),
    "stopped": StateStyle("stopped", "#6b7280"),
    # restarted after it missed a health check (HEALTH_TIMEOUT), until it is ready again
    "unresponsive": StateStyle("not answering: restarting", "#b91c1c"),
}


def group_state_style(state: str) -> StateStyle:
    """The style of a model group's state; an unknown one keeps its name, neutral."""
    return GROUP_STATES.get(state) or StateStyle(state or _UNKNOWN.word, _UNKNOWN.color)


def device_label(devices: str) -> str:
    """``"GPU 3"``, ``"GPU 0,1"`` or ``"CPU"`` for a ``WorkerInfo.gpu`` value (``""`` is CPU)."""
    return f"GPU {devices}" if devices else "CPU"


def state_style(state: str) -> StateStyle:
    """The style of ``state``; an unknown state keeps its own name in a neutral colour."""
    return STATES.get(state) or StateStyle(state or _UNKNOWN.word, _UNKNOWN.color)


def queue_wording(position: int | None) -> str:
    """A queued request's place: ``next in line``, ``1 ahead``, ``20 ahead``; ``queued`` if unknown.

    ``position`` counts the requests before this one (0 means it runs next), as
    ``InferenceFuture.queue_position`` does. No ordinals, so no "21th".
    """
    if position is None or position < 0:
        return "queued"
    if position == 0:
        return "next in line"
    return f"{position} ahead"


class ErrorCategory(str, Enum):
    """What kind of failure, and so what the user should do."""

    REFUSED = "refused"  # nothing ran: fix the request (or wait) and send it again
    WORKER = "worker"  # the model raised, or its process died or hung
    CLOSED = "closed"  # the server is shutting down
    OTHER = "other"  # anything else (a plain infer function's own exception)


@dataclass(frozen=True)
class ErrorView:
    """An error as every front end shows it.

    Attributes
    ----------
    title:
        A few words: "Invalid parameters", "The model raised KeyError".
    message:
        What happened and what to do; may have several lines (one per problem).
    detail:
        A remote traceback or a dead worker's last log lines ("" when none).
    category:
        Refused, worker, closed or other.
    """

    title: str
    message: str
    detail: str
    category: ErrorCategory

    @property
    def ran(self) -> bool:
        """False when nothing ran (the request was refused or never queued)."""
        return self.category not in (ErrorCategory.REFUSED,)


def _worker_view(exc: ex.WorkerError) -> ErrorView:
    message = str(exc) or type(exc).__name__
    cat = ErrorCategory.WORKER
    if isinstance(exc, ex.InferenceError):
        etype = exc.error_type or "an error"
        if message.startswith(f"{etype}: "):
            message = message[len(etype) + 2 :]
        return ErrorView(f"The model raised {etype}", message, exc.remote_traceback or "", cat)
    if isinstance(exc, ex.WorkerCrashedError):
        how = (
            f"killed by {exc.signal_name}"
            if exc.signal_name
            else f"exited with code {exc.exitcode}"
        )
        rank = "?" if exc.rank is None else exc.rank
        return ErrorView(
            f"Worker rank {rank} crashed ({how})",
            f"{message}. The worker group was restarted; other requests keep their place.",
            "\n".join(exc.last_log_lines or []),
            cat,
        )
    if isinstance(exc, ex.InferenceTimeoutError):
        return ErrorView("Timed out", f"{message}. The worker group was restarted.", "", cat)
    if isinstance(exc, ex.WorkerStartupError):
        return ErrorView("The model failed to start", message, exc.remote_traceback or "", cat)
    return ErrorView("Worker error", message, "", cat)


def classify_error(exc: BaseException) -> ErrorView:
    """The :class:`ErrorView` of an exception, decided by its class."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, ex.WorkerError):
        return _worker_view(exc)
    if isinstance(exc, ex.ValidationError):
        return ErrorView("Invalid parameters", message, "", ErrorCategory.REFUSED)
    if isinstance(exc, ex.QueueFullError):
        return ErrorView("Queue full", message, "", ErrorCategory.REFUSED)
    if isinstance(exc, ex.RequestRefusedError):
        return ErrorView("Request refused", message, "", ErrorCategory.REFUSED)
    if isinstance(exc, ex.AppClosedError):
        return ErrorView("Server shutting down", message, "", ErrorCategory.CLOSED)
    detail = str(getattr(exc, "remote_traceback", "") or "")
    return ErrorView(type(exc).__name__, message, detail, ErrorCategory.OTHER)


# Our exception classes by name: a status.json error keeps only the class name, so it is
# turned back into its class (then classified by class like any other).
_OUR_CLASSES: dict[str, type[BaseException]] = {
    name: cls
    for name, cls in vars(ex).items()
    if isinstance(cls, type) and issubclass(cls, ex.CosmosGradioError)
}


def classify_error_record(error: dict[str, Any] | None) -> ErrorView:
    """The :class:`ErrorView` of an ``error`` entry read from a status.json file.

    A worker writes the model's own exception (``{"type": "KeyError", ...}``): that
    is the model raising. The parent writes ours (``WorkerCrashedError``...), which
    is rebuilt as its class and classified as :func:`classify_error` does.
    """
    error = error or {}
    etype = str(error.get("type") or "Error")
    message = str(error.get("message") or "")
    detail = str(error.get("traceback") or "")
    cls = _OUR_CLASSES.get(etype)
    if cls is None:
        return ErrorView(f"The model raised {etype}", message, detail, ErrorCategory.WORKER)
    view = classify_error(cls(message))
    title = "Worker crashed" if issubclass(cls, ex.WorkerCrashedError) else view.title
    return ErrorView(title, message or view.message, detail or view.detail, view.category)
