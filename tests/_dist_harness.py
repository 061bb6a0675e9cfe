"""One rank of a real torch.distributed run of the sample model (run as a script).

The test starts one process per rank with ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``
and ``MASTER_PORT`` set, as the engine (and torchrun) do. Usage::

    python tests/_dist_harness.py REQUESTS_JSON RESULT_JSON

REQUESTS_JSON holds a list of argument dicts. Each rank builds the model through
the factory, runs ``infer`` on every request in turn (the same arguments on every
rank), closes the model, and writes to RESULT_JSON a list with, per request, what
``infer`` returned and the progress reports this rank made.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def main() -> None:
    requests = json.loads(Path(sys.argv[1]).read_text())
    import numpy as np
    import torch

    from cosmos_gradio_nb._worker import progress as _progress
    from cosmos_gradio_nb.samples import video_model

    _progress._MIN_INTERVAL = 0.0  # keep every report, not one per 50 ms
    encode = video_model.encode_mp4
    result_dir = Path(sys.argv[2]).parent
    captured: list[Any] = []

    def capturing_encode(frames: Any, *args: Any) -> Any:
        kept = [f.cpu() for f in frames]
        np.save(result_dir / f"frames{len(captured)}.npy", torch.stack(kept).numpy())
        captured.append(True)
        return encode(iter(kept), *args)

    video_model.encode_mp4 = capturing_encode  # type: ignore[assignment]
    model = video_model.create_worker()
    out: list[dict[str, Any]] = []
    try:
        for args in requests:
            reports: list[tuple[float | None, str]] = []

            def record(f: float | None, m: str, log: list[Any] = reports) -> None:
                log.append((f, m))

            _progress.set_reporter(record)
            out.append({"result": model.infer(args), "reports": reports})
            _progress.set_reporter(None)
    finally:
        model.close()
    Path(sys.argv[2]).write_text(json.dumps(out))


if __name__ == "__main__":
    main()
