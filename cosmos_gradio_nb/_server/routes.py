"""The server's programmatic API, served by the page's own server under ``/cosmos/api/v1/``.

``connect()`` and detached apps talk to a server through these routes (JSON in,
JSON out) and one Server-Sent Events stream (``/events``, see ``hub.py``).
They are routed ahead of Gradio's own (``launch(app_kwargs={"routes":
[...]})``), so the page's ASGI guard (request size) and Gradio's middleware
apply to them too; request bodies are one request's JSON or a small batch.

Every route needs the server's access token (``Authorization: Bearer <token>``,
from its runtime record) or, when the page has ``--auth``, the page's user and
password (HTTP Basic); anything else gets 401. The token is compared in constant
time. Files are sent only from OUTPUT_DIR and UPLOADS_DIR, by the page guard's
own rules (a regular file, really inside, not a hard link), and streamed.

Errors are JSON ``{"error": {"type", "message", "attrs", "traceback"}}`` with an
HTTP status: 422 refused parameters, 429 queue full, 404 unknown request, 503
app closed or workers that could not start, 500 anything else.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .._core.apicodec import encode_error, result_record
from .._core.exceptions import (
    AppClosedError,
    CosmosGradioError,
    QueueFullError,
    RequestRefusedError,
    ValidationError,
    WorkerStartupError,
)
from .._core.history import list_run_names, read_run
from .._engine.tracking import request_source
from .._page.guard import GuardPolicy
from .hub import EventHub, live_record, server_state

__all__ = ["API_PREFIX", "ApiError", "ServerApi"]

API_PREFIX = "/cosmos/api/v1"
KEEPALIVE_S = 10.0  # a comment on an idle stream this often: clients notice a dead link
MAX_BATCH = 10_000


class ApiError(Exception):
    """An HTTP error answer (status and message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _status_of(exc: BaseException) -> int:
    if isinstance(exc, ValidationError):
        return 422
    if isinstance(exc, QueueFullError):
        return 429
    if isinstance(exc, RequestRefusedError):
        return 400
    if isinstance(exc, (AppClosedError, WorkerStartupError)):
        return 503
    if isinstance(exc, ApiError):
        return exc.status
    return 500


def _error(exc: BaseException) -> JSONResponse:
    if isinstance(exc, ApiError):
        body = {"type": "ApiError", "message": str(exc), "attrs": {}, "traceback": ""}
    else:
        body = encode_error(exc)
    return JSONResponse({"error": body}, status_code=_status_of(exc))


@dataclass(frozen=True)
class Access:
    """Who may call: the token, and the page's user and password if it has ``--auth``."""

    token: str
    auth: tuple[str, str] | None = None

    def allows(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            return hmac.compare_digest(value.strip().encode(), self.token.encode())
        if scheme == "basic" and self.auth is not None:
            try:
                user, _, password = base64.b64decode(value.strip()).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            ok_user = hmac.compare_digest(user.encode(), self.auth[0].encode())
            ok_pass = hmac.compare_digest(password.encode(), self.auth[1].encode())
            return ok_user and ok_pass
        return False


class ServerApi:
    """The routes of one server (see the module docstring).

    Parameters
    ----------
    app:
        The server's ``NotebookApp``.
    hub:
        Its :class:`EventHub`.
    access:
        The token (and page credentials) a caller must present.
    info:
        What ``/info`` answers besides the live state (name, version, settings...).
    policy:
        The page guard's file rules, for ``/file``.
    on_shutdown:
        Called (once, in a thread) by ``POST /shutdown``: the server then stops.
    """

    def __init__(
        self,
        app: Any,
        hub: EventHub,
        access: Access,
        info: dict[str, Any],
        policy: GuardPolicy,
        on_shutdown: Callable[[], None],
    ) -> None:
        self.app = app
        self.hub = hub
        self.access = access
        self.info = info
        self.policy = policy
        self.on_shutdown = on_shutdown

    # -- plumbing -------------------------------------------------------------------------
    def routes(self) -> list[Route]:
        """The API's routes, each with its full path under :data:`API_PREFIX`.

        Flat routes, not a ``Mount``: behind jupyter-server-proxy the page has a root
        path that the proxy strips from requests, and Starlette's mounts then match
        nothing inside them, where a flat route still matches.
        """
        get, post = ["GET"], ["POST"]
        table: list[tuple[str, Any, list[str]]] = [
            ("/info", self._wrap(self.get_info), get),
            ("/state", self._wrap(self.get_state), get),
            ("/validate", self._wrap(self.post_validate, body=True), post),
            ("/submit", self._wrap(self.post_submit, body=True), post),
            ("/records", self._wrap(self.post_records, body=True), post),
            ("/history", self._wrap(self.get_history), get),
            ("/requests/{rid}", self._wrap(self.get_request), get),
            ("/requests/{rid}/log", self._wrap(self.get_log), get),
            ("/requests/{rid}/cancel", self._wrap(self.post_cancel), post),
            ("/requests/{rid}/terminate", self._wrap(self.post_terminate), post),
            ("/restart_workers", self._wrap(self.post_restart), post),
            ("/shutdown", self._wrap(self.post_shutdown), post),
            ("/file", self._guarded(self.get_file), get),
            ("/events", self._guarded(self.get_events), get),
        ]
        return [Route(API_PREFIX + path, fn, methods=methods) for path, fn, methods in table]

    def _refused(self, request: Request) -> Response | None:
        self.hub.touch()
        if self.access.allows(request.headers.get("authorization", "")):
            return None
        return JSONResponse(
            {
                "error": {
                    "type": "ApiError",
                    "message": "not authorized: send the server's access token "
                    "(Authorization: Bearer <token>, from its runtime record) or the page's "
                    "user and password",
                    "attrs": {},
                    "traceback": "",
                }
            },
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="cosmos_gradio_nb"'},
        )

    def _guarded(
        self, endpoint: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            refused = self._refused(request)
            if refused is not None:
                return refused
            return await endpoint(request)

        return run

    def _wrap(
        self, fn: Callable[..., Any], *, body: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        """An endpoint: auth, then ``fn(request[, body])`` in a thread, its value as JSON."""

        async def run(request: Request) -> Response:
            refused = self._refused(request)
            if refused is not None:
                return refused
            try:
                args: list[Any] = [request]
                if body:
                    args.append(await _json_body(request))
                value = await run_in_threadpool(fn, *args)
            except Exception as exc:
                return _error(exc)
            return JSONResponse(value)

        return run

    # -- facts ----------------------------------------------------------------------------
    def get_info(self, _request: Request) -> dict[str, Any]:
        return {
            **self.info,
            "boot": self.hub.boot,
            "seq": self.hub.seq,
            "state": server_state(self.app),
        }

    def get_state(self, _request: Request) -> dict[str, Any]:
        workers = [vars(w).copy() for w in self.app.workers()]
        return {
            **server_state(self.app),
            "workers": workers,
            "queue_order": self.hub.order(),
            "requests": self.app.requests(),
        }

    # -- requests -------------------------------------------------------------------------
    def post_validate(self, _request: Request, body: dict[str, Any]) -> dict[str, Any]:
        params = body.get("params")
        if not isinstance(params, dict):
            raise ValidationError(
                f"parameters must be a JSON object (dict), got {type(params).__name__}"
            )
        return {"params": self.app.validate(params)}

    def post_submit(self, _request: Request, body: dict[str, Any]) -> dict[str, Any]:
        items = body.get("requests")
        if not isinstance(items, list) or not 0 < len(items) <= MAX_BATCH:
            raise ApiError(400, f"'requests' must be a list of 1 to {MAX_BATCH} requests")
        timeout = body.get("timeout")
        if body.get("dry_run"):  # a map() sent in several bodies: all checked before any runs
            offset = int(body.get("offset") or 0)  # where this body starts in the whole map
            for index, item in enumerate(items, start=offset):
                try:
                    self.app.validate(item)
                except ValidationError as exc:
                    raise ValidationError(
                        f"item {index}: {exc}", key=exc.key, index=index
                    ) from None
            return {"records": []}
        token = request_source.set("api")  # recorded in status.json and app.requests()
        try:
            if body.get("batch"):
                futures = self.app.map(items, timeout=timeout, progress=False)
            else:
                futures = [self.app.submit(item, timeout=timeout) for item in items]
        finally:
            request_source.reset(token)
        self.hub.track(futures)
        return {"records": [self._live(f) for f in futures]}

    def _record(self, rid: str) -> dict[str, Any] | None:
        """A request's record: live while the server follows it, else from its status.json."""
        fut = self.hub.future(rid)
        if fut is not None:
            return self._live(fut)
        if not rid.isalnum() or len(rid) > 64:
            return None
        root = Path(self.app.env.output_dir)
        for name in list_run_names(root):
            if name.endswith(f"_{rid}"):
                return _disk_record(rid, root / name)
        return None

    def get_request(self, request: Request) -> dict[str, Any]:
        rid = request.path_params["rid"]
        record = self._record(rid)
        if record is None:
            raise ApiError(404, f"no request {rid} on this server or in {self.app.env.output_dir}")
        return record

    def post_records(self, _request: Request, body: dict[str, Any]) -> dict[str, Any]:
        ids = body.get("ids")
        if not isinstance(ids, list) or len(ids) > MAX_BATCH:
            raise ApiError(400, f"'ids' must be a list of at most {MAX_BATCH} request ids")
        return {"records": {str(rid): self._record(str(rid)) for rid in ids}}

    def get_history(self, request: Request) -> dict[str, Any]:
        try:
            limit = int(request.query_params.get("limit", "1000"))
        except ValueError:
            raise ApiError(400, "limit must be a whole number") from None
        self.hub.track(self.app.history)
        futures = self.hub.futures()[-max(0, limit) :] if limit else []
        return {"records": [self._live(f) for f in futures]}

    def get_log(self, request: Request) -> dict[str, Any]:
        rid = request.path_params["rid"]
        fut = self.hub.future(rid)
        if fut is None:
            raise ApiError(404, f"no request {rid} in this server's session")
        return {"log": fut.log}

    def post_cancel(self, request: Request) -> dict[str, Any]:
        fut = self._followed(request)
        ok = bool(fut.cancel())
        return {"ok": ok, "record": self._live(fut)}

    def post_terminate(self, request: Request) -> dict[str, Any]:
        fut = self._followed(request)
        ok = bool(fut.terminate())
        return {"ok": ok, "record": self._live(fut)}

    def _live(self, fut: Any) -> dict[str, Any]:
        """A future's record, with the number of the last event sent before it was read: a
        client that applied a later event knows this record is older (``seq``)."""
        seq = self.hub.seq
        return {**live_record(fut, params=True), "seq": seq}

    def _followed(self, request: Request) -> Any:
        rid = request.path_params["rid"]
        fut = self.hub.future(rid)
        if fut is None:
            raise ApiError(404, f"no request {rid} in this server's session")
        return fut

    def post_restart(self, _request: Request) -> dict[str, Any]:
        return {"count": self.app.restart_workers()}

    def post_shutdown(self, _request: Request) -> dict[str, Any]:
        self.on_shutdown()
        return {"ok": True, "pid": self.info.get("pid")}

    # -- streams --------------------------------------------------------------------------
    async def get_file(self, request: Request) -> Response:
        """One output or upload file, streamed (for clients that do not share the disk)."""
        given = request.query_params.get("path", "")
        if not given or "\x00" in given or not os.path.isabs(given):
            return _error(ApiError(404, "not served: give the file's absolute server path"))
        path = Path(os.path.abspath(given))  # "..": judged where it leads, not how it is named
        roots = (self.policy.output_dir, self.policy.uploads_dir)
        if not any(path.is_relative_to(root) for root in roots):
            return _error(ApiError(404, "not served: not in OUTPUT_DIR or UPLOADS_DIR"))
        why = self.policy.refusal(str(path))  # the page's rules: really inside, regular, 1 link
        if why is not None:
            return _error(ApiError(403, f"not served: {why}"))
        return FileResponse(path, headers={"X-Content-Type-Options": "nosniff"})

    async def get_events(self, request: Request) -> Response:
        """The Server-Sent Events stream of the hub, from event ``since`` on."""
        try:
            since: int | None = int(request.query_params["since"])
        except (KeyError, ValueError):
            since = None
        if request.query_params.get("boot") not in (None, self.hub.boot):
            since = None  # another server's numbers: start afresh (the hello says so)
        sub, backlog = self.hub.subscribe(since)

        async def stream() -> AsyncIterator[str]:
            try:
                for line in backlog:
                    yield line
                while True:
                    text: str | None
                    try:
                        text = await asyncio.wait_for(sub.queue.get(), timeout=KEEPALIVE_S)
                    except asyncio.TimeoutError:
                        yield ": keepalive\n\n"
                        continue
                    if text is None:
                        return
                    yield text
            finally:
                self.hub.unsubscribe(sub)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw or b"{}")
    except ValueError as exc:
        raise ApiError(400, f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


def _disk_record(rid: str, folder: Path) -> dict[str, Any]:
    """A request no live future holds (another session's, before a restart), from status.json."""
    run = read_run(folder)
    record: dict[str, Any] = {
        "id": rid,
        "state": run.state,
        "progress": None,
        "message": "",
        "preview": None,
        "output_dir": str(folder),
        "params": {**run.params, "output_dir": str(folder)},
        "from_disk": True,
    }
    if run.state == "succeeded":
        record["final"] = {"result": result_record(run.to_result())}
    elif run.state == "cancelled":
        record["final"] = {"cancelled": True}
    elif run.state in ("failed", "broken"):
        error = run.error or {}
        message = error.get("message") or run.broken or "the request failed"
        kind = error.get("type") or "CosmosGradioError"
        record["final"] = {
            "error": {
                "type": kind,
                "message": message,
                "attrs": {"request_id": rid},
                "traceback": error.get("traceback") or "",
            }
        }
    else:  # queued or running in a status.json, yet no live future: its server is gone
        record["state"] = "failed"
        record["final"] = {
            "error": encode_error(
                CosmosGradioError(
                    f"request {rid} was {run.state} on a server that has since stopped "
                    f"(its status.json in {folder} says so); run it again",
                    request_id=rid,
                )
            )
        }
    return record
