"""What a diffusers pipeline's ``__call__`` accepts, as plain data (no torch, no pydantic).

:func:`call_args` reads the signature of ``pipeline_class.__call__`` and keeps the
arguments a JSON request can carry: strings, numbers, booleans, lists and dicts of
them, and images or videos, which a request names by path (an upload). Tensors,
generators, callbacks and output switches are left out: the adapter sets those
itself (``generator`` from our ``seed``, ``callback_on_step_end`` for progress).
Descriptions come from the ``Args:`` section of the method's docstring, which
diffusers writes in one format for every pipeline.

Everything here works on annotations as objects (``str | list[str] | None``) and
falls back to their text when a pipeline's annotations are strings.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from dataclasses import dataclass
from enum import Enum
from typing import Any

__all__ = ["REQUIRED", "AssetKind", "CallArg", "call_args", "size_multiple"]

REQUIRED: Any = inspect.Parameter.empty

# Set by the adapter, never by a request.
_ADAPTER_OWNED = frozenset(
    {
        "generator",
        "latents",
        "output_type",
        "return_dict",
        "callback",
        "callback_steps",
        "callback_on_step_end",
        "callback_on_step_end_tensor_inputs",
    }
)
# Tensors by name, whatever their annotation says (some are mistyped as ``str``).
_TENSOR_SUFFIXES = ("_embeds", "_embeds_mask", "_attention_mask", "latents")
_JSON_LEAVES: tuple[type, ...] = (str, int, float, bool)


class AssetKind(str, Enum):
    """What a path-valued argument must point at."""

    IMAGE = "image"
    VIDEO = "video"
    MEDIA = "media"  # either: one image, or a video as a list of frames


@dataclass(frozen=True)
class CallArg:
    """One argument of ``__call__`` that a JSON request may set.

    ``annotation`` is the JSON-able part of the pipeline's annotation (``float |
    list[float] | torch.Tensor`` keeps ``float | list[float]``); for an asset it is
    ``str`` (a path) and ``asset`` says what the file must be.
    """

    name: str
    annotation: Any
    default: Any  # REQUIRED when the pipeline gives none
    description: str
    asset: AssetKind | None = None


def _members(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        out: list[Any] = []
        for arg in typing.get_args(annotation):
            out.extend(_members(arg))
        return out
    return [annotation]


def _is_image_type(annotation: Any) -> bool:
    text = getattr(annotation, "__module__", "") + "." + getattr(annotation, "__name__", "")
    return text.startswith("PIL.") and text.endswith("Image")


def _mentions_image(annotation: Any) -> bool:
    if _is_image_type(annotation):
        return True
    return any(_mentions_image(a) for a in typing.get_args(annotation))


def _is_list(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (list, tuple)


def _json_able(annotation: Any) -> Any | None:
    """The JSON-able part of ``annotation`` (a type pydantic can validate), or None."""
    if annotation is type(None) or annotation in _JSON_LEAVES or annotation is Any:
        return annotation
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union or origin is types.UnionType:
        kept = [k for k in (_json_able(a) for a in args) if k is not None]
        if not kept or kept == [type(None)]:
            return None
        return typing.Union[tuple(kept)]  # noqa: UP007 - built from a runtime list
    if origin in (list, tuple) and args:
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            inner = _json_able(args[0])
            return None if inner is None else tuple[inner, ...]  # type: ignore[valid-type]
        inner_all = [_json_able(a) for a in args]
        if any(a is None for a in inner_all):
            return None
        if origin is list:
            return list[inner_all[0]]  # type: ignore[valid-type]
        return tuple[tuple(inner_all)]  # type: ignore[misc]
    if origin is dict and args and args[0] is str:
        inner = _json_able(args[1])
        return None if inner is None else dict[str, inner]  # type: ignore[valid-type]
    if annotation in (list, dict):
        return annotation
    return None


def _asset_kind(name: str, annotation: Any) -> AssetKind | None:
    """Image, video or either, for an argument whose annotation admits PIL images."""
    if not _mentions_image(annotation):
        return None
    if "video" in name:
        return AssetKind.VIDEO
    # A list whose items are themselves image inputs (lists included) is a video:
    # ``video: list[PipelineImageInput]``; ``controls`` takes an image or a video.
    nested = False
    single = False
    for member in _members(annotation):
        if _is_list(member) and any(
            any(_is_list(m) for m in _members(a)) for a in typing.get_args(member)
        ):
            nested = True
        elif not _is_list(member):
            single = single or _is_image_type(member)
    if nested:
        return AssetKind.MEDIA if single else AssetKind.VIDEO
    return AssetKind.IMAGE


_ARG_LINE = re.compile(r"^(\s+)(\w+) \(.*\):\s*$")


def docstring_args(doc: str | None) -> dict[str, str]:
    """``{name: description}`` from a diffusers docstring's ``Args:`` section, one line each."""
    if not doc:
        return {}
    lines = inspect.cleandoc(doc).splitlines()
    out: dict[str, str] = {}
    current: str | None = None
    indent = None
    in_args = False
    for line in lines:
        stripped = line.strip()
        if stripped in ("Args:", "Arguments:", "Parameters:"):
            in_args, current = True, None
            continue
        if not in_args:
            continue
        if stripped.endswith(":") and not line.startswith(" "):  # "Examples:", "Returns:"
            in_args = False
            continue
        match = _ARG_LINE.match(line)
        if match and (indent is None or len(match.group(1)) == indent):
            indent = len(match.group(1))
            current = match.group(2)
            out[current] = ""
        elif current is not None and stripped:
            out[current] = (out[current] + " " + stripped).strip()
    return {k: _short(v) for k, v in out.items()}


