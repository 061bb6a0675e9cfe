"""``InferenceResult``: what one finished request produced, wherever it was read from.

The engine builds one when a request succeeds; ``load_results`` builds them from
the ``status.json`` files of past runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import rich
from .public import public

__all__ = ["InferenceResult"]


@public
@dataclass
class InferenceResult:
    """What one finished request produced.

    Attributes
    ----------
    request_id:
        The request's unique id (also the suffix of its folder name).
    output_dir:
        The request's own folder under ``OUTPUT_DIR``.
    files:
        Every output file: those ``infer`` named and those found in ``output_dir``.
    videos, images:
        The subsets of ``files`` that are videos and images, in that order.
    status:
        The request's ``status.json`` as a dict (params, timestamps, files, ``infer``'s return).
    log:
        Lines the group's workers printed while running this request, rank-prefixed.
    duration:
        Seconds from start to finish on the worker group.
    """

    request_id: str
    output_dir: Path
    files: list[Path] = field(default_factory=list)
    videos: list[Path] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    duration: float = 0.0

    def _repr_html_(self) -> str:
        # Rich display in notebooks: video players and images inline.
        return rich.result_html(self)
