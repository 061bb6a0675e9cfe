"""Write the example notebooks (without outputs) from the cell sources below.

Run ``python notebooks/make_notebooks.py`` after editing a cell here; the
``.ipynb`` files are generated so that their sources stay reviewable in one place
and are committed without outputs. Every notebook runs top to bottom on a CPU in
well under a minute (tiny renders) and closes its app at the end.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

Cell = tuple[str, str]  # ("md" | "py", source)

QUICKSTART: list[Cell] = [
    (
        "md",
        """# Quickstart: the sample video model in a notebook

`NotebookApp` starts the model's worker processes in the background and returns at once.
The same workers serve the Gradio page shown in this notebook and the requests scripted
from Python below: one queue for everyone.

The sample model animates a procedural scene (or an uploaded image) into a short H.264
video plus a poster image. Renders here are tiny so the notebook runs quickly on a CPU.""",
    ),
    (
        "py",
        """from cosmos_gradio_nb import NotebookApp, create_gradio_UI
from cosmos_gradio_nb.samples import FACTORY_MODULE, SampleParams

app = NotebookApp(SampleParams, FACTORY_MODULE, "create_worker", name="quickstart")
app  # a live panel: each worker's rank, GPU, pid and state, the queue, recent jobs""",
    ),
    (
        "md",
        """## The UI, inline

`launch()` finds out where this notebook is shown: on a local Jupyter the page is an
iframe at `127.0.0.1`; behind JupyterHub or jupyter-server-proxy it is served through
`<base_url>proxy/<port>/`; in VS Code you get the widget UI instead. Re-running the
cell replaces the previous server rather than starting another one.""",
    ),
    (
        "py",
        """interface = create_gradio_UI(infer_func=app.infer, header="Sample video model")
interface.launch(height=820)""",
    ),
    (
        "md",
        """## A scripted batch, beside the UI

`app.map` queues a list of requests and returns their futures at once, with one
progress bar. Clicks in the page above go into the same queue.""",
    ),
    (
        "py",
        """batch = [
    {
        "prompt": f"a lighthouse at dusk, variation {seed}",
        "seed": seed,
        "width": 96,
        "height": 64,
        "num_frames": 8,
        "fps": 8,
    }
    for seed in range(8)
]
futures = app.map(batch)
futures[0]  # live progress while it runs, then its video""",
    ),
    (
        "py",
        """results = [f.result(timeout=300) for f in futures]
for r in results:
    print(r.request_id, f"{r.duration:.2f} s", r.videos[0].name, r.images[0].name)""",
    ),
    (
        "md",
        "A result shows its video and poster inline (small files are embedded in the notebook):",
    ),
    ("py", "results[-1]"),
    (
        "md",
        "`app.history` keeps every request, from the page or from Python, with its state:",
    ),
    (
        "py",
        """from collections import Counter

Counter(f.state for f in app.history)""",
    ),
    (
        "md",
        "`load_results` reads every past run of an `OUTPUT_DIR` from its `status.json` files, "
        "this session's and earlier ones, and shows them as a table with thumbnails:",
    ),
    (
        "py",
        """from cosmos_gradio_nb import load_results

load_results(app.env.output_dir, limit=5)""",
    ),
    ("md", "## Clean up\n\nClose the page's server and stop the workers."),
    (
        "py",
        """interface.close()
app.close()
app.closed""",
    ),
]

