"""A server's app, used from this process: the ``NotebookApp`` API over the server's API.

:class:`RemoteApp` is what ``cosmos_gradio_nb.connect()`` and
``NotebookApp(..., detach=True)`` return. It has no workers of its own: every
call goes to the server (``http.py``), and its futures are kept up to date by
the server's event stream (``stream.py``, ``follow.py``). ``isinstance(app,
NotebookApp)`` holds (``NotebookApp`` registers this class as a virtual
subclass: the two share the API, not the implementation), and so does
``isinstance(fut, InferenceFuture)`` for its futures.

``close()`` only disconnects (the server and its requests go on; a future still
waiting here fails with ``AppClosedError`` that says so, and ``attach`` after
``connect()`` follows it again); ``shutdown()`` stops the server and its
workers, and waits until its process is gone.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import weakref
from collections.abc import Iterable
from concurrent.futures import Future
from typing import Any

from .._core import rich
from .._core.exceptions import (
    AppClosedError,
    CosmosGradioError,
    ValidationError,
    WorkerCrashedError,
)
from .._core.runtime import RuntimeRecord, process_alive
from .._core.settings import DeploymentEnv
from .._engine import tracking as _tracking
from .._engine.request import WorkerInfo
from .follow import Follower
from .future import RemoteFuture
from .http import ApiClient, ServerUnreachable
from .stream import EventStream

__all__ = ["RemoteApp"]

BATCH_FRACTION = 0.5  # a map() batch's JSON is at most this share of MAX_REQUEST_KB
_clients: dict[str, weakref.ref[RemoteApp]] = {}
_clients_lock = threading.Lock()


def _server_env(settings: dict[str, Any]) -> DeploymentEnv:
    """The server's settings as a ``DeploymentEnv`` (keys this version does not know dropped)."""
    known = {k: v for k, v in settings.items() if k in DeploymentEnv.model_fields and k != "auth"}
    return DeploymentEnv(**known)


def _tail(path: str | None, lines: int = 20) -> list[str]:
    if not path:
        return []
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]


