"""Diffusers pipelines through NotebookApp: real worker processes, progress, previews, stop.

Two apps for the folder (``conftest.py``): the tiny Cosmos 2.5 pipeline (video) and
the tiny Stable Diffusion one (image) whose VAE decode runs its own tqdm bar.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import diffusers
import pytest
from PIL import Image
from tiny_models import TILES, video_info, wait_for

from cosmos_gradio_nb import InferenceError, ValidationError
from cosmos_gradio_nb.samples import tiny_diffusers as tiny


def _follow(fut: Any) -> list[tuple[float | None, str]]:
    seen: list[tuple[float | None, str]] = []
    fut.add_progress_callback(lambda f: seen.append((f.progress, f.progress_message)))
    return seen


def _pid(app: Any) -> int:
    [worker] = app.workers()
    return int(worker.pid)


def test_a_video_request_end_to_end(video_app: Any) -> None:
    assert video_app.default_request == {**video_app.validator().model_dump(mode="json")}
    assert video_app.default_request["height"] == tiny.VIDEO_DEFAULTS["height"]
    fut = video_app.infer({"seed": 3})
    seen = _follow(fut)
    result = fut.result(timeout=120)
    status = json.loads((result.output_dir / "status.json").read_text())
    assert status["state"] == "succeeded" and status["params"]["seed"] == 3
    assert status["seed"] == 3 and status["steps_done"] == status["num_inference_steps"] == 6
    assert status["pipeline"] == "Cosmos2_5_PredictBasePipeline"
    # The worker imported the diffusers package, not our cosmos_gradio_nb/diffusers.py
    # (workers once had the package folder itself on their PYTHONPATH).
    assert status["diffusers_version"] == diffusers.__version__
    assert status["worker_load_seconds"] > 0 and status["worker_request_number"] >= 1
    assert status["denoise_seconds"] > 0 and status["decode_seconds"] > 0
    [video] = result.videos
    assert video.name == "video.mp4" and video_info(video) == (9, 64, 64, 8.0, "h264")
    assert [p.name for p in result.images] == ["poster.png"]
    # progress: the step count only, in order, ending on the last step
    assert fut.progress == 1.0 and fut.progress_message == "step 6/6 · decoding"
    messages = [m for _, m in seen]
    assert messages and all(m.startswith("step ") for m in messages), messages
    fractions = [f for f, _ in seen if f is not None]
    assert fractions == sorted(fractions)


def test_a_drawn_seed_is_recorded(video_app: Any) -> None:
    result = video_app.infer({"num_inference_steps": 2}).result(timeout=120)
    assert result.status["params"]["seed"] is None
    assert isinstance(result.status["seed"], int) and result.status["steps_done"] == 2


def test_refusals_and_pipeline_errors(video_app: Any, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="did you mean 'num_frames'"):
        video_app.submit({"num_frame": 5})
    pid = _pid(video_app)
    uploads = Path(video_app.env.uploads_dir)
    uploads.mkdir(parents=True, exist_ok=True)
    import numpy as np

    from cosmos_gradio_nb._models.diffusers.media import write_video

    clip = write_video([np.zeros((64, 64, 3), np.uint8)] * 6, uploads / "clip.mp4", 8)
    fut = video_app.infer({"video": str(clip), "num_latent_conditional_frames": 3})
    with pytest.raises(InferenceError, match="num_latent_conditional_frames must be 1 or 2"):
        fut.result(timeout=120)
    # The worker stays loaded: the next request runs on the same process.
    assert video_app.infer({"num_inference_steps": 1}).result(timeout=120).status["steps_done"]
    assert _pid(video_app) == pid


def test_an_inner_tqdm_bar_does_not_overwrite_the_step_progress(image_app: Any) -> None:
    """The VAE's own bar ("decoding tiles") runs after the last step: it must not report."""
    fut = image_app.infer({"seed": 1})
    seen = _follow(fut)
    result = fut.result(timeout=120)
    assert [p.name for p in result.images] == ["image.png"]
    steps = tiny.IMAGE_DEFAULTS["num_inference_steps"]
    assert fut.progress == 1.0 and fut.progress_message == f"step {steps}/{steps} · decoding"
    assert not [m for _, m in seen if "tiles" in m], seen
    assert f"{TILES}/{TILES}" not in fut.progress_message


def test_previews_while_denoising(video_app: Any) -> None:
    """A preview.jpg (at most 512 px) appears while a request runs; status.json counts them."""
    fut = video_app.infer({"num_inference_steps": 12})
    path = wait_for(lambda: fut.preview, 120, "the first preview")
    result = fut.result(timeout=120)
    assert Path(path) == result.output_dir / "preview.jpg"
    with Image.open(path) as img:
        assert img.format == "JPEG" and max(img.size) <= 512
    assert result.status["previews"] >= 1 and result.status["preview_seconds"] > 0


def test_terminate_stops_cooperatively_and_keeps_the_worker(video_app: Any) -> None:
    """fut.terminate() becomes diffusers' interrupt: cancelled fast, partial files, same pid."""
    pid = _pid(video_app)
    fut = video_app.infer({"num_inference_steps": 400})
    wait_for(lambda: (fut.progress or 0) > 0, 120, "the first steps")
    asked = time.monotonic()
    assert fut.terminate()
    wait_for(fut.done, 30, "the stopped request to end")
    took = time.monotonic() - asked
    assert fut.cancelled() and took < 10, took
    status = json.loads((fut.output_dir / "status.json").read_text())
    assert status["state"] == "cancelled"
    partial = [Path(p).name for p in status["files"]["partial"]]
    assert "video.mp4" in partial and "videos" not in status
    assert _pid(video_app) == pid
    assert video_app.infer({"num_inference_steps": 1}).result(timeout=120).status["steps_done"]
    assert _pid(video_app) == pid
