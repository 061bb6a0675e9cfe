"""A detached app in a real Jupyter kernel: the model stays loaded across a kernel restart.

One ``jupyter lab`` (with jupyter-server-proxy, as ``tests/notebook`` runs it) and
one kernel driven over its websocket. The cell defines its validator and factory
in the notebook itself (so they are shipped to the server by value) and creates
the app with ``detach=True``. The kernel is restarted through Jupyter's REST API
while a long request runs; the same cell, run again, attaches to the running
server, whose workers are the same processes, and the long request is followed
to its result. ``launch()`` shows the server's page through the proxy (checked in
Chromium), and ``shutdown()`` leaves no process.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

HERE = Path(__file__).resolve().parent
NB = HERE.parent / "notebook"
if str(NB) not in sys.path:
    sys.path.insert(0, str(NB))

from nb_harness import JupyterServer, KernelChannel, wait_for  # noqa: E402
from remote_helpers import alive  # noqa: E402

pytestmark = [pytest.mark.notebook, pytest.mark.browser]

CELL = '''
import time
from pydantic import BaseModel, Field
from cosmos_gradio_nb import NotebookApp

class Params(BaseModel):
    """Defined in the notebook: shipped to the server by value."""
    op: str = "echo"
    seconds: float = Field(0.0, ge=0, le=600)

def create_worker():
    import os, time
    class Model:
        def infer(self, args):
            time.sleep(args.get("seconds", 0))
            return {"pid": os.getpid(), "op": args.get("op")}
    return Model()

_t0 = time.perf_counter()
app = NotebookApp(Params, factory=create_worker, name="kernel-detach", detach=True)
attach_s = time.perf_counter() - _t0
'''


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    srv = JupyterServer.start(tmp_path_factory.mktemp("jupyter-detach"))
    try:
        yield srv
    finally:
        left = srv.stop()
        assert not left, f"processes outlived the Jupyter server: {[p.cmdline() for p in left]}"


def _restart(server: JupyterServer, kernel_id: str, channel: KernelChannel) -> KernelChannel:
    """Restart the kernel as JupyterLab's button does; a new process, a new channel."""
    before = server.kernel_pid(kernel_id)
    channel.close()
    server.api("POST", f"api/kernels/{kernel_id}/restart")
    wait_for(lambda: not psutil.pid_exists(before) or _zombie(before), 60, "the old kernel to die")
    wait_for(lambda: server.kernel_pid(kernel_id) != before, 60, "the new kernel")
    fresh = server.connect(kernel_id)
    wait_for(lambda: fresh.value("1") == 1, 60, "the new kernel to answer")
    return fresh


def _zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _family(pid: int) -> list[int]:
    return [pid, *(p.pid for p in psutil.Process(pid).children(recursive=True))]


def test_a_detached_app_keeps_its_model_across_a_kernel_restart(
    server: JupyterServer, browser: Any, artifacts_dir: Path
) -> None:
    kernel_id = server.start_kernel()
    ch = server.connect(kernel_id)
    ch.execute(CELL, timeout=300)
    assert ch.value("isinstance(app, NotebookApp)")
    ch.execute("app.wait_ready(120)", timeout=180)
    assert ch.value("app.infer({'op': 'first'}).result(60).status['op']") == "first"
    server_pid = ch.value("app.server_pid")
    workers = ch.value("sorted(w.pid for w in app.workers())")
    family = _family(server_pid)
    assert set(workers) <= set(family)
    long_id = ch.value("app.infer({'op': 'long', 'seconds': 8}).request_id")
    wait_for(lambda: ch.value(f"app.attach({long_id!r}).state") == "running", 30, "the long one")

    ch = _restart(server, kernel_id, ch)
    assert psutil.pid_exists(server_pid), "the server died with the kernel"
    ch.execute(CELL, timeout=120)
    attach_s = ch.value("attach_s")
    assert attach_s < 2.0, f"attaching took {attach_s:.2f} s"
    assert ch.value("app.server_pid") == server_pid
    assert ch.value("sorted(w.pid for w in app.workers())") == workers, "the model was reloaded"
    status = ch.value(f"app.attach({long_id!r}).result(60).status")
    assert status["op"] == "long" and status["state"] == "succeeded"
    assert long_id in ch.value("[f.request_id for f in app.history]")
    panel = ch.execute("app").html()  # the live panel, as for an app in the kernel
    assert any("kernel-detach" in h and str(workers[0]) in h for h in panel), panel

    # The server's own page in the cell, through jupyter-server-proxy.
    out = ch.execute("app.launch(height=700)")
    [html] = [h for h in out.html() if "<iframe" in h]
    src = re.search(r'<iframe src="([^"]+)"', html).group(1)  # type: ignore[union-attr]
    assert re.fullmatch(r"/proxy/\d+/", src), src
    page_html = requests.get(f"{server.url}{src}", params={"token": server.token}, timeout=30)
    assert page_html.status_code == 200 and "gradio" in page_html.text.lower()
    shots = artifacts_dir / "remote"
    shots.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{server.url}{src}?token={server.token}")
        page.locator("#cg-generate").click()  # the page's events go through the proxy too
        wait_for(
            lambda: "succeeded" in page.inner_text("#cg-status").lower(), 60, "Generate's result"
        )
        page.screenshot(path=str(shots / "detached_page_through_proxy.png"))
    finally:
        context.close()

    ch.execute("app.shutdown()", timeout=120)
    assert ch.value("app.closed")
    assert not alive(family), f"left running after shutdown(): {alive(family)}"
    records = list((server.base / "runtime" / "cosmos_gradio_nb").glob("server-*.json"))
    assert not records, records
    ch.close()
    server.shutdown_kernel(kernel_id)
