"""Live previews: an image the model passes to ``report_progress``, written as ``preview.jpg``.

Imported only when a model gives a preview (PIL and numpy are imported here,
never on the worker's hot path). The image is shrunk to at most
:data:`MAX_SIDE` pixels on its long side and written atomically (a temporary
file, then a rename), so a reader never sees half a JPEG.
"""

from __future__ import annotations

import os
from typing import Any

from .._core.outputs import PREVIEW_FILE

__all__ = ["MAX_SIDE", "as_image", "write_preview"]

MAX_SIDE = 512
QUALITY = 85


def _kind(value: Any) -> str:
    cls = type(value)
    return f"{cls.__module__}.{cls.__qualname__}" if cls.__module__ != "builtins" else cls.__name__


def as_image(value: Any) -> Any:
    """``value`` (a PIL image, an HxWx3 uint8 array or an image file's path) as a PIL image.

    Raises TypeError or ValueError saying what was given and what is accepted.
    """
    from PIL import Image

    if isinstance(value, Image.Image):
        return value
    if isinstance(value, (str, os.PathLike)):
        try:
            with Image.open(value) as img:
                img.load()
                return img.copy()
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"report_progress(preview={str(value)!r}): not a readable image ({exc})"
            ) from None
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        import numpy as np

        array = np.asarray(value)
        if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
            raise ValueError(
                f"report_progress(preview=...) takes an HxWx3 uint8 array; got shape "
                f"{tuple(array.shape)} of {array.dtype} (scale to 0..255 and use "
                "array.astype('uint8'), channels last)"
            )
        return Image.fromarray(np.ascontiguousarray(array), "RGB")
    raise TypeError(
        f"report_progress(preview=...) takes a PIL image, an HxWx3 uint8 array or an image "
        f"file's path; got {_kind(value)}"
    )


def write_preview(value: Any, folder: str) -> str:
    """Write ``value`` as ``folder/preview.jpg`` (at most 512 px, JPEG); return its path."""
    image = as_image(value)
    if image.mode != "RGB":
        image = image.convert("RGB")
    if max(image.size) > MAX_SIDE:
        image = image.copy()
        image.thumbnail((MAX_SIDE, MAX_SIDE))
    path = os.path.join(folder, PREVIEW_FILE)
    tmp = os.path.join(folder, f".preview.{os.getpid()}.tmp")
    image.save(tmp, format="JPEG", quality=QUALITY)
    os.replace(tmp, path)
    return path