class RemoteApp:
    """The ``NotebookApp`` API for an app that runs in a server (see the module docstring).

    Made by :func:`cosmos_gradio_nb.connect` and ``NotebookApp(detach=True)``.
    """

    def __init__(
        self,
        client: ApiClient,
        info: dict[str, Any],
        *,
        record: RuntimeRecord | None = None,
        history_size: int = 1000,
        process: Any = None,
    ) -> None:
        self._client = client
        self._info = info
        self._record = record
        self._process = process  # the Popen of a server this process started (reaped on exit)
        self.name: str = str(info.get("name") or client.url)
        self.url = client.url
        self.env = _server_env(dict(info.get("settings") or {}))
        self.validator: Any = None  # the server's validator runs there
        self._state: dict[str, Any] = dict(info.get("state") or {})
        self._cond = threading.Condition()
        self._closed = False
        self._lost: str | None = None
        self._follower = Follower(client, history_size=history_size)
        for record_ in client.get("history", limit=history_size).get("records", []):
            self._follower.adopt(record_)
        self._stream = EventStream(
            client,
            on_event=self._on_event,
            on_lost=self._on_lost,
            gone=self._gone,
            boot=str(info.get("boot") or "") or None,
            since=info.get("seq"),
            name=self.name,
        )
        self._stream.start()
        # Following from the first moment: what happens from now on is not missed even if
        # the server stops before this thread would have connected (bounded: it retries).
        self._stream.connected.wait(10.0)

    def _replaces_earlier(self) -> None:
        """A re-run cell (``detach=True``): this process's earlier client of the server goes."""
        with _clients_lock:
            old = _clients.get(self.name)
            _clients[self.name] = weakref.ref(self)
        previous = old() if old else None
        if previous is not None and previous is not self:
            previous.close()

    # -- facts ----------------------------------------------------------------------------
    @property
    def server_pid(self) -> int | None:
        pid = self._info.get("pid")
        return int(pid) if isinstance(pid, int) else None

    @property
    def default_request(self) -> dict[str, Any] | None:
        value = self._info.get("default_request")
        return dict(value) if isinstance(value, dict) else None

    @property
    def params_schema(self) -> dict[str, Any] | None:
        value = self._info.get("params_schema")
        return dict(value) if isinstance(value, dict) else None

    def _where(self) -> str:
        pid = self.server_pid
        return f"{self.name!r} ({self.url}, pid {pid})" if pid else f"{self.name!r} ({self.url})"

    # -- calls ----------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: dict[str, Any] | None = None, **q: Any) -> Any:
        if self._closed or self._lost:
            raise AppClosedError(self._closed_words())
        try:
            if method == "GET":
                return self._client.get(path, **q)
            return self._client.post(path, body)
        except ServerUnreachable as exc:
            gone = self._gone()
            if gone is not None:
                raise AppClosedError(f"the server {self._where()} {gone}") from None
            raise CosmosGradioError(f"cannot reach the server {self._where()}: {exc}") from None

    def _closed_words(self) -> str:
        if self._lost:
            return f"the server {self._where()} {self._lost}; connect again once it runs"
        return "this connection was closed; cosmos_gradio_nb.connect() opens a new one"

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        """Validate ``params`` with the server's validator, as ``submit`` would; queue nothing."""
        if not isinstance(params, dict):
            raise ValidationError(
                f"parameters must be a JSON object (dict), got {type(params).__name__}"
            )
        return dict(self._call("POST", "validate", {"params": params})["params"])

    def submit(self, params: dict[str, Any], *, timeout: float | None = None) -> RemoteFuture:
        """Validate and queue one request on the server; return its future at once."""
        if not isinstance(params, dict):
            raise ValidationError(
                f"parameters must be a JSON object (dict), got {type(params).__name__}"
            )
        body = {"requests": [params], "timeout": timeout}
        record = self._call("POST", "submit", body)["records"][0]
        future = self._follower.adopt(record)
        _tracking.register(future)  # a page in this kernel follows it, as for local apps
        return future

    def infer(self, params: dict[str, Any], *, timeout: float | None = None) -> RemoteFuture:
        """Queue one request and return its :class:`InferenceFuture` at once."""
        return self.submit(params, timeout=timeout)

    def map(
        self,
        params_list: Iterable[dict[str, Any]],
        *,
        timeout: float | None = None,
        progress: bool = True,
    ) -> list[RemoteFuture]:
        """Queue many requests, all validated (by the server) before any is queued."""
        items = list(params_list)
        if not items:
            return []
        batches = self._batches(items)
        if len(batches) > 1:  # all of them checked before the first batch is queued
            self._call("POST", "submit", {"requests": items, "batch": True, "dry_run": True})
        futures: list[RemoteFuture] = []
        for batch in batches:
            body = {"requests": batch, "timeout": timeout, "batch": True}
            futures.extend(
                self._follower.adopt(r) for r in self._call("POST", "submit", body)["records"]
            )
        if progress:
            _progress_bar(futures, self.env.model_name)
        return futures

    def _batches(self, items: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        import json

        limit = int(self.env.max_request_kb * 1024 * BATCH_FRACTION)
        batches: list[list[dict[str, Any]]] = [[]]
        size = 0
        for item in items:
            n = len(json.dumps(item, default=str))
            if batches[-1] and (size + n > limit or len(batches[-1]) >= 1000):
                batches.append([])
                size = 0
            batches[-1].append(item)
            size += n
        return batches

    def attach(self, request_id: str) -> RemoteFuture:
        """Follow a request of the server, queued, running or finished, as a future.

        It may come from anywhere: this app, the page, another client, a kernel that
        was restarted, or an earlier server on the same ``OUTPUT_DIR`` (then read from
        its status.json). Raises :class:`CosmosGradioError` for an id it does not know.
        """
        known = self._follower.get(str(request_id))
        if known is not None:
            return known
        return self._follower.adopt(self._call("GET", f"requests/{request_id}"))

    # -- state ----------------------------------------------------------------------------
    def _fresh_state(self) -> dict[str, Any]:
        if not self._stream.connected.is_set():
            state = self._call("GET", "state")
            with self._cond:
                self._state.update({k: v for k, v in state.items() if k != "workers"})
        with self._cond:
            return dict(self._state)

    @property
    def ready(self) -> bool:
        return bool(self._fresh_state().get("ready")) and not self.closed

    @property
    def closed(self) -> bool:
        return self._closed or self._lost is not None or bool(self._state.get("closed"))

    @property
    def queue_length(self) -> int:
        return int(self._fresh_state().get("queue_length") or 0)

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until the server's workers have loaded the model; raise if they could not."""
        from .._core.apicodec import decode_error

        deadline = None if timeout is None else time.monotonic() + timeout
        self._fresh_state()
        with self._cond:
            while True:
                if self._state.get("startup_error"):
                    raise decode_error(self._state["startup_error"])
                if self._state.get("ready"):
                    return
                if self._closed or self._lost:
                    raise AppClosedError(self._closed_words())
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"workers not ready after {timeout} s")
                self._cond.wait(1.0 if left is None else min(left, 1.0))

    def workers(self) -> list[WorkerInfo]:
        """One entry per worker process of the server: group, rank, GPU, pid, state, request."""
        known = {f.name for f in dataclasses.fields(WorkerInfo)}
        return [
            WorkerInfo(**{k: v for k, v in w.items() if k in known})
            for w in self._call("GET", "state")["workers"]
        ]

    def restart_workers(self) -> int:
        """Start the server's given-up worker groups now; returns how many."""
        return int(self._call("POST", "restart_workers")["count"])

    def requests(self) -> list[dict[str, Any]]:
        """The server's running requests, then its queued ones in order, as this client sees
        them (id, state, position, progress, message, preview, params); no call is made."""
        pending = self._follower.pending()
        running = [f for f in pending if f.state == "running"]
        queued = sorted(
            (f for f in pending if f.state == "queued"),
            key=lambda f: (f.queue_position is None, f.queue_position or 0),
        )
        return [
            {
                "id": f.request_id,
                "state": f.state,
                "position": f.queue_position,
                "progress": f.progress,
                "message": f.progress_message,
                "preview": f.preview,
                "params": f.params,
            }
            for f in [*running, *queued]
        ]

    @property
    def history(self) -> list[RemoteFuture]:
        """Every request of the server's app (Python, page, other clients), oldest first."""
        return self._follower.futures()

    # -- events ---------------------------------------------------------------------------
    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("kind")
        if kind in ("added", "request"):
            self._follower.adopt(event)
        elif kind == "queue":
            self._follower.set_order([str(r) for r in event.get("order") or []])
        elif kind == "server":
            with self._cond:
                self._state.update({k: v for k, v in event.items() if k not in ("kind", "seq")})
                self._cond.notify_all()
        elif kind == "hello":
            if self._stream.boot and event.get("boot") != self._stream.boot:
                self._follower.fail_pending(
                    lambda f: WorkerCrashedError(
                        f"the server {self._where()} was restarted: request {f.request_id} "
                        "was lost with the server it was sent to",
                        request_id=f.request_id,
                    )
                )
            self._resync()
        elif kind == "reset":
            self._resync()

    def _resync(self) -> None:
        """Re-read the records of the requests still followed (after a gap in the events)."""
        ids = [f.request_id for f in self._follower.pending()]
        if ids:
            records = self._client.post("records", {"ids": ids}).get("records") or {}
            for rid, record in records.items():
                fut = self._follower.get(rid)
                if fut is not None and record:
                    self._follower.apply(fut, record)
        state = self._client.get("state")
        with self._cond:
            self._state.update({k: v for k, v in state.items() if k != "workers"})
            self._follower.set_order([str(r) for r in state.get("queue_order") or []])
            self._cond.notify_all()

    def _gone(self) -> str | None:
        """Why the server will not answer again (its process exited), or None if unknown."""
        record = self._record
        if self._process is not None and self._process.poll() is not None:
            return f"exited (pid {self._process.pid}, exit code {self._process.returncode})"
        if record is not None and not process_alive(record.pid, record.pid_started):
            return f"exited (pid {record.pid})"
        return None

    def _on_lost(self, reason: str) -> None:
        self._lost = reason
        log = self._info.get("server_log") or (self._record.log if self._record else None)
        tail = _tail(log)
        where = f"; its output: {log}" if log else ""
        self._follower.fail_pending(
            lambda f: WorkerCrashedError(
                f"the server {self._where()} {reason} before request {f.request_id} "
                f"finished{where}",
                request_id=f.request_id,
                last_log_lines=tail,
            )
        )
        with self._cond:
            self._cond.notify_all()

    # -- ending ---------------------------------------------------------------------------
    def close(self, timeout: float = 5.0) -> None:
        """Disconnect; the server and its requests go on (see the module docstring)."""
        if self._closed:
            return
        self._closed = True
        self._stream.close()
        self._follower.fail_pending(
            lambda f: AppClosedError(
                f"disconnected from the server {self._where()}; request {f.request_id} goes "
                "on there (connect() again and attach() it to follow it)",
                request_id=f.request_id,
            )
        )
        self._follower.close()
        self._client.close()
        with self._cond:
            self._cond.notify_all()

    def shutdown(self, timeout: float = 60.0) -> None:
        """Stop the server and its workers, wait (``timeout`` s) until it exited, disconnect."""
        if not self._closed and not self._lost:
            try:
                self._client.post("shutdown")
            except ServerUnreachable:
                pass
        pid = self.server_pid
        deadline = time.monotonic() + timeout
        # Not psutil's wait: a server started by a kernel that was restarted is nobody's
        # child, and where no init reaps, it stays a zombie (which is gone, for us).
        while pid is not None and self._gone() is None and process_alive(pid):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server {self._where()} did not stop within {timeout} s")
            time.sleep(0.05)
        if self._process is not None:
            self._process.poll()  # reap it
        self._stream.join(5.0)  # its last events (why each pending request ended) applied
        self.close()

    def __enter__(self) -> RemoteApp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- display --------------------------------------------------------------------------
    def launch(self, inline: bool = True, *, height: int = 900, proxy: bool | None = None) -> str:
        """Show the server's own page in this cell (through jupyter-server-proxy where needed).

        Returns the URL the page is shown at. Outside a notebook it only returns it.
        """
        return rich.show_page(
            self.url,
            app=self,
            inline=inline,
            height=height,
            proxy=proxy,
            root_path=str(self._info.get("root_path") or ""),
        )

    def _ipython_display_(self) -> None:
        rich.display_app(self)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "ready" if self._state.get("ready") else "starting"
        return f"<NotebookApp (connected) {self.name!r} at {self.url} {state}>"


def _progress_bar(futures: list[RemoteFuture], label: str) -> None:
    """One tqdm.auto bar over a batch, advanced by done-callbacks (as the local ``map``)."""
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return
    bar = tqdm(total=len(futures), desc=label, unit="req")
    lock = threading.Lock()
    remaining = [len(futures)]

    def advance(_: Future[Any]) -> None:
        with lock:
            bar.update(1)
            remaining[0] -= 1
            if remaining[0] == 0:
                bar.close()

    for future in futures:
        future.add_done_callback(advance)
