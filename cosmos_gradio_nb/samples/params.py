"""Request parameters of the sample video model, as a pydantic model.

This module is the validator the engine runs in the UI process
(``SampleParams.model_validate(params).model_dump(mode="json")``), so it must stay
light: pydantic and Pillow only, never torch. Every field has a description; it
becomes the help text the UI shows through the JSON schema.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

__all__ = ["SKIP_ASSET_CHECK", "SampleParams"]

# Validation-context flag: the worker re-validates a request the UI process already
# checked, and its environment need not list the same asset folders.
SKIP_ASSET_CHECK = "skip_asset_check"

_BOUNDS: dict[str, tuple[float, float]] = {
    "num_frames": (1, 600),
    "fps": (1, 60),
    "width": (32, 1920),
    "height": (32, 1920),
    "zoom": (0.2, 5.0),
    "rotation": (-360.0, 360.0),
    "frame_delay": (0.0, 10.0),
}


def _fail(message: str) -> PydanticCustomError:
    """An error whose message is shown as is (a plain ValueError gets a "Value error, " prefix)."""
    return PydanticCustomError("invalid_parameter", "{message}", {"message": message})


def _as_line_error(err: Any) -> dict[str, Any]:
    """A pydantic error as one to raise again with its own words (as ``_fail`` words them)."""
    message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    kind = PydanticCustomError(str(err.get("type", "invalid")), "{m}", {"m": message})
    out: dict[str, Any] = {"type": kind, "loc": tuple(err.get("loc", ()))}
    if "input" in err:
        out["input"] = err["input"]
    return out


def _range(name: str) -> dict[str, Any]:
    # Bounds go into the JSON schema (so the UI can show them) but are checked by
    # the field validators below, which word the error themselves.
    lo, hi = _BOUNDS[name]
    return {"minimum": lo, "maximum": hi}


class SampleParams(BaseModel):
    """One request to the sample video model; ``SampleParams()`` is a good default request.

    The model animates a still (uploaded, or drawn from the prompt and seed) with
    zoom, pan and rotation and writes an H.264 ``video.mp4`` and a ``poster.png``.
    Unknown keys are refused, so a typo such as ``num_frame`` is reported by name.
    """

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        title="Sample video model",
        json_schema_extra={
            "examples": [
                {"prompt": "violet dusk over glass dunes", "seed": 7, "num_frames": 36},
            ]
        },
    )

    prompt: str = Field(
        default="an amber sunset over misty mountain ridges",
        max_length=2000,
        description="Text that picks the procedural scene's palette and layout "
        "(ignored when an image is given).",
    )
    seed: int = Field(
        default=0,
        ge=0,
        le=2**63 - 1,
        description="Random seed for the scene's shapes; same prompt and seed give the same video.",
    )
    num_frames: int = Field(
        default=24,
        description="Number of video frames (1 to 600).",
        json_schema_extra=_range("num_frames"),
    )
    fps: int = Field(
        default=12,
        description="Frames per second of the video (1 to 60).",
        json_schema_extra=_range("fps"),
    )
    width: int = Field(
        default=320,
        description="Video width in pixels, even (32 to 1920).",
        json_schema_extra=_range("width"),
    )
    height: int = Field(
        default=192,
        description="Video height in pixels, even (32 to 1920).",
        json_schema_extra=_range("height"),
    )
    image: str | None = Field(
        default=None,
        description="Optional input image to animate instead of the procedural scene: a path "
        "inside the uploads folder, the outputs folder or ASSET_DIRS.",
    )
    zoom: float = Field(
        default=1.4,
        description="Zoom reached on the last frame (the first frame is at 1); below 1 zooms out "
        "(0.2 to 5).",
        json_schema_extra=_range("zoom"),
    )
    pan: tuple[float, float] = Field(
        default=(0.15, 0.05),
        description="Camera shift [x, y] reached on the last frame, as a fraction of the "
        "half-width and half-height (each -1 to 1).",
    )
    rotation: float = Field(
        default=20.0,
        description="Rotation in degrees reached on the last frame (-360 to 360).",
        json_schema_extra=_range("rotation"),
    )
    frame_delay: float = Field(
        default=0.0,
        description="Testing knob: seconds to sleep after each frame so a run lasts long enough "
        "to watch or cancel (0 to 10).",
        json_schema_extra=_range("frame_delay"),
    )
    output_dir: str | None = Field(
        default=None,
        description="Folder the outputs are written to; set by the app, ignored in requests.",
    )

    @model_validator(mode="wrap")
    @classmethod
    def _name_unknown_keys(cls, data: Any, handler: Any) -> Any:
        """Refuse unknown keys by name, with a suggestion (``num_frame`` -> ``num_frames``),
        together with the value errors of the known keys: one round of fixes, not two.

        ``extra="forbid"`` alone says only "Extra inputs are not permitted"; users
        editing JSON by hand deserve the nearest known key.
        """
        if not isinstance(data, dict):
            return handler(data)
        known = sorted(cls.model_fields)
        errors: list[Any] = []
        for key, value in data.items():
            if key in cls.model_fields:
                continue
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
            errors.append(
                {
                    "type": PydanticCustomError(
                        "unknown_parameter", "unknown parameter; {hint}", {"hint": hint}
                    ),
                    "loc": (str(key),),
                    "input": value,
                }
            )
        if not errors:
            return handler(data)
        try:  # the known keys too, so that their problems are reported in the same message
            handler({k: v for k, v in data.items() if k in cls.model_fields})
        except ValidationError as exc:
            errors += [_as_line_error(e) for e in exc.errors(include_url=False)]
        raise ValidationError.from_exception_data(cls.__name__, errors)

    @field_validator("num_frames", "fps", "zoom", "rotation", "frame_delay")
    @classmethod
    def _in_range(cls, value: float, info: ValidationInfo) -> float:
        name = str(info.field_name)
        lo, hi = _BOUNDS[name]
        if not lo <= value <= hi:
            raise _fail(f"{name} must be between {lo:g} and {hi:g} (got {value:g})")
        return value

    @field_validator("width", "height")
    @classmethod
    def _even_size(cls, value: int, info: ValidationInfo) -> int:
        name = str(info.field_name)
        lo, hi = _BOUNDS[name]
        if not lo <= value <= hi:
            raise _fail(f"{name} must be between {lo:g} and {hi:g} pixels (got {value})")
        if value % 2:
            raise _fail(f"{name} must be even for H.264 (got {value})")
        return value

    @field_validator("pan", mode="before")
    @classmethod
    def _pan_pair(cls, value: Any) -> Any:
        # Without this a one-element list reports "pan.1: Field required".
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise _fail(f"pan must be two numbers [x, y] (got {value!r})")
        return value

    @field_validator("pan")
    @classmethod
    def _pan_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not all(-1.0 <= v <= 1.0 for v in value):
            raise _fail(f"pan values must each be between -1 and 1 (got {list(value)})")
        return value

    @field_validator("image")
    @classmethod
    def _readable_image(cls, value: str | None, info: ValidationInfo) -> str | None:
        """Resolve the path, keep it inside the allowed folders, and make sure Pillow opens it."""
        if value is None or not value.strip():
            return None  # an empty UI textbox means "no image"
        from pathlib import Path

        from PIL import Image, UnidentifiedImageError

        from .._core.validation import check_asset_path

        if (info.context or {}).get(SKIP_ASSET_CHECK):
            path = Path(value).expanduser().resolve()
            if not path.is_file():
                raise _fail(f"image {value!r} does not exist (resolved to {path})")
        else:
            try:
                path = check_asset_path(value)
            except ValueError as exc:  # outside the allowed folders, or missing
                raise _fail(str(exc)) from None
        try:
            with Image.open(path) as img:
                img.verify()
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise _fail(f"image {value!r} is not an image Pillow can open ({exc})") from None
        return str(path)
