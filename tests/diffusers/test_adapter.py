"""The adapter's model object in this process, as a worker runs it: outputs, seeds, inputs, previews.

Real tiny pipelines (random weights) run on the CPU here; progress, previews and
stop through a real worker are in ``test_app.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_models import video_info

from cosmos_gradio_nb import StopRequested
from cosmos_gradio_nb._models.diffusers.media import write_video
from cosmos_gradio_nb._models.diffusers.preview import LatentPreviewer
from cosmos_gradio_nb._models.diffusers.steps import silent_progress_bar
from cosmos_gradio_nb.diffusers import pipeline_factory
from cosmos_gradio_nb.samples import tiny_diffusers as tiny


# On the CPU even where there is a GPU: these tests are about the adapter, and exact pixels.
@pytest.fixture(scope="module")
def video_model() -> Any:
    return pipeline_factory(build=tiny.cosmos_predict, device="cpu")()


@pytest.fixture(scope="module")
def image_model() -> Any:
    return pipeline_factory(build=tiny.stable_diffusion, device="cpu")()


def _pixels(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_a_video_request_writes_a_playable_mp4_a_poster_and_its_record(
    video_model: Any, tmp_path: Path
) -> None:
    out = video_model.infer({**tiny.VIDEO_DEFAULTS, "seed": 7, "output_dir": str(tmp_path)})
    assert out["videos"] == [str(tmp_path / "video.mp4")]
    assert out["images"] == [str(tmp_path / "poster.png")]
    assert video_info(out["videos"][0]) == (9, 64, 64, 8.0, "h264")
    assert _pixels(out["images"][0]).shape == (64, 64, 3)
    assert out["seed"] == 7 and out["num_inference_steps"] == out["steps_done"] == 6
    assert out["pipeline"] == "Cosmos2_5_PredictBasePipeline" and out["device"] == "cpu"
    assert out["dtype"] == "float32" and out["worker_load_seconds"] > 0
    for key in ("denoise_seconds", "decode_seconds", "write_seconds"):
        assert out[key] > 0, key
    assert "gpu_peak_memory_gib" not in out  # CUDA only


def test_the_seed_decides_the_pixels(image_model: Any, tmp_path: Path) -> None:
    def run(seed: int | None, name: str) -> tuple[np.ndarray, int]:
        params = {**tiny.IMAGE_DEFAULTS, "seed": seed, "output_dir": str(tmp_path / name)}
        out = image_model.infer(params)
        return _pixels(out["images"][0]), out["seed"]

    first, seed = run(11, "a")
    again, _ = run(11, "b")
    other, _ = run(12, "c")
    drawn, drawn_seed = run(None, "d")
    replay, _ = run(drawn_seed, "e")
    assert seed == 11 and np.array_equal(first, again) and not np.array_equal(first, other)
    assert isinstance(drawn_seed, int) and np.array_equal(drawn, replay)


def test_cosmos_text_to_image(tmp_path: Path) -> None:
    model = pipeline_factory(build=tiny.cosmos_text_to_image, device="cpu")()
    out = model.infer({**tiny.IMAGE_DEFAULTS, "seed": 2, "output_dir": str(tmp_path)})
    assert out["pipeline"] == "Cosmos2TextToImagePipeline" and out["videos"] == []
    assert [Path(p).name for p in out["images"]] == ["image.png"]
    assert _pixels(out["images"][0]).shape == (64, 64, 3)
    assert model.previewer is not None and model.previewer.fits == 1  # (B, C, 1, h, w) latents


def test_a_pipeline_without_step_callbacks_still_runs(tmp_path: Path) -> None:
    """DDPMPipeline predates callback_on_step_end: no previews nor stop, its own tqdm bar."""
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    def build() -> DDPMPipeline:
        torch.manual_seed(0)
        unet = UNet2DModel(
            sample_size=16,
            block_out_channels=(16, 32),
            layers_per_block=1,
            norm_num_groups=8,
            down_block_types=("DownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "UpBlock2D"),
        )
        return DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=50))

    model = pipeline_factory(build=build, device="cpu")()
    assert not model.has_callback and model.previewer is None
    out = model.infer({"num_inference_steps": 3, "batch_size": 1, "output_dir": str(tmp_path)})
    assert [Path(p).name for p in out["images"]] == ["image.png"] and out["steps_done"] == 3


def test_a_batch_writes_one_file_each(image_model: Any, tmp_path: Path) -> None:
    out = image_model.infer(
        {**tiny.IMAGE_DEFAULTS, "num_images_per_prompt": 2, "output_dir": str(tmp_path)}
    )
    assert [Path(p).name for p in out["images"]] == ["image_0.png", "image_1.png"]
    assert out["videos"] == []


def test_one_frame_is_an_image_and_a_video_conditions_the_next(
    video_model: Any, tmp_path: Path
) -> None:
    single = video_model.infer(
        {**tiny.VIDEO_DEFAULTS, "num_frames": 1, "output_dir": str(tmp_path / "one")}
    )
    assert single["videos"] == [] and [Path(p).name for p in single["images"]] == ["image.png"]
    clip = write_video(
        [np.full((64, 64, 3), 30 * i, np.uint8) for i in range(6)], tmp_path / "in.mp4", 8
    )
    out = video_model.infer(
        {**tiny.VIDEO_DEFAULTS, "video": str(clip), "output_dir": str(tmp_path / "v2w")}
    )
    assert video_info(out["videos"][0])[0] == 9


def test_a_pipeline_error_is_the_pipelines_own(video_model: Any, tmp_path: Path) -> None:
    clip = write_video([np.zeros((64, 64, 3), np.uint8)] * 6, tmp_path / "in.mp4", 8)
    with pytest.raises(ValueError, match="num_latent_conditional_frames must be 1 or 2"):
        video_model.infer(
            {
                **tiny.VIDEO_DEFAULTS,
                "video": str(clip),
                "num_latent_conditional_frames": 3,
                "output_dir": str(tmp_path),
            }
        )


def test_unknown_keys_are_refused_in_the_worker_too(video_model: Any, tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="did you mean 'num_frames'"):
        video_model.infer({"num_frame": 3, "output_dir": str(tmp_path)})
    assert not issubclass(StopRequested, ValidationError)


def test_the_preview_map_is_learnt_from_outputs() -> None:
    """Least squares on (final latents, decoded picture) recovers a linear latent -> RGB map."""
    gen = torch.Generator().manual_seed(0)
    weights = torch.rand(5, 3, generator=gen) * 0.4  # 4 channels + bias
    latents = torch.rand(1, 4, 2, 12, 16, generator=gen)  # (B, C, T, h, w): a video

    def picture(lat: torch.Tensor, scale: int) -> np.ndarray:
        rgb = torch.einsum("chw,cd->hwd", lat[0, :, 0], weights[:4]) + weights[4]
        big = rgb.repeat_interleave(scale, 0).repeat_interleave(scale, 1)  # a x-scale "VAE"
        return (big.clamp(0, 1) * 255).round().to(torch.uint8).numpy()

    previewer = LatentPreviewer(latent_channels=4, scale_factor=4)
    false_colour = previewer.image(latents)  # before any fit: the layout, upscaled x4
    assert false_colour is not None and false_colour.shape == (48, 64, 3)
    assert previewer.learn(latents, picture(latents, 4)) and previewer.fits == 1
    assert previewer._weights is not None
    assert torch.allclose(previewer._weights, weights, atol=0.01)  # the map itself
    shown = previewer.image(torch.rand(1, 4, 1, 12, 16, generator=gen))
    assert shown is not None and shown.dtype == np.uint8 and shown.shape == (48, 64, 3)

    exact = LatentPreviewer(latent_channels=4, scale_factor=1)  # no upscaling to blur it
    exact.learn(latents, picture(latents, 1))
    fresh = torch.rand(1, 4, 1, 12, 16, generator=gen)
    shown = exact.image(fresh)
    assert shown is not None
    assert np.abs(shown.astype(int) - picture(fresh, 1).astype(int)).max() <= 2
    # (B, T, C, h, w) is found by the channel count; packed latents have no layout to show
    assert previewer.plane(latents.transpose(1, 2)) is not None
    assert previewer.image(torch.rand(1, 64, 16)) is None
    assert LatentPreviewer(4, 8, max_side=64).image(torch.rand(1, 4, 32, 16)).shape == (64, 32, 3)


def test_the_pipelines_own_bar_is_silenced_for_the_call(image_model: Any) -> None:
    pipe = image_model.pipe
    with silent_progress_bar(pipe):
        bar = pipe.progress_bar(total=3)
        with bar:
            bar.update()
        assert list(pipe.progress_bar(range(3))) == [0, 1, 2]
        assert "tqdm" not in type(bar).__mro__[0].__module__
    assert "progress_bar" not in vars(pipe)
    assert type(pipe.progress_bar(total=1)).__module__.startswith("tqdm")
