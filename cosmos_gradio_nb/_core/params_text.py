"""One line of a run's parameters, and which parameters tell runs apart.

Shared by the History table, the queue rows (page and notebook) and comparisons;
``_core/history.py`` re-exports both names.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

__all__ = ["differing_params", "params_summary"]


def params_summary(
    params: dict[str, Any],
    limit: int = 4,
    width: int = 40,
    defaults: dict[str, Any] | None = None,
) -> str:
    """``prompt="a red car" seed=1 num_frames=24``: a run's key parameters, on one line.

    The prompt and seed come first; with ``defaults`` (the default request) the
    other keys are those whose value differs from it, which is what tells runs apart.
    """
    defaults = defaults or {}
    keys = [
        k
        for k in params
        if k != "output_dir" and (k in ("prompt", "seed") or params[k] != defaults.get(k, object()))
    ]
    keys.sort(key=lambda k: (k != "prompt", k != "seed"))  # the prompt and seed first
    parts = []
    for key in keys[:limit]:
        text = json.dumps(params[key], ensure_ascii=False)
        if len(text) > width:
            text = text[: width - 3] + "..."
        parts.append(f"{key}={text}")
    if len(keys) > limit:
        parts.append(f"(+{len(keys) - limit})")
    return " ".join(parts)


_ABSENT = object()


def differing_params(params: Sequence[dict[str, Any]]) -> list[str]:
    """The keys whose value is not the same in every one of ``params`` (absent counts).

    In first-seen order, ``output_dir`` left out: what tells compared runs apart.
    """
    keys: dict[str, None] = {}
    for p in params:
        keys.update(dict.fromkeys(k for k in p if k != "output_dir"))
    out = []
    for key in keys:
        values = [json.dumps(p.get(key, _ABSENT), sort_keys=True, default=repr) for p in params]
        if len(set(values)) > 1:
            out.append(key)
    return out
