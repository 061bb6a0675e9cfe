"""Messages between the app (parent) and its worker processes.

Each worker has one duplex ``multiprocessing.connection.Connection`` to the
parent over a Unix socket pair; messages are small dicts, pickled by the
connection. Worker stdout and stderr travel separately, through a pipe the
parent reads, so even a segfault's last words reach the log.

Parent -> worker: :class:`InitMsg` (once), then :class:`InferMsg` or :class:`ShutdownMsg`.
Worker -> parent: :class:`StartedMsg` (its pid, before the model loads), :class:`ReadyMsg`
or :class:`StartupErrorMsg` (once), then for each
request any number of :class:`ProgressMsg` followed by one :class:`DoneMsg` or
:class:`ErrorMsg`.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

__all__ = [
    "DoneMsg",
    "ErrorMsg",
    "FactorySpec",
    "InferMsg",
    "InitMsg",
    "ProgressMsg",
    "ReadyMsg",
    "ShutdownMsg",
    "StartedMsg",
    "StartupErrorMsg",
    "WorkerMsg",
]


class FactorySpec(TypedDict, total=False):
    """How a worker builds its model: an import path, or a cloudpickled callable."""

    module: str
    function: str
    pickled: bytes


class InitMsg(TypedDict):
    type: Literal["init"]
    factory: FactorySpec
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


class ProgressMsg(TypedDict):
    type: Literal["progress"]
    id: str
    fraction: float | None
    message: str


class DoneMsg(TypedDict):
    type: Literal["done"]
    id: str
    # Only rank 0 fills these: the status dict it wrote to status.json.
    status: dict[str, Any] | None


class ErrorMsg(TypedDict):
    type: Literal["error"]
    id: str
    error_type: str
    message: str
    traceback: str


WorkerMsg = StartedMsg | ReadyMsg | StartupErrorMsg | ProgressMsg | DoneMsg | ErrorMsg
