"""What the page talks to: an app's queue, or a plain ``infer`` callable in a thread.

``create_gradio_UI(infer_func=app.infer)`` receives a bound method. When its
``__self__`` is one of our apps the page uses the app directly: ``submit`` for
a future with progress, queue position and terminate; ``validate`` for fast
errors; the app's folders and default request. Any other callable still works,
with less: it runs in a thread, and if it returns a ``concurrent.futures.Future``
that future is awaited.
"""

from __future__ import annotations

import concurrent.futures
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Backend", "Outputs", "collect_outputs"]


@dataclass
class Outputs:
    """A finished request's outputs in the shape the page shows them."""

    request_id: str = ""
    status: dict[str, Any] = field(default_factory=dict)
    videos: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    duration: float | None = None


def _paths(values: Any) -> list[str]:
    if not values:
        return []
    if isinstance(values, (str, Path)):
        values = [values]
    return [str(Path(v).resolve()) for v in values if Path(v).is_file()]


def collect_outputs(result: Any) -> Outputs:
    """Normalize what an infer function returned into :class:`Outputs`.

    Understands an ``InferenceResult`` (or anything with its attributes), a dict
    with ``videos``/``images``/``files`` keys (the seed's return convention), and
    falls back to showing ``repr(result)`` in the status for anything else.
    """
    from ._uploads import kind_of

    if hasattr(result, "status") and hasattr(result, "files"):
        files = _paths(result.files)
        videos = _paths(getattr(result, "videos", [])) or [
            f for f in files if kind_of(f) == "video"
        ]
        images = _paths(getattr(result, "images", [])) or [
            f for f in files if kind_of(f) == "image"
        ]
        return Outputs(
            request_id=str(getattr(result, "request_id", "")),
            status=dict(result.status or {}),
            videos=videos,
            images=images,
            files=files,
            duration=getattr(result, "duration", None),
        )
    if isinstance(result, dict):
        files = _paths(result.get("files"))
        videos = _paths(result.get("videos"))
        images = _paths(result.get("images"))
        out_dir = result.get("output_dir")
        if out_dir and Path(out_dir).is_dir():
            found = sorted(str(p.resolve()) for p in Path(out_dir).iterdir() if p.is_file())
            files = list(dict.fromkeys(files + videos + images + found))
        else:
            files = list(dict.fromkeys(files + videos + images))
        videos = videos or [f for f in files if kind_of(f) == "video"]
        images = images or [f for f in files if kind_of(f) == "image"]
        status = {k: v for k, v in result.items() if _jsonable(v)}
        return Outputs(status=status, videos=videos, images=images, files=files)
    return Outputs(status={"result": repr(result)})


def _jsonable(value: Any) -> bool:
    import json

    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


class Backend:
    """The page's view of the engine: submit, validate, folders, defaults, workers.

    Parameters
    ----------
    infer_func:
        ``app.infer`` of a NotebookApp/GradioApp, or any ``dict -> result`` callable.
    """

    def __init__(self, infer_func: Any) -> None:
        if not callable(infer_func):
            raise TypeError(f"infer_func must be callable, got {type(infer_func).__name__}")
        self.infer_func = infer_func
        self.app: Any = None
        try:
            from ._app import _BaseApp

            owner = getattr(infer_func, "__self__", None)
            if isinstance(owner, _BaseApp):
                self.app = owner
        except ImportError:  # pragma: no cover - the engine is part of the package
            pass
        if self.app is not None:
            self.env = self.app.env
        else:
            from ._env import DeploymentEnv

            self.env = DeploymentEnv()
        self.output_dir = Path(self.env.output_dir).resolve()
        self.uploads_dir = Path(self.env.uploads_dir).resolve()
        self.log_file = Path(self.env.log_file).resolve()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    # -- facts about the model --------------------------------------------------------
    @property
    def has_queue(self) -> bool:
        """True when requests go through an app's queue (progress, position, terminate)."""
        return self.app is not None

    def default_request(self) -> dict[str, Any] | None:
        return getattr(self.app, "default_request", None) if self.app is not None else None

    def params_schema(self) -> dict[str, Any] | None:
        return getattr(self.app, "params_schema", None) if self.app is not None else None

    def workers_line(self) -> str:
        """One line: each worker group's state and the queue length ("" without an app)."""
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
            devices = ",".join(str(r.gpu) for r in ranks)
            restarts = sum(r.restarts for r in ranks)
            extra = f", {restarts} restart{'s' if restarts != 1 else ''}" if restarts else ""
            parts.append(f"group {g} (device {devices}): **{state}**{extra}")
        return f"{' · '.join(parts)} · queue: **{queued}**"

    # -- requests ---------------------------------------------------------------------
    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        """The app's validator (raises ValidationError); identity without an app."""
        if self.app is not None:
            return dict(self.app.validate(params))
        return params

    def submit(self, params: dict[str, Any]) -> concurrent.futures.Future[Any]:
        """Queue a request; raises ValidationError, QueueFullError... at once."""
        if self.app is not None:
            return self.app.submit(params)  # type: ignore[no-any-return]
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=8, thread_name_prefix="cosmos-ui-infer"
                )
        return self._pool.submit(self._call_plain, params)

    def _call_plain(self, params: dict[str, Any]) -> Any:
        result = self.infer_func(params)
        if isinstance(result, concurrent.futures.Future):
            result = result.result()
        return result
