"""Helpers shared by the engine tests."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import psutil


def wait_for(
    predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.01
) -> object:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {predicate}")
        time.sleep(interval)


def worker_pids() -> set[int]:
    """Live worker processes that are children of this test process."""
    me = psutil.Process()
    pids = set()
    for child in me.children(recursive=True):
        try:
            cmdline = " ".join(child.cmdline())
            if "cosmos_gradio_nb._worker" in cmdline and child.status() != psutil.STATUS_ZOMBIE:
                pids.add(child.pid)
        except psutil.NoSuchProcess:
            pass
    return pids


def alive(pids: Iterable[int]) -> list[int]:
    """Those of ``pids`` that are running processes (not zombies)."""
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def parent_script(tmp_path: Path, tail: str) -> Path:
    """A script that starts 2 workers, prints their pids, then runs ``tail``."""
    script = tmp_path / "parent.py"
    script.write_text(
        textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from cosmos_gradio_nb import NotebookApp
        app = NotebookApp(factory_module="models", num_gpus=2, gpus_per_model=1,
                          output_dir={str(tmp_path / "out")!r}, log_file={str(tmp_path / "log")!r})
        app.wait_ready(30)
        print(" ".join(str(w.pid) for w in app.workers()), flush=True)
        """)
        + tail
    )
    return script
