"""The wiring of the Generate, History and Files tabs and the core endpoints.

One function per panel: it connects the layout's components (``layout.Page``) to
the panel's handler object, so each handler stays testable without a page. The
operations tabs are wired by ``ops_wiring``.
"""

from typing import Any

from .api import ApiEndpoints
from .files import FileBrowser
from .generate import GeneratePanel
from .history_panel import HistoryPanel
from .layout import Page
from .statusbar import StatusBar
from .uploads_panel import UploadsPanel

__all__ = [
    "wire_api",
    "wire_files",
    "wire_generate",
    "wire_history",
    "wire_statusbar",
    "wire_uploads",
]


def wire_generate(page: Page, gen: GeneratePanel) -> None:
    """Generate, Cancel and Reset."""
    private: dict[str, Any] = {"api_visibility": "private"}
    page.generate.click(
        gen.run_request,
        inputs=[page.editor],
        outputs=[page.status, page.video, page.gallery, page.file_links, page.status_json],
        concurrency_limit=None,
        show_progress="hidden",
        **private,
    )
    page.cancel.click(gen.cancel, outputs=[page.cancel_note], queue=False, **private)
    page.generate.click(lambda: "", outputs=[page.cancel_note], queue=False, **private)
    page.reset.click(gen.reset, outputs=[page.editor], queue=False, **private)


def wire_uploads(page: Page, up: UploadsPanel) -> None:
    """Upload, pick an earlier upload, insert it into the request."""
    private: dict[str, Any] = {"api_visibility": "private"}
    page.upload.upload(
        up.on_upload,
        inputs=[page.upload],
        outputs=[page.earlier, page.upload_path, page.upload_msg],
        **private,
    )
    page.earlier.input(
        up.on_select_upload, inputs=[page.earlier], outputs=[page.upload_path], **private
    )
    page.insert.click(
        up.on_insert,
        inputs=[page.editor, page.earlier],
        outputs=[page.editor, page.upload_msg],
        queue=False,
        **private,
    )


def wire_statusbar(page: Page, bar: StatusBar) -> None:
    """The once-a-second log and workers refresh."""
    page.timer.tick(
        bar.refresh,
        inputs=[page.log_sig],
        outputs=[page.log, page.workers, page.log_sig],
        queue=False,
        show_progress="hidden",
        api_visibility="private",
    )


def wire_history(page: Page, hist: HistoryPanel) -> None:
    """The history list (load, page, search, refresh on a timer) and one run's details."""
    private: dict[str, Any] = {"api_visibility": "private", "show_progress": "hidden"}
    listing = [page.hist_table, page.hist_label, page.hist_offset, page.hist_ids, page.hist_sig]
    where = [page.hist_offset, page.hist_search, page.hist_state, page.hist_checked]
    ticking = [
        page.hist_offset,
        page.hist_search,
        page.hist_sig,
        page.hist_state,
        page.hist_checked,
    ]
    detail = [
        page.hist_panel,
        page.hist_video,
        page.hist_gallery,
        page.hist_files,
        page.hist_params,
        page.hist_status,
        page.hist_selected,
    ]
    page.hist_refresh.click(hist.render, inputs=where, outputs=listing, **private)
    page.hist_tab.select(hist.render, inputs=where, outputs=listing, **private)
    page.hist_older.click(hist.older, inputs=where, outputs=listing, **private)
    page.hist_newer.click(hist.newer, inputs=where, outputs=listing, **private)
    search = [page.hist_search, page.hist_state, page.hist_checked]
    page.hist_search.submit(hist.search, inputs=search, outputs=listing, **private)
    page.hist_timer.tick(hist.refresh, inputs=ticking, outputs=listing, queue=False, **private)
    page.hist_table.select(hist.select, inputs=[page.hist_ids], outputs=detail, **private)
    page.hist_load.click(
        hist.load_into_editor,
        inputs=[page.hist_selected],
        outputs=[page.editor, page.tabs, page.hist_note],
        **private,
    )
    # A run that ends in this page shows up at once, not at the next tick.
    page.status.change(hist.refresh, inputs=ticking, outputs=listing, queue=False, **private)


def wire_files(page: Page, fb: FileBrowser) -> None:
    private: dict[str, Any] = {"api_visibility": "private", "show_progress": "hidden"}
    fast = {**private, "queue": False}  # listing and preview: quick, no queue overlay
    folder_outputs = [page.fb_folder, page.fb_file, page.fb_folder_note]
    preview = [
        page.fb_video,
        page.fb_image,
        page.fb_json,
        page.fb_text,
        page.fb_download,
        page.fb_info,
    ]
    page.fb_root.change(
        fb.folders, inputs=[page.fb_root, page.fb_filter], outputs=folder_outputs, **fast
    )
    page.fb_filter.submit(
        fb.folders, inputs=[page.fb_root, page.fb_filter], outputs=folder_outputs, **fast
    )
    page.fb_folder.input(
        fb.files,
        inputs=[page.fb_root, page.fb_folder],
        outputs=[page.fb_file, page.fb_zip_download],
        **fast,
    )
    page.fb_file.input(
        fb.preview, inputs=[page.fb_root, page.fb_folder, page.fb_file], outputs=preview, **fast
    )
    page.fb_zip.click(
        fb.zip_folder,
        inputs=[page.fb_root, page.fb_folder],
        outputs=[page.fb_zip_download, page.fb_zip_note],
        **private,
    )
    page.fb_tab.select(
        fb.folders, inputs=[page.fb_root, page.fb_filter], outputs=folder_outputs, **fast
    )


def wire_api(page: Page, api: ApiEndpoints) -> None:
    """The endpoints scripts call with ``gradio_client`` (documented in the README)."""
    page.api_generate.click(
        api.api_generate,
        inputs=[page.api_in],
        outputs=[page.api_status, page.api_files],
        api_name="generate",
        api_description="Run one request (its JSON text); returns its status JSON and output files.",
        concurrency_limit=None,
    )
    page.api_stream.click(
        api.api_generate_stream,
        inputs=[page.api_in],
        outputs=[page.api_status, page.api_files],
        api_name="generate_stream",
        api_description="Run one request, yielding its state (queued, position, progress) as it "
        "goes, then its status JSON and output files.",
        concurrency_limit=None,
    )
    page.api_default.click(
        api.api_default_request,
        outputs=[page.api_default_out],
        api_name="generate_default_request",
        api_description="The default request as JSON text, to edit and send to /generate.",
        queue=False,
    )
    page.api_upload.click(
        api.api_upload_file,
        inputs=[page.api_upload_in],
        outputs=[page.api_upload_out],
        api_name="upload_file",
        api_description="Store one file under UPLOADS_DIR; returns its server path, to put in "
        "a request (for example as image).",
    )
    page.api_list.click(
        api.api_upload_file_list,
        outputs=[page.api_list_out],
        api_name="upload_file_list",
        api_description="Files stored by earlier uploads, newest first.",
        queue=False,
    )
    page.api_status_btn.click(
        api.api_request_status,
        inputs=[page.api_id_in],
        outputs=[page.api_id_out],
        api_name="request_status",
        api_description="A request's state by id: live (queue position, progress) while it "
        "waits or runs, then its status JSON.",
        queue=False,
    )
