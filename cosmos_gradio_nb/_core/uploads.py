"""Uploaded assets: type whitelist, size limit, safe names, and where they are stored.

Gradio writes an upload into its own cache first; :func:`store_upload` then
checks it (Gradio enforces ``max_file_size`` but not ``file_types`` on the
server) and moves it (the page; a rename, so a 500 MB upload is written once) or
copies it to ``UPLOADS_DIR/<unique folder>/<sanitized name>``,
the folder that validators such as :func:`cosmos_gradio_nb.check_asset_path`
accept. The unique folder means two uploads of ``input.png`` never collide,
and the sanitized name means a crafted file name cannot climb out of it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import time
import unicodedata
import uuid
from pathlib import Path

from .filetypes import (
    ALLOWED_UPLOAD_EXTENSIONS,
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    FileKind,
    kind_of,
)
from .request_text import parse_request_json

__all__ = [
    "ALLOWED_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "UploadRejected",
    "insert_path",
    "json_key_for",
    "kind_of",
    "list_uploads",
    "max_upload_mb",
    "sanitize_filename",
    "sniff_extension",
    "store_upload",
]

ALLOWED_EXTENSIONS = ALLOWED_UPLOAD_EXTENSIONS  # the one table is in _filetypes

DEFAULT_MAX_UPLOAD_MB = 500.0
_MAX_NAME = 120


class UploadRejected(ValueError):
    """An upload was refused (type or size); the message says why, for the page."""


def max_upload_mb(value: float | None = None) -> float:
    """The upload limit in MB: ``value``, else ``MAX_UPLOAD_MB`` (DeploymentEnv), else 500.

    Raises
    ------
    ValueError
        ``MAX_UPLOAD_MB`` is not a positive number (the message names it).
    """
    if value is None:
        from .settings import DeploymentEnv

        value = DeploymentEnv().max_upload_mb
    if not value > 0:
        raise ValueError(f"the upload limit must be a positive number of MB, got {value}")
    return float(value)


def json_key_for(path: str | os.PathLike[str]) -> str:
    """The request key an uploaded file is inserted under.

    ``image`` for images and ``video`` for videos (the names the sample model
    and most image/video-to-video models use), ``input_file`` for anything else
    (a prompt list, a config). The user can rename the key in the editor.
    """
    kind = kind_of(path)
    return kind.value if kind in (FileKind.IMAGE, FileKind.VIDEO) else "input_file"


def sanitize_filename(name: str) -> str:
    """A file name that is safe to create inside the upload folder.

    Keeps only the last path component (of both ``/`` and ``\\`` separators),
    drops control characters, replaces characters outside letters, digits and
    ``._-`` by ``_``, strips leading dots (no hidden files, no ``..``) and caps
    the length while keeping the extension. Never returns an empty name.
    """
    name = unicodedata.normalize("NFKC", str(name))
    name = re.split(r"[/\\]", name)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = re.sub(r"[^\w.\-]+", "_", name, flags=re.ASCII)
    name = re.sub(r"\.{2,}", ".", name).lstrip(".-_ ")
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    ext = ext[:16]
    stem = stem[: _MAX_NAME - len(ext) - 1]
    name = f"{stem}.{ext}" if ext and stem else (stem or ext)
    return name or "upload"


def store_upload(
    src: str | os.PathLike[str],
    uploads_dir: str | os.PathLike[str],
    *,
    original_name: str | None = None,
    max_mb: float = DEFAULT_MAX_UPLOAD_MB,
    move: bool = False,
) -> Path:
    """Check one uploaded file and copy (or move) it to ``uploads_dir/<unique>/<safe name>``.

    Parameters
    ----------
    src:
        The file Gradio wrote to its cache.
    uploads_dir:
        ``UPLOADS_DIR``; created if missing.
    original_name:
        The name the browser sent (defaults to ``src``'s name); it is sanitized. A name
        without an extension gets the one of its content when that is an image or a
        video (:func:`sniff_extension`), else it is refused.
    max_mb:
        Size limit in MB; checked here too, not only by Gradio.
    move:
        Move ``src`` rather than copy it (a rename when both lie on one file system);
        the stored file gets the permissions a new file gets. A refused file stays.

    Returns
    -------
    Path
        The stored file's absolute path (what goes into the request JSON).

    Raises
    ------
    UploadRejected
        The type is not on the whitelist or the file is too large.
    """
    src_path = Path(src)
    name = sanitize_filename(original_name or src_path.name)
    ext = Path(name).suffix.lower()
    if not ext:  # a browser's or a client's Blob ("blob"): typed by its first bytes, if media
        ext = sniff_extension(src_path) or ""
        name = f"{name}{ext}"
    if ext not in ALLOWED_EXTENSIONS:
        allowed = ", ".join(sorted(ALLOWED_EXTENSIONS))
        raise UploadRejected(
            f"{name!r}: file type {ext or '(none)'} is not accepted; use {allowed}"
        )
    size = src_path.stat().st_size
    if size > max_mb * 1024 * 1024:
        raise UploadRejected(
            f"{name!r} is {size / 1024 / 1024:.1f} MB, over the {max_mb:g} MB upload limit"
        )
    folder = (
        Path(uploads_dir).resolve() / f"{time.strftime('%Y%m%d-%H%M%S')}_{uuid.uuid4().hex[:8]}"
    )
    folder.mkdir(parents=True, exist_ok=False)
    dest = folder / name
    if move:
        shutil.move(src_path, dest)
        dest.chmod(0o666 & ~_umask())  # Gradio's cache files are private (0600)
    else:
        shutil.copyfile(src_path, dest)
    return dest


def _umask() -> int:
    """This process's umask, read without changing it (Linux), else the usual 022."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


# First bytes of the image and video formats the page accepts (never text: no HTML or SVG).
_SIGNATURES: list[tuple[int, bytes, str]] = [
    (0, b"\x89PNG\r\n\x1a\n", ".png"),
    (0, b"\xff\xd8\xff", ".jpg"),
    (0, b"GIF87a", ".gif"),
    (0, b"GIF89a", ".gif"),
    (8, b"WEBP", ".webp"),
    (8, b"AVI ", ".avi"),
    (0, b"BM", ".bmp"),
    (0, b"II*\x00", ".tif"),
    (0, b"MM\x00*", ".tif"),
    (4, b"ftypqt", ".mov"),
    (4, b"ftyp", ".mp4"),
    (0, b"\x1a\x45\xdf\xa3", ".mkv"),
]


def sniff_extension(path: str | os.PathLike[str]) -> str | None:
    """The extension of an image or video file, from its first bytes; None if not one."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return None
    for offset, magic, ext in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            if ext in (".webp", ".avi") and not head.startswith(b"RIFF"):
                continue
            return ext
    return None


def list_uploads(uploads_dir: str | os.PathLike[str], limit: int = 200) -> list[Path]:
    """Files stored by earlier uploads, newest first (at most ``limit``).

    Looks only one folder deep (``<unique>/<name>``), the layout
    :func:`store_upload` makes, so a huge ``UPLOADS_DIR`` is not walked whole.
    Only regular files that really lie there are listed: no symbolic link (to a
    folder or a file elsewhere) and no hard link (a second name of a file that may
    lie anywhere); the page makes neither.
    """
    root = Path(uploads_dir).resolve()
    if not root.is_dir():
        return []
    found: list[tuple[float, Path]] = []
    try:
        folders = sorted(root.iterdir(), key=lambda p: p.name, reverse=True)
    except OSError:
        return []
    for folder in folders:
        if len(found) >= limit:
            break
        if folder.is_symlink() or not folder.is_dir():
            continue
        try:
            entries = list(folder.iterdir())
        except OSError:
            continue
        for f in entries:
            if f.suffix.lower() not in ALLOWED_EXTENSIONS:
                continue
            try:
                st = f.lstat()
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
                found.append((st.st_mtime, f))
    found.sort(key=lambda t: t[0], reverse=True)
    return [p for _, p in found[:limit]]


def insert_path(json_text: str, path: str | os.PathLike[str], key: str | None = None) -> str:
    """Return ``json_text`` with ``key`` (default :func:`json_key_for`) set to ``path``.

    Raises
    ------
    ValueError
        ``json_text`` is not a JSON object; the message gives line and column.
    """
    params = parse_request_json(json_text)
    params[key or json_key_for(path)] = str(path)
    return json.dumps(params, indent=2)
