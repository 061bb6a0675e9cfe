"""The example notebooks run top to bottom in a real kernel (nbclient) and leave no process."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

import nbformat
import psutil
import pytest
from nb_harness import REPO, kernel_env, wait_for, worker_processes

pytestmark = pytest.mark.notebook

NOTEBOOKS = REPO / "notebooks"


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("make_notebooks", NOTEBOOKS / "make_notebooks.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _text(nb: Any) -> str:
    """Everything the cells printed or displayed, as text and HTML, for assertions."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                parts.append(out.text)
            elif out.output_type == "error":
                parts.append(f"ERROR {out.ename}: {out.evalue}")
            else:
                data = out.get("data", {})
                parts.append(str(data.get("text/html", "")) + str(data.get("text/plain", "")))
    return "\n".join(parts)


NAMES = ["quickstart.ipynb", "custom_model.ipynb", "scripting.ipynb", "diffusers_pipeline.ipynb"]


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_matches_generator_and_has_no_outputs(name: str) -> None:
    gen = _generator()
    on_disk = nbformat.read(NOTEBOOKS / name, as_version=4)
    built = gen.build(gen.NOTEBOOKS[name])
    assert [c.source for c in on_disk.cells] == [c.source for c in built.cells], (
        "notebooks/make_notebooks.py and the .ipynb differ: run python notebooks/make_notebooks.py"
    )
    for cell in on_disk.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "commit without outputs"


EXPECT = {
    "quickstart.ipynb": [
        # Local Jupyter (no server here): the local URL. The last cell closes the page, which
        # turns the iframe's output into a note naming it.
        "The Gradio page at http://127.0.0.1:",
        "is closed (close(), or launched again)",
        "<video",  # the result's video inline
        "Counter({'succeeded': 8",
    ],
    "custom_model.ipynb": ["refused: size: Input should be", "colour", "mean_rgb", "<img"],
    "scripting.ipynb": [
        "cancel queued: True cancelled",
        "terminate: True cancelled",
        "timed out: request",
        "ran after the restart",
        "refused: width: width must be",
        "model error: RuntimeError",
        "the worker keeps serving: True",
    ],
    "diffusers_pipeline.ipynb": [
        "refused: num_inference_step: unknown parameter of Cosmos2_5_PredictBasePipeline",
        "height: height must be a multiple of 16",
        "The Gradio page at http://127.0.0.1:",  # its iframe, turned into a note by close()
        "step 8/8 · decoding | seed 1 | steps 8",
        "preview: preview.jpg",
        "<video",
        "stopped: cancelled | its partial video kept: True",
        "the next request ran on the same worker: True",
    ],
}


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_and_leaves_no_process(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nbclient import NotebookClient

    for key, value in kernel_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    for key in ("JUPYTERHUB_SERVICE_PREFIX", "COSMOS_GRADIO_PROXY", "VSCODE_PID", "VSCODE_CWD"):
        monkeypatch.delenv(key, raising=False)
    (tmp_path / "root").mkdir(exist_ok=True)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    kernel: dict[str, int] = {}
    client = NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path / "root")}},
    )

    def remember_kernel(**_: Any) -> None:
        kernel["pid"] = client.km.provisioner.process.pid  # type: ignore[union-attr]

    client.on_notebook_start = remember_kernel
    started = time.time()
    try:
        client.execute()
    finally:
        nbformat.write(nb, tmp_path / name)  # kept for a look when the test fails
    text = _text(nb)
    assert "ERROR" not in text, text[-3000:]
    for expected in EXPECT[name]:
        assert expected in text, f"{expected!r} missing from {name}'s outputs"

    # The kernel is shut down by nbclient: neither it nor any worker it started may remain.
    kpid = kernel["pid"]
    mine = f"--parent {kpid}"

    def leftovers() -> list[psutil.Process]:
        procs = []
        for proc in worker_processes(since=started):
            try:
                if mine in " ".join(proc.cmdline()):
                    procs.append(proc)
            except psutil.Error:
                continue
        return procs

    wait_for(
        lambda: not psutil.pid_exists(kpid) or psutil.Process(kpid).status() == "zombie",
        30,
        "the kernel to exit",
    )
    wait_for(lambda: not leftovers(), 15, f"workers of kernel {kpid} to exit")
