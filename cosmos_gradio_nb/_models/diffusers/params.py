"""The request validator of a diffusers pipeline: a pydantic model built from its ``__call__``.

:func:`params_model` turns :func:`~.signature.call_args` into a pydantic class:
each JSON-able argument with the pipeline's default, the bounds it documents
(steps from 1, sizes a multiple of what ``check_inputs`` demands, strengths 0 to 1...),
images and videos as paths checked with :func:`check_asset_path` and opened once
(Pillow, PyAV), our own ``seed`` (turned into a ``torch.Generator`` in the worker),
and unknown keys refused by name with the nearest known one. It runs in the
caller's process, so it imports neither torch nor diffusers itself.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, ClassVar, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ..._core.filetypes import FileKind, kind_of
from ..._core.validation import check_asset_path
from .signature import REQUIRED, AssetKind, CallArg, call_args, size_multiple

__all__ = ["IN_WORKER", "PipelineParams", "is_video_pipeline", "params_model"]

# Validation-context flag: the worker re-validates what the caller already checked,
# and its environment need not list the same asset folders.
IN_WORKER = "cosmos_diffusers_in_worker"
SEED_MAX = 2**63 - 1
SIZE_MAX = 8192

# name -> (low, high); applied to plain numeric arguments of that name.
BOUNDS: dict[str, tuple[float, float | None]] = {
    "num_inference_steps": (1, 1000),
    "num_frames": (1, 10000),
    "guidance_scale": (0, 100),
    "num_images_per_prompt": (1, 16),
    "num_videos_per_prompt": (1, 16),
    "batch_size": (1, 16),
    "strength": (0, 1),
    "eta": (0, 1),
    "fps": (1, 240),
    "frame_rate": (1, 240),
    "max_sequence_length": (1, None),
    "seed": (0, SEED_MAX),
}
DEFAULT_FPS = 16
SEED_TEXT = (
    "Random seed of the noise (a torch.Generator); null draws one, which status.json records "
    "as 'seed'. The same seed and parameters give the same output."
)
_A_FILE = {
    AssetKind.IMAGE: "an image file",
    AssetKind.VIDEO: "a video file",
    AssetKind.MEDIA: "an image or video file",
}


def _fail(message: str) -> PydanticCustomError:
    """An error shown as is (a plain ValueError gets a "Value error, " prefix)."""
    return PydanticCustomError("invalid_parameter", "{message}", {"message": message})


class PipelineParams(BaseModel):
    """Base of every generated validator: unknown keys named, no NaN, no extra keys."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, protected_namespaces=())

    pipeline_class: ClassVar[str] = ""
    size_multiple: ClassVar[int] = 8
    assets: ClassVar[dict[str, AssetKind]] = {}

    @model_validator(mode="wrap")
    @classmethod
    def _name_unknown_keys(cls, data: Any, handler: Any) -> Any:
        """Refuse unknown keys by name with a suggestion (``num_inference_step``: did you mean...).

        ``extra="forbid"`` alone says only "Extra inputs are not permitted". The known
        keys are validated too, so one answer lists every problem.
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
                        "unknown_parameter",
                        "unknown parameter of {pipeline}; {hint}",
                        {"hint": hint, "pipeline": cls.pipeline_class or "the pipeline"},
                    ),
                    "loc": (str(key),),
                    "input": value,
                }
            )
        if not errors:
            return handler(data)
        try:
            handler({k: v for k, v in data.items() if k in cls.model_fields})
        except ValidationError as exc:
            for err in exc.errors():  # re-raised as they read
                kind = PydanticCustomError(err["type"], "{message}", {"message": err["msg"]})
                errors.append({"type": kind, "loc": err["loc"], "input": err["input"]})
        raise ValidationError.from_exception_data(cls.__name__, errors)


def _check_size(multiple: int) -> Callable[[int | None, ValidationInfo], int | None]:
    def check(value: int | None, info: ValidationInfo) -> int | None:
        if value is None:
            return None
        name = info.field_name
        if not multiple <= value <= SIZE_MAX:
            raise _fail(f"{name} must be between {multiple} and {SIZE_MAX} pixels (got {value})")
        if value % multiple:
            lower = value - value % multiple
            raise _fail(
                f"{name} must be a multiple of {multiple} for this pipeline (got {value}; "
                f"try {lower} or {lower + multiple})"
            )
        return value

    return check


def _check_asset(kind: AssetKind) -> Callable[[str | None, ValidationInfo], str | None]:
    def check(value: str | None, info: ValidationInfo) -> str | None:
        if value is None or not str(value).strip():
            return None  # an empty text box means "none"
        name = str(info.field_name)
        if (info.context or {}).get(IN_WORKER):
            path = Path(value).expanduser().resolve()
            if not path.is_file():
                raise _fail(f"{name} {value!r} does not exist (resolved to {path})")
        else:
            try:
                path = check_asset_path(value)
            except ValueError as exc:
                raise _fail(str(exc)) from None
            _check_readable(name, value, path, kind)
        return str(path)

    return check


def _check_readable(name: str, value: str, path: Path, kind: AssetKind) -> None:
    """Open the file once, so a bad upload is refused here and not on the GPU."""
    file_kind = kind_of(path)
    wants = {
        AssetKind.IMAGE: (FileKind.IMAGE,),
        AssetKind.VIDEO: (FileKind.VIDEO,),
        AssetKind.MEDIA: (FileKind.IMAGE, FileKind.VIDEO),
    }[kind]
    if file_kind not in wants:
        raise _fail(f"{name} must be {_A_FILE[kind]} (got {value!r})")
    if file_kind is FileKind.IMAGE:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as img:
                img.verify()
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise _fail(f"{name} {value!r} is not an image Pillow can open ({exc})") from None
        return
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise _fail(f"{name} {value!r} has no video stream")
    except av.FFmpegError as exc:
        raise _fail(f"{name} {value!r} is not a video PyAV can open ({exc})") from None


def _plain_numeric(annotation: Any) -> bool:
    import typing

    members = typing.get_args(annotation) or (annotation,)
    return all(m in (int, float, type(None)) for m in members) and annotation is not type(None)


def _json_default(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _range_text(low: float, high: float | None) -> str:
    return f"{low:g} or more" if high is None or high > 1e9 else f"{low:g} to {high:g}"


def _field(arg: CallArg, multiple: int) -> tuple[Any, Any]:
    """``(annotation, FieldInfo)`` for one argument."""
    annotation, default, text = arg.annotation, arg.default, arg.description
    extra: dict[str, Any] = {}
    if default is not REQUIRED and not _json_default(default):
        default = None
    if arg.asset is not None:
        annotation = Annotated[Union[str, None], AfterValidator(_check_asset(arg.asset))]  # noqa: UP007
        text = f"{text} The path of {_A_FILE[arg.asset]} (an upload).".strip()
        extra["format"] = "path"
    elif arg.name in ("height", "width") and _plain_numeric(arg.annotation):
        annotation = Annotated[Union[int, None], AfterValidator(_check_size(multiple))]  # noqa: UP007
        text = f"{text} A multiple of {multiple}.".strip()
        extra.update(multipleOf=multiple, minimum=multiple, maximum=SIZE_MAX)
    elif arg.name in BOUNDS and _plain_numeric(arg.annotation):
        low, high = BOUNDS[arg.name]
        text = f"{text} ({_range_text(low, high)})".strip()
        bounds: dict[str, Any] = {"ge": low} if high is None else {"ge": low, "le": high}
        if default is None or default is REQUIRED:
            annotation = Union[annotation, None]  # noqa: UP007
        return annotation, Field(
            default=... if default is REQUIRED else default, description=text, **bounds
        )
    if default is None:
        annotation = Union[annotation, None]  # noqa: UP007
    return annotation, Field(
        default=... if default is REQUIRED else default,
        description=text or None,
        json_schema_extra=extra or None,
    )


def is_video_pipeline(args: list[CallArg]) -> bool:
    """A pipeline whose ``__call__`` takes ``num_frames`` makes videos."""
    return any(a.name == "num_frames" for a in args)


def params_model(
    pipeline_class: type, defaults: Mapping[str, Any] | None = None
) -> type[PipelineParams]:
    """A pydantic model of ``pipeline_class``'s JSON-able call arguments (see the module doc).

    ``defaults`` overrides the pipeline's own defaults by name (a smaller default
    size for the page's editor, say); an unknown name raises ValueError.
    """
    # A private (``_auto_resize``) or BaseModel-shadowing name cannot be a field: the
    # pipeline's own default applies.
    args = [
        a
        for a in call_args(pipeline_class)
        if not a.name.startswith("_") and not hasattr(BaseModel, a.name)
    ]
    multiple = size_multiple(pipeline_class)
    video = is_video_pipeline(args)
    ours = [CallArg("seed", Union[int, None], None, SEED_TEXT)]  # noqa: UP007
    if video and not any(a.name in ("fps", "frame_rate") for a in args):
        ours.append(CallArg("fps", int, DEFAULT_FPS, "Frames per second of the mp4."))
    chosen = dict(defaults or {})
    unknown = sorted(set(chosen) - {a.name for a in [*args, *ours]})
    if unknown:
        known = ", ".join(sorted(a.name for a in [*args, *ours]))
        raise ValueError(
            f"defaults: {pipeline_class.__name__} has no argument {unknown[0]!r} ({known})"
        )
    fields: dict[str, Any] = {}
    for arg in [*args, *ours]:
        if arg.name in chosen:
            arg = replace(arg, default=chosen[arg.name])
        elif arg.name == "prompt" and arg.default in (None, REQUIRED):
            arg = replace(arg, default="")  # an editable text, not null
        fields[arg.name] = _field(arg, multiple)
    model = create_model(  # type: ignore[call-overload]
        f"{pipeline_class.__name__}Params",
        __base__=PipelineParams,
        __doc__=f"A request to {pipeline_class.__name__}: its JSON-able call arguments, plus seed.",
        **fields,
    )
    model.pipeline_class = pipeline_class.__name__
    model.size_multiple = multiple
    model.assets = {a.name: a.asset for a in args if a.asset is not None}
    model.model_config["title"] = pipeline_class.__name__
    model.model_rebuild(force=True)
    return model  # type: ignore[no-any-return]
