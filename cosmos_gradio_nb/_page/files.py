"""The page's file browser over OUTPUT_DIR and UPLOADS_DIR: preview, download, zip a folder.

Only files whose real location is inside one of the two folders are listed,
previewed or served: every path is resolved (symbolic links followed) and
checked against its root, and a file with more than one hard link is refused
(a hard link placed in a folder would otherwise serve a file from anywhere).
A folder's .zip is built on the server, only for folders inside the roots, in
a private temporary folder (:class:`~.zips.ZipStore`: one per page session); the
page's guard serves it from there through a link, once, then deletes it (never
a component value, which Gradio would copy into its cache first).
"""

import json
import os
import stat
import zipfile
from pathlib import Path
from typing import Any

import gradio as gr

from .._core.filetypes import FileKind, kind_of
from .._core.presentation import esc
from .._core.trash import TRASH_DIR
from .backend import Backend
from .zips import ZipStore

__all__ = ["MAX_ZIP_BYTES", "FileBrowser", "safe_file"]

MAX_FOLDERS = 200  # folders offered at once (newest first); the filter finds the others
MAX_FILES = 500  # files listed in one folder
PREVIEW_TEXT_BYTES = 256 * 1024
MAX_ZIP_BYTES = 4 * 1024**3
_STORED = {FileKind.VIDEO, FileKind.IMAGE}  # already compressed: stored, not deflated


