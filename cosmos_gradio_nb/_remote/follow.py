"""The client's mirror of a server's requests: one future per request, kept up to date.

The :class:`Follower` holds a :class:`~.future.RemoteFuture` for every request
of the server's app it knows of (its own, the page's, another client's, those
from before a kernel restart), applies the server's events to them, and owns
them as their requests' pool (queue positions, ``cancel``, ``terminate``, log).

Events are snapshots, so applying one twice, or an older one after a newer
record, does no harm: a future only moves forward (queued, running, done), and
its outcome is set once. An outcome's files are the server's own paths when the
client sees the same file system (the request's ``status.json`` is there, with
its id), else they are downloaded first, on a thread of their own, so the event
stream never waits for a download.
"""

from __future__ import annotations

import collections
import concurrent.futures
import hashlib
import json
import logging
import threading
from pathlib import Path
from typing import Any

from .._core.apicodec import decode_error, result_from_record
from .._core.exceptions import CosmosGradioError
from .future import RemoteFuture, RemoteRequest
from .http import ApiClient

__all__ = ["Follower", "shares_files"]

logger = logging.getLogger("cosmos_gradio_nb")


def shares_files(result: dict[str, Any]) -> bool:
    """True if this machine sees the request's folder as the server wrote it."""
    folder = Path(str(result.get("output_dir") or ""))
    try:
        status = json.loads((folder / "status.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(status, dict) and status.get("id") == result.get("request_id")


def _cache_root(url: str) -> Path:
    import os

    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    tag = hashlib.sha256(url.encode()).hexdigest()[:10]
    return base / "cosmos_gradio_nb" / "downloads" / tag


class Follower:
    """Futures of one server's requests, and the owner of their requests (see module doc)."""

    def __init__(self, client: ApiClient, *, history_size: int = 1000) -> None:
        self.client = client
        self.history_size = history_size
        self.cache_root = _cache_root(client.url)
        self._lock = threading.Lock()
        # Records arrive on several threads (the event stream, submit's and cancel's answers,
        # a resync): judging one's age and applying it is one step, or an older record
        # judged fresh could be applied after a newer event and set progress back.
        self._applying = threading.RLock()
        self._futures: collections.OrderedDict[str, RemoteFuture] = collections.OrderedDict()
        self._positions: dict[str, int] = {}
        self._finishing: set[str] = set()
        self._downloads: concurrent.futures.ThreadPoolExecutor | None = None

    # -- the mirror -----------------------------------------------------------------------
    def adopt(self, record: dict[str, Any]) -> RemoteFuture:
        """The future of the request ``record`` describes (made on first sight), updated."""
        rid = str(record["id"])
        with self._lock:
            fut = self._futures.get(rid)
            if fut is None:
                params = record.get("params")
                request = RemoteRequest(
                    rid,
                    dict(params) if isinstance(params, dict) else {},
                    str(record.get("output_dir") or ""),
                    self,
                )
                fut = RemoteFuture(request)
                self._futures[rid] = fut
                self._trim_locked()
            elif isinstance(record.get("params"), dict) and not fut._remote.params:
                fut._remote.params = dict(record["params"])
        self.apply(fut, record)
        return fut

    def _trim_locked(self) -> None:
        while len(self._futures) > self.history_size:
            oldest_id, oldest = next(iter(self._futures.items()))
            if not oldest.done():
                break
            del self._futures[oldest_id]

    def get(self, request_id: str) -> RemoteFuture | None:
        with self._lock:
            return self._futures.get(request_id)

    def futures(self) -> list[RemoteFuture]:
        with self._lock:
            return list(self._futures.values())

    def pending(self) -> list[RemoteFuture]:
        return [f for f in self.futures() if not f.done()]

    def apply(self, fut: RemoteFuture, record: dict[str, Any]) -> None:
        """Apply a live record or event; finish the future when it carries the outcome.

        Records and events carry the number of the last event they reflect (``seq``):
        one older than what the future already shows (an answer that crossed a later
        event on the way) changes nothing, so progress never goes back.
        """
        with self._applying:
            self._apply_locked(fut, record)

    def _apply_locked(self, fut: RemoteFuture, record: dict[str, Any]) -> None:
        if fut.done():
            return
        seq = record.get("seq")
        fresh = not isinstance(seq, int) or seq >= fut._seen
        if fresh and isinstance(seq, int):
            fut._seen = seq
        final = record.get("final")
        if not final:
            if fresh:
                fut._apply(record)
            return
        if fresh and "progress" in record and record.get("state") != "cancelled":
            fut._apply(record)
        if final.get("cancelled"):
            fut._force_cancel()
        elif isinstance(final.get("error"), dict):
            fut._fail(decode_error(final["error"]))
        elif isinstance(final.get("result"), dict):
            self._finish(fut, final["result"])

    def _finish(self, fut: RemoteFuture, result: dict[str, Any]) -> None:
        if shares_files(result):
            fut._finish(result_from_record(result))
            return
        with self._lock:
            if fut.request_id in self._finishing:
                return
            self._finishing.add(fut.request_id)
            if self._downloads is None:
                self._downloads = concurrent.futures.ThreadPoolExecutor(
                    max_workers=4, thread_name_prefix="cosmos-gradio-download"
                )
            pool = self._downloads
        pool.submit(self._download_then_finish, fut, result)

    def _download_then_finish(self, fut: RemoteFuture, result: dict[str, Any]) -> None:
        try:
            mapping = self.download(result)
            fut._finish(result_from_record(result, mapping))
        except BaseException as exc:
            fut._fail(
                CosmosGradioError(
                    f"request {fut.request_id} succeeded on the server at {self.client.url}, "
                    f"but its files could not be copied here: {exc}",
                    request_id=fut.request_id,
                )
            )
        finally:
            with self._lock:
                self._finishing.discard(fut.request_id)

    def download(self, result: dict[str, Any]) -> dict[str, Path]:
        """Copy a result's files into the cache folder; the server path -> local path map."""
        remote_dir = str(result.get("output_dir") or "")
        local_dir = self.cache_root / (Path(remote_dir).name or str(result.get("request_id")))
        mapping: dict[str, Path] = {remote_dir: local_dir}
        names = [*result.get("files", []), *result.get("videos", []), *result.get("images", [])]
        for server_path in dict.fromkeys(str(p) for p in names):
            path = Path(server_path)
            try:
                relative = path.relative_to(remote_dir)
            except ValueError:  # named by infer but outside its folder
                relative = Path(path.name)
            target = local_dir / relative
            self.client.download(server_path, target)
            mapping[server_path] = target
        local_dir.mkdir(parents=True, exist_ok=True)
        (local_dir / "status.json").write_text(json.dumps(result.get("status") or {}))
        return mapping

    def set_order(self, order: list[str]) -> None:
        with self._lock:
            self._positions = {rid: i for i, rid in enumerate(order)}

    def fail_pending(self, make_error: Any) -> int:
        """Fail every future not done with ``make_error(future)``; returns how many."""
        failed = 0
        for fut in self.pending():
            fut._fail(make_error(fut))
            failed += 1
        return failed

    def close(self) -> None:
        with self._lock:
            pool, self._downloads = self._downloads, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    # -- the owner of its requests (RemoteOwner) ----------------------------------------
    def queue_position(self, request: RemoteRequest) -> int | None:
        with self._lock:
            return self._positions.get(request.id)

    def forget(self, request: RemoteRequest) -> None:
        """Nothing to drop: the server already removed a cancelled request."""

    def cancel(self, request: RemoteRequest) -> bool:
        return self._control(request, "cancel")

    def terminate(self, request: RemoteRequest) -> bool:
        return self._control(request, "terminate")

    def _control(self, request: RemoteRequest, verb: str) -> bool:
        """Ask the server to cancel or terminate; the future then reads what the server says
        (its record in the answer), so it is never ahead of the server."""
        answer = self.client.post(f"requests/{request.id}/{verb}")
        fut = self.get(request.id)
        if fut is not None and isinstance(answer.get("record"), dict):
            self.apply(fut, answer["record"])
        return bool(answer.get("ok"))

    def log_of(self, request: RemoteRequest) -> list[str]:
        try:
            answer = self.client.get(f"requests/{request.id}/log")
        except Exception:  # the server forgot it (restarted) or is gone: no lines to show
            return []
        return [str(line) for line in answer.get("log") or []]
