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

from ._exceptions import (
    AppClosedError,
    CosmosGradioError,
    InferenceError,
    InferenceTimeoutError,
    QueueFullError,
    RequestRefusedError,
    ValidationError,
    WorkerCrashedError,
    WorkerError,
    WorkerStartupError,
)
from ._progress import report_progress
from ._validation import check_asset_path

if TYPE_CHECKING:
    from ._app import GradioApp, NotebookApp, WorkerInfo
    from ._env import DeploymentEnv
    from ._future import InferenceFuture, InferenceResult
    from ._history import load_results
    from ._ui import create_gradio_UI
    from ._widgets import create_widget_UI

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
    "ValidationError",
    "WorkerCrashedError",
    "WorkerError",
    "WorkerInfo",
    "WorkerStartupError",
    "check_asset_path",
    "create_gradio_UI",
    "create_widget_UI",
    "load_results",
    "report_progress",
]

# name -> module that defines it; imported on first access (PEP 562).
_LAZY = {
    "DeploymentEnv": "._env",
    "GradioApp": "._app",
    "NotebookApp": "._app",
    "WorkerInfo": "._app",
    "InferenceFuture": "._future",
    "InferenceResult": "._future",
    "create_gradio_UI": "._ui",
    "create_widget_UI": "._widgets",
    "load_results": "._history",
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
