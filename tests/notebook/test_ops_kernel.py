"""The app panel's queue and machine figures, and ``compare``, in a real Jupyter kernel.

One ``jupyter lab`` server and one kernel for the module (``nb_harness``): code runs
through the kernel's websocket as JupyterLab sends it, and what the kernel displays
is read back from its ``display_data`` messages. Widgets have a real comm here: a
row's button is clicked through the widget's Python side, as a browser click ends up.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from nb_harness import JupyterServer, KernelChannel, wait_for

pytestmark = pytest.mark.notebook

TINY = {"width": 64, "height": 48, "num_frames": 6, "fps": 6}
SLOW = {**TINY, "num_frames": 200, "frame_delay": 0.1}  # 20 s unless stopped


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelChannel]:
    server = JupyterServer.start(tmp_path_factory.mktemp("ops-kernel"))
    channel = None
    try:
        channel = server.connect(server.start_kernel())
        channel.execute(
            """
from cosmos_gradio_nb import NotebookApp, compare, load_results
from cosmos_gradio_nb.samples import FACTORY_MODULE, SampleParams
app = NotebookApp(SampleParams, FACTORY_MODULE, "create_worker", name="ops-kernel")
app.wait_ready(timeout=120)
"""
        )
        yield channel
        channel.execute("app.close()")
    finally:
        if channel is not None:
            channel.close()
        left = server.stop()
        assert not left, f"processes outlived the Jupyter server: {[p.cmdline() for p in left]}"


def test_the_app_panel_shows_the_machine_and_stops_a_queued_request_from_its_row(
    kernel: KernelChannel, artifacts_dir: Path
) -> None:
    """The rows need the engine's ``app.requests()``."""
    shown = kernel.execute("app")
    html = "".join(shown.html())
    pid = kernel.value("app.workers()[0].pid")
    assert f"<td>{pid}</td>" in html and "<th>load</th>" in html
    assert re.search(r"CPU \d+%|GPU \d", html), "no machine figures in the panel"
    if "No GPU figures" in html:  # a machine without NVIDIA GPUs says so
        assert "showing CPU and memory use instead" in html
    kernel.execute(
        f"""
from cosmos_gradio_nb._notebook.panels import app_panel
slow = app.submit({SLOW!r})
waiting = [app.submit({{**{TINY!r}, "seed": s}}) for s in (1, 2)]
panel = app_panel(app, interval=0.1)
rows = panel.cosmos_queue.box
"""
    )
    wait_for(lambda: kernel.value("slow.state") == "running", 60, "the slow request to run")
    wait_for(lambda: kernel.value("len(rows.children)") == 3, 20, "three queue rows")
    labels = kernel.value("[r.children[0].description for r in rows.children]")
    assert labels == ["Stop", "Cancel", "Cancel"]
    first = kernel.value("rows.children[1].children[1].value")
    assert kernel.value("waiting[0].request_id[:8]") in first and "next in line" in first
    kernel.execute("rows.children[1].children[0].click()")  # Cancel the first queued one
    wait_for(lambda: kernel.value("waiting[0].cancelled()"), 20, "the row's request to cancel")
    assert kernel.value("waiting[1].done()") is False and kernel.value("slow.state") == "running"
    wait_for(lambda: kernel.value("len(rows.children)") == 2, 20, "the row to go")
    kernel.execute("rows.children[0].children[0].click()")  # Stop the running one
    wait_for(lambda: kernel.value("slow.cancelled()"), 60, "the running request to stop")
    assert kernel.value("waiting[1].result(timeout=60).status['state']") == "succeeded"
    (artifacts_dir / "notebook").mkdir(parents=True, exist_ok=True)
    (artifacts_dir / "notebook" / "app_panel.html").write_text(html)


def test_compare_displays_two_runs_side_by_side_in_the_kernel(kernel: KernelChannel) -> None:
    kernel.execute(
        f"""
a = app.submit({{**{TINY!r}, "seed": 5}}).result(timeout=60)
b = app.submit({{**{TINY!r}, "seed": 6, "prompt": "another"}}).result(timeout=60)
"""
    )
    shown = kernel.execute("compare([a, b])")
    html = "".join(shown.html())
    assert html.count('<video class="cg-cmp-video" src="data:video/mp4;base64,') == 2
    assert "<code>seed</code>" in html and "<code>prompt</code>" in html
    assert "<code>width</code>" not in html  # the same in both: not listed
    assert "<script>" in html and "Play all from the start" in html
    assert kernel.value("compare(load_results(limit=2)).differing") == ["prompt", "seed"]
    failed = kernel.execute("compare([a])", allow_error=True)
    assert failed.error and "compare takes 2 to 4 runs, got 1" in failed.error


def test_queue_rows_follow_the_apps_listing_and_stop_through_the_future() -> None:
    """The live panel's rows against a stand-in app (the real one runs in the kernel above)."""
    import threading
    from types import SimpleNamespace

    from cosmos_gradio_nb._core.queue_view import queue_rows
    from cosmos_gradio_nb._notebook.panels import QUEUE_ROWS, QueueRows

    stopped: list[str] = []
    done = threading.Event()

    def future(rid: str) -> SimpleNamespace:
        def terminate() -> bool:
            stopped.append(rid)
            done.set()
            return True

        return SimpleNamespace(request_id=rid, done=lambda: False, terminate=terminate)

    entries = [
        {
            "id": f"{i:012x}",
            "state": "running" if i < 2 else "queued",
            "source": "api",
            "position": None if i < 2 else i - 2,
            "params": {"seed": i},
            "queued_at": 1.0,
        }
        for i in range(QUEUE_ROWS + 5)
    ]

    class App:  # weakly referenced by the panel, as a real app is
        history = [future(e["id"]) for e in entries]

    app = App()
    rows = QueueRows(app)  # type: ignore[arg-type]
    rows.update(queue_rows(entries))
    lines = rows.box.children
    assert len(lines) == QUEUE_ROWS + 1 and "5 more queued" in lines[-1].value
    assert [line.children[0].description for line in lines[:3]] == ["Stop", "Stop", "Cancel"]
    assert "next in line" in lines[2].children[1].value and "api" in lines[2].children[1].value
    lines[2].children[0].click()
    assert done.wait(10) and stopped == [entries[2]["id"]]
    assert lines[2].children[0].disabled and lines[2].children[0].description == "Cancelling"
    rows.update(queue_rows(entries[3:]))  # it left the queue: its row goes, the others stay
    assert rows.box.children[0] is lines[3] and len(rows.box.children) == QUEUE_ROWS + 1
    assert entries[2]["id"] not in rows._rows
