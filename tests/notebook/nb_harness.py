"""A real JupyterLab server and kernels driven over its REST and websocket API, for tests.

Nothing here is mocked: the server is ``jupyter lab`` in a subprocess (with
jupyter-server-proxy loaded from the venv's config), kernels are real ipykernels
it starts, and code runs through ``execute_request`` messages on the kernel's
websocket channel, exactly as JupyterLab's front end sends them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import requests
import websocket

from cosmos_gradio_nb._core.net import free_port  # the one port probe (tests use it too)

REPO = Path(__file__).resolve().parents[2]
WORKER_MARK = "cosmos_gradio_nb._worker"


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception as exc:  # keep polling: the thing may not be up yet
            last_exc = exc
            value = None
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(
        f"timed out after {timeout:.0f} s waiting for {what} (last error: {last_exc})"
    )


def worker_processes(since: float | None = None) -> list[psutil.Process]:
    """Live worker processes of cosmos_gradio_nb (started after ``since``, a time.time())."""
    found = []
    for proc in psutil.process_iter(["cmdline", "create_time", "status"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            if WORKER_MARK not in cmd or proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if since is not None and proc.info["create_time"] < since - 1:
                continue
            found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def kernel_env(base: Path) -> dict[str, str]:
    """Environment for a server or kernel that leaks nothing into the user's Jupyter dirs."""
    env = dict(os.environ)
    for name in ("JUPYTERHUB_SERVICE_PREFIX", "COSMOS_GRADIO_PROXY", "VSCODE_PID", "VSCODE_CWD"):
        env.pop(name, None)
    env.update(
        JUPYTER_CONFIG_DIR=str(base / "config"),
        JUPYTER_RUNTIME_DIR=str(base / "runtime"),
        JUPYTER_DATA_DIR=str(base / "data"),
        IPYTHONDIR=str(base / "ipython"),
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        OUTPUT_DIR=str(base / "root" / "outputs"),
        UPLOADS_DIR=str(base / "root" / "uploads"),
        LOG_FILE=str(base / "root" / "outputs" / "app.log"),
        GRADIO_ANALYTICS_ENABLED="False",
        HF_HUB_DISABLE_TELEMETRY="1",
        PYTHONUNBUFFERED="1",
    )
    return env


@dataclass
class JupyterServer:
    """A running ``jupyter lab`` subprocess with its own folders, port and token."""

    base: Path
    port: int
    token: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    base_url: str = "/"
    kernels: list[str] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Call the server at ``<base_url><path>`` with the token; raise on an HTTP error."""
        headers = {"Authorization": f"token {self.token}"}
        target = self.url + self.base_url + path.lstrip("/")
        resp = requests.request(method, target, headers=headers, timeout=30, **kwargs)
        resp.raise_for_status()
        return resp

    @classmethod
    def start(
        cls,
        base: Path,
        timeout: float = 90.0,
        *,
        base_url: str = "/",
        extra_env: dict[str, str] | None = None,
        extra_path: list[Path] | None = None,
    ) -> JupyterServer:
        """Start ``jupyter lab`` on a free port with its own config, data and runtime folders.

        ``base_url`` and ``extra_env`` (say ``JUPYTERHUB_SERVICE_PREFIX``) make it look
        like a JupyterHub single-user server; ``extra_path`` goes on its ``PYTHONPATH``.
        """
        for sub in ("config", "runtime", "data", "ipython", "root"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        port = free_port()
        token = uuid.uuid4().hex
        log_path = base / "jupyter.log"
        cmd = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            f"--port={port}",
            "--ServerApp.port_retries=0",
            "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={token}",
            "--allow-root",
            f"--ServerApp.root_dir={base / 'root'}",
            f"--ServerApp.base_url={base_url}",
            "--LabApp.news_url=",
            "--LabServerApp.extension_manager=readonly",
        ]
        log = open(log_path, "wb")  # noqa: SIM115 - closed with the server
        env = kernel_env(base)
        env.update(extra_env or {})
        if extra_path:
            env["PYTHONPATH"] = os.pathsep.join([*map(str, extra_path), env["PYTHONPATH"]])
        proc = subprocess.Popen(
            cmd,
            cwd=base / "root",
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        server = cls(
            base=base, port=port, token=token, proc=proc, log_path=log_path, base_url=base_url
        )

        def answering() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"jupyter exited: {log_path.read_text()[-3000:]}")
            try:
                return server.api("GET", "api/status").ok
            except requests.RequestException:
                return False

        try:
            deadline = time.monotonic() + timeout
            while not answering():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"Jupyter did not answer in {timeout} s")
                time.sleep(0.2)
        except BaseException:
            server.stop()
            raise
        return server

    def start_kernel(self, notebook_path: str | None = None) -> str:
        """A new python3 kernel; with ``notebook_path`` through a session tied to that notebook."""
        if notebook_path is None:
            kernel_id = str(self.api("POST", "api/kernels", json={"name": "python3"}).json()["id"])
        else:
            body = {
                "path": notebook_path,
                "type": "notebook",
                "name": notebook_path,
                "kernel": {"name": "python3"},
            }
            kernel_id = str(self.api("POST", "api/sessions", json=body).json()["kernel"]["id"])
        self.kernels.append(kernel_id)
        return kernel_id

    def kernel_pid(self, kernel_id: str) -> int:
        """The kernel's process id (a child of the server whose command line names its id)."""

        def find() -> int | None:
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                try:
                    if any(kernel_id in part for part in child.cmdline()):
                        return child.pid
                except psutil.Error:
                    continue
            return None

        return int(wait_for(find, 30, f"kernel {kernel_id}'s process"))

    def shutdown_kernel(self, kernel_id: str) -> None:
        self.api("DELETE", f"api/kernels/{kernel_id}")
        if kernel_id in self.kernels:
            self.kernels.remove(kernel_id)

    def connect(self, kernel_id: str) -> KernelChannel:
        return KernelChannel(self, kernel_id)

    def stop(self) -> list[psutil.Process]:
        """Stop the server as JupyterHub does (SIGTERM), then make sure nothing of it is left.

        SIGTERM lets jupyter-server-proxy terminate the servers it started (a REST
        ``api/shutdown`` does not: they would be orphaned). Returns the descendants
        that outlived the server by more than 20 s, after killing them (they are ours).
        """
        try:
            descendants = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            descendants = []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)  # our own session
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)

        def alive() -> list[psutil.Process]:
            out = []
            for p in descendants:
                try:
                    if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                        out.append(p)
                except psutil.Error:
                    continue
            return out

        deadline = time.monotonic() + 20
        while alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        left = alive()
        for p in left:
            try:
                p.kill()
            except psutil.Error:
                pass
        return left