CUSTOM_MODEL: list[Cell] = [
    (
        "md",
        """# Serving your own model from a notebook

A model for cosmos_gradio_nb is a factory returning an object with `infer(args: dict)`,
which writes its outputs into `args["output_dir"]`. A validator (here a pydantic model)
runs in this kernel before anything is queued, so bad requests are refused at once with
a message naming the key.

Both are defined right here, in the notebook: `NotebookApp(factory=...)` ships a factory
defined in `__main__` to the worker processes with cloudpickle.""",
    ),
    (
        "py",
        """from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class GradientParams(BaseModel):
    \"\"\"What a request to the gradient model may contain.\"\"\"

    model_config = ConfigDict(extra="forbid")
    size: int = Field(96, ge=16, le=1024, description="Square image size in pixels.")
    start: tuple[int, int, int] = Field((20, 40, 160), description="RGB colour at the top.")
    end: tuple[int, int, int] = Field((250, 170, 40), description="RGB colour at the bottom.")
    steps: int = Field(4, ge=1, le=50, description="Progress reports (stands in for denoising).")
    output_dir: str | None = None


class GradientModel:
    \"\"\"A stand-in for a real generator: 'loads weights' once, then renders gradients.\"\"\"

    def __init__(self) -> None:
        import numpy as np  # imported in the worker process, once

        self.np = np

    def infer(self, args: dict) -> dict:
        from PIL import Image

        from cosmos_gradio_nb import report_progress

        np = self.np
        size, steps = args["size"], args["steps"]
        t = np.linspace(0.0, 1.0, size)[:, None, None]
        for i in range(steps):
            report_progress((i + 1) / steps, f"step {i + 1}/{steps}")
        start, end = np.array(args["start"]), np.array(args["end"])
        img = ((1 - t) * start + t * end) * np.ones((1, size, 1))
        out = Path(args["output_dir"]) / "gradient.png"
        Image.fromarray(img.astype("uint8")).save(out)
        print(f"wrote {out.name} ({size}x{size})")  # goes to the app's log, rank-prefixed
        return {"mean_rgb": [float(v) for v in img.mean(axis=(0, 1))]}


def create_worker() -> GradientModel:
    return GradientModel()""",
    ),
    (
        "py",
        """from cosmos_gradio_nb import NotebookApp, create_gradio_UI

app = NotebookApp(validator=GradientParams, factory=create_worker, name="gradient")
app.wait_ready(timeout=120)
app""",
    ),
    (
        "md",
        "The validator's defaults become the page's default request, and bad input is refused here, in the kernel:",
    ),
    (
        "py",
        """from cosmos_gradio_nb import ValidationError

print(app.default_request)
try:
    app.submit({"size": 8, "colour": "red"})
except ValidationError as err:
    print("refused:", err)""",
    ),
    ("md", "Serve it with the default page, in this notebook:"),
    (
        "py",
        """interface = create_gradio_UI(infer_func=app.infer, header="Gradient model")
interface.launch(height=760)""",
    ),
    ("md", "And from Python:"),
    (
        "py",
        """result = app.infer({"size": 64, "start": [0, 0, 0], "end": [255, 255, 255]}).result(timeout=120)
print(result.status["mean_rgb"], result.log)
result""",
    ),
    (
        "py",
        """interface.close()
app.close()""",
    ),
]

