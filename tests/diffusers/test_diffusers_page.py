"""The tiny Cosmos 2.5 pipeline behind the real page, in a real headless Chromium.

The editor is prefilled from the validator derived from the pipeline; Generate
runs the pipeline in the worker, and the video plays in the page.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tiny_models import video_info, wait_for
from ui_helpers import UIServer, free_port, open_page, request_id_of, set_request, shot, wait_status

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(video_app: Any) -> Iterator[UIServer]:
    from cosmos_gradio_nb import create_gradio_UI

    demo = create_gradio_UI(video_app.infer, header="Tiny Cosmos 2.5 (random weights)")
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_port=port, quiet=True)
    try:
        yield UIServer(app=video_app, demo=demo, url=f"http://127.0.0.1:{port}/", root=Path("."))
    finally:
        demo.close()


def test_generate_plays_the_pipelines_video(
    page: Any, server: UIServer, artifacts_dir: Path
) -> None:
    open_page(page, server)
    editor = json.loads(page.inner_text("#cg-editor .cm-content"))
    assert editor == server.app.default_request  # the pipeline's validator, with our defaults
    page.click("text=Parameters")
    page.wait_for_selector("#cg-help table")
    help_text = page.inner_text("#cg-help")
    assert "num_inference_steps" in help_text and "denoising steps" in help_text
    shot(page, artifacts_dir, "diffusers-01-loaded")

    set_request(page, {**editor, "seed": 21, "prompt": "a robot arm stacks red blocks"})
    page.click("#cg-generate")
    text = wait_status(page, ("succeeded",), timeout=120)
    assert "1 video, 1 image" in text
    page.wait_for_function(
        "() => { const v = document.querySelector('#cg-video video');"
        " return !!v && v.readyState >= 2 && v.videoWidth === 64 }",
        timeout=30_000,
    )
    names = page.inner_text("#cg-files").replace("\n", "")
    assert "video.mp4" in names and "poster.png" in names
    fut = server.future(request_id_of(page))
    assert fut.result().status["seed"] == 21
    assert video_info(fut.result().videos[0])[:3] == (9, 64, 64)
    wait_for(
        lambda: page.eval_on_selector("#cg-gallery img", "i => i.complete && i.naturalWidth") == 64,
        10,
        "the poster to load",
    )
    shot(page, artifacts_dir, "diffusers-02-video")
