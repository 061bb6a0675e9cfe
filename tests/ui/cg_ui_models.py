"""Test models for the UI tests: the real sample model plus a fault switch.

``{"fault": "raise"}`` makes ``infer`` raise (a worker error the page must show
with its remote traceback); without ``fault`` the request is the sample model's.
The no-op model answers at once (for the gradio_client round trip).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from cosmos_gradio_nb.samples.params import SampleParams


class TestParams(SampleParams):
    """The sample's parameters plus a test-only fault switch."""

    fault: Literal["raise"] | None = Field(
        None, description="Test only: 'raise' makes infer raise RuntimeError."
    )


class FaultySample:
    """The sample model, except when asked to fail."""

    def __init__(self) -> None:
        from cosmos_gradio_nb.samples.video_model import create_worker as sample

        self.model = sample()

    def infer(self, args: dict[str, Any]) -> dict[str, Any]:
        args = dict(args)
        if args.pop("fault", None) == "raise":
            raise RuntimeError("boom: the test model was asked to fail")
        return self.model.infer(args)


def create_worker() -> FaultySample:
    return FaultySample()


class Steps:
    """A fast model for the handler tests: ``steps`` progress reports ``delay`` s apart,
    each with a preview image when ``preview`` is true."""

    def infer(self, args: dict[str, Any]) -> dict[str, Any]:
        import json
        import time
        from pathlib import Path

        from cosmos_gradio_nb import report_progress

        steps, delay = int(args.get("steps", 0)), float(args.get("delay", 0.0))
        for i in range(steps):
            time.sleep(delay)  # stands for work, so a run lasts long enough to watch and stop
            if args.get("preview"):  # a live preview with each report (the worker keeps ~1/s)
                shade = 255 * (i + 1) // steps
                image = [[[shade, 64, 255 - shade]] * 32] * 24  # a 32x24 RGB picture
                report_progress((i + 1) / steps, f"step {i + 1}/{steps}", preview=_array(image))
                continue
            report_progress((i + 1) / steps, f"step {i + 1}/{steps}")
        Path(args["output_dir"], "echo.json").write_text(json.dumps(args))
        return {"echo": args.get("tag")}


def _array(rows: list[Any]) -> Any:
    import numpy as np

    return np.array(rows, dtype=np.uint8)


def create_steps() -> Steps:
    return Steps()
