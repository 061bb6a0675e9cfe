"""What the page talks to: the ``infer_func`` it was given, and facts about the app behind it.

The page *calls* ``infer_func``, whatever it is: ``app.infer``, a wrapper that
edits the parameters or the result, a lambda, the blocking ``GradioApp.infer``.
Each call runs in a thread inside a :class:`~cosmos_gradio_nb._engine.tracking.Tracker`
context, so the future that ``submit`` creates on the way is known to the page
(progress, queue position, Cancel) even when the function never returns it.
What the function returns is honoured: a future is followed to its end, a plain
result is shown when it returns (:meth:`Call.outcome` says which, for every reader).
Request texts are parsed here too (:meth:`Backend.parse`), once for Generate and
the API alike, off the event loop when they are big.

When ``infer_func`` is a bound method of one of our apps, the app also gives the
page its folders, its default request, its schema and its workers. That is for
display only: requests always go through ``infer_func``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._core.filetypes import FileKind, kind_of
from .._core.presentation import device_label
from .._core.request_text import parse_request_json
from .._engine.tracking import Tracker, request_source, tracking

__all__ = ["Backend", "Call", "Outputs", "collect_outputs"]

_INLINE_PARSE = 64 * 1024  # request texts up to this size are parsed on the loop itself


@dataclass
class Outputs:
    """A finished request's outputs in the shape the page shows them."""

    request_id: str = ""
    status: dict[str, Any] = field(default_factory=dict)
    videos: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)
    duration: float | None = None


def _paths(values: Any) -> list[str]:
    if not values:
        return []
    if isinstance(values, (str, Path)):
        values = [values]
    return [str(Path(v).resolve()) for v in values if Path(v).is_file()]


def _by_kind(files: list[str], kind: FileKind) -> list[str]:
    return [f for f in files if kind_of(f) is kind]


def collect_outputs(result: Any) -> Outputs:
    """Normalize what an infer function returned into :class:`Outputs`.

    Understands an ``InferenceResult`` (or anything with its attributes), a dict
    with ``videos``/``images``/``files`` keys (the seed's return convention), and
    falls back to showing ``repr(result)`` in the status for anything else. Files
    listed under ``files["partial"]`` of a status (a stopped run) are never videos.
    """
    if hasattr(result, "status") and hasattr(result, "files"):
        status = dict(result.status or {})
        partial = _paths((status.get("files") or {}).get("partial"))
        files = [f for f in _paths(result.files) if f not in partial]
        videos = _paths(getattr(result, "videos", [])) or _by_kind(files, FileKind.VIDEO)
        images = _paths(getattr(result, "images", [])) or _by_kind(files, FileKind.IMAGE)
        return Outputs(
            request_id=str(getattr(result, "request_id", "")),
            status=status,
            videos=videos,
            images=images,
            files=files,
            partial=partial,
            duration=getattr(result, "duration", None),
        )
    if isinstance(result, dict):
        files = _paths(result.get("files"))
        videos = _paths(result.get("videos"))
        images = _paths(result.get("images"))
        out_dir = result.get("output_dir")
        if isinstance(out_dir, (str, Path)) and Path(out_dir).is_dir():
            found = sorted(str(p.resolve()) for p in Path(out_dir).iterdir() if p.is_file())
            files = list(dict.fromkeys(files + videos + images + found))
        else:
            files = list(dict.fromkeys(files + videos + images))
        videos = videos or _by_kind(files, FileKind.VIDEO)
        images = images or _by_kind(files, FileKind.IMAGE)
        status = {k: v for k, v in result.items() if _jsonable(v)}
        return Outputs(
            request_id=str(result.get("id", "")),
            status=status,
            videos=videos,
            images=images,
            files=files,
        )
    return Outputs(status={"result": repr(result)})


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


class Call:
    """One call of ``infer_func``, running in a thread, and the futures it made.

    ``live`` is the future to show and stop: the last one ``submit`` registered
    during the call, or the future the function returned.
    """

    def __init__(self, tracker: Tracker, thread_future: concurrent.futures.Future[Any]) -> None:
        self.tracker = tracker
        self.returned = thread_future
        self.started = time.monotonic()

    def returned_future(self) -> concurrent.futures.Future[Any] | None:
        """The future the function returned, once it has returned one."""
        ret = self.returned
        if ret.done() and not ret.cancelled() and ret.exception() is None:
            value = ret.result()
            if isinstance(value, concurrent.futures.Future):
                return value
        return None

    @property
    def live(self) -> concurrent.futures.Future[Any] | None:
        return self.returned_future() or self.tracker.latest

    def done(self) -> bool:
        """The function returned (or raised), and any future it returned has finished too."""
        if not self.returned.done():
            return False
        fut = self.returned_future()
        return fut is None or fut.done()

    def outcome(self) -> tuple[Any, BaseException | None]:
        """What a :meth:`done` call came to: ``(value, None)`` or ``(None, error)``.

        The value is the function's result, or the result of the future it returned;
        a cancelled call (or returned future) has a ``CancelledError`` as its error.
        """
        ret = self.returned
        if ret.cancelled():
            return None, concurrent.futures.CancelledError()
        error = ret.exception()
        if error is not None:
            return None, error
        value = ret.result()
        if not isinstance(value, concurrent.futures.Future):
            return value, None
        if value.cancelled():
            return None, concurrent.futures.CancelledError()
        error = value.exception()
        return (None, error) if error is not None else (value.result(), None)