def _short(text: str, limit: int = 160) -> str:
    """Whole sentences up to ``limit`` characters (the page shows these in a table).

    Markdown links keep their text: a long URL cannot wrap in a table cell.
    """
    text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) <= limit:
        return text
    kept = ""
    for sentence in re.split(r"(?<=\.) ", text):
        if kept and len(kept) + 1 + len(sentence) > limit:
            break
        kept = f"{kept} {sentence}".strip()
    return kept if len(kept) <= limit else kept[: limit - 3].rstrip() + "..."


def _resolved_hints(fn: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # a forward reference that does not resolve: keep the raw ones
        return {}


def call_args(pipeline_class: type) -> list[CallArg]:
    """The JSON-able arguments of ``pipeline_class.__call__``, in signature order."""
    call = pipeline_class.__call__
    signature = inspect.signature(call)
    hints = _resolved_hints(call)
    docs = docstring_args(inspect.getdoc(call))
    out: list[CallArg] = []
    for param in list(signature.parameters.values())[1:]:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.name in _ADAPTER_OWNED or param.name.endswith(_TENSOR_SUFFIXES):
            continue
        annotation = hints.get(param.name, param.annotation)
        if isinstance(annotation, str) or annotation is param.empty:
            continue  # unresolvable or unannotated: nothing to validate it against
        description = docs.get(param.name, "")
        asset = _asset_kind(param.name, annotation)
        default = param.default
        if asset is not None:
            if default is not param.empty and default is not None:
                default = None  # a default image object cannot be a path
            out.append(CallArg(param.name, str, default, description, asset))
            continue
        kept = _json_able(annotation)
        if kept is None:
            continue
        out.append(CallArg(param.name, kept, default, description))
    return out


_MULTIPLE = re.compile(r"height\s*%\s*(.+?)\s*!=")


def size_multiple(pipeline_class: type) -> int:
    """What height and width must be a multiple of, read from the pipeline's ``check_inputs``.

    A literal (``height % 16``) is taken as is; ``self.vae_scale_factor * 2`` and
    patch-size forms are 16 for the usual VAE (factor 8); anything else, or no
    check, is 8. The pipeline checks again itself in the worker.
    """
    try:
        source = inspect.getsource(pipeline_class.check_inputs)  # type: ignore[attr-defined]
    except Exception:
        return 8
    match = _MULTIPLE.search(source)
    if match is None:
        return 8
    expr = match.group(1).strip("() ")
    if expr.isdigit():
        return int(expr)
    if "* 2" in expr or "patch_size" in expr:
        return 16
    return 8
