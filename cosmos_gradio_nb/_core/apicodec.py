"""What crosses the server's API as JSON: errors, results and the server's own facts.

Errors travel as ``{"type", "message", "attrs", "traceback"}`` and are rebuilt
on the client as the same class with the same message and attributes, but only
classes of our own exception tree (:class:`CosmosGradioError` and its
subclasses, found by walking the tree, never by importing a name the server
sent) and ``CancelledError``. Anything else becomes a plain
:class:`CosmosGradioError` that names the original type: a server can never
make a client build an arbitrary object. The server's traceback text becomes
the rebuilt error's ``__cause__`` (a :class:`RemoteTraceback`), as
``concurrent.futures.ProcessPoolExecutor`` shows a worker's.

Standard library and ``_core`` only: the client (app layer) and the server's
routes (page layer) both use it.
"""

from __future__ import annotations

import concurrent.futures
import json
import math
import traceback
from pathlib import Path
from typing import Any

from .exceptions import CosmosGradioError
from .result import InferenceResult

__all__ = [
    "RemoteTraceback",
    "decode_error",
    "encode_error",
    "jsonable",
    "result_from_record",
    "result_record",
]


class RemoteTraceback(Exception):
    """The server-side traceback of an error raised in a connected app (its ``__cause__``)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text.rstrip()}\n"""'


def jsonable(value: Any, depth: int = 0) -> bool:
    """True if ``value`` is plain JSON (dict with str keys, list, str, finite number, bool, None)."""
    if depth > 32:
        return False
    if value is None or isinstance(value, (str, bool, int)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(jsonable(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and jsonable(v, depth + 1) for k, v in value.items())
    return False


def _our_classes() -> dict[str, type[BaseException]]:
    """Every class of our exception tree by name (subclasses defined so far included)."""
    found: dict[str, type[BaseException]] = {}
    todo: list[type[BaseException]] = [CosmosGradioError]
    while todo:
        cls = todo.pop()
        if cls.__name__ not in found:
            found[cls.__name__] = cls
            todo.extend(cls.__subclasses__())
    return found


def encode_error(exc: BaseException, *, with_traceback: bool = True) -> dict[str, Any]:
    """An exception as JSON: its class name, message, plain attributes and traceback text."""
    if isinstance(exc, concurrent.futures.CancelledError):
        return {"type": "CancelledError", "message": str(exc), "attrs": {}, "traceback": ""}
    attrs = {
        k: v
        for k, v in vars(exc).items()
        if k != "message" and not k.startswith("_") and jsonable(v)
    }
    text = ""
    if with_traceback and exc.__traceback__ is not None:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return {"type": type(exc).__name__, "message": str(exc), "attrs": attrs, "traceback": text}


def decode_error(data: dict[str, Any]) -> BaseException:
    """The exception :func:`encode_error` described, rebuilt only from our own classes."""
    name = str(data.get("type") or "CosmosGradioError")
    message = str(data.get("message") or "")
    if name == "CancelledError":
        return concurrent.futures.CancelledError(message)
    cls = _our_classes().get(name)
    attrs = data.get("attrs") if isinstance(data.get("attrs"), dict) else {}
    error: BaseException
    if cls is not None and issubclass(cls, CosmosGradioError):
        error = cls(message, **{k: v for k, v in (attrs or {}).items() if k.isidentifier()})
    else:
        error = CosmosGradioError(f"{name}: {message}", remote_type=name)
    text = data.get("traceback")
    if isinstance(text, str) and text.strip():
        error.__cause__ = RemoteTraceback(text)
    return error


def result_record(result: InferenceResult) -> dict[str, Any]:
    """An :class:`InferenceResult` as JSON (paths as the server sees them)."""
    return {
        "request_id": result.request_id,
        "output_dir": str(result.output_dir),
        "files": [str(p) for p in result.files],
        "videos": [str(p) for p in result.videos],
        "images": [str(p) for p in result.images],
        "status": json.loads(json.dumps(result.status, default=str)),
        "log": list(result.log),
        "duration": result.duration,
    }


def result_from_record(
    data: dict[str, Any], path_map: dict[str, Path] | None = None
) -> InferenceResult:
    """The :class:`InferenceResult` a :func:`result_record` describes.

    ``path_map`` replaces the server's paths by local copies (when the client
    does not share the server's file system); paths not in it are kept.
    """
    mapping = path_map or {}

    def local(p: str) -> Path:
        return mapping.get(p, Path(p))

    output_dir = str(data.get("output_dir") or "")
    return InferenceResult(
        request_id=str(data.get("request_id") or ""),
        output_dir=mapping.get(output_dir, Path(output_dir)),
        files=[local(p) for p in data.get("files") or []],
        videos=[local(p) for p in data.get("videos") or []],
        images=[local(p) for p in data.get("images") or []],
        status=dict(data.get("status") or {}),
        log=list(data.get("log") or []),
        duration=float(data.get("duration") or 0.0),
    )
