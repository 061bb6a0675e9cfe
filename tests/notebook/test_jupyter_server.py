"""End to end in a real JupyterLab behind a JupyterHub-like base URL, with jupyter-server-proxy.

One ``jupyter lab`` server for the module, started the way a JupyterHub single-user
server runs: base URL ``/user/alice/`` and ``JUPYTERHUB_SERVICE_PREFIX`` in its (and
so its kernels') environment. Kernels are driven over the REST and websocket API;
the notebook is opened in headless Chromium and its cell is run there; the Gradio
page in the cell's output is reached through the proxy; Generate plays a video
while futures submitted from the same kernel complete.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import psutil
import pytest
import requests
from nb_harness import REPO, JupyterServer, KernelChannel, wait_for, worker_processes

pytestmark = [pytest.mark.notebook, pytest.mark.browser]

PREFIX = "/user/alice/"
TINY = {"width": 64, "height": 48, "num_frames": 6, "fps": 6}


def _entry_point_dist(site: Path) -> None:
    """Expose pyproject's ``jupyter_serverproxy_servers`` entry point without installing.

    A ``*.dist-info`` folder on the server's ``sys.path`` is what pip would write; the
    entry point is copied from pyproject.toml, so a typo there fails this test.
    """
    text = (REPO / "pyproject.toml").read_text()
    # A regex rather than tomllib (Python >= 3.11 only; the project supports 3.10).
    section = re.search(
        r"^\[project\.entry-points\.jupyter_serverproxy_servers\]\n(.*?)(?:^\[|\Z)",
        text,
        re.M | re.S,
    )
    assert section, "pyproject.toml declares no jupyter_serverproxy_servers entry point"
    eps = dict(re.findall(r'^([\w.-]+)\s*=\s*"([^"]+)"', section.group(1), re.M))
    assert eps, section.group(1)
    from importlib.metadata import entry_points

    installed = {ep.name: ep.value for ep in entry_points(group="jupyter_serverproxy_servers")}
    if all(installed.get(name) == target for name, target in eps.items()):
        return  # pip-installed (as in CI): the real entry point is there; a copy would show twice
    dist = site / "cosmos_gradio_nb_test_ep-0.0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: cosmos-gradio-nb-test-ep\nVersion: 0.0.0\n"
    )
    lines = "".join(f"{name} = {target}\n" for name, target in eps.items())
    (dist / "entry_points.txt").write_text(f"[jupyter_serverproxy_servers]\n{lines}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    base = tmp_path_factory.mktemp("jupyter")
    _entry_point_dist(base / "site")
    srv = JupyterServer.start(
        base,
        base_url=PREFIX,
        extra_env={"JUPYTERHUB_SERVICE_PREFIX": PREFIX},
        extra_path=[base / "site"],
    )
    try:
        yield srv
    finally:
        left = srv.stop()
        assert not left, f"processes outlived the Jupyter server: {[p.cmdline() for p in left]}"


@pytest.fixture(scope="module")
def kernel(server: JupyterServer) -> Iterator[tuple[str, KernelChannel]]:
    """A kernel tied to ``ui.ipynb`` (a session, as JupyterLab makes) with an app and a page."""
    kernel_id = server.start_kernel("ui.ipynb")
    channel = server.connect(kernel_id)
    channel.execute(
        """
from cosmos_gradio_nb import NotebookApp, create_gradio_UI
from cosmos_gradio_nb.samples import FACTORY_MODULE, SampleParams
app = NotebookApp(SampleParams, FACTORY_MODULE, "create_worker", name="e2e")
app.wait_ready(timeout=120)
interface = create_gradio_UI(infer_func=app.infer, header="Notebook end to end")
"""
    )
    try:
        yield kernel_id, channel
    finally:
        channel.close()


def test_detection_in_a_real_kernel(
    server: JupyterServer, kernel: tuple[str, KernelChannel]
) -> None:
    _, ch = kernel
    ch.execute(
        """
import dataclasses, os
from cosmos_gradio_nb._notebook.frontend import detect_frontend, jupyter_server_info
def _probe(**env):
    saved = {k: os.environ.get(k) for k in env}
    try:
        for k, v in env.items():
            if v is None: os.environ.pop(k, None)
            else: os.environ[k] = v
        try:
            return dataclasses.asdict(detect_frontend())
        except ValueError as exc:
            return {"error": str(exc)}
    finally:
        for k, v in saved.items():
            if v is None: os.environ.pop(k, None)
            else: os.environ[k] = v
