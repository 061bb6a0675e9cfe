"""The notebook launch outside a kernel, and its small parts, in-process."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
import requests

from cosmos_gradio_nb._core.net import bind_problem
from cosmos_gradio_nb._notebook import frontend, launch
from cosmos_gradio_nb._notebook.serverproxy import setup_cosmos_gradio

pytestmark = pytest.mark.notebook


def test_outside_a_kernel_launch_is_gradios_own() -> None:
    import gradio as gr

    with gr.Blocks(title="plain") as demo:
        gr.Markdown("hello from a plain Blocks")
    launch.install_launch(demo)
    assert frontend.detect_frontend().kind == "terminal"
    port = launch.find_free_port(start=7990)
    try:
        result = demo.launch(server_port=port, prevent_thread_lock=True, quiet=True)
        assert isinstance(result, tuple) and result[1] == f"http://127.0.0.1:{port}/"
        page = requests.get(result[1], timeout=30)
        assert page.status_code == 200 and "hello from a plain Blocks" in page.text
        assert demo.root_path in ("", None)  # no proxy path outside a kernel
    finally:
        demo.close()
    # installing twice keeps one wrapper
    wrapped = demo.launch
    launch.install_launch(demo)
    assert demo.launch is wrapped


def test_launch_arguments_bind_positional_and_keyword() -> None:
    import gradio as gr

    demo = gr.Blocks()
    params = launch._launch_arguments(demo, (False, False), {"server_port": 1234, "height": 3})
    assert params == {"inline": False, "inbrowser": False, "server_port": 1234, "height": 3}


def test_proxy_version_requirement(monkeypatch: pytest.MonkeyPatch) -> None:
    assert frontend._parse_version(frontend.check_proxy_version()) >= (4, 4)  # the venv's
    monkeypatch.setattr(frontend, "proxy_version", lambda: "4.3.2")
    with pytest.raises(RuntimeError, match=r"4\.3\.2 is too old \(need >= 4\.4"):
        frontend.check_proxy_version()
    monkeypatch.setattr(frontend, "proxy_version", lambda: None)
    with pytest.raises(RuntimeError, match=r"jupyter-server-proxy>=4\.4"):
        frontend.check_proxy_version()


def test_proxy_setting_is_strict(monkeypatch: pytest.MonkeyPatch) -> None:
    for raw, want in (("1", True), ("TRUE", True), ("off", False), ("", None)):
        monkeypatch.setenv("COSMOS_GRADIO_PROXY", raw)
        assert frontend._proxy_setting() is want
    monkeypatch.setenv("COSMOS_GRADIO_PROXY", "sometimes")
    with pytest.raises(ValueError, match=r"COSMOS_GRADIO_PROXY: .*boolean.*'sometimes'"):
        frontend._proxy_setting()


def test_find_free_port_skips_a_listener() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        busy = sock.getsockname()[1]
        assert bind_problem("127.0.0.1", busy) is not None
        assert launch.find_free_port(start=busy) != busy


def test_serverproxy_entry() -> None:
    spec = setup_cosmos_gradio()
    assert spec["command"][:4] == [sys.executable, "-m", "cosmos_gradio_nb", "serve"]
    assert "{port}" in spec["command"]
    assert spec["environment"]["GRADIO_ROOT_PATH"] == "{base_url}cosmos-gradio"
    assert spec["launcher_entry"]["title"] == "Cosmos Gradio"
    icon = Path(spec["launcher_entry"]["icon_path"])
    assert icon.is_file() and icon.read_text().lstrip().startswith("<svg")
