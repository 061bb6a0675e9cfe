"""cosmos_gradio_nb: a GPU generative model behind a Gradio UI, in a notebook and from Python.

Workers, one per GPU, run the model; :class:`NotebookApp` and :class:`GradioApp`
queue JSON parameter dicts to them and hand back :class:`InferenceFuture` objects;
:func:`create_gradio_UI` gives the default page on the same queue.

Only the light parts are imported eagerly: the worker processes import this
package too, and must not pay for gradio or ipywidgets.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import TYPE_CHECKING, Any

from ._core.exceptions import (
    AppClosedError,
    CosmosGradioError,
    InferenceError,
    InferenceTimeoutError,
    QueueFullError,
    RequestRefusedError,
    StopRequested,
    ValidationError,
    WorkerCrashedError,
    WorkerError,
    WorkerStartupError,
)
from ._core.validation import check_asset_path
from ._worker.progress import report_progress, stop_requested

if TYPE_CHECKING:
    from ._app.apps import GradioApp, NotebookApp, WorkerInfo
    from ._core.past_runs import load_results
    from ._core.result import InferenceResult
    from ._core.settings import DeploymentEnv
    from ._engine.future import InferenceFuture
    from ._notebook.compare import compare
    from ._notebook.form import create_widget_UI
    from ._page.page import create_gradio_UI
    from ._remote.connect import connect

try:  # one source of truth: the installed package's metadata (pyproject.toml)
    __version__ = importlib.metadata.version("cosmos_gradio_nb")
except importlib.metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "AppClosedError",
    "CosmosGradioError",
    "DeploymentEnv",
    "GradioApp",
    "InferenceError",
    "InferenceFuture",
    "InferenceResult",
    "InferenceTimeoutError",
    "NotebookApp",
    "QueueFullError",
    "RequestRefusedError",
    "StopRequested",
    "ValidationError",
    "WorkerCrashedError",
    "WorkerError",
    "WorkerInfo",
    "WorkerStartupError",
    "check_asset_path",
    "compare",
    "connect",
    "create_gradio_UI",
    "create_widget_UI",
    "load_results",
    "report_progress",
    "stop_requested",
]

# name -> module that defines it; imported on first access (PEP 562).
_LAZY = {
    "DeploymentEnv": "._core.settings",
    "GradioApp": "._app.apps",
    "NotebookApp": "._app.apps",
    "WorkerInfo": "._app.apps",
    "InferenceFuture": "._engine.future",
    "InferenceResult": "._core.result",
    "connect": "._remote.connect",
    "create_gradio_UI": "._page.page",
    "create_widget_UI": "._notebook.form",
    "load_results": "._core.past_runs",
    "compare": "._notebook.compare",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cosmos_gradio_nb' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
