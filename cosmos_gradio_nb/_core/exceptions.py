"""The exceptions of cosmos_gradio_nb, all under one root.

::

    CosmosGradioError
     ├── RequestRefusedError                          refused before it was queued: nothing ran
     │    ├── ValidationError      (also ValueError)  bad parameters, raised in the caller
     │    └── QueueFullError                          ``max_queue_size`` reached
     ├── WorkerError                                  failed on the workers
     │    ├── InferenceError                          ``infer`` raised; the worker stays up
     │    ├── WorkerCrashedError                      a worker process died mid-request
     │    ├── InferenceTimeoutError (also TimeoutError) a request ran past its timeout
     │    └── WorkerStartupError                      the factory failed or a worker died starting
     ├── AppClosedError                               the app was closed
     └── StopRequested                                raised *inside* infer: the caller asked to stop

Catch by category: ``RequestRefusedError`` means fix the request (or wait) and
send it again; ``WorkerError`` means the model or its process failed.
``StopRequested`` is not an error the caller sees: ``report_progress`` raises it in
the worker, inside ``infer``, once ``terminate()`` asked the request to stop; it
unwinds the model and the request ends as cancelled (the caller's future raises
``CancelledError``), with the worker still loaded. It is not a ``WorkerError``
because nothing failed.

Every exception pickles with its attributes, so it survives a trip through
``multiprocessing``, ``gradio_client`` or a notebook's ``pickle``.
"""

from __future__ import annotations

from typing import Any

from .public import public

__all__ = [
    "AppClosedError",
    "CosmosGradioError",
    "InferenceError",
    "InferenceTimeoutError",
    "QueueFullError",
    "RequestRefusedError",
    "StopRequested",
    "ValidationError",
    "WorkerCrashedError",
    "WorkerError",
    "WorkerStartupError",
]


@public
class CosmosGradioError(Exception):
    """Root of every error raised by cosmos_gradio_nb.

    Parameters
    ----------
    message:
        What happened and, where it can, what to do about it.
    **details:
        Extra attributes (``request_id``, ``rank``...) kept on the instance.
    """

    def __init__(self, message: str = "", **details: Any) -> None:
        super().__init__(message)
        self.message = message
        for key, value in details.items():
            setattr(self, key, value)

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions pickle as ``cls(*args)``; keyword details would be lost without this.
        return (self.__class__, (self.message,), self.__dict__.copy())

    def __str__(self) -> str:
        return self.message


@public
class RequestRefusedError(CosmosGradioError):
    """The request was refused before it was queued; nothing ran. Fix it, or wait, and resend."""


@public
class WorkerError(CosmosGradioError):
    """The request failed on the workers: the model raised, or its process died or hung."""


@public
class ValidationError(RequestRefusedError, ValueError):
    """The request's parameters were rejected before they were queued.

    Attributes
    ----------
    key:
        The offending key as a dotted path (``"motion.zoom"``), when one is known.
    """

    key: str | None = None


@public
class InferenceError(WorkerError):
    """The model's ``infer`` raised. The worker stays up and serves the next request.

    Attributes
    ----------
    request_id, rank:
        Which request, and which rank of its group, failed.
    error_type:
        The remote exception's class name.
    remote_traceback:
        The worker's formatted traceback text.
    """

    request_id: str | None = None
    rank: int | None = None
    error_type: str = ""
    remote_traceback: str = ""


@public
class WorkerCrashedError(WorkerError):
    """A worker process died while running the request; its group is restarted.

    Attributes
    ----------
    request_id, group, rank:
        Which request, group and rank.
    exitcode:
        The process's exit code, negative for a signal (``-9`` is SIGKILL).
    signal_name:
        ``"SIGKILL"``, ``"SIGSEGV"``... or ``None`` for a plain exit.
    last_log_lines:
        The last lines that rank printed, the best clue to why it died.
    """

    request_id: str | None = None
    group: int | None = None
    rank: int | None = None
    exitcode: int | None = None
    signal_name: str | None = None
    last_log_lines: list[str] = []


@public
class InferenceTimeoutError(WorkerError, TimeoutError):
    """The request ran longer than its timeout; its group was restarted."""

    request_id: str | None = None
    timeout: float | None = None


@public
class WorkerStartupError(WorkerError):
    """The model factory failed (or a worker died) while starting.

    Attributes
    ----------
    group, rank:
        Where it failed.
    remote_traceback:
        The factory's traceback, or the last log lines when the process died.
    """

    group: int | None = None
    rank: int | None = None
    remote_traceback: str = ""


@public
class QueueFullError(RequestRefusedError):
    """``max_queue_size`` requests are already waiting; try again later."""


@public
class AppClosedError(CosmosGradioError):
    """The app was closed: new requests are refused and pending ones fail with this."""


@public
class StopRequested(CosmosGradioError):
    """Raised inside ``infer`` by ``report_progress`` once the request was asked to stop.

    ``fut.terminate()`` (the page's Cancel, the widgets' Stop) sends the running
    request a stop: from then on ``stop_requested()`` is True in the workers and
    the next ``report_progress`` call raises this. Let it propagate out of
    ``infer`` (or return early): the request ends as cancelled, its files are kept
    as partial, and the worker stays loaded for the next request. A model that
    neither reports progress nor checks ``stop_requested()`` is killed (and its
    group restarted) after ``STOP_GRACE`` seconds instead.

    Attributes
    ----------
    request_id:
        The request being stopped.
    """

    request_id: str | None = None