def _inside(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def safe_file(path: str | os.PathLike[str], roots: list[Path]) -> Path | None:
    """``path`` resolved, if it is a regular file really inside one of ``roots``; else None.

    Refuses a file with a link count above 1: a hard link inside a root may point
    at any file of the server's, and the page never makes hard links.
    """
    try:
        real = Path(path).resolve(strict=True)
        st = real.stat()
    except (OSError, RuntimeError):
        return None
    if not any(_inside(real, r) for r in roots):
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
        return None
    return real


class FileBrowser:
    """Handlers of the file browser (``layout`` builds it, ``page`` wires it)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.roots = {"outputs": backend.output_dir, "uploads": backend.uploads_dir}
        self.zips = ZipStore()

    def _root(self, key: str) -> Path:
        root = self.roots.get(key)
        if root is None:
            raise gr.Error(f"unknown folder {key!r}")
        return root.resolve()

    def _folder(self, key: str, folder: str) -> Path | None:
        root = self._root(key)
        if not folder or "/" in folder or "\\" in folder or folder in (".", "..", TRASH_DIR):
            return None
        path = (root / folder).resolve()
        return path if path.parent == root and path.is_dir() else None

    # ------------------------------------------------------------------ listing
    def folder_names(self, key: str, contains: str = "") -> list[str]:
        """Sub-folders of a root, newest first.

        Names start with their time stamp to the second; folders of the same second
        are ordered by their modification time.
        """
        root = self._root(key)
        try:
            with os.scandir(root) as it:
                entries = [
                    (e.name[:15], _mtime(e), e.name)
                    for e in it
                    if e.is_dir(follow_symlinks=False) and e.name != TRASH_DIR  # deleted runs
                ]
        except OSError:
            return []
        entries.sort(reverse=True)
        names = [name for _stamp, _mtime_ns, name in entries]
        contains = (contains or "").strip()
        if contains:
            names = [n for n in names if contains in n]
        return names

    def folders(self, key: str, contains: str = "") -> tuple[Any, Any, str]:
        """The folder list (at most 200, newest first), cleared file list, and a count."""
        names = self.folder_names(key, contains)
        shown = names[:MAX_FOLDERS]
        note = f"{len(names)} folder(s) in `{self._root(key)}`"
        if len(names) > len(shown):
            note += f"; the newest {len(shown)} are listed, filter to find others"
        first = shown[0] if shown else ""
        file_update, _zip = self.files(key, first)
        return gr.update(choices=shown, value=first or None), file_update, note

    def file_list(self, key: str, folder: str) -> list[Path]:
        base = self._folder(key, folder)
        if base is None:
            return []
        roots = [self._root(key)]
        found: list[Path] = []
        for dirpath, _dirs, names in os.walk(base):
            for name in sorted(names):
                path = safe_file(Path(dirpath) / name, roots)
                if path is not None and _inside(path, base):
                    found.append(path)
                if len(found) >= MAX_FILES:
                    return found
        return found

    def files(self, key: str, folder: str) -> tuple[Any, Any]:
        """The files of one folder for the file list, and the zip button reset."""
        base = self._folder(key, folder)
        choices: list[tuple[str, str]] = []
        if base is not None:
            for p in self.file_list(key, folder):
                rel = str(p.relative_to(base))
                choices.append((f"{rel} ({_size(p.stat().st_size)})", rel))
        return gr.update(choices=choices, value=None), gr.update(value="")

    # ------------------------------------------------------------------ one file
    def resolve(self, key: str, folder: str, rel: str) -> Path | None:
        """The file ``rel`` of ``folder`` if it may be shown and served, else None."""
        base = self._folder(key, folder)
        if base is None or not rel:
            return None
        path = safe_file(base / rel, [self._root(key)])
        return path if path is not None and _inside(path, base) else None

    def preview(self, key: str, folder: str, rel: str) -> tuple[Any, ...]:
        """``(video, image, json, text, download button, info)`` for one file."""
        hide = gr.update(visible=False, value=None)
        path = self.resolve(key, folder, rel)
        if path is None:
            note = "Pick a file." if not rel else f"`{rel}` cannot be shown."
            return hide, hide, hide, hide, gr.update(value=None, visible=False), note
        kind = kind_of(path)
        video = gr.update(visible=True, value=str(path)) if kind is FileKind.VIDEO else hide
        image = gr.update(visible=True, value=str(path)) if kind is FileKind.IMAGE else hide
        as_json = hide
        text = hide
        if kind in (FileKind.JSON, FileKind.TEXT):
            body, cut = _read_text(path)
            parsed: Any = None
            if kind is FileKind.JSON and not cut:
                try:
                    parsed = json.loads(body)
                except ValueError:
                    parsed = None
            if parsed is not None:
                as_json = gr.update(visible=True, value=parsed)
            else:
                text = gr.update(visible=True, value=body + ("\n..." if cut else ""))
        size = path.stat().st_size
        info = f"`{path}` · {_size(size)} · {kind.value}"
        if kind is FileKind.OTHER:
            info += " · no preview for this type: download it"
        download = gr.update(value=str(path), visible=True, label=f"Download {path.name}")
        return video, image, as_json, text, download, info

    # ------------------------------------------------------------------ a folder as .zip
    def zip_folder(
        self, key: str, folder: str, request: gr.Request | None = None
    ) -> tuple[Any, str]:
        """Build ``<folder>.zip`` of one folder; return the link that serves it, and a note.

        The page session's previous zip is deleted first (one zip per session).
        """
        base = self._folder(key, folder)
        if base is None:
            return gr.update(value=""), "Pick a folder first."
        paths = self.file_list(key, folder)
        total = sum(p.stat().st_size for p in paths)
        if total > MAX_ZIP_BYTES:
            return (
                gr.update(value=""),
                f"`{folder}` holds {_size(total)}, over the {_size(MAX_ZIP_BYTES)} zip limit: "
                "download its files one by one.",
            )
        session = str(getattr(request, "session_hash", None) or "")
        out = self.zips.slot(session, f"{folder}.zip")
        tmp = out.with_suffix(".part")
        with zipfile.ZipFile(tmp, "w") as zf:
            for path in paths:
                kind = kind_of(path)
                compress = zipfile.ZIP_STORED if kind in _STORED else zipfile.ZIP_DEFLATED
                zf.write(path, f"{folder}/{path.relative_to(base)}", compress_type=compress)
        tmp.replace(out)
        size = _size(out.stat().st_size)
        href = self.zips.publish(session, out)
        link = (
            f'<a id="cg-fb-zip-download" class="cg-zip-link" href="{esc(href)}" '
            f'download="{esc(out.name)}">Download {esc(out.name)} ({size})</a>'
        )
        note = f"`{out.name}`: {len(paths)} file(s), {size}; deleted once downloaded"
        return gr.update(value=link), note

    def forget_session(self, request: gr.Request | None = None) -> None:
        """A page session ended: its zip goes."""
        session = getattr(request, "session_hash", None)
        if session:
            self.zips.forget_session(str(session))

    def close(self) -> None:
        self.zips.close()


def _mtime(entry: os.DirEntry[str]) -> int:
    try:
        return entry.stat(follow_symlinks=False).st_mtime_ns
    except OSError:
        return 0


def _read_text(path: Path) -> tuple[str, bool]:
    with path.open("rb") as fh:
        data = fh.read(PREVIEW_TEXT_BYTES + 1)
    cut = len(data) > PREVIEW_TEXT_BYTES
    return data[:PREVIEW_TEXT_BYTES].decode("utf-8", errors="replace"), cut


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"
