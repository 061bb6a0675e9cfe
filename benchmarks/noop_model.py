"""A model that does nothing, for measuring what the UI path adds (``bench_ui.py``)."""

from __future__ import annotations

from typing import Any


class NoOpModel:
    """Returns at once, writing nothing: any time measured is the app's and the UI's."""

    def infer(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"i": args.get("i")}


def create_worker() -> NoOpModel:
    return NoOpModel()
