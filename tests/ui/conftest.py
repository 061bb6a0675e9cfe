"""A real app (2 replicas of the sample model) behind the real page, shared per test module.

Each browser test module gets one server: a NotebookApp with two worker
processes (``num_gpus=2, gpus_per_model=1``) running ``cg_ui_models`` (the
sample model plus a fault switch), the page from ``create_gradio_UI`` and a
Gradio server on a free port. Everything is closed at the end of the module.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ui_helpers import TINY, UPLOAD_LIMIT_MB, UIServer, free_port


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UIServer]:
    """One NotebookApp (2 replicas) + the page, launched on a free port for the module."""
    from cosmos_gradio_nb import NotebookApp, create_gradio_UI

    root = tmp_path_factory.mktemp("ui")
    with pytest.MonkeyPatch.context() as mp:
        # The sample's validator checks asset paths against these (DeploymentEnv).
        mp.setenv("OUTPUT_DIR", str(root / "outputs"))
        mp.setenv("UPLOADS_DIR", str(root / "uploads"))
        mp.setenv("LOG_FILE", str(root / "outputs" / "app.log"))
        from cg_ui_models import TestParams

        app = NotebookApp(
            TestParams,
            factory="cg_ui_models:create_worker",
            name=f"ui-test-{root.name}",
            num_gpus=2,
            gpus_per_model=1,
        )
        demo = None
        try:
            demo = create_gradio_UI(
                app.infer,
                header="UI test: sample model",
                default_request=dict(TINY),
                help_text="Tiny renders for the tests.",
                max_upload_mb=UPLOAD_LIMIT_MB,
            )
            port = free_port()
            demo.launch(prevent_thread_lock=True, server_port=port, quiet=True)
            app.wait_ready(timeout=120)
            yield UIServer(app=app, demo=demo, url=f"http://127.0.0.1:{port}/", root=root)
        finally:
            if demo is not None:
                demo.close()
            app.close()