class KernelChannel:
    """One websocket to a kernel's channels; ``execute`` runs code and gathers its outputs."""

    def __init__(self, server: JupyterServer, kernel_id: str) -> None:
        self.server = server
        self.kernel_id = kernel_id
        self.session = uuid.uuid4().hex
        url = (
            f"ws://127.0.0.1:{server.port}{server.base_url}api/kernels/{kernel_id}/channels"
            f"?session_id={self.session}"
        )
        self.ws = websocket.create_connection(
            url, header=[f"Authorization: token {server.token}"], timeout=5
        )

    def close(self) -> None:
        self.ws.close()

    def _message(
        self, msg_type: str, content: dict[str, Any], channel: str = "shell"
    ) -> dict[str, Any]:
        return {
            "header": {
                "msg_id": uuid.uuid4().hex,
                "msg_type": msg_type,
                "username": "test",
                "session": self.session,
                "date": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                "version": "5.3",
            },
            "parent_header": {},
            "metadata": {},
            "content": content,
            "channel": channel,
            "buffers": [],
        }

    def execute(self, code: str, timeout: float = 120.0, allow_error: bool = False) -> Execution:
        """Run ``code`` and wait until the kernel is idle again; raise on an error unless allowed."""
        msg = self._message(
            "execute_request",
            {
                "code": code,
                "silent": False,
                "store_history": True,
                "user_expressions": {},
                "allow_stdin": False,
                "stop_on_error": True,
            },
        )
        msg_id = msg["header"]["msg_id"]
        self.ws.send(json.dumps(msg))
        result = Execution(code=code)
        deadline = time.monotonic() + timeout
        replied = idle = False
        while not (replied and idle):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"kernel did not finish within {timeout} s:\n{code}\n{result}")
            self.ws.settimeout(min(left, 5.0))
            try:
                raw = self.ws.recv()
            except websocket.WebSocketTimeoutException:
                continue
            if isinstance(raw, bytes):  # binary frames carry widget buffers: not needed here
                continue
            reply = json.loads(raw)
            if reply.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = reply["header"]["msg_type"]
            content = reply["content"]
            if kind == "stream":
                result.stdout += content["text"]
            elif kind in ("display_data", "execute_result", "update_display_data"):
                result.outputs.append(content.get("data", {}))
            elif kind == "error":
                result.error = f"{content['ename']}: {content['evalue']}\n" + "\n".join(
                    content.get("traceback", [])
                )
            elif kind == "status" and content["execution_state"] == "idle":
                idle = True
            elif kind == "execute_reply":
                replied = True
        if result.error and not allow_error:
            raise AssertionError(
                f"kernel error running:\n{code}\n{result.error}\nstdout: {result.stdout}"
            )
        return result

    def value(self, expression: str, timeout: float = 120.0) -> Any:
        """Evaluate an expression in the kernel and return it, through JSON."""
        out = self.execute(f"import json as _j; print('@@' + _j.dumps({expression}))", timeout)
        line = [ln for ln in out.stdout.splitlines() if ln.startswith("@@")][-1]
        return json.loads(line[2:])


@dataclass
class Execution:
    code: str
    stdout: str = ""
    outputs: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def html(self) -> list[str]:
        return [o["text/html"] for o in self.outputs if "text/html" in o]
