"""The one table of file types: which extensions are videos, images, JSON and text.

The worker imports this (through ``outputs``) to sort a request's files, the
page and the notebook to decide what to play, show or offer as a download, the
uploader to decide what it accepts. One table, so the four can never disagree.
Standard library only: the worker's hot path must stay light.
"""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path

__all__ = [
    "ALLOWED_UPLOAD_EXTENSIONS",
    "EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "FileKind",
    "kind_of",
    "mime_of",
]


class FileKind(str, Enum):
    """What a file is, for showing it: played, shown, pretty-printed, read, or downloaded."""

    VIDEO = "video"
    IMAGE = "image"
    JSON = "json"
    TEXT = "text"
    OTHER = "other"


# extension -> (kind, MIME type). Browsers play or show every video and image listed here
# except .mkv/.avi/.tif/.tiff/.bmp in some builds; those are still videos and images to sort.
EXTENSIONS: dict[str, tuple[FileKind, str]] = {
    ".mp4": (FileKind.VIDEO, "video/mp4"),
    ".webm": (FileKind.VIDEO, "video/webm"),
    ".mov": (FileKind.VIDEO, "video/quicktime"),
    ".m4v": (FileKind.VIDEO, "video/mp4"),
    ".mkv": (FileKind.VIDEO, "video/x-matroska"),
    ".avi": (FileKind.VIDEO, "video/x-msvideo"),
    ".png": (FileKind.IMAGE, "image/png"),
    ".jpg": (FileKind.IMAGE, "image/jpeg"),
    ".jpeg": (FileKind.IMAGE, "image/jpeg"),
    ".webp": (FileKind.IMAGE, "image/webp"),
    ".gif": (FileKind.IMAGE, "image/gif"),
    ".bmp": (FileKind.IMAGE, "image/bmp"),
    ".tif": (FileKind.IMAGE, "image/tiff"),
    ".tiff": (FileKind.IMAGE, "image/tiff"),
    ".json": (FileKind.JSON, "application/json"),
    ".txt": (FileKind.TEXT, "text/plain"),
    ".md": (FileKind.TEXT, "text/markdown"),
    ".log": (FileKind.TEXT, "text/plain"),
    ".yaml": (FileKind.TEXT, "text/plain"),
    ".yml": (FileKind.TEXT, "text/plain"),
    ".csv": (FileKind.TEXT, "text/csv"),
}

VIDEO_EXTENSIONS = frozenset(e for e, (k, _) in EXTENSIONS.items() if k is FileKind.VIDEO)
IMAGE_EXTENSIONS = frozenset(e for e, (k, _) in EXTENSIONS.items() if k is FileKind.IMAGE)
# What the page accepts as an upload: media plus the few text formats a request may point
# to. Never HTML or SVG: a served upload must not be able to run script in the page's origin.
ALLOWED_UPLOAD_EXTENSIONS = VIDEO_EXTENSIONS | IMAGE_EXTENSIONS | {".json", ".txt", ".md"}


def kind_of(path: str | os.PathLike[str]) -> FileKind:
    """The file's kind from its extension (case-insensitive); ``OTHER`` when unknown."""
    entry = EXTENSIONS.get(Path(path).suffix.lower())
    return entry[0] if entry else FileKind.OTHER


def mime_of(path: str | os.PathLike[str]) -> str:
    """The MIME type for a ``data:`` URI or a download; ``application/octet-stream`` if unknown."""
    entry = EXTENSIONS.get(Path(path).suffix.lower())
    return entry[1] if entry else "application/octet-stream"
