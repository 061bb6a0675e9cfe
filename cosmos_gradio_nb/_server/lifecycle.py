"""A server's life as clients see it: its runtime record, its API, its idle timeout.

``serve`` makes one :class:`ServerRuntime` around its app and page:

1. before the page is launched, :meth:`ServerRuntime.app_kwargs` gives Gradio the
   API's routes (``routes.py``) and a pass-through middleware that notes every
   HTTP request (an API call, an open page's refresh) as activity;
2. once the page answers, :meth:`ServerRuntime.publish` starts the event hub and
   writes the runtime record (with a fresh access token) into ``RUNTIME_DIR``;
3. :meth:`ServerRuntime.close` ends every event stream (clients read "bye") and
   removes the record, before the page and the workers stop.

The idle timeout (``IDLE_TIMEOUT``, off by default) stops the server when for that
long no request was queued or running, no client followed its events, and no
HTTP request arrived (an open page refreshes once a second, so it keeps the
server up). ``POST /shutdown`` and the timeout both set the same stop event as
SIGTERM, so every way of stopping is the same clean one.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from .._core.runtime import (
    RuntimeRecord,
    find_record,
    process_started,
    remove_record,
    runtime_dir,
    write_record,
)
from .._page.guard import GuardPolicy
from .hub import EventHub
from .routes import Access, ServerApi

__all__ = ["ActivityMiddleware", "ServerRuntime", "free_name"]

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


class ActivityMiddleware:
    """Notes each HTTP request as activity (for the idle timeout); changes nothing."""

    def __init__(self, app: ASGIApp, hub: EventHub) -> None:
        self.app = app
        self.hub = hub

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope.get("type") == "http":
            self.hub.touch()
        await self.app(scope, receive, send)


def _version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("cosmos_gradio_nb")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0+unknown"


def free_name(folder: Path, wanted: str) -> str:
    """``wanted``, or ``wanted-2``, ``wanted-3``... if a live server already has that name."""
    if find_record(folder, wanted) is None:
        return wanted
    n = 2
    while find_record(folder, f"{wanted}-{n}") is not None:
        n += 1
    return f"{wanted}-{n}"


class ServerRuntime:
    """The API, the event hub, the runtime record and the idle timeout of one server.

    Parameters
    ----------
    app:
        The server's ``NotebookApp``.
    name:
        The record's name (``connect(name=...)`` finds it).
    spec:
        The fingerprint ``detach=True`` compares (``_remote.spec.AppSpec.fingerprint``).
    stop:
        Set to stop the server (``/shutdown``, the idle timeout).
    auth:
        The page's ``(user, password)``, also accepted by the API.
    log:
        The server's own output file, if it has one (a detached server's).
    """

    def __init__(
        self,
        app: Any,
        *,
        name: str,
        spec: dict[str, Any],
        stop: threading.Event,
        auth: tuple[str, str] | None = None,
        log: str | None = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        env = app.env
        self.app = app
        self.name = name
        self.spec = spec
        self.stop = stop
        self.log = log
        self.folder = runtime_dir(env.runtime_dir)
        self.token = secrets.token_urlsafe(32)
        self.hub = EventHub(app)
        self.started_at = time.time()
        self.record: RuntimeRecord | None = None
        settings = env.model_dump(mode="json", exclude={"auth"})
        self.info: dict[str, Any] = {
            "name": name,
            "pid": os.getpid(),
            "factory": spec.get("factory", ""),
            "validator": spec.get("validator"),
            "spec": spec,
            "settings": settings,
            "model_name": env.model_name,
            "output_dir": str(env.output_dir),
            "uploads_dir": str(env.uploads_dir),
            "log_file": str(env.log_file),
            "server_log": log,
            "started_at": self.started_at,
            "hostname": socket.gethostname(),
            "default_request": app.default_request,
            "params_schema": app.params_schema,
            "auth": auth is not None,
            **(info or {}),
        }
        policy = GuardPolicy(
            max_request_bytes=int(env.max_request_kb * 1024),
            output_dir=Path(env.output_dir),
            uploads_dir=Path(env.uploads_dir),
            log_file=Path(env.log_file),
        )
        self.api = ServerApi(app, self.hub, Access(self.token, auth), self.info, policy, stop.set)
        self._watcher: threading.Thread | None = None

    def app_kwargs(self) -> dict[str, Any]:
        """What ``demo.launch(app_kwargs=...)`` needs: the API's routes and the activity note."""
        from starlette.middleware import Middleware

        return {
            "routes": self.api.routes(),
            "middleware": [Middleware(ActivityMiddleware, hub=self.hub)],
        }

    def publish(self, host: str, port: int, root_path: str = "") -> RuntimeRecord:
        """The page answers: start the hub, write the record, start the idle watch."""
        shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        url = f"http://{shown}:{port}/"
        self.info.update(url=url, root_path=root_path)
        self.hub.start()
        self.record = RuntimeRecord(
            name=self.name,
            url=url,
            pid=os.getpid(),
            token=self.token,
            factory=str(self.spec.get("factory", "")),
            spec=self.spec,
            settings=self.info["settings"],
            started_at=self.started_at,
            version=_version(),
            pid_started=process_started(os.getpid()),
            root_path=root_path,
            log=self.log,
            hostname=self.info["hostname"],
        )
        self.info["version"] = self.record.version
        write_record(self.folder, self.record)
        idle = self.app.env.idle_timeout
        if idle:
            self._watcher = threading.Thread(
                target=self._watch_idle, args=(float(idle),), name="cosmos-gradio-idle", daemon=True
            )
            self._watcher.start()
        return self.record

    def idle_for(self) -> float:
        """Seconds the server has been idle (0 while a request or a client keeps it busy)."""
        if self.hub.busy() or self.app.queue_length or self.hub.subscribers:
            self.hub.touch()
            return 0.0
        return time.monotonic() - self.hub.last_activity

    def _watch_idle(self, limit: float) -> None:
        step = min(1.0, limit / 4)
        while not self.stop.wait(step):
            if self.idle_for() >= limit:
                print(f"idle for {limit:g} s (IDLE_TIMEOUT): stopping", flush=True)
                self.stop.set()
                return

    def close(self) -> None:
        """The app is closed: send its requests' ends, end the streams, remove the record.

        Called after ``app.close()`` and before the page stops, so that clients read
        why their requests ended (``AppClosedError``) before the server goes.
        """
        self.withdraw()
        self.hub.drain(5.0)
        self.hub.close()

    def withdraw(self) -> None:
        """Remove the record: the server is stopping, no new client should find it."""
        remove_record(self.folder, self.name, os.getpid())
