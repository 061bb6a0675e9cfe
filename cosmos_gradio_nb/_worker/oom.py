"""A CUDA out-of-memory error, said in one line with that GPU's memory figures.

``torch.OutOfMemoryError`` (``torch.cuda.OutOfMemoryError``) carries a long
message about allocator settings; the person at the page needs to know that
the GPU was full, how full, and what to change. It is recognised by its class
name (and, for old torch, by its message), so the worker never imports torch
for it: the figures are read from the ``torch`` the model already imported.
"""

from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["is_cuda_oom", "oom_message"]

ADVICE = "lower the resolution or frames, or use more GPUs per model"


def is_cuda_oom(exc: BaseException) -> bool:
    """Whether ``exc`` is torch's CUDA out-of-memory error."""
    if any(cls.__name__ == "OutOfMemoryError" for cls in type(exc).__mro__):
        return True
    try:
        return isinstance(exc, RuntimeError) and "CUDA out of memory" in str(exc)
    except Exception:
        return False


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def oom_message(exc: BaseException, torch: Any = None) -> str | None:
    """The one-line message for a CUDA out-of-memory ``exc``; None for any other error.

    ``torch`` defaults to the module the model imported (None: no figures to give).
    """
    if not is_cuda_oom(exc):
        return None
    torch = torch if torch is not None else sys.modules.get("torch")
    try:
        cuda = torch.cuda
        index = cuda.current_device()
        free, total = cuda.mem_get_info(index)
        allocated = cuda.memory_allocated(index)
        reserved = cuda.memory_reserved(index)
        name = cuda.get_device_name(index)
    except Exception:  # no torch, or the CUDA context itself is broken
        return f"CUDA out of memory (its memory figures could not be read): {ADVICE}"
    visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    gpu = visible[index].strip() if index < len(visible) else str(index)  # as the page names it
    return (
        f"CUDA out of memory on GPU {gpu} ({name}): {_gib(free)} free of {_gib(total)}, "
        f"this process holds {_gib(reserved)} (allocated {_gib(allocated)}): {ADVICE}"
    )
