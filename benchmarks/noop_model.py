"""A model that does nothing, for measuring what the engine and the UI add.

``{"hang": true}`` sleeps (for crash detection); ``{"write_mb": N}`` writes an
N MB output file, or does the same work without keeping it with ``"skip": true``
(for the time to copy outputs back from another Ray node).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


class NoOpModel:
    """Returns at once, writing nothing: any time measured is the app's and the UI's."""

    def infer(self, args: dict[str, Any]) -> dict[str, Any]:
        if args.get("hang"):
            time.sleep(3600)
        mb = int(args.get("write_mb") or 0)
        if mb:
            path = Path(args["output_dir"]) / "out.bin"
            with open(path, "wb") as f:
                for _ in range(mb):
                    f.write(os.urandom(2**20))
            if args.get("skip"):
                path.unlink()
        return {"i": args.get("i")}


def create_worker() -> NoOpModel:
    return NoOpModel()
