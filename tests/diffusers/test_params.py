"""The validator derived from a pipeline's ``__call__``: fields, defaults, bounds, assets, errors.

Runs in this process on real diffusers pipeline classes (only their signatures and
docstrings are read; nothing is built).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import diffusers
import numpy as np
import pytest
from diffusers import (
    Cosmos2_5_PredictBasePipeline,
    Cosmos2_5_TransferPipeline,
    Cosmos2TextToImagePipeline,
    Cosmos2VideoToWorldPipeline,
    FluxPipeline,
    StableDiffusionPipeline,
    WanImageToVideoPipeline,
)

from cosmos_gradio_nb import ValidationError
from cosmos_gradio_nb._core.validation import app_asset_dirs, make_validator
from cosmos_gradio_nb.diffusers import pipeline_params

TENSORS_AND_SWITCHES = (
    "latents",
    "prompt_embeds",
    "negative_prompt_embeds",
    "generator",
    "output_type",
    "return_dict",
    "callback_on_step_end",
    "callback_on_step_end_tensor_inputs",
)


def _validate(model: Any, params: dict[str, Any], dirs: list[Path] | None = None) -> Any:
    with app_asset_dirs(dirs or []):
        return make_validator(model)(params)


def test_cosmos_predict_fields_defaults_and_help() -> None:
    model = pipeline_params(Cosmos2_5_PredictBasePipeline)
    fields = model.model_fields
    for name in ("prompt", "negative_prompt", "height", "width", "num_frames", "image", "video"):
        assert name in fields, name
    assert {"num_inference_steps", "guidance_scale", "seed", "fps"} <= set(fields)
    assert not set(TENSORS_AND_SWITCHES) & set(fields)
    request = model().model_dump(mode="json")
    # The pipeline's own defaults, from its signature.
    assert request["height"] == 704 and request["width"] == 1280 and request["num_frames"] == 93
    assert request["num_inference_steps"] == 36 and request["guidance_scale"] == 7.0
    assert request["seed"] is None and request["prompt"] == "" and request["image"] is None
    json.dumps(request, allow_nan=False)
    schema = model.model_json_schema()
    assert schema["title"] == "Cosmos2_5_PredictBasePipeline"
    steps = schema["properties"]["num_inference_steps"]
    assert steps["minimum"] == 1 and "denoising steps" in steps["description"]
    assert schema["properties"]["height"]["multipleOf"] == 16  # Cosmos checks % 16
    assert pipeline_params(Cosmos2_5_PredictBasePipeline) is model  # cached per class


@pytest.mark.parametrize(
    ("cls", "multiple", "assets"),
    [
        (Cosmos2TextToImagePipeline, 16, {}),
        (Cosmos2VideoToWorldPipeline, 16, {"image": "image", "video": "video"}),
        (Cosmos2_5_TransferPipeline, 16, {"controls": "media"}),
        (WanImageToVideoPipeline, 16, {"image": "image"}),
        (StableDiffusionPipeline, 8, {"ip_adapter_image": "image"}),
        (FluxPipeline, 16, {"ip_adapter_image": "image", "negative_ip_adapter_image": "image"}),
    ],
)
def test_other_pipelines(cls: type, multiple: int, assets: dict[str, str]) -> None:
    model = pipeline_params(cls)
    assert model.size_multiple == multiple
    assert {k: v.value for k, v in model.assets.items()} == assets
    assert "seed" in model.model_fields
    assert ("fps" in model.model_fields) == ("num_frames" in model.model_fields)


def test_every_pipeline_class_gives_a_validator() -> None:
    """No pipeline class of diffusers makes pipeline_params fail or keep a tensor argument."""
    count = 0
    for name in dir(diffusers):
        if not name.endswith("Pipeline"):
            continue
        try:
            cls = getattr(diffusers, name)
            if type(cls).__name__ == "DummyObject":
                continue  # its backend is not installed here
        except ImportError:
            continue
        model = pipeline_params(cls)
        assert not set(TENSORS_AND_SWITCHES) & set(model.model_fields), name
        model.model_json_schema()
        count += 1
    assert count > 200


def test_bad_values_are_refused_all_at_once_naming_each_key() -> None:
    model = pipeline_params(Cosmos2_5_PredictBasePipeline)
    with pytest.raises(ValidationError) as err:
        _validate(
            model,
            {
                "num_inference_step": 3,
                "height": 100,
                "num_inference_steps": 0,
                "seed": -1,
                "guidance_scale": float("nan"),
            },
        )
    text = str(err.value)
    lines = text.splitlines()
    assert lines[0].startswith("num_inference_step: unknown parameter of Cosmos2_5")
    assert "did you mean 'num_inference_steps'?" in lines[0]
    assert (
        "height: height must be a multiple of 16 for this pipeline (got 100; try 96 or 112)" in text
    )
    assert "num_inference_steps: Input should be greater than or equal to 1" in text
    assert "seed: Input should be greater than or equal to 0" in text
    assert "guidance_scale: Input should be a finite number" in text
    assert err.value.key == "num_inference_step"


def test_defaults_can_be_replaced() -> None:
    model = pipeline_params(
        Cosmos2_5_PredictBasePipeline, defaults={"height": 64, "width": 96, "fps": 8}
    )
    request = model().model_dump(mode="json")
    assert (request["height"], request["width"], request["fps"]) == (64, 96, 8)
    with pytest.raises(ValueError, match="has no argument 'heigth'"):
        pipeline_params(Cosmos2_5_PredictBasePipeline, defaults={"heigth": 64})


def test_a_placeholder_class_says_what_is_missing() -> None:
    from diffusers.utils import DummyObject

    class MissingPipeline(metaclass=DummyObject):
        _backends = ["librosa"]

    with pytest.raises(ImportError, match=r"placeholder.*without librosa"):
        pipeline_params(MissingPipeline)


def _png(path: Path) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(path)
    return path


def _mp4(path: Path, frames: int = 6) -> Path:
    from cosmos_gradio_nb._models.diffusers.media import write_video

    path.parent.mkdir(parents=True, exist_ok=True)
    pictures = [np.full((32, 32, 3), 20 * i, np.uint8) for i in range(frames)]
    return write_video(pictures, path, 8)


def test_images_and_videos_are_checked_paths(tmp_path: Path) -> None:
    model = pipeline_params(Cosmos2_5_PredictBasePipeline)
    uploads = tmp_path / "uploads"
    image, video = _png(uploads / "still.png"), _mp4(uploads / "clip.mp4")
    ok = _validate(model, {"image": str(image), "video": str(video)}, [uploads])
    assert ok["image"] == str(image.resolve()) and ok["video"] == str(video.resolve())
    assert _validate(model, {"image": ""}, [uploads])["image"] is None  # an empty box: none

    outside = _png(tmp_path / "elsewhere" / "x.png")
    with pytest.raises(ValidationError, match=r"^image: asset path .* is outside the allowed"):
        _validate(model, {"image": str(outside)}, [uploads])
    with pytest.raises(ValidationError, match="image must be an image file"):
        _validate(model, {"image": str(video)}, [uploads])
    with pytest.raises(ValidationError, match="video must be a video file"):
        _validate(model, {"video": str(image)}, [uploads])
    fake = uploads / "fake.png"
    fake.write_text("not a picture")
    with pytest.raises(ValidationError, match="not an image Pillow can open"):
        _validate(model, {"image": str(fake)}, [uploads])
    broken = uploads / "broken.mp4"
    broken.write_bytes(b"\x00" * 64)
    with pytest.raises(ValidationError, match="not a video PyAV can open"):
        _validate(model, {"video": str(broken)}, [uploads])
    with pytest.raises(ValidationError, match="does not exist"):
        _validate(model, {"video": str(uploads / "gone.mp4")}, [uploads])


def test_transfer_controls_take_an_image_or_a_video(tmp_path: Path) -> None:
    model = pipeline_params(Cosmos2_5_TransferPipeline)
    uploads = tmp_path / "uploads"
    for path in (_png(uploads / "edges.png"), _mp4(uploads / "edges.mp4")):
        assert _validate(model, {"controls": str(path)}, [uploads])["controls"] == str(path)
    with pytest.raises(ValidationError, match="controls: Field required"):
        _validate(model, {}, [uploads])
