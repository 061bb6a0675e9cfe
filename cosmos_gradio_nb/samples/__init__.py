"""The sample model shipped with cosmos_gradio_nb: a CPU-capable torch video renderer.

``NotebookApp(SampleParams, FACTORY_MODULE, FACTORY_FUNCTION)`` serves it. Importing
this package (and :class:`SampleParams`, the validator the UI process runs) does not
import torch; ``create_worker`` and ``SampleVideoModel`` load the model module on
first access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .params import SampleParams

if TYPE_CHECKING:
    from .video_model import SampleVideoModel, create_worker

__all__ = [
    "FACTORY_FUNCTION",
    "FACTORY_MODULE",
    "SampleParams",
    "SampleVideoModel",
    "create_worker",
]

FACTORY_MODULE = "cosmos_gradio_nb.samples.video_model"
FACTORY_FUNCTION = "create_worker"

_LAZY = {"SampleVideoModel", "create_worker"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(".video_model", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