class Backend:
    """The page's view of the engine: calling ``infer_func``, folders, defaults, workers.

    Parameters
    ----------
    infer_func:
        Any ``dict -> result`` callable; usually ``app.infer`` of a NotebookApp/GradioApp.
    """

    def __init__(self, infer_func: Any) -> None:
        if not callable(infer_func):
            raise TypeError(f"infer_func must be callable, got {type(infer_func).__name__}")
        self.infer_func = infer_func
        self.app: Any = _app_behind(infer_func)
        if self.app is not None:
            self.env = self.app.env
        else:
            from .._core.settings import DeploymentEnv

            self.env = DeploymentEnv()
        self.output_dir = Path(self.env.output_dir).resolve()
        self.uploads_dir = Path(self.env.uploads_dir).resolve()
        self.log_file = Path(self.env.log_file).resolve()
        self.max_request_bytes = int(float(getattr(self.env, "max_request_kb", 1024)) * 1024)
        self.started_at = time.time()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    # -- facts about the model --------------------------------------------------------
    @property
    def model_name(self) -> str:
        return str(getattr(self.env, "model_name", "") or "")

    @property
    def app_name(self) -> str:
        return str(getattr(self.app, "name", "") or "") if self.app is not None else ""

    def default_request(self) -> dict[str, Any] | None:
        return getattr(self.app, "default_request", None) if self.app is not None else None

    def params_schema(self) -> dict[str, Any] | None:
        return getattr(self.app, "params_schema", None) if self.app is not None else None

    def devices_label(self) -> str:
        """``"2 GPU(s)"`` or ``"CPU"``: what the app's workers run on, as the engine says."""
        if self.app is None:
            return "CPU"
        try:
            gpus = {w.gpu for w in self.app.workers() if w.gpu}
        except Exception:
            return "CPU"
        return f"{len(gpus)} GPU(s)" if gpus else "CPU"

    def workers_line(self) -> str:
        """One line: each worker group's state and device, and the queue length."""
        if self.app is None:
            return ""
        try:
            infos = self.app.workers()
            queued = self.app.queue_length
        except Exception as exc:  # a closed app: say so rather than break the timer
            return f"workers unavailable ({type(exc).__name__})"
        groups: dict[int, list[Any]] = {}
        for w in infos:
            groups.setdefault(w.group, []).append(w)
        parts = []
        for g, ranks in sorted(groups.items()):
            states = {r.state for r in ranks}
            state = next(iter(states)) if len(states) == 1 else "/".join(sorted(states))
            where = device_label(",".join(r.gpu for r in ranks if r.gpu))
            restarts = sum(r.restarts for r in ranks)
            extra = f", {restarts} restart{'s' if restarts != 1 else ''}" if restarts else ""
            parts.append(f"group {g} ({where}): **{state}**{extra}")
        return f"{' · '.join(parts)} · queue: **{queued}**"

    # -- requests ---------------------------------------------------------------------
    async def parse(self, text: str) -> dict[str, Any]:
        """A request's JSON text parsed, in a thread when it is big: the event loop serves
        every other page meanwhile. Generate and the API endpoints both parse here.

        A text over ``MAX_REQUEST_KB`` is refused (``ValueError``) before it is parsed;
        validation happens in ``infer_func``'s thread (:meth:`start`), never on the loop.
        """
        limit = self.max_request_bytes
        if not isinstance(text, str) or len(text) <= _INLINE_PARSE or len(text) > limit:
            # A small text parses in microseconds, an oversized one is refused unread.
            return parse_request_json(text, limit)
        return await asyncio.to_thread(parse_request_json, text, limit)

    def start(self, params: dict[str, Any], source: str = "page") -> Call:
        """Call ``infer_func(params)`` in a thread, tracking the futures it makes.

        ``source`` (``"page"`` for Generate, ``"api"`` for the endpoints) is what the
        app's ``submit`` records as the request's source, through the call's context.
        """
        with self._lock:
            if self._pool is None:
                # A blocking infer holds its thread for the whole request: room for many.
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=256, thread_name_prefix="cosmos-ui-infer"
                )
        tracker = Tracker()
        ctx = contextvars.copy_context()
        return Call(tracker, self._pool.submit(ctx.run, self._call, tracker, params, source))

    def _call(self, tracker: Tracker, params: dict[str, Any], source: str) -> Any:
        token = request_source.set(source)  # this call's own context (a copy): no leak
        try:
            with tracking(tracker):
                return self.infer_func(params)
        finally:
            request_source.reset(token)

    def live_future(self, request_id: str) -> Any:
        """The app's future for ``request_id`` (this session's history), or None."""
        if self.app is None:
            return None
        for fut in reversed(getattr(self.app, "history", [])):
            if getattr(fut, "request_id", None) == request_id:
                return fut
        return None

    def pending_futures(self) -> dict[str, Any]:
        """This session's queued and running futures by request id (one pass over history)."""
        if self.app is None:
            return {}
        return {
            str(fut.request_id): fut for fut in getattr(self.app, "history", []) if not fut.done()
        }

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def _app_behind(infer_func: Any) -> Any:
    """The app whose bound method ``infer_func`` is (for folders and defaults), else None."""
    try:
        from .._app.apps import _BaseApp
    except ImportError:  # pragma: no cover - the engine is part of the package
        return None
    owner = getattr(infer_func, "__self__", None)
    return owner if isinstance(owner, _BaseApp) else None
