"""The endpoints scripts call with ``gradio_client``, as the README documents them.

:class:`ApiEndpoints` answers ``/generate``, ``/generate_stream``,
``/generate_default_request``, ``/upload_file``, ``/upload_file_list`` and
``/request_status``. It shares the page's pieces rather than repeating them: the
request text is parsed by ``Backend.parse`` (as Generate does), the stream follows
the call with :func:`~.live.follow` and sends each :class:`~.live.LiveSnapshot`
as :meth:`~.live.LiveSnapshot.stream_info` (the page's status panel renders the
same snapshots), and files are stored by the uploads panel's
:meth:`~.uploads_panel.UploadsPanel.store`. Errors reach the client as
``gr.Error`` titled like the page's (``classify_error``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import gradio as gr

from .._core.history import list_run_names, read_run
from .._core.presentation import classify_error
from .._core.uploads import list_uploads
from .backend import Backend, Call, Outputs, collect_outputs
from .live import LiveSnapshot, follow, live_state
from .uploads_panel import UploadsPanel

__all__ = ["LATEST", "ApiEndpoints"]

LATEST = "latest"
"""What ``/request_status`` takes for the newest request (its "Use via API" example)."""


log = logging.getLogger("cosmos_gradio_nb.ui")


def _refusal(endpoint: str, message: str) -> gr.Error:
    """The error a client reads, logged in one line (Gradio would print ~30 lines of its
    own traceback for every refused request)."""
    line = " / ".join(part.strip() for part in message.splitlines() if part.strip())
    log.warning("API %s: %s", endpoint, line if len(line) <= 300 else line[:297] + "...")
    return gr.Error(message, print_exception=False)


def input_refusal(api_name: Any, exc: Exception) -> gr.Error:
    """What Gradio's own refusal of an input (before any handler runs) is reported as."""
    if isinstance(exc, gr.Error) and not exc.print_exception:
        return exc
    message = exc.message if isinstance(exc, gr.Error) else f"Input refused: {exc}"
    return _refusal(f"/{api_name}" if api_name else "(page event)", str(message))


def _api_error(endpoint: str, exc: BaseException) -> gr.Error:
    view = classify_error(exc)
    return _refusal(endpoint, f"{view.title}: {view.message}")


class ApiEndpoints:
    """The API of one page (``page`` wires each method under its ``api_name``).

    Parameters
    ----------
    backend:
        What requests go to (``infer_func``) and where files are.
    default_text:
        The default request (``/generate_default_request``).
    uploads:
        Stores ``/upload_file``'s files the way the page stores its uploads.
    """

    def __init__(self, backend: Backend, default_text: str, uploads: UploadsPanel) -> None:
        self.backend = backend
        self.default_text = default_text
        self.uploads = uploads

    async def _start(self, text: str, endpoint: str) -> Call:
        """Parse the request text and call ``infer_func`` with it."""
        try:
            params = await self.backend.parse(text)
        except ValueError as exc:
            raise _refusal(endpoint, f"Not a request: {exc}") from None
        return self.backend.start(params, source="api")

    async def api_generate(self, text: str) -> tuple[dict[str, Any], list[str]]:
        """Run one request (its JSON text) and return its status JSON and output files."""
        call = await self._start(text, "/generate")
        try:
            value = await asyncio.wrap_future(call.returned)
            if isinstance(value, concurrent.futures.Future):
                value = await asyncio.wrap_future(value)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise _api_error("/generate", exc) from None
        out = collect_outputs(value)
        return out.status, out.files

    async def api_generate_stream(
        self, text: str
    ) -> AsyncIterator[tuple[dict[str, Any], list[str]]]:
        """Run one request, yielding its state as it goes, then its status JSON and files."""
        call = await self._start(text, "/generate_stream")
        last: LiveSnapshot | None = None
        async for snap in follow(call, time.monotonic()):
            if snap != last:  # elapsed alone is no news
                last = snap
                yield snap.stream_info(), []
        out = self._outputs(call)
        yield out.status, out.files

    @staticmethod
    def _outputs(call: Call) -> Outputs:
        """A done call's outputs, or its error as the client should read it."""
        value, error = call.outcome()
        if isinstance(error, concurrent.futures.CancelledError):
            raise _refusal("/generate_stream", "Cancelled: the request was stopped") from None
        if isinstance(error, Exception):
            raise _api_error("/generate_stream", error) from None
        if error is not None:  # not an Exception (SystemExit, ...): not the client's to read
            raise error
        return collect_outputs(value)

    def api_default_request(self) -> str:
        """The default request as JSON text, ready to edit and send to ``/generate``."""
        return self.default_text

    def api_upload_file(self, file: Any) -> str:
        """Store one uploaded file under UPLOADS_DIR; return its server path for a request."""
        if file is None:
            raise _refusal("/upload_file", "No file: pass handle_file('path/to/file')")
        stored, problem = self.uploads.store(file)
        if stored is None:
            raise _refusal("/upload_file", f"Upload refused: {problem}")
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

    def _latest_id(self) -> str | None:
        """The newest request: this session's last, else the newest folder of OUTPUT_DIR."""
        history = getattr(self.backend.app, "history", None) or []
        if history:
            return str(history[-1].request_id)
        names = list_run_names(self.backend.output_dir)
        return names[0].rpartition("_")[2] if names else None

    def api_request_status(self, request_id: str) -> dict[str, Any]:
        """A request's state now: live (queue position, progress) or from its status.json.

        ``"latest"`` stands for the newest request (``{"state": "none"}`` before any).
        """
        rid = (request_id or "").strip()
        if rid == LATEST:
            found = self._latest_id()
            if found is None:
                return {"id": None, "state": "none", "message": "no request has run yet"}
            rid = found
        if not rid.isalnum() or len(rid) > 64:
            raise _refusal("/request_status", f"not a request id: {request_id!r}")
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
        raise _refusal(
            "/request_status", f"no request {rid} in this session or in {self.backend.output_dir}"
        )
