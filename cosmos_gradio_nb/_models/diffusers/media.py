"""Files in and out of a diffusers pipeline: conditioning images and videos, PNGs and H.264 mp4s.

Inputs arrive as paths (uploads, checked by the validator) and become what
pipelines take: a ``PIL.Image`` for an image, a list of ``PIL.Image`` frames for
a video (decoded with PyAV). Outputs, whatever ``output_type`` gave (numpy floats
in [0, 1], PIL images, nested lists), become ``H x W x 3`` uint8 arrays, written as
PNG, and videos as browser-playable H.264 mp4 (yuv420p, ``+faststart``) with PyAV,
as the sample model does: no system ffmpeg.
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..._core.filetypes import FileKind, kind_of
from .signature import AssetKind

__all__ = ["MAX_INPUT_FRAMES", "as_frames", "load_asset", "write_png", "write_video"]

MAX_INPUT_FRAMES = 2000  # a conditioning video longer than this is refused, not half-read


def load_asset(path: str, kind: AssetKind) -> Any:
    """An image file as an RGB ``PIL.Image``; a video file as a list of them."""
    if kind is AssetKind.IMAGE or (kind is AssetKind.MEDIA and kind_of(path) is FileKind.IMAGE):
        from PIL import Image, ImageOps

        with Image.open(path) as img:
            return ImageOps.exif_transpose(img).convert("RGB")
    return read_video(path)


def read_video(path: str, limit: int = MAX_INPUT_FRAMES) -> list[Any]:
    """Every frame of the first video stream, as RGB ``PIL.Image``s."""
    import av

    frames: list[Any] = []
    with av.open(path) as container:
        for frame in container.decode(video=0):
            if len(frames) == limit:
                raise ValueError(f"{path}: more than {limit} frames; trim the video first")
            frames.append(frame.to_image())
    if not frames:
        raise ValueError(f"{path}: no video frames could be decoded")
    return frames


def _uint8(picture: Any) -> np.ndarray:
    """One picture (PIL, or an array in [0, 1] or 0..255, 1/3/4 channels) as ``H x W x 3`` uint8."""
    if hasattr(picture, "convert"):  # PIL
        return np.asarray(picture.convert("RGB"))
    if hasattr(picture, "detach"):  # a torch tensor (output_type="pt")
        picture = picture.detach().float().cpu().numpy()
        if picture.ndim == 3 and picture.shape[0] in (1, 3, 4) and picture.shape[-1] > 4:
            picture = picture.transpose(1, 2, 0)
    array = np.asarray(picture)
    if array.ndim == 2:
        array = array[..., None]
    if array.dtype != np.uint8:
        array = (np.clip(array.astype(np.float32), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(array[..., :3])


def as_frames(batch: Any) -> list[list[np.ndarray]]:
    """A pipeline's ``frames`` (``B x F x H x W x C`` or nested lists) as lists of uint8 frames."""
    return [[_uint8(frame) for frame in item] for item in batch]


def as_images(batch: Any) -> list[np.ndarray]:
    """A pipeline's ``images`` (``B x H x W x C`` or a list) as uint8 pictures."""
    return [_uint8(item) for item in batch]


def write_png(picture: np.ndarray, path: Path) -> Path:
    from PIL import Image

    Image.fromarray(picture).save(path)
    return path


def write_video(frames: Iterable[np.ndarray], path: Path, fps: float) -> Path:
    """``frames`` as an H.264 mp4 a browser plays; an odd width or height loses its last pixel."""
    import av

    rate = Fraction(fps).limit_denominator(1001)
    count = 0
    with av.open(str(path), mode="w", container_options={"movflags": "+faststart"}) as container:
        stream: Any = None
        for frame in frames:
            h, w = frame.shape[0] // 2 * 2, frame.shape[1] // 2 * 2
            if stream is None:
                # veryfast: a quarter of "medium"'s time (36 -> 9 ms for 9 small frames here,
                # seconds for 93 frames at 720p) for files a little larger at the same quality.
                stream = container.add_stream(
                    "libx264", rate=rate, options={"crf": "18", "preset": "veryfast"}
                )
                stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
                stream.codec_context.time_base = 1 / rate
            video_frame = av.VideoFrame.from_ndarray(
                np.ascontiguousarray(frame[:h, :w]), format="rgb24"
            )
            video_frame.pts = count
            count += 1
            container.mux(stream.encode(video_frame))
        if stream is None:
            raise ValueError("no frames to encode")
        container.mux(stream.encode(None))
    return path