SCRIPTING: list[Cell] = [
    (
        "md",
        """# Scripting: futures, batches, cancel, terminate, timeouts and errors

`app.submit` (and `app.infer` on a `NotebookApp`) returns an `InferenceFuture`, a real
`concurrent.futures.Future`: it works with `wait`, `as_completed`, `add_done_callback` and
`asyncio.wrap_future`, and adds `state`, `queue_position`, `progress`, `cancel()` and
`terminate()`.""",
    ),
    (
        "py",
        """import asyncio
import concurrent.futures as cf
import time

from cosmos_gradio_nb import (
    InferenceError,
    InferenceTimeoutError,
    NotebookApp,
    ValidationError,
)
from cosmos_gradio_nb.samples import FACTORY_MODULE, SampleParams

app = NotebookApp(SampleParams, FACTORY_MODULE, "create_worker", name="scripting")
app.wait_ready(timeout=120)
tiny = {"width": 64, "height": 48, "num_frames": 6, "fps": 6}""",
    ),
    ("md", "## A batch with `map`, collected as they finish"),
    (
        "py",
        """futures = app.map([{**tiny, "seed": s} for s in range(6)])
for fut in cf.as_completed(futures, timeout=300):
    res = fut.result()
    print(res.request_id, fut.state, f"{res.duration:.2f} s", res.videos[0].name)""",
    ),
    (
        "md",
        """## Cancel and terminate

`cancel()` keeps its standard meaning: it removes a request that is still queued.
`terminate()` also stops a running one: the model is asked to stop (the sample model
stops at its next frame, as any model calling `report_progress` does) and its worker
stays loaded; a model that does not stop within `STOP_GRACE` seconds has its worker group
restarted. The other requests in the queue run afterwards. (`frame_delay` makes the
sample model slow on purpose.)""",
    ),
    (
        "py",
        """slow = app.submit({**tiny, "num_frames": 40, "frame_delay": 0.25})
queued = app.submit({**tiny, "seed": 99})
after = app.submit({**tiny, "seed": 100})
print("queued position:", queued.queue_position)
print("cancel queued:", queued.cancel(), queued.state)

deadline = time.monotonic() + 60
while slow.state != "running" and time.monotonic() < deadline:
    time.sleep(0.05)
while (slow.progress or 0) < 0.1 and time.monotonic() < deadline:
    time.sleep(0.05)
print(f"slow is {slow.state} at {slow.progress or 0:.0%}; cancel() on it:", slow.cancel())
print("terminate:", slow.terminate(), slow.state)
print("the next request still runs:", after.result(timeout=120).videos[0].name)""",
    ),
    (
        "md",
        """## Timeouts

A request running past its `timeout` fails with `InferenceTimeoutError` (also a
`TimeoutError`) and its group is restarted.""",
    ),
    (
        "py",
        """fut = app.infer({**tiny, "num_frames": 40, "frame_delay": 0.25}, timeout=1.5)
try:
    fut.result(timeout=60)
except InferenceTimeoutError as err:
    print("timed out:", err)
print(app.infer(tiny).result(timeout=120).request_id, "ran after the restart")""",
    ),
    (
        "md",
        """## Errors

Bad parameters are refused before they are queued (`ValidationError`, naming the key).
An exception inside the model's `infer` fails only that request (`InferenceError`, with
the worker's traceback); the worker keeps serving.""",
    ),
    (
        "py",
        """try:
    app.submit({**tiny, "width": 33})
except ValidationError as err:
    print("refused:", err, "| key:", err.key)""",
    ),
    (
        "md",
        "The sample model rarely fails, so here is one that does, defined in this notebook:",
    ),
    (
        "py",
        """class Flaky:
    def infer(self, args: dict) -> dict:
        if args.get("fail"):
            raise RuntimeError(f"cannot render {args.get('what', 'this')!r}")
        return {"ok": True}


flaky = NotebookApp(factory=Flaky, name="flaky")
try:
    flaky.infer({"fail": True, "what": "a square circle"}).result(timeout=120)
except InferenceError as err:
    print("model error:", err.error_type, "-", err)
    print("worker traceback ends with:", err.remote_traceback.strip().splitlines()[-1])
print("the worker keeps serving:", flaky.infer({}).result(timeout=60).status["ok"])
flaky.close()""",
    ),
    ("md", "## asyncio\n\nFutures wrap into asyncio, so top-level `await` works in a cell:"),
    (
        "py",
        """results = await asyncio.gather(
    *(asyncio.wrap_future(app.infer({**tiny, "seed": s})) for s in (7, 8))
)
[r.request_id for r in results]""",
    ),
    ("md", "## History, and closing"),
    (
        "py",
        """from collections import Counter

print(Counter(f.state for f in app.history))
app.close()
app.closed""",
    ),
]

