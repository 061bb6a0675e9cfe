"""pipeline_factory: checked at once in the caller, picklable, and loading for real in a worker.

The loading tests call the factory in this process, as a worker would; the
``from_pretrained`` one saves a tiny pipeline with ``save_pretrained`` and loads it
back from ``CHECKPOINT_DIR`` (no hub, no download).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cloudpickle
import pytest
import torch
from diffusers import StableDiffusionPipeline

from cosmos_gradio_nb._app.compose import factory_spec
from cosmos_gradio_nb._models.diffusers.factory import resolve_source
from cosmos_gradio_nb.diffusers import pipeline_factory
from cosmos_gradio_nb.samples import tiny_diffusers as tiny


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({}, TypeError, "needs a model .* or build=, not neither"),
        ({"model": "a/b", "build": tiny.stable_diffusion}, TypeError, "not both"),
        ({"build": "not callable"}, TypeError, "build must be a function"),
        ({"model": "a/b", "torch_dtype": "bfloat61"}, ValueError, "not a dtype name; use one of"),
        ({"model": "a/b", "cpu_offload": "all"}, ValueError, "use 'model', 'sequential' or None"),
        (
            {"build": tiny.stable_diffusion, "variant": "fp16"},
            TypeError,
            r"\(variant\) need a model",
        ),
        ({"model": 42}, TypeError, "model must be a hub id or a folder"),
    ],
)
def test_mistakes_are_refused_at_once(kwargs: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        pipeline_factory(**kwargs)


def test_the_factory_pickles_and_names_itself() -> None:
    factory = pipeline_factory(
        "nvidia/Cosmos-Predict2-2B-Video2World", torch_dtype="bf16", variant="bf16"
    )
    spec, label = factory_spec(factory, None, None)
    assert label == (
        "cosmos_gradio_nb.diffusers:pipeline_factory('nvidia/Cosmos-Predict2-2B-Video2World')"
    )
    copy = cloudpickle.loads(spec["pickled"])
    assert copy.model == factory.model and copy.torch_dtype == "bf16"
    assert copy.from_pretrained_kwargs == {"variant": "bf16"}
    built = pipeline_factory(build=tiny.cosmos_predict)
    assert "build=cosmos_gradio_nb.samples.tiny_diffusers.cosmos_predict" in repr(built)


def test_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checkpoints = tmp_path / "checkpoints"
    (checkpoints / "org" / "model").mkdir(parents=True)
    monkeypatch.setenv("CHECKPOINT_DIR", str(checkpoints))
    monkeypatch.chdir(tmp_path)
    assert resolve_source("org/model") == str(checkpoints / "org" / "model")  # under CHECKPOINT_DIR
    assert resolve_source("nvidia/other") == "nvidia/other"  # a hub id
    assert resolve_source(str(checkpoints)) == str(checkpoints)  # any folder
    with pytest.raises(FileNotFoundError, match="neither a folder under CHECKPOINT_DIR"):
        resolve_source("./missing/model")
    with pytest.raises(FileNotFoundError):
        resolve_source("a/b/c")


def test_from_pretrained_of_a_checkpoint_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoints = tmp_path / "checkpoints"
    tiny.stable_diffusion().save_pretrained(checkpoints / "tiny-sd")
    monkeypatch.setenv("CHECKPOINT_DIR", str(checkpoints))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = pipeline_factory(
        "tiny-sd", pipeline_class=StableDiffusionPipeline, torch_dtype="bfloat16"
    )()
    assert type(model.pipe).__name__ == "StableDiffusionPipeline"
    expected = "cuda:0" if torch.cuda.is_available() else "cpu"  # the rank's GPU, else the CPU
    assert model.pipe.unet.dtype == torch.bfloat16 and model.device == expected
    assert model.load_seconds > 0
    # Without a class, DiffusionPipeline reads model_index.json and picks it.
    auto = pipeline_factory("tiny-sd")()
    assert type(auto.pipe) is StableDiffusionPipeline
    out = auto.infer({**tiny.IMAGE_DEFAULTS, "seed": 5, "output_dir": str(tmp_path / "out")})
    assert [Path(p).name for p in out["images"]] == ["image.png"]


def test_build_options_offload_and_compile(capfd: pytest.CaptureFixture[str]) -> None:
    model = pipeline_factory(
        build=tiny.stable_diffusion,
        device="cpu",
        cpu_offload="model",
        torch_compile=True,
        previews=False,
    )()
    assert "cpu_offload='model' ignored: the pipeline runs on cpu" in capfd.readouterr().out
    assert model.device == "cpu" and model.pipe.device.type == "cpu"
    # compiled in place: the pipeline keeps its UNet object, whose calls now go through dynamo
    assert model.pipe.unet._compiled_call_impl is not None
    assert model.previewer is None


def test_build_must_return_a_pipeline() -> None:
    with pytest.raises(TypeError, match="build\\(\\) returned dict, not a diffusers pipeline"):
        pipeline_factory(build=dict)()


def test_one_gpu_per_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """In a 2-rank group each rank would run the whole pipeline: refused, saying what to use."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="has 2 ranks: use gpus_per_model=1"):
        pipeline_factory(build=tiny.stable_diffusion)()
