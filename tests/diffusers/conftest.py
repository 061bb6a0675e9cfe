"""Fixtures of the diffusers adapter tests: one app per pipeline for the whole folder.

The apps run real diffusers pipeline classes with tiny random weights built in
code (``cosmos_gradio_nb.samples.tiny_diffusers``); nothing is downloaded.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
for folder in (HERE, HERE.parent / "ui"):  # tiny_models for the workers; the page helpers
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


# One torch thread per process: the pytest process and its workers share two cores, and
# spinning OpenMP threads of several processes on them made a 0.3 s run take 7-14 s here.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _app(root: Path, name: str, **kwargs: Any) -> Any:
    from cosmos_gradio_nb import NotebookApp

    return NotebookApp(
        name=f"diffusers-{name}-{root.name}",
        worker_env=ONE_THREAD,
        output_dir=root / "outputs",
        uploads_dir=root / "uploads",
        log_file=root / "outputs" / "app.log",
        **kwargs,
    )


@pytest.fixture(scope="module")
def video_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A NotebookApp serving the tiny Cosmos 2.5 pipeline (video), shared by a module.

    (Not by the folder: without an ``__init__.py`` a "package" fixture lives as long as
    the session, and its worker outlived the folder into tests that count workers.)"""
    from diffusers import Cosmos2_5_PredictBasePipeline

    from cosmos_gradio_nb.diffusers import pipeline_factory, pipeline_params
    from cosmos_gradio_nb.samples import tiny_diffusers as tiny

    root = tmp_path_factory.mktemp("video")
    app = _app(
        root,
        "video",
        validator=pipeline_params(Cosmos2_5_PredictBasePipeline, defaults=tiny.VIDEO_DEFAULTS),
        factory=pipeline_factory(build=tiny.cosmos_predict),
    )
    try:
        app.wait_ready(timeout=180)
        yield app
    finally:
        app.close()


@pytest.fixture(scope="module")
def image_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Stable Diffusion (image) whose VAE decode runs its own tqdm bar."""
    from diffusers import StableDiffusionPipeline

    from cosmos_gradio_nb.diffusers import pipeline_factory, pipeline_params
    from cosmos_gradio_nb.samples import tiny_diffusers as tiny

    root = tmp_path_factory.mktemp("image")
    from tiny_models import sd_with_tiled_vae

    app = _app(
        root,
        "image",
        validator=pipeline_params(StableDiffusionPipeline, defaults=tiny.IMAGE_DEFAULTS),
        factory=pipeline_factory(build=sd_with_tiled_vae),
    )
    try:
        app.wait_ready(timeout=180)
        yield app
    finally:
        app.close()