DIFFUSERS_PIPELINE: list[Cell] = [
    (
        "md",
        """# A diffusers pipeline in a notebook: Cosmos 2.5

`cosmos_gradio_nb.diffusers` serves any diffusers pipeline class in one call:
`pipeline_params(PipelineClass)` is the validator (its JSON-able `__call__` arguments
with their defaults and bounds, plus `seed`), and `pipeline_factory(...)` loads the
pipeline in every worker and serves it, with progress per denoising step, live
previews, stop without a reload, and PNG/H.264 mp4 outputs.

A real checkpoint is one line (`pip install "cosmos_gradio_nb[diffusers]"`):

```python
factory = pipeline_factory(
    "nvidia/Cosmos-Predict2-2B-Video2World",
    pipeline_class=Cosmos2VideoToWorldPipeline,
    torch_dtype="bfloat16",
)
```

Here, so that the notebook runs on a CPU without downloading anything, the pipeline is
a real `Cosmos2_5_PredictBasePipeline` built with tiny random weights
(`cosmos_gradio_nb.samples.tiny_diffusers`): it makes coloured noise, quickly.""",
    ),
    (
        "py",
        """from diffusers import Cosmos2_5_PredictBasePipeline

from cosmos_gradio_nb import NotebookApp, ValidationError, create_gradio_UI
from cosmos_gradio_nb.diffusers import pipeline_factory, pipeline_params
from cosmos_gradio_nb.samples import tiny_diffusers as tiny

app = NotebookApp(
    pipeline_params(Cosmos2_5_PredictBasePipeline, defaults=tiny.VIDEO_DEFAULTS),
    factory=pipeline_factory(build=tiny.cosmos_predict),
    name="diffusers",
)
app.wait_ready(timeout=300)
app""",
    ),
    (
        "md",
        "The validator comes from the pipeline's signature: its defaults (here replaced by "
        "small ones) prefill the page's editor, and a typo is refused here, naming the key:",
    ),
    (
        "py",
        """print(app.default_request)
try:
    app.submit({"num_inference_step": 4, "height": 100})
except ValidationError as err:
    print("refused:", err)""",
    ),
    ("md", "The page, inline; its Generate button runs the pipeline in the worker:"),
    (
        "py",
        """interface = create_gradio_UI(app.infer, header="Cosmos 2.5 (tiny, random weights)")
interface.launch(height=820)""",
    ),
    (
        "md",
        "From Python: progress is the denoising step (`fut.progress_message`), and "
        "status.json records the seed, the steps and the time spent loading, denoising "
        "and decoding:",
    ),
    (
        "py",
        """from pathlib import Path

fut = app.infer({"seed": 1, "num_inference_steps": 8})
result = fut.result(timeout=300)
status = result.status
print(fut.progress_message, "| seed", status["seed"], "| steps", status["steps_done"])
print({k: status[k] for k in ("worker_load_seconds", "denoise_seconds", "decode_seconds")})
print("preview:", fut.preview and Path(fut.preview).name)  # the latest preview.jpg
result""",
    ),
    (
        "md",
        """## Stop without a reload

`terminate()` on a running request becomes diffusers' own interrupt: the pipeline
skips its remaining steps and decodes what it has (kept as partial files), and the
worker keeps the model loaded for the next request.""",
    ),
    (
        "py",
        """import json
import time
from concurrent.futures import wait

pid = app.workers()[0].pid
long = app.infer({"num_inference_steps": 400})
while (long.progress or 0) < 0.01:
    time.sleep(0.05)
long.terminate()
wait([long], timeout=60)
record = json.loads((long.output_dir / "status.json").read_text())
partial = [Path(p).name for p in record["files"].get("partial", [])]
print("stopped:", long.state, "| its partial video kept:", "video.mp4" in partial)
app.infer({"num_inference_steps": 1}).result(timeout=120)
print("the next request ran on the same worker:", app.workers()[0].pid == pid)""",
    ),
    ("md", "## History, and closing"),
    (
        "py",
        """from cosmos_gradio_nb import load_results

load_results(app.env.output_dir, limit=3)""",
    ),
    (
        "py",
        """interface.close()
app.close()
app.closed""",
    ),
]

NOTEBOOKS = {
    "quickstart.ipynb": QUICKSTART,
    "custom_model.ipynb": CUSTOM_MODEL,
    "scripting.ipynb": SCRIPTING,
    "diffusers_pipeline.ipynb": DIFFUSERS_PIPELINE,
}


def build(cells: list[Cell]) -> nbformat.NotebookNode:
    """A notebook with these cells, no outputs, and the python3 kernel."""
    nb = new_notebook()
    nb.cells = [
        new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in cells
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    for i, cell in enumerate(nb.cells):  # stable ids: regenerating gives no diff
        cell["id"] = f"cell-{i:02d}"
    return nb


def main(out_dir: Path = HERE) -> list[Path]:
    written = []
    for name, cells in NOTEBOOKS.items():
        path = out_dir / name
        nbformat.validate(nb := build(cells))
        nbformat.write(nb, path)
        written.append(path)
    return written


if __name__ == "__main__":
    for p in main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(p)
