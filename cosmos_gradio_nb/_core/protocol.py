"""Messages between the app (parent) and its worker processes.

Each worker has one control socket to the parent (a Unix socket pair); every
message is a dict sent as one strict-JSON frame (``wire.py``), in both
directions. Worker stdout and stderr travel separately, through a pipe the
parent reads, so even a segfault's last words reach the log.

Parent -> worker: :class:`InitMsg` (once; a cloudpickled factory travels
base64-encoded, see :func:`factory_to_wire`), then any of :class:`InferMsg`,
:class:`StopMsg` (stop the running request: the model sees ``stop_requested()``),
:class:`PingMsg` (answered at once by the worker's control thread) and
:class:`ShutdownMsg`.

Worker -> parent: :class:`StartedMsg` (its pid, before the model loads),
:class:`ReadyMsg` or :class:`StartupErrorMsg` (once), :class:`PongMsg` for each
ping; then for each request any number of :class:`ProgressMsg` followed by one
:class:`DoneMsg`, :class:`ErrorMsg` or, after a stop, :class:`StoppedMsg` from
every rank. The worker never writes ``status.json``: rank 0's ``done`` carries
what the record needs (what ``infer`` returned, the files it found, when it
finished) and the app writes it.
"""

from __future__ import annotations

import base64
from typing import Any, Literal, TypedDict

__all__ = [
    "DoneMsg",
    "ErrorMsg",
    "FactorySpec",
    "InferMsg",
    "InitMsg",
    "PingMsg",
    "PongMsg",
    "ProgressMsg",
    "ReadyMsg",
    "ShutdownMsg",
    "StartedMsg",
    "StartupErrorMsg",
    "StopMsg",
    "StoppedMsg",
    "WorkerMsg",
    "factory_from_wire",
    "factory_to_wire",
]


class FactorySpec(TypedDict, total=False):
    """How a worker builds its model: an import path, or a cloudpickled callable."""

    module: str
    function: str
    pickled: bytes


def factory_to_wire(spec: FactorySpec | dict[str, Any]) -> dict[str, Any]:
    """``spec`` as JSON can carry it: pickled bytes become ``pickled_b64`` text."""
    out = {k: v for k, v in spec.items() if k != "pickled"}
    pickled = spec.get("pickled")
    if isinstance(pickled, (bytes, bytearray)):
        out["pickled_b64"] = base64.b64encode(pickled).decode("ascii")
    return out


def factory_from_wire(data: dict[str, Any]) -> FactorySpec:
    """The inverse of :func:`factory_to_wire`."""
    spec: FactorySpec = {}
    if "module" in data:
        spec["module"] = str(data["module"])
    if "function" in data:
        spec["function"] = str(data["function"])
    if "pickled_b64" in data:
        spec["pickled"] = base64.b64decode(data["pickled_b64"])
    elif isinstance(data.get("pickled"), bytes):  # in-process callers (tests) skip the wire
        spec["pickled"] = data["pickled"]
    return spec


class InitMsg(TypedDict):
    type: Literal["init"]
    factory: dict[str, Any]  # factory_to_wire(FactorySpec)
    sys_path: list[str]
    group: int
    rank: int
    world_size: int


class InferMsg(TypedDict):
    type: Literal["infer"]
    id: str
    params: dict[str, Any]
    output_dir: str
    queued_at: float
    started_at: float


class StopMsg(TypedDict):
    type: Literal["stop"]
    id: str


class PingMsg(TypedDict):
    type: Literal["ping"]
    n: int


class ShutdownMsg(TypedDict):
    type: Literal["shutdown"]


class StartedMsg(TypedDict):
    type: Literal["started"]
    pid: int


class ReadyMsg(TypedDict):
    type: Literal["ready"]
    pid: int
    startup_seconds: float


class StartupErrorMsg(TypedDict):
    type: Literal["startup_error"]
    error_type: str
    message: str
    traceback: str


class PongMsg(TypedDict):
    type: Literal["pong"]
    n: int
    rank: int


class ProgressMsg(TypedDict, total=False):
    type: Literal["progress"]
    id: str
    fraction: float | None
    message: str
    preview: str  # the request folder's preview.jpg, when this report brought a new one


class DoneMsg(TypedDict, total=False):
    type: Literal["done"]
    id: str
    rank: int
    # Rank 0 only: what status.json needs.
    returned: dict[str, Any]  # what infer returned (strict JSON), {} for None
    files: dict[str, list[str]]  # the files it found, by kind (collect_files)
    finished_at: float  # epoch seconds when infer returned


class ErrorMsg(TypedDict):
    type: Literal["error"]
    id: str
    rank: int
    error_type: str
    message: str
    traceback: str


class StoppedMsg(TypedDict):
    type: Literal["stopped"]
    id: str
    rank: int
    how: str  # "returned" or "raised <ExceptionType>": how infer ended after the stop


WorkerMsg = (
    StartedMsg
    | ReadyMsg
    | StartupErrorMsg
    | PongMsg
    | ProgressMsg
    | DoneMsg
    | ErrorMsg
    | StoppedMsg
)