"""
    )
    hub = ch.value("_probe()")
    assert hub == {"kind": "proxy", "base_url": PREFIX, "reason": hub["reason"]}
    assert "JUPYTERHUB_SERVICE_PREFIX" in hub["reason"]
    # Without the hub variable, the server's own proxy extension is found (runtime file + API).
    plain = ch.value("_probe(JUPYTERHUB_SERVICE_PREFIX=None)")
    assert plain["kind"] == "proxy" and plain["base_url"] == PREFIX
    assert "jupyter-server-proxy runs on the server" in plain["reason"]
    assert ch.value("jupyter_server_info()['port']") == server.port
    off = ch.value("_probe(COSMOS_GRADIO_PROXY='0')")
    assert off["kind"] == "jupyter" and off["reason"] == "COSMOS_GRADIO_PROXY=0"
    on = ch.value("_probe(JUPYTERHUB_SERVICE_PREFIX=None, COSMOS_GRADIO_PROXY='yes')")
    assert on["kind"] == "proxy"
    vscode = ch.value("_probe(JUPYTERHUB_SERVICE_PREFIX=None, VSCODE_PID='4242')")
    assert vscode["kind"] == "vscode"
    bad = ch.value("_probe(COSMOS_GRADIO_PROXY='maybe')")
    assert "COSMOS_GRADIO_PROXY" in bad["error"] and "'maybe'" in bad["error"]
    forced = ch.value("dataclasses.asdict(detect_frontend(proxy=False))")
    assert forced["kind"] == "jupyter"


def _write_notebook(server: JupyterServer, name: str, *sources: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, server.root / name)


def test_inline_ui_in_jupyterlab_through_the_proxy(
    server: JupyterServer, kernel: tuple[str, KernelChannel], browser: Any, artifacts_dir: Path
) -> None:
    _, ch = kernel
    shots = artifacts_dir / "notebook"
    shots.mkdir(parents=True, exist_ok=True)
    _write_notebook(
        server,
        "ui.ipynb",
        "interface.launch(height=1000)",
        "app",
        "from cosmos_gradio_nb import create_widget_UI\ncreate_widget_UI(app)",
        "interface.launch(proxy=False, height=800)",
    )
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    try:
        page.goto(f"{server.url}{PREFIX}lab/tree/ui.ipynb?token={server.token}")
        editor = page.locator(".jp-Notebook .jp-Cell .cm-content").first
        editor.wait_for(timeout=60_000)
        # The notebook must be on the kernel we drive (the session for ui.ipynb).
        wait_for(
            lambda: page.locator(".jp-Notebook-ExecutionIndicator, .jp-KernelStatus").count() > 0,
            30,
            "JupyterLab's kernel indicator",
        )
        editor.click()
        page.keyboard.press("Shift+Enter")
        iframe = page.locator(".jp-OutputArea-output iframe").first
        iframe.wait_for(timeout=60_000)
        src = iframe.get_attribute("src") or ""
        match = re.fullmatch(re.escape(PREFIX) + r"proxy/(\d+)/", src)
        assert match, f"iframe src {src!r} is not a same-origin proxy URL"
        gradio_port = int(match.group(1))
        assert ch.value("interface.server_port") == gradio_port, "not the kernel we drive"
        frame = page.frame_locator(".jp-OutputArea-output iframe").first
        frame.locator("#cg-generate").wait_for(timeout=60_000)
        page.screenshot(path=str(shots / "lab_inline_ui.png"))

        # A scripted batch from the same kernel, queued beside the click.
        ch.execute(f"futs = app.map([{{**{TINY!r}, 'seed': s}} for s in range(4)], progress=False)")
        frame.locator("#cg-generate").click()
        video = frame.locator("#cg-video video")
        video.wait_for(timeout=120_000)
        wait_for(lambda: video.evaluate("v => v.readyState") >= 2, 60, "the video to load")
        frame.locator("#cg-video video").scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "lab_inline_ui_video.png"))
        src_url = video.evaluate("v => v.currentSrc")
        assert src_url.startswith(f"{server.url}{PREFIX}proxy/{gradio_port}/"), src_url

        checked = ch.value(
            """[
    {"id": r.request_id, "video": open(r.videos[0], "rb").read(12)[4:8].decode(),
     "poster": r.images[0].name, "state": r.status["state"], "w": r.status["params"]["width"]}
    for r in (f.result(timeout=120) for f in futs)
]"""
        )
        assert len({c["id"] for c in checked}) == 4
        assert all(c["video"] == "ftyp" and c["poster"] == "poster.png" for c in checked)
        assert all(c["state"] == "succeeded" and c["w"] == 64 for c in checked)
        # The click went through the same queue: history has it beside the batch.
        history = ch.value("[(f.request_id, f.state) for f in app.history]")
        ui_requests = [h for h in history if h[0] not in {c["id"] for c in checked}]
        assert ui_requests and all(state == "succeeded" for _, state in ui_requests)

        # The app's live panel, a real widget in JupyterLab, refreshed from the kernel.
        page.locator(".jp-Notebook .jp-Cell .cm-content").nth(1).click()
        page.keyboard.press("Shift+Enter")
        panel = page.locator(".jp-OutputArea-output .widget-html", has_text="worker(s)")
        panel.wait_for(timeout=60_000)
        pid = ch.value("app.workers()[0].pid")
        wait_for(lambda: str(pid) in panel.inner_text(), 20, "the panel to show the worker pid")
        ch.execute(f"late = app.submit({{**{TINY!r}, 'seed': 77}}); late.result(timeout=60)")
        late_id = ch.value("late.request_id")
        wait_for(lambda: late_id in panel.inner_text(), 20, "the panel to list a new request")
        panel.scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "lab_app_panel.png"))

        # The widget UI (the VS Code fallback) in a real widget front end.
        page.locator(".jp-Notebook .jp-Cell .cm-content").nth(2).click()
        page.keyboard.press("Shift+Enter")
        editor_box = page.locator(".jp-OutputArea-output .widget-textarea textarea").last
        editor_box.wait_for(timeout=60_000)
        editor_box.fill('{"width": 30}')
        out = page.locator(".jp-OutputArea-output").last
        out.get_by_text("width must be between").wait_for(timeout=20_000)
        editor_box.fill(json.dumps({**TINY, "seed": 21}))
        out.get_by_text("valid request").wait_for(timeout=20_000)
        out.locator("button", has_text="Generate").click()
        wvideo = out.locator("video")
        wvideo.wait_for(timeout=60_000)
        wait_for(lambda: wvideo.evaluate("v => v.readyState") >= 2, 60, "the widget video to load")
        out.get_by_text("succeeded").first.wait_for(timeout=20_000)
        wvideo.scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "lab_widget_ui.png"))

        # proxy=False: a local Jupyter's iframe at 127.0.0.1 (the browser is on this machine),
        # relaunched on the same port, with no root path.
        page.locator(".jp-Notebook .jp-Cell .cm-content").nth(3).click()
        page.keyboard.press("Shift+Enter")
        local = page.locator(f'.jp-OutputArea-output iframe[src="http://127.0.0.1:{gradio_port}/"]')
        local.wait_for(timeout=60_000)
        lframe = page.frame_locator(f'iframe[src="http://127.0.0.1:{gradio_port}/"]')
        lframe.locator("#cg-generate").click()
        lvideo = lframe.locator("#cg-video video")
        lvideo.wait_for(timeout=120_000)
        wait_for(lambda: lvideo.evaluate("v => v.readyState") >= 2, 60, "the local video to load")
        assert lvideo.evaluate("v => v.currentSrc").startswith(f"http://127.0.0.1:{gradio_port}/")
        lvideo.scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "lab_local_iframe.png"))
    finally:
        context.close()


def test_relaunch_on_the_same_port_replaces_the_server(
    server: JupyterServer, kernel: tuple[str, KernelChannel]
) -> None:
    _, ch = kernel
    port = ch.value("interface.server_port")
    again = ch.execute(f"interface.launch(server_port={port}, height=600)")
    other = ch.execute(
        f"other = create_gradio_UI(infer_func=app.infer, header='Replacement page')\n"
        f"other.launch(server_port={port})\nprint(interface.is_running, other.is_running)"
    )
    assert "Cannot find empty port" not in again.stdout + other.stdout
    assert other.stdout.strip().endswith("False True")
    for out in (again, other):  # (the replaced page's outputs get a "closed" note too)
        assert any(f'src="{PREFIX}proxy/{port}/"' in html for html in out.html())
    page = requests.get(f"{server.url}{PREFIX}proxy/{port}/?token={server.token}", timeout=30)
    assert page.status_code == 200 and "Replacement page" in page.text
    # A port held by something that is not ours gets a clear error, not Gradio's.
    busy = ch.execute(
        "import socket\n_s = socket.socket(); _s.bind(('127.0.0.1', 0)); _s.listen()\n"
        "interface.launch(server_port=_s.getsockname()[1])",
        allow_error=True,
    )
    assert busy.error and "in use by a process other than this kernel's UI servers" in busy.error
    ch.execute("_s.close()")


def test_vscode_gets_the_widget_ui(
    server: JupyterServer, kernel: tuple[str, KernelChannel]
) -> None:
    _, ch = kernel
    out = ch.execute(
        f"""
