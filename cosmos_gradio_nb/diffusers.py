"""Serve any diffusers pipeline (Cosmos, Wan, LTX, CogVideoX, Flux, Stable Diffusion...) in one call.

::

    from diffusers import Cosmos2VideoToWorldPipeline
    from cosmos_gradio_nb import NotebookApp
    from cosmos_gradio_nb.diffusers import pipeline_factory, pipeline_params

    app = NotebookApp(
        pipeline_params(Cosmos2VideoToWorldPipeline),
        factory=pipeline_factory(
            "nvidia/Cosmos-Predict2-2B-Video2World",
            pipeline_class=Cosmos2VideoToWorldPipeline,
            torch_dtype="bfloat16",
        ),
        num_gpus=8,
        gpus_per_model=1,
    )

:func:`pipeline_params` is the validator (a pydantic model of the pipeline's
JSON-able ``__call__`` arguments, plus ``seed``); :func:`pipeline_factory` loads the
pipeline in every worker and serves it: progress "step 12/35" from
``callback_on_step_end``, live previews from the latents, ``fut.terminate()`` as
diffusers' interrupt (the worker keeps the model loaded), PNGs and H.264 mp4s with a
poster frame, and the seed, steps and timings in status.json.

Importing this module imports neither torch nor diffusers: the validator reads the
class you pass, and the factory loads everything in the workers
(``pip install "cosmos_gradio_nb[diffusers]"``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from ._models.diffusers.factory import PipelineFactory
from ._models.diffusers.options import FactoryOptions
from ._models.diffusers.params import PipelineParams, params_model

__all__ = ["PipelineParams", "pipeline_factory", "pipeline_params"]


def pipeline_factory(
    model: str | None = None,
    *,
    build: Callable[[], Any] | None = None,
    pipeline_class: type | None = None,
    torch_dtype: Any = None,
    device: str | None = None,
    cpu_offload: Literal["model", "sequential"] | None = None,
    torch_compile: bool = False,
    previews: bool = True,
    **from_pretrained_kwargs: Any,
) -> Callable[[], Any]:
    """A factory for ``NotebookApp(factory=...)`` that serves a diffusers pipeline.

    Parameters
    ----------
    model:
        A hub id (``"nvidia/Cosmos-Predict2-2B-Video2World"``) or a folder saved with
        ``save_pretrained``; a relative name is looked up under ``CHECKPOINT_DIR``
        first. Give this or ``build``.
    build:
        Instead: a function returning a ready pipeline (your own loading code). It is
        shipped to the workers like any factory, so it may be defined in a notebook.
    pipeline_class:
        The class whose ``from_pretrained`` loads ``model`` (default:
        ``diffusers.DiffusionPipeline``, which reads ``model_index.json``).
    torch_dtype:
        ``"bfloat16"``, ``"float16"``, ``"float32"`` (or ``bf16``/``fp16``/``fp32``, or a
        torch dtype, or a dict per component for ``from_pretrained``).
    device:
        Where to run (default ``cuda:0``, the rank's own GPU, when CUDA is available,
        else ``cpu``).
    cpu_offload:
        ``"model"`` (``enable_model_cpu_offload``) or ``"sequential"``
        (``enable_sequential_cpu_offload``) to fit a model larger than the GPU; needs
        ``accelerate``. Ignored, with a log line, without CUDA.
    torch_compile:
        Compile the transformer or UNet with ``torch.compile`` (the first request pays
        for the compilation).
    previews:
        Send a preview image (from the latents) about once a second while denoising.
    **from_pretrained_kwargs:
        Passed to ``from_pretrained`` (``variant="bf16"``, ``revision=...``).

    Returns
    -------
    A picklable callable: called once in each worker, it loads the pipeline, moves it
    to the device and returns the model object the workers serve.

    Raises
    ------
    TypeError, ValueError
        At once, in this process: neither or both of ``model`` and ``build``, an
        unknown ``torch_dtype`` name, an unknown ``cpu_offload`` mode.
    """
    options = FactoryOptions(
        device=device, cpu_offload=cpu_offload, torch_compile=torch_compile, previews=previews
    )
    return PipelineFactory(
        model, build, pipeline_class, torch_dtype, options, from_pretrained_kwargs
    )


_cache: dict[type, type[PipelineParams]] = {}


def pipeline_params(
    pipeline_class: type, *, defaults: Mapping[str, Any] | None = None
) -> type[PipelineParams]:
    """The request validator of ``pipeline_class``: a pydantic model of its call arguments.

    Every JSON-able argument of ``pipeline_class.__call__`` (prompt, negative_prompt,
    num_inference_steps, guidance_scale, height, width, num_frames, fps...) with the
    pipeline's default and documented bounds (sizes a multiple of what the pipeline
    checks, steps from 1...), its docstring as the description (the page's help);
    images and videos as paths (uploads), checked with ``check_asset_path`` and
    opened once; ``seed`` (null: a fresh one, recorded in status.json); for a video
    pipeline without an ``fps`` argument, ``fps`` of the mp4. Unknown keys are
    refused by name ("did you mean 'num_inference_steps'?").

    Parameters
    ----------
    pipeline_class:
        A diffusers pipeline class (``Cosmos2_5_PredictBasePipeline``...).
    defaults:
        Replace some defaults (``{"height": 480, "num_frames": 61}``): the page's
        editor starts from them.
    """
    if not isinstance(pipeline_class, type):
        raise TypeError(f"pipeline_params takes a pipeline class, got {pipeline_class!r}")
    if type(pipeline_class).__name__ == "DummyObject":  # diffusers' stand-in for a missing backend
        missing = ", ".join(getattr(pipeline_class, "_backends", ())) or "a dependency"
        raise ImportError(
            f"{pipeline_class.__name__} is a placeholder: diffusers could not import it "
            f"without {missing} (pip install {missing})"
        )
    if defaults:
        return params_model(pipeline_class, defaults)
    if pipeline_class not in _cache:
        _cache[pipeline_class] = params_model(pipeline_class)
    return _cache[pipeline_class]
