"""cosmos_gradio_nb: a GPU generative model behind a Gradio UI, in a notebook and from Python.

Workers, one per GPU, run the model; :class:`NotebookApp` and :class:`GradioApp`
queue JSON parameter dicts to them and hand back :class:`InferenceFuture` objects;
:func:`create_gradio_UI` gives the default page on the same queue.

Only the light parts are imported eagerly: the worker processes import this
package too, and must not pay for gradio or ipywidgets.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._exceptions import (
    AppClosedError,
    CosmosGradioError,
    InferenceError,
    InferenceTimeoutError,
    QueueFullError,
    ValidationError,
    WorkerCrashedError,
    WorkerStartupError,
)
from ._progress import report_progress
from ._validation import check_asset_path

if TYPE_CHECKING:
    from ._app import GradioApp, NotebookApp, WorkerInfo
    from ._env import DeploymentEnv
    from ._future import InferenceFuture, InferenceResult
    from ._ui import create_gradio_UI
    from ._widgets import create_widget_UI

__version__ = "0.1.0"

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
    "ValidationError",
    "WorkerCrashedError",
    "WorkerInfo",
    "WorkerStartupError",
    "check_asset_path",
    "create_gradio_UI",
    "create_widget_UI",
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