import os
os.environ.pop("JUPYTERHUB_SERVICE_PREFIX", None)
os.environ["VSCODE_PID"] = "4242"
try:
    interface.launch()
finally:
    os.environ["JUPYTERHUB_SERVICE_PREFIX"] = {PREFIX!r}
    os.environ.pop("VSCODE_PID")
print("running:", interface.is_running, other.is_running)
"""
    )
    assert "VS Code notebooks cannot show the Gradio page inline" in out.stdout
    assert "running: True False" in out.stdout  # one UI per app: the other page was replaced
    widgets = [o for o in out.outputs if "application/vnd.jupyter.widget-view+json" in o]
    assert widgets, out.outputs
    port = ch.value("interface.server_port")
    page = requests.get(f"http://127.0.0.1:{port}/", timeout=30)
    assert page.status_code == 200  # still served on the port VS Code forwards


def test_closing_the_page_replaces_its_iframe_and_nothing_polls_the_closed_server(
    server: JupyterServer, kernel: tuple[str, KernelChannel], browser: Any, artifacts_dir: Path
) -> None:
    _, ch = kernel
    _write_notebook(server, "ui.ipynb", "interface.launch(height=500)", "interface.close()")
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    page = context.new_page()
    proxied: list[str] = []
    page.on("request", lambda r: proxied.append(r.url) if "/proxy/" in r.url else None)
    try:
        page.goto(f"{server.url}{PREFIX}lab/tree/ui.ipynb?token={server.token}")
        cells = page.locator(".jp-Notebook .jp-Cell .cm-content")
        cells.first.wait_for(timeout=60_000)
        cells.first.click()
        page.keyboard.press("Shift+Enter")
        page.frame_locator(".jp-OutputArea-output iframe").first.locator("#cg-generate").wait_for(
            timeout=60_000
        )
        assert proxied, "the page in the cell is reached through the proxy"
        cells.nth(1).click()
        page.keyboard.press("Shift+Enter")
        note = page.locator(".jp-OutputArea-output .cosmos-gradio-closed")
        note.wait_for(timeout=30_000)
        assert page.locator(".jp-OutputArea-output iframe").count() == 0
        page.screenshot(path=str(artifacts_dir / "notebook" / "lab_closed_page.png"))
        seen, log_size = len(proxied), server.log_path.stat().st_size
        # An observation window, not a wait for a condition: nothing may happen in it. The
        # page polled its server every second (the log's timer) while it was shown.
        page.wait_for_timeout(3000)
        assert proxied[seen:] == [], proxied[seen:]
        with server.log_path.open("rb") as log:
            log.seek(log_size)
            assert b"Traceback" not in log.read()
    finally:
        context.close()
    assert ch.value("interface.is_running") is False


def test_kernel_shutdown_leaves_no_worker(
    server: JupyterServer, kernel: tuple[str, KernelChannel]
) -> None:
    kernel_id, _ = kernel
    kpid = server.kernel_pid(kernel_id)
    workers = [p for p in worker_processes() if f"--parent {kpid}" in " ".join(p.cmdline())]
    assert workers, "the kernel's app should have a live worker before shutdown"
    server.shutdown_kernel(kernel_id)
    wait_for(lambda: not psutil.pid_exists(kpid), 30, "the kernel to exit")
    wait_for(
        lambda: not [p for p in workers if p.is_running() and p.status() != "zombie"],
        15,
        "the kernel's workers to exit",
    )


def test_launcher_tile_starts_the_standalone_server(
    server: JupyterServer, browser: Any, artifacts_dir: Path
) -> None:
    info = server.api("GET", "server-proxy/servers-info").json()
    tiles = {s["name"]: s for s in info["server_processes"]}
    assert "cosmos-gradio" in tiles, info
    assert tiles["cosmos-gradio"]["launcher_entry"]["title"] == "Cosmos Gradio"
    icon = server.api("GET", "server-proxy/icon/cosmos-gradio")
    assert b"<svg" in icon.content
    shots = artifacts_dir / "notebook"
    shots.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    page = context.new_page()
    try:
        # ``reset``: a fresh workspace, so the Launcher shows rather than the last notebook.
        page.goto(f"{server.url}{PREFIX}lab?reset&token={server.token}")
        tile = page.locator(".jp-LauncherCard", has_text="Cosmos Gradio")
        tile.wait_for(timeout=60_000)
        page.screenshot(path=str(shots / "lab_launcher_tile.png"))
        # The first request starts the server (sample model) and waits until it answers.
        page.goto(f"{server.url}{PREFIX}cosmos-gradio/", timeout=200_000)
        page.locator("#cg-generate").wait_for(timeout=120_000)
        page.locator("#cg-generate").click()
        video = page.locator("#cg-video video")
        video.wait_for(timeout=120_000)
        wait_for(lambda: video.evaluate("v => v.readyState") >= 2, 60, "the video to load")
        assert video.evaluate("v => v.currentSrc").startswith(f"{server.url}{PREFIX}cosmos-gradio/")
        page.screenshot(path=str(shots / "launcher_server_video.png"))
    finally:
        context.close()
