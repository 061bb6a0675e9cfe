"""The model and validator of the connected-app tests: one factory, behaviour by request.

``{"op": "echo"}`` answers at once (with its pid), ``"progress"`` reports ``steps``
steps ``step_seconds`` apart, ``"sleep"`` sleeps ``seconds`` (a long request, to
queue others behind or to terminate), ``"write"`` writes an image and a text file,
``"raise"`` raises, ``"crash"`` kills its own worker with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cosmos_gradio_nb import report_progress

# A 1x1 PNG, so the image is a real one.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d4944415478da63f8cfc0f01f0005000201a5dd59e70000000049454e44ae426082"
)


class Params(BaseModel):
    """The request: what the model does."""

    model_config = ConfigDict(extra="forbid")

    op: Literal["echo", "progress", "sleep", "write", "raise", "crash"] = "echo"
    value: int = 0
    steps: int = Field(3, ge=1, le=1000)
    step_seconds: float = Field(0.05, ge=0)
    seconds: float = Field(0.1, ge=0, le=600, description="How long 'sleep' sleeps.")


class Model:
    def __init__(self) -> None:
        self.pid = os.getpid()

    def infer(self, args: dict[str, Any]) -> dict[str, Any]:
        op = args.get("op", "echo")
        out = Path(args["output_dir"])
        if op == "progress":
            steps = int(args.get("steps", 3))
            for i in range(steps):
                report_progress((i + 1) / steps, f"step {i + 1}/{steps}")
                time.sleep(float(args.get("step_seconds", 0.05)))
        elif op == "sleep":
            print(f"sleeping {args.get('seconds')} s", flush=True)
            time.sleep(float(args.get("seconds", 0.1)))
        elif op == "write":
            (out / "frame.png").write_bytes(PNG)
            (out / "notes.txt").write_text(f"value {args.get('value')}\n")
        elif op == "raise":
            raise RuntimeError(f"boom {args.get('value')}")
        elif op == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        return {"echo": args.get("value"), "pid": self.pid}


def create_worker() -> Model:
    return Model()


def broken_worker() -> Model:
    """A factory that cannot load its model."""
    raise RuntimeError("no weights at /nowhere/model.safetensors")
