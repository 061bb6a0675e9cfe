"""Helpers shared by the engine tests."""

from __future__ import annotations

import time
from collections.abc import Callable

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
