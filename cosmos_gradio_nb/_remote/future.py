"""A request that runs on a server, as an :class:`InferenceFuture` in the client.

:class:`RemoteFuture` *is* an ``InferenceFuture`` (so ``isinstance`` holds, and
``wait``, ``as_completed``, ``asyncio.wrap_future``, callbacks, progress, the
notebook's live display and ``repr`` are the engine's own code). What differs is
the request behind it: a :class:`RemoteRequest`, whose owner is the client's
:class:`~.follow.Follower` rather than a local pool. The owner answers the
future's questions (its place in the queue, its log) from what the server
streamed, and carries ``cancel``/``terminate`` to the server; the future's state
changes only when the server says so (:meth:`RemoteFuture._apply`), so a
cancel that lost the race with the request's start returns False, as locally.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
from concurrent.futures import InvalidStateError
from concurrent.futures._base import CANCELLED, CANCELLED_AND_NOTIFIED, PENDING, RUNNING
from typing import TYPE_CHECKING, Any, Protocol, cast

from .._core.result import InferenceResult
from .._engine.future import InferenceFuture

if TYPE_CHECKING:
    from .._engine.request import Request

__all__ = ["RemoteFuture", "RemoteOwner", "RemoteRequest"]


class RemoteOwner(Protocol):
    """What a remote request asks of the client that follows it (the follower)."""

    def queue_position(self, request: RemoteRequest) -> int | None: ...
    def forget(self, request: RemoteRequest) -> None: ...
    def terminate(self, request: RemoteRequest) -> bool: ...
    def cancel(self, request: RemoteRequest) -> bool: ...
    def log_of(self, request: RemoteRequest) -> list[str]: ...


class RemoteRequest:
    """What an ``InferenceFuture`` reads of its request, for one that runs on a server."""

    def __init__(
        self, request_id: str, params: dict[str, Any], output_dir: str, owner: RemoteOwner
    ) -> None:
        self.id = request_id
        self.params = params
        self.output_dir = output_dir
        self.pool = owner
        self.final_log: list[str] | None = None

    @property
    def log(self) -> list[str]:
        """The lines its workers printed so far (asked of the server while it runs)."""
        if self.final_log is not None:
            return self.final_log
        return self.pool.log_of(self)


class RemoteFuture(InferenceFuture):
    """An :class:`InferenceFuture` for a request that runs on a server (see the module doc)."""

    def __init__(self, request: RemoteRequest) -> None:
        super().__init__(cast("Request", request))
        self.preview: str | None = None
        """Path (on the server) of the request's latest preview image, or None."""
        self._seen = 0  # the number of the newest server event this future reflects

    @property
    def _remote(self) -> RemoteRequest:
        return cast(RemoteRequest, self._request)

    # -- control ------------------------------------------------------------------------
    def cancel(self) -> bool:
        """Remove the request from the server's queue; False if it already runs or ran."""
        if self.cancelled():
            return True
        if self.done() or self.running():
            return False
        return self._remote.pool.cancel(self._remote)  # the server's answer updates this future

    def terminate(self) -> bool:
        """Stop the request on the server, queued or running; True if it was stopped."""
        if self.cancelled():
            return True
        if self.done():
            return False
        return self._remote.pool.terminate(self._remote)

    # -- what the server said -----------------------------------------------------------
    def _local_cancel(self) -> None:
        """Mark cancelled here (the server already did), waking waiters as ``cancel`` does."""
        if not concurrent.futures.Future.cancel(self):
            return
        with self._condition:
            if self._state == CANCELLED:
                self._state = CANCELLED_AND_NOTIFIED
                for waiter in self._waiters:
                    waiter.add_cancelled(self)

    def _force_cancel(self) -> None:
        with self._condition:
            if self._state == RUNNING:
                self._state = PENDING
            elif self._state != PENDING:
                return
        self._local_cancel()

    def _apply(self, record: dict[str, Any]) -> None:
        """A live record from the server: running, progress, preview (not the outcome)."""
        if record.get("state") == "running":
            self._start()
        # A record without progress (a state change) is no news about it: never back to None.
        progress = record.get("progress")
        if progress is None:
            progress, message = self.progress, self.progress_message
        else:
            message = record.get("message") or ""
        preview = record.get("preview") or self.preview
        if (progress, message, preview) != (self.progress, self.progress_message, self.preview):
            self.preview = preview
            self._set_progress(progress, message)

    def _finish(self, result: InferenceResult) -> None:
        self._remote.final_log = list(result.log)
        with contextlib.suppress(InvalidStateError):
            self.set_result(result)

    def _fail(self, error: BaseException) -> None:
        with contextlib.suppress(InvalidStateError):
            self.set_exception(error)

    def __repr__(self) -> str:
        return super().__repr__().replace("<InferenceFuture", "<InferenceFuture (remote)", 1)
