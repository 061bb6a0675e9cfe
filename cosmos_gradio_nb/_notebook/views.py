"""What the notebook layer needs of the things it shows: small Protocols, not classes.

The displays and widgets here read results, futures, workers and apps without
importing their classes (they live in lower layers, and a connected app or a
test's stand-in must display the same way). Each Protocol lists exactly what is
read, as anywidget states what a widget needs of its model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

__all__ = ["AppView", "FutureView", "ResultView", "ResultsView", "WorkerView"]


class ResultView(Protocol):
    """A finished request (``InferenceResult``)."""

    request_id: str
    output_dir: Path
    files: list[Path]
    videos: list[Path]
    images: list[Path]
    status: dict[str, Any]
    duration: float


class ResultsView(Protocol):
    """Past runs of an output folder (``load_results``'s ``ResultList``)."""

    total: int
    output_dir: Path

    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[ResultView]: ...


class FutureView(Protocol):
    """A request in flight (``InferenceFuture``)."""

    @property
    def request_id(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def queue_position(self) -> int | None: ...
    @property
    def output_dir(self) -> Path: ...

    progress: float | None
    progress_message: str

    def done(self) -> bool: ...
    def cancelled(self) -> bool: ...
    def exception(self, timeout: float | None = None) -> BaseException | None: ...
    def result(self, timeout: float | None = None) -> Any: ...
    def terminate(self) -> bool: ...
    def add_done_callback(self, fn: Callable[[Any], object]) -> None: ...
    def add_progress_callback(self, fn: Callable[[Any], None]) -> None: ...


class WorkerView(Protocol):
    """One worker process (``WorkerInfo``)."""

    group: int
    rank: int
    gpu: str
    pid: int | None
    state: str
    request_id: str | None
    restarts: int
    node: str


class AppView(Protocol):
    """An app the panels and the widget UI drive (``NotebookApp``)."""

    name: str
    env: Any

    @property
    def closed(self) -> bool: ...
    @property
    def queue_length(self) -> int: ...
    @property
    def history(self) -> list[Any]: ...
    @property
    def default_request(self) -> dict[str, Any] | None: ...

    def workers(self) -> Sequence[WorkerView]: ...
    def validate(self, params: dict[str, Any]) -> dict[str, Any]: ...
    def submit(self, params: dict[str, Any]) -> Any: ...
