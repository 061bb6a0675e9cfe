"""Options of a diffusers factory, checked in the caller's process without torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["DTYPES", "FactoryOptions", "Offload", "dtype_name"]

# Names a dtype may be given by (torch.bfloat16 itself works too).
DTYPES = {
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
}
Offload = Literal["model", "sequential"]


def dtype_name(value: Any) -> str | None:
    """The canonical name of a dtype given as text or as a torch dtype; ValueError if unknown."""
    if value is None:
        return None
    text = str(value).removeprefix("torch.").strip().lower()
    if text in DTYPES:
        return DTYPES[text]
    accepted = ", ".join(sorted(DTYPES))
    raise ValueError(f"torch_dtype={value!r} is not a dtype name; use one of {accepted}")


@dataclass(frozen=True)
class FactoryOptions:
    """How the worker places and runs the pipeline (see ``pipeline_factory``)."""

    device: str | None = None
    cpu_offload: Offload | None = None
    torch_compile: bool = False
    previews: bool = True
