"""A server's app, used from this process: the ``NotebookApp`` API over the server's API.

:class:`RemoteApp` is what ``cosmos_gradio_nb.connect()`` and
``NotebookApp(..., detach=True)`` return. It has no workers of its own: every
call goes to the server, and its futures are kept current by the server's event
stream (``link.py`` holds the connection, ``follow.py`` the futures).
``isinstance(app, NotebookApp)`` holds (``NotebookApp`` registers this class as a
virtual subclass: the two share the API, not the implementation), and so does
``isinstance(fut, InferenceFuture)`` for its futures.

``close()`` only disconnects (the server and its requests go on; a future still
waiting here fails with ``AppClosedError`` that says so, and ``attach`` after
``connect()`` follows it again); ``shutdown()`` stops the server and its
workers, and waits until its process is gone.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import weakref
from collections.abc import Iterable
from typing import Any

from .._core import rich
from .._core.exceptions import ValidationError
from .._core.runtime import RuntimeRecord
from .._core.settings import DeploymentEnv
from .._engine import tracking as _tracking
from .._engine.future import attach_progress_bar
from .._engine.request import WorkerInfo
from .future import RemoteFuture
from .http import ApiClient
from .link import ServerLink

__all__ = ["RemoteApp"]

BATCH_FRACTION = 0.5  # a map() batch's JSON is at most this share of MAX_REQUEST_KB
_clients: dict[str, weakref.ref[RemoteApp]] = {}
_clients_lock = threading.Lock()


def _server_env(settings: dict[str, Any]) -> DeploymentEnv:
    """The server's settings as a ``DeploymentEnv`` (keys this version does not know dropped)."""
    known = {k: v for k, v in settings.items() if k in DeploymentEnv.model_fields and k != "auth"}
    return DeploymentEnv(**known)


def _check_params(params: Any) -> None:
    if not isinstance(params, dict):
        raise ValidationError(
            f"parameters must be a JSON object (dict), got {type(params).__name__}"
        )


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and not timeout > 0:  # as the app in the kernel says it
        raise ValueError(f"timeout must be a positive number of seconds (got {timeout!r})")


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
        self.name: str = str(info.get("name") or client.url)
        self.url = client.url
        self.env = _server_env(dict(info.get("settings") or {}))
        self.validator: Any = None  # the server's validator runs there
        self._info = info
        self._link = ServerLink(
            client, info, record=record, history_size=history_size, process=process
        )
        self._follower = self._link.follower

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
        """The server's process id."""
        return self._link.server_pid

    @property
    def default_request(self) -> dict[str, Any] | None:
        value = self._info.get("default_request")
        return dict(value) if isinstance(value, dict) else None

    @property
    def params_schema(self) -> dict[str, Any] | None:
        value = self._info.get("params_schema")
        return dict(value) if isinstance(value, dict) else None

    # -- requests -------------------------------------------------------------------------
    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        """Validate ``params`` with the server's validator, as ``submit`` would; queue nothing."""
        _check_params(params)
        return dict(self._link.call("POST", "validate", {"params": params})["params"])

    def submit(self, params: dict[str, Any], *, timeout: float | None = None) -> RemoteFuture:
        """Validate and queue one request on the server; return its future at once."""
        _check_params(params)
        _check_timeout(timeout)
        body = {"requests": [params], "timeout": timeout}
        record = self._link.call("POST", "submit", body)["records"][0]
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
        _check_timeout(timeout)
        items = list(params_list)
        if not items:
            return []
        batches = self._batches(items)
        if len(batches) > 1:  # all of them checked before the first batch is queued
            offset = 0
            for batch in batches:
                body = {"requests": batch, "batch": True, "dry_run": True, "offset": offset}
                self._link.call("POST", "submit", body)
                offset += len(batch)
        futures: list[RemoteFuture] = []
        for batch in batches:
            body = {"requests": batch, "timeout": timeout, "batch": True}
            records = self._link.call("POST", "submit", body)["records"]
            futures.extend(self._follower.adopt(r) for r in records)
        if progress:
            attach_progress_bar(futures, self.env.model_name)
        return futures

    def _batches(self, items: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """Bodies small enough for the server's request limit (``MAX_REQUEST_KB``)."""
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
        return self._follower.adopt(self._link.call("GET", f"requests/{request_id}"))

    # -- state ----------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return bool(self._link.fresh_state().get("ready")) and not self.closed

    @property
    def closed(self) -> bool:
        link = self._link
        return link.closed or link.lost is not None or bool(link.state.get("closed"))

    @property
    def queue_length(self) -> int:
        return int(self._link.fresh_state().get("queue_length") or 0)

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until the server's workers have loaded the model; raise if they could not."""
        self._link.wait_ready(timeout)

    def workers(self) -> list[WorkerInfo]:
        """One entry per worker process of the server: group, rank, GPU, pid, state, request."""
        known = {f.name for f in dataclasses.fields(WorkerInfo)}
        return [
            WorkerInfo(**{k: v for k, v in w.items() if k in known})
            for w in self._link.call("GET", "state")["workers"]
        ]

    def restart_workers(self) -> int:
        """Start the server's given-up worker groups now; returns how many."""
        return int(self._link.call("POST", "restart_workers")["count"])

    def requests(self) -> list[dict[str, Any]]:
        """The server's running requests (oldest first), then its queued ones in queue order,
        as the server's ``app.requests()`` lists them (id, state, source, params, position,
        progress, message, preview, queued_at, started_at, group, stopping)."""
        return [dict(r) for r in self._link.call("GET", "state").get("requests") or []]

    @property
    def history(self) -> list[RemoteFuture]:
        """Every request of the server's app (Python, page, other clients), oldest first."""
        return self._follower.futures()

    # -- ending ---------------------------------------------------------------------------
    def close(self, timeout: float = 5.0) -> None:
        """Disconnect; the server and its requests go on (see the module docstring)."""
        self._link.close()

    def shutdown(self, timeout: float = 60.0) -> None:
        """Stop the server and its workers, wait (``timeout`` s) until it exited, disconnect."""
        self._link.shutdown(timeout)

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
        state = (
            "closed" if self.closed else "ready" if self._link.state.get("ready") else "starting"
        )
        return f"<NotebookApp (connected) {self.name!r} at {self.url} {state}>"
