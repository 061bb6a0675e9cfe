"""Helpers shared by the UI tests: the server record, polling, and page actions."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cosmos_gradio_nb._core.net import free_port  # the one port probe (tests use it too)

TINY = {
    "prompt": "a tiny test scene",
    "seed": 1,
    "num_frames": 6,
    "fps": 12,
    "width": 64,
    "height": 64,
}
UPLOAD_LIMIT_MB = 1.0


def wait_for(cond: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    """Poll ``cond`` until it returns something truthy; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


@dataclass
class UIServer:
    app: Any
    demo: Any
    url: str
    root: Path

    @property
    def output_dir(self) -> Path:
        return Path(self.app.env.output_dir)

    @property
    def uploads_dir(self) -> Path:
        return Path(self.app.env.uploads_dir)

    @property
    def log_file(self) -> Path:
        return Path(self.app.env.log_file)

    def future(self, request_id: str) -> Any:
        for fut in self.app.history:
            if fut.request_id == request_id:
                return fut
        raise KeyError(request_id)


def open_page(page: Any, server: UIServer) -> Any:
    """Load the page and wait until Gradio has rendered it and the workers line shows."""
    page.goto(server.url)
    page.wait_for_selector("#cg-generate", timeout=30_000)
    page.wait_for_function(
        "() => (document.querySelector('#cg-workers')?.innerText || '').includes('queue')",
        timeout=15_000,
    )
    return page


def set_request(page: Any, params: dict[str, Any] | str) -> None:
    """Replace the JSON editor's text (CodeMirror) as a user would, by select-all and paste."""
    text = params if isinstance(params, str) else json.dumps(params, indent=2)
    page.click("#cg-editor .cm-content")
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(text)


def status_state(page: Any) -> str:
    return str(
        page.eval_on_selector(
            "#cg-status", "e => e.querySelector('[data-state]')?.dataset.state || ''"
        )
    )


def wait_status(page: Any, states: tuple[str, ...], timeout: float = 60) -> str:
    """Wait until the status panel shows one of ``states``; return its text."""
    sel = ", ".join(f"#cg-status [data-state={s}]" for s in states)
    page.wait_for_selector(sel, timeout=timeout * 1000)
    return str(page.inner_text("#cg-status"))


def request_id_of(page: Any) -> str:
    text = page.inner_text("#cg-status .cg-meta")
    for part in text.split("·"):
        part = part.strip()
        if part.startswith("request "):
            return part.split(" ", 1)[1]
    raise AssertionError(f"no request id in the status panel: {text!r}")


def shot(page: Any, artifacts_dir: Path, name: str) -> Path:
    folder = artifacts_dir / "ui"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


REPO = Path(__file__).resolve().parents[2]


@dataclass
class Served:
    """A ``cosmos-gradio-nb serve`` process, as a deployment runs it, and its folders."""

    url: str
    root: Path
    pid: int = 0
    output: list[str] = field(default_factory=list)  # what it printed, line by line

    @property
    def output_dir(self) -> Path:
        return self.root / "outputs"

    @property
    def uploads_dir(self) -> Path:
        return self.root / "uploads"

    @property
    def log_file(self) -> Path:
        return self.root / "outputs" / "app.log"

    @property
    def cache_dir(self) -> Path:
        return self.root / "gradio-cache"

    def printed(self) -> str:
        return "".join(self.output)


@contextlib.contextmanager
def serve_process(root: Path, settings: dict[str, str]) -> Iterator[Served]:
    """``serve`` in its own process (the fast ``Steps`` model, the sample's validator),
    with ``settings`` in its environment as a deployment sets them; stopped at the end."""
    served = Served(url="", root=root)
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), str(REPO)]),
        "OUTPUT_DIR": str(served.output_dir),
        "UPLOADS_DIR": str(served.uploads_dir),
        "LOG_FILE": str(served.log_file),
        "GRADIO_TEMP_DIR": str(served.cache_dir),
        **settings,
    }
    cmd = [sys.executable, "-m", "cosmos_gradio_nb", "serve", "--port", str(port)]
    cmd += ["--factory", "cg_ui_models:create_steps", "--validator", "cg_ui_models:TestParams"]
    proc = subprocess.Popen(
        cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    served.pid = proc.pid
    assert proc.stdout is not None
    stdout = proc.stdout
    reader = threading.Thread(target=lambda: served.output.extend(iter(stdout.readline, "")))
    reader.daemon = True
    reader.start()
    served.url = f"http://127.0.0.1:{port}/"
    try:
        wait_for(
            lambda: served.url in served.printed() or proc.poll() is not None,
            120,
            "serve to print its URL",
        )
        assert proc.poll() is None, served.printed()
        yield served
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
