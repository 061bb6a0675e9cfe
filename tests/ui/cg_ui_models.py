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
