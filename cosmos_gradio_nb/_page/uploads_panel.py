"""The uploads panel's handlers: store files under UPLOADS_DIR, offer them, insert a path.

:class:`UploadsPanel` moves each upload from Gradio's cache into UPLOADS_DIR
(``_core.uploads`` checks its name, type and size again, after Gradio's own size
check; a rename, so a 500 MB upload is written to disk once), then drops what is
left in the cache (:func:`forget_cached_upload`): a refused file, and the folder. The ``/upload_file`` endpoint stores through the same
:meth:`UploadsPanel.store`, so a file sent by a script is checked and kept the
same way as one dropped on the page.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import gradio as gr

from .._core.uploads import UploadRejected, insert_path, list_uploads, store_upload
from .backend import Backend

__all__ = ["UploadsPanel", "forget_cached_upload"]


def _source(file: Any) -> str:
    """Where Gradio put an uploaded file (a path, or an object naming one)."""
    return str(getattr(file, "name", None) or getattr(file, "path", None) or file)


def _in_cache(path: str | Path) -> bool:
    """Whether ``path`` lies in Gradio's cache (only a file there is ours to move)."""
    from gradio.utils import get_upload_folder

    cache = Path(get_upload_folder()).resolve()
    try:
        real = Path(path).resolve()
    except (OSError, RuntimeError):
        return False
    return real.is_relative_to(cache) and real != cache


def forget_cached_upload(path: str | Path) -> None:
    """Delete Gradio's cached copy of an upload (and its folder when empty).

    Gradio keeps every file ever sent in its cache (``GRADIO_TEMP_DIR``), refused ones
    included; once stored in UPLOADS_DIR, or refused, the cached copy serves nothing.
    Only files inside that cache are touched.
    """
    from gradio.utils import get_upload_folder

    cache = Path(get_upload_folder()).resolve()
    try:
        real = Path(path).resolve()
    except (OSError, RuntimeError):
        return
    if not real.is_relative_to(cache) or real == cache:
        return
    with contextlib.suppress(OSError):
        real.unlink(missing_ok=True)  # moved into UPLOADS_DIR: already gone
    if real.parent != cache:
        with contextlib.suppress(OSError):
            real.parent.rmdir()  # fails harmlessly while other files are in it


class UploadsPanel:
    """Upload, pick an earlier upload, insert its path into the request.

    Parameters
    ----------
    backend:
        Where uploads are kept (``uploads_dir``).
    upload_limit_mb:
        The upload size limit, checked again here after Gradio's own check.
    """

    def __init__(self, backend: Backend, upload_limit_mb: float) -> None:
        self.backend = backend
        self.upload_limit_mb = upload_limit_mb

    def store(self, file: Any) -> tuple[Path | None, str]:
        """Move one upload from Gradio's cache into UPLOADS_DIR; drop a refused one.

        Returns ``(stored path, "")``, or ``(None, why it was refused)``.
        """
        src = _source(file)
        original = getattr(file, "orig_name", None) or Path(src).name
        try:
            stored = store_upload(
                src,
                self.backend.uploads_dir,
                original_name=original,
                max_mb=self.upload_limit_mb,
                move=_in_cache(src),
            )
        except (UploadRejected, OSError) as exc:
            return None, str(exc)
        finally:
            forget_cached_upload(src)
        return stored, ""

    def choices(self) -> list[tuple[str, str]]:
        """The earlier uploads, newest first, as ``(folder/name, server path)``."""
        return [
            (f"{p.parent.name}/{p.name}", str(p)) for p in list_uploads(self.backend.uploads_dir)
        ]

    def on_load(self) -> Any:
        """The list of earlier uploads, filled in when a page opens."""
        return gr.update(choices=self.choices())

    def on_upload(self, files: Any) -> tuple[Any, Any, str]:
        """Store every file of one upload (several at once); offer the last for insertion."""
        skip = gr.skip
        if not files:
            return skip(), skip(), ""
        items = files if isinstance(files, list) else [files]
        # The same file twice in one upload is one cached file (same content, same name):
        # stored once, since storing moves it.
        items = list({_source(item): item for item in items}.values())
        stored: list[Path] = []
        refused: list[str] = []
        for item in items:
            path, problem = self.store(item)
            if path is None:
                refused.append(problem)
            else:
                stored.append(path)
        root = self.backend.uploads_dir
        lines = [f"- Stored as `{p.relative_to(root)}`" for p in stored]
        lines += [f"- **Upload refused**: {why}" for why in refused]
        if stored:
            lines.append("\nPick one in the list and press **Insert into request** to use it.")
        message = "\n".join(lines)
        if not stored:
            return skip(), skip(), message
        last = str(stored[-1])
        return gr.update(choices=self.choices(), value=last), last, message

    @staticmethod
    def on_select_upload(path: str | None) -> str:
        return path or ""

    @staticmethod
    def on_insert(text: str, path: str | None) -> tuple[Any, str]:
        """Set the request's key for this kind of file (video, image, ...) to ``path``."""
        if not path:
            return gr.skip(), "Upload a file or pick an earlier upload first."
        try:
            return insert_path(text, path), f"Inserted `{path}`."
        except ValueError as exc:
            return gr.skip(), f"**Cannot insert**: fix the request first. {exc}"
