"""Helpers of the connected-app tests: a real ``serve`` process, its record, its processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from cosmos_gradio_nb._core.net import free_port  # the one port probe (tests use it too)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
FACTORY = "remote_models:create_worker"
VALIDATOR = "remote_models:Params"


def wait_for(cond: Callable[[], Any], timeout: float, what: str, every: float = 0.02) -> Any:
    """Poll ``cond`` until it returns something truthy; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def alive(pids: list[int]) -> list[int]:
    """Those of ``pids`` that still run (zombies count as gone)."""
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def server_env(root: Path) -> dict[str, str]:
    """The environment of a test server and of the test's own client (one RUNTIME_DIR)."""
    return {
        "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE), os.environ.get("PYTHONPATH", "")]),
        "OUTPUT_DIR": str(root / "outputs"),
        "UPLOADS_DIR": str(root / "uploads"),
        "LOG_FILE": str(root / "outputs" / "app.log"),
        "RUNTIME_DIR": str(root / "runtime"),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "PYTHONUNBUFFERED": "1",
    }


@dataclass
class Served:
    """A ``python -m cosmos_gradio_nb serve`` started by a test."""

    proc: subprocess.Popen[bytes]
    name: str
    root: Path
    port: int
    output: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def runtime_dir(self) -> Path:
        return self.root / "runtime"

    def record(self) -> Any:
        from cosmos_gradio_nb._core.runtime import find_record

        return find_record(self.runtime_dir, self.name)

    def descendants(self) -> list[int]:
        try:
            return [p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def stop(self) -> list[int]:
        """SIGTERM, then make sure nothing of it is left; returns what outlived it (killed)."""
        family = self.descendants()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        deadline = time.monotonic() + 20
        while alive(family) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = alive(family)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return left


def start_serve(root: Path, name: str, *extra: str, timeout: float = 180.0) -> Served:
    """Start ``serve`` on the remote test model; return once its runtime record is written."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    output = root / f"serve-{name}.out"
    env = {**os.environ, **server_env(root)}
    command = [
        sys.executable, "-m", "cosmos_gradio_nb", "serve",
        "--factory", FACTORY, "--validator", VALIDATOR,
        "--port", str(port), "--name", name, *extra,
    ]  # fmt: skip
    with open(output, "wb") as out:
        proc = subprocess.Popen(
            command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    served = Served(proc=proc, name=name, root=root, port=port, output=output)

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited ({proc.returncode}):\n{served.text()[-3000:]}")
        record = served.record()
        return record is not None and record.pid == proc.pid

    try:
        wait_for(up, timeout, f"the server {name!r} to write its record")
    except BaseException:
        served.stop()
        raise
    return served
