"""The page's event handlers: Generate, Cancel, uploads, the log, and the API endpoints.

One object, :class:`PageHandlers`, holds them, built on a :class:`Backend` and
nothing of the page's layout, so a test can call each handler without a
server. ``page`` wires them to the components; the history panel and the file
browser have their own objects (``history_panel``, ``files``).
"""

import asyncio
import concurrent.futures
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from .._core.history import list_run_names, read_run
from .._core.logtail import read_tail
from .._core.presentation import classify_error
from .._core.uploads import UploadRejected, insert_path, list_uploads, store_upload
from .backend import Backend, Call, Outputs, collect_outputs
from .live import LiveSnapshot, follow, live_state
from .render import error_html, failure_html, files_html, status_html

__all__ = ["PageHandlers"]

_NO_CANCEL = "Nothing to cancel: no request of this page is waiting or running."


@dataclass
class _Active:
    """The call a browser session is waiting on (for Cancel)."""

    call: Call
    stop_requested_while: str | None = None  # the state when Cancel was pressed


def _read_status_json(fut: Any) -> dict[str, Any]:
    out_dir = getattr(fut, "output_dir", None)
    if out_dir is None:
        return {}
    try:
        data = json.loads((Path(out_dir) / "status.json").read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _partial_of(status: dict[str, Any]) -> list[str]:
    files = status.get("files")
    files = files if isinstance(files, dict) else {}
    return [p for p in (files.get("partial") or []) if isinstance(p, str) and Path(p).is_file()]


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
    try:
        real.unlink()
        if real.parent != cache:
            real.parent.rmdir()  # fails harmlessly while other files are in it
    except OSError:
        pass


def _api_error(exc: BaseException) -> gr.Error:
    view = classify_error(exc)
    return gr.Error(f"{view.title}: {view.message}")


class PageHandlers:
    """Generate, Cancel, uploads, log refresh and the API endpoints of one page.

    Parameters
    ----------
    backend:
        What requests go to (``infer_func``) and where files are.
    default_text:
        The editor's default request (Reset, ``/generate_default_request``).
    upload_limit_mb:
        The upload size limit, checked again here after Gradio's own check.
    """

    def __init__(self, backend: Backend, default_text: str, upload_limit_mb: float) -> None:
        self.backend = backend
        self.default_text = default_text
        self.upload_limit_mb = upload_limit_mb
        self.active: dict[str, _Active] = {}

    # ------------------------------------------------------------------ Generate
    async def parse(self, text: str) -> dict[str, Any]:
        """The request's JSON (``Backend.parse``, shared with the API)."""
        return await self.backend.parse(text)

    async def run_request(self, text: str, request: gr.Request) -> AsyncIterator[tuple[Any, ...]]:
        """Call ``infer_func`` and stream its state to the status panel until it ends.

        Yields ``(status panel, video, gallery, file links, status JSON)``.
        """
        skip = gr.skip
        t0 = time.monotonic()
        sid = (request.session_hash if request is not None else None) or ""
        try:
            params = await self.parse(text)
        except ValueError as exc:
            yield error_html("Not a request", str(exc)), skip(), skip(), skip(), skip()
            return
        call = self.backend.start(params)
        entry = _Active(call)
        if sid:
            self.active[sid] = entry
        last = ""
        try:
            async for snap in follow(call, t0):
                html = snap.panel_html()
                if html != last:
                    last = html
                    yield html, skip(), skip(), skip(), skip()
        finally:
            if sid and self.active.get(sid) is entry:
                del self.active[sid]
        yield self._final(entry, time.monotonic() - t0)

    def _final(self, entry: _Active, elapsed: float) -> tuple[Any, ...]:
        """The last update of a call: its result, its error, or that it was cancelled."""
        call = entry.call
        live = call.live
        rid = str(getattr(live, "request_id", "") or "")
        value, error = call.outcome()
        if isinstance(error, concurrent.futures.CancelledError):
            return self._cancelled(entry, live, rid, elapsed)
        if error is not None:
            status = _read_status_json(live) if live is not None else {}
            status = status or {
                "state": "failed" if live is not None else "refused",
                "error": {"type": type(error).__name__, "message": str(error)},
            }
            partial = _partial_of(status)
            panel = failure_html(error, rid, elapsed, ran=live is not None)
            return panel, None, [], files_html([], partial) if partial else "", status
        out = collect_outputs(value)
        return self._succeeded(out, rid, elapsed)

    @staticmethod
    def _cancelled(entry: _Active, live: Any, rid: str, elapsed: float) -> tuple[Any, ...]:
        how = (
            "stopped while running; its worker group was restarted"
            if entry.stop_requested_while == "running"
            else "removed from the queue before it ran"
        )
        status = _read_status_json(live) if live is not None else {}
        partial = _partial_of(status)
        return (
            status_html("cancelled", request_id=rid, elapsed=elapsed, note=f"Request {how}."),
            None,
            [],
            files_html([], partial),
            status or gr.skip(),
        )

    @staticmethod
    def _succeeded(out: Outputs, rid: str, elapsed: float) -> tuple[Any, ...]:
        where = out.status.get("output_dir", "")
        n_v, n_i = len(out.videos), len(out.images)
        note = f"{n_v} video{'s' * (n_v != 1)}, {n_i} image{'s' * (n_i != 1)}"
        if where:
            note += f" in {where}"
        return (
            status_html("succeeded", request_id=out.request_id or rid, elapsed=elapsed, note=note),
            out.videos[0] if out.videos else None,
            out.images + out.videos[1:],
            files_html(out.files, out.partial),
            out.status,
        )

    # ------------------------------------------------------------------ Cancel
    async def cancel(self, request: gr.Request) -> str:
        """Stop this page's request; the answer is shown beside the button, in the page."""
        sid = (request.session_hash if request is not None else None) or ""
        entry = self.active.get(sid)
        if entry is None or entry.call.done():
            return _NO_CANCEL
        fut = entry.call.live
        if fut is None:
            return (
                "This request cannot be stopped: its infer function did not go through an "
                "app's queue, so there is no worker to stop."
            )
        entry.stop_requested_while = live_state(fut)
        if hasattr(fut, "terminate"):
            stopped = await asyncio.to_thread(fut.terminate)
        else:
            stopped = fut.cancel()
        if not stopped and not fut.done():
            return "This request cannot be stopped once it runs (its future has no terminate)."
        return "Stopping the request ..." if stopped else _NO_CANCEL

    # ------------------------------------------------------------------ API
    async def _outcome(self, text: str) -> tuple[Outputs, Call]:
        try:
            params = await self.parse(text)
        except ValueError as exc:
            raise gr.Error(f"Not a request: {exc}") from None
        call = self.backend.start(params)
        try:
            value = await asyncio.wrap_future(call.returned)
            if isinstance(value, concurrent.futures.Future):
                value = await asyncio.wrap_future(value)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise _api_error(exc) from None
        return collect_outputs(value), call

    async def api_generate(self, text: str) -> tuple[dict[str, Any], list[str]]:
        """Run one request (its JSON text) and return its status JSON and output files."""
        out, _call = await self._outcome(text)
        return out.status, out.files

    async def api_generate_stream(
        self, text: str
    ) -> AsyncIterator[tuple[dict[str, Any], list[str]]]:
        """Run one request, yielding its state as it goes, then its status JSON and files."""
        try:
            params = await self.parse(text)
        except ValueError as exc:
            raise gr.Error(f"Not a request: {exc}") from None
        call = self.backend.start(params)
        last: LiveSnapshot | None = None
        async for snap in follow(call, time.monotonic()):
            if snap != last:  # elapsed alone is no news
                last = snap
                yield snap.stream_info(), []
        value, error = call.outcome()
        if isinstance(error, concurrent.futures.CancelledError):
            raise gr.Error("Cancelled: the request was stopped") from None
        if isinstance(error, Exception):
            raise _api_error(error) from None
        if error is not None:  # not an Exception (SystemExit, ...): not the client's to read
            raise error
        out = collect_outputs(value)
        yield out.status, out.files

    def api_default_request(self) -> str:
        """The default request as JSON text, ready to edit and send to ``/generate``."""
        return self.default_text

    def api_upload_file(self, file: Any) -> str:
        """Store one uploaded file under UPLOADS_DIR; return its server path for a request."""
        if file is None:
            raise gr.Error("No file: pass handle_file('path/to/file')")
        stored, problem = self._store(file)
        if stored is None:
            raise gr.Error(f"Upload refused: {problem}")
        return str(stored)

    def api_upload_file_list(self) -> list[dict[str, Any]]:
        """Files stored by earlier uploads, newest first: server path, name, size, time.

        ``server_path``, not ``path``: gradio_client takes a dict with ``path`` for a file
        to download and would replace it by a local copy.
        """
        out = []
        for path in list_uploads(self.backend.uploads_dir):
            try:
                st = path.stat()
            except OSError:
                continue
            out.append(
                {
                    "server_path": str(path),
                    "name": path.name,
                    "folder": path.parent.name,
                    "size": st.st_size,
                    "uploaded_at": st.st_mtime,
                }
            )
        return out

    def api_request_status(self, request_id: str) -> dict[str, Any]:
        """A request's state now: live (queue position, progress) or from its status.json."""
        rid = (request_id or "").strip()
        if not rid.isalnum() or len(rid) > 64:
            raise gr.Error(f"not a request id: {request_id!r}")
        fut = self.backend.live_future(rid)
        if fut is not None and not fut.done():
            return {
                "id": rid,
                "state": live_state(fut),
                "queue_position": getattr(fut, "queue_position", None),
                "progress": getattr(fut, "progress", None),
                "message": getattr(fut, "progress_message", ""),
                "output_dir": str(getattr(fut, "output_dir", "")),
            }
        for name in list_run_names(self.backend.output_dir):
            if name.endswith(f"_{rid}"):
                run = read_run(self.backend.output_dir / name)
                if run.broken:
                    return {"id": rid, "state": run.state, "broken": run.broken}
                return run.status
        if fut is not None:  # finished in this session but its folder is gone
            return {"id": rid, "state": live_state(fut)}
        raise gr.Error(f"no request {rid} in this session or in {self.backend.output_dir}")

    # ------------------------------------------------------------------ uploads
    def _store(self, file: Any) -> tuple[Path | None, str]:
        """Copy one upload into UPLOADS_DIR, then drop Gradio's cached copy, kept or refused."""
        src = getattr(file, "name", None) or getattr(file, "path", None) or str(file)
        original = getattr(file, "orig_name", None) or Path(src).name
        try:
            stored = store_upload(
                src, self.backend.uploads_dir, original_name=original, max_mb=self.upload_limit_mb
            )
        except (UploadRejected, OSError) as exc:
            return None, str(exc)
        finally:
            forget_cached_upload(src)
        return stored, ""

    def upload_choices(self) -> list[tuple[str, str]]:
        return [
            (f"{p.parent.name}/{p.name}", str(p)) for p in list_uploads(self.backend.uploads_dir)
        ]

    def on_upload(self, files: Any) -> tuple[Any, Any, str]:
        """Store every file of one upload (several at once); offer the last for insertion."""
        skip = gr.skip
        if not files:
            return skip(), skip(), ""
        items = files if isinstance(files, list) else [files]
        stored: list[Path] = []
        refused: list[str] = []
        for item in items:
            path, problem = self._store(item)
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
        return gr.update(choices=self.upload_choices(), value=last), last, message

    @staticmethod
    def on_select_upload(path: str | None) -> str:
        return path or ""

    @staticmethod
    def on_insert(text: str, path: str | None) -> tuple[Any, str]:
        if not path:
            return gr.skip(), "Upload a file or pick an earlier upload first."
        try:
            return insert_path(text, path), f"Inserted `{path}`."
        except ValueError as exc:
            return gr.skip(), f"**Cannot insert**: fix the request first. {exc}"

    # ------------------------------------------------------------------ log and workers
    def refresh(self, sig: Any) -> tuple[Any, str, Any]:
        """The log tail (only when the file changed) and the workers line, once a second."""
        log_file = self.backend.log_file
        try:
            st = log_file.stat()
            new_sig = [st.st_size, st.st_mtime_ns]
        except OSError:
            new_sig = None
        text = gr.skip() if new_sig == sig else read_tail(log_file)
        return text, self.backend.workers_line(), new_sig

    def on_load(self) -> tuple[Any, str, str, Any]:
        return (
            gr.update(choices=self.upload_choices()),
            read_tail(self.backend.log_file),
            self.backend.workers_line(),
            None,
        )
