"""The model object a diffusers worker serves: ``infer(args)`` runs the pipeline once.

One request: validate it against the pipeline's own signature (the caller did
already; here it gives typed values), turn paths into images and videos and
``seed`` into a ``torch.Generator``, run the pipeline with the step callback
(progress, previews, cooperative stop), write PNGs, an H.264 mp4 per video and a
poster frame, and return what status.json should record.
"""

from __future__ import annotations

import inspect
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from cosmos_gradio_nb import StopRequested

from .media import as_frames, as_images, load_asset, write_png, write_video
from .options import FactoryOptions
from .params import DEFAULT_FPS, IN_WORKER, params_model
from .preview import LatentPreviewer
from .signature import call_args
from .steps import StepCallback, silent_progress_bar

__all__ = ["DiffusersModel"]

_GIB = 2**30


class DiffusersModel:
    """A loaded diffusers pipeline behind the model contract (``infer(args) -> dict``).

    Parameters
    ----------
    pipe:
        The pipeline, already on its device.
    device:
        Where it runs (``cuda:0``, ``cpu``).
    load_seconds:
        How long the worker took to load it (paid once per worker; every request's
        status.json repeats it as ``worker_load_seconds``).
    """

    def __init__(
        self,
        pipe: Any,
        *,
        device: str = "cpu",
        load_seconds: float = 0.0,
        options: FactoryOptions | None = None,
    ) -> None:
        self.pipe = pipe
        self.device = device
        self.load_seconds = load_seconds
        self.options = options or FactoryOptions()
        cls = type(pipe)
        self.params = params_model(cls)
        # The call arguments a request sets (not seed and our fps; not the few the
        # validator cannot hold, which keep the pipeline's defaults).
        self.call_names = [a.name for a in call_args(cls) if a.name in self.params.model_fields]
        accepted = inspect.signature(cls.__call__).parameters
        self.has_callback = "callback_on_step_end" in accepted
        self.has_output_type = "output_type" in accepted
        tensor_inputs = getattr(pipe, "_callback_tensor_inputs", None) or []
        self.latents_to_callback = self.has_callback and "latents" in tensor_inputs
        self.previewer = (
            LatentPreviewer(_latent_channels(pipe), _scale_factor(pipe))
            if self.options.previews and self.latents_to_callback
            else None
        )
        self.requests = 0

    def infer(self, args: dict[str, Any]) -> dict[str, Any]:
        """Run one request; see the module docstring. Returns paths, seed, steps and timings."""
        self.requests += 1
        out_dir = Path(args.get("output_dir") or tempfile.mkdtemp(prefix="cosmos_diffusers_"))
        out_dir.mkdir(parents=True, exist_ok=True)
        request = {k: v for k, v in args.items() if k != "output_dir"}
        params: Any = self.params.model_validate(request, context={IN_WORKER: True})
        seed = params.seed if params.seed is not None else secrets.randbits(63)
        kwargs = self._call_kwargs(params, seed)
        steps = int(
            kwargs.get("num_inference_steps") or getattr(params, "num_inference_steps", 0) or 1
        )
        callback = StepCallback(steps, self.previewer)
        cuda = self.device.startswith("cuda") and torch.cuda.is_available()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        output = self._run(kwargs, callback)
        returned_at = time.perf_counter()
        written, pictures = self._write(output, out_dir, self._fps(params))
        write_seconds = time.perf_counter() - returned_at
        record: dict[str, Any] = {
            **written,
            "seed": seed,
            "num_inference_steps": steps,
            "steps_done": callback.done if self.has_callback else steps,  # no callback: all ran
            "pipeline": type(self.pipe).__name__,
            "diffusers_version": _diffusers_version(),
            "device": self.device,
            "dtype": str(getattr(self.pipe, "dtype", "")).removeprefix("torch."),
            "worker_load_seconds": round(self.load_seconds, 3),
            "worker_request_number": self.requests,
            **_timings(started, callback, returned_at),
            "write_seconds": round(write_seconds, 4),
            "previews": callback.previews,
            "preview_seconds": round(callback.preview_seconds, 4),
        }
        if cuda:
            record["gpu_peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / _GIB, 3)
        if callback.stopped_at is not None:
            print(f"diffusers: stopped request: {record}", flush=True)
            raise StopRequested(
                f"stopped at step {callback.stopped_at}/{callback.total}; the partial output "
                f"decoded from there is kept (seed {seed})"
            )
        if self.previewer is not None and callback.latents is not None and pictures:
            try:
                self.previewer.learn(callback.latents, pictures[0])
            except Exception as exc:  # previews are a nicety: never fail a request for them
                print(f"diffusers: preview colours not learnt: {exc}", flush=True)
        return record

    def _call_kwargs(self, params: Any, seed: int) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        assets = type(params).assets
        for name in self.call_names:
            value = getattr(params, name)
            if name in assets:
                if value is None:
                    continue
                value = load_asset(value, assets[name])
            kwargs[name] = value
        kwargs["generator"] = torch.Generator("cpu").manual_seed(seed)
        if self.has_output_type:
            kwargs["output_type"] = "np"
        return kwargs

    def _run(self, kwargs: dict[str, Any], callback: StepCallback) -> Any:
        if not self.has_callback:  # an old-style pipeline: its own tqdm bar is the progress
            return self.pipe(**kwargs)
        kwargs["callback_on_step_end"] = callback
        if self.latents_to_callback:
            kwargs["callback_on_step_end_tensor_inputs"] = ["latents"]
        with silent_progress_bar(self.pipe):
            return self.pipe(**kwargs)

    def _fps(self, params: Any) -> float:
        for name in ("fps", "frame_rate"):
            value = getattr(params, name, None)
            if isinstance(value, (int, float)) and value > 0:
                return float(value)
        return float(DEFAULT_FPS)

    def _write(
        self, output: Any, out_dir: Path, fps: float
    ) -> tuple[dict[str, list[str]], list[Any]]:
        """PNGs, mp4s and posters in ``out_dir``: ``{"videos": [...], "images": [...]}``, and
        the first picture of each output (to learn preview colours from)."""
        videos: list[str] = []
        images: list[str] = []
        pictures_out: list[Any] = []
        frames = getattr(output, "frames", None)
        if frames is not None:
            batch = as_frames(frames)
            for i, clip in enumerate(batch):
                tag = "" if len(batch) == 1 else f"_{i}"
                pictures_out.append(clip[0])
                if len(clip) == 1:  # num_frames=1: an image, not a one-frame video
                    images.append(str(write_png(clip[0], out_dir / f"image{tag}.png")))
                    continue
                videos.append(str(write_video(clip, out_dir / f"video{tag}.mp4", fps)))
                images.append(str(write_png(clip[0], out_dir / f"poster{tag}.png")))
        pictures = getattr(output, "images", None)
        if pictures is not None:
            batch_images = as_images(pictures)
            for i, picture in enumerate(batch_images):
                tag = "" if len(batch_images) == 1 else f"_{i}"
                pictures_out.append(picture)
                images.append(str(write_png(picture, out_dir / f"image{tag}.png")))
        if frames is None and pictures is None:
            raise TypeError(
                f"{type(self.pipe).__name__} returned {type(output).__name__} with neither "
                "'frames' nor 'images'; the diffusers adapter writes images and videos only"
            )
        return {"videos": videos, "images": images}, pictures_out

    def close(self) -> None:
        """Drop the pipeline and give its GPU memory back."""
        self.pipe = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _timings(started: float, callback: StepCallback, returned_at: float) -> dict[str, float]:
    """Denoising (prompt encoding and every step) and decoding (the VAE, post-processing)."""
    last = callback.last_step_at or returned_at
    return {
        "denoise_seconds": round(last - started, 4),
        "decode_seconds": round(returned_at - last, 4),
    }


def _diffusers_version() -> str:
    import diffusers

    return str(getattr(diffusers, "__version__", "?"))


def _latent_channels(pipe: Any) -> int | None:
    config = getattr(getattr(pipe, "vae", None), "config", None)
    for key in ("latent_channels", "z_dim"):
        value = getattr(config, key, None) if config is not None else None
        if isinstance(value, int):
            return value
    return None


def _scale_factor(pipe: Any) -> int:
    for key in ("vae_scale_factor_spatial", "vae_scale_factor"):
        value = getattr(pipe, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return 8
