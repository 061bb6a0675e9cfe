"""Nothing a model started survives its group: the process tag and the reaper (issue 15).

Every worker carries ``COSMOS_GRADIO_TAG`` (unique to its group's incarnation),
inherited by all it starts. These tests start real helpers from a real model,
kill the keeper that should have stopped them (SIGKILL, as ``pkill -9 -f
cosmos_gradio_nb._worker`` does), and check with psutil that none is left; and
a helper that keeps changing its pid (fork, the parent exits, every ~1 ms) is
stopped by ``terminate()`` and by ``close()``, five times each.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from enginetest import alive, wait_for
from hopper_model import hops, start_hopper

from cosmos_gradio_nb._worker import reaper

KINDS = ("plain", "setsid", "doublefork", "ignore_term")
SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


@pytest.fixture()
def hoppers(tmp_path: Path) -> Iterator[tuple[Path, list[str]]]:
    """A folder for hoppers and the list of their markers; every hopper is told to stop."""
    folder = tmp_path / "hoppers"
    folder.mkdir()
    markers: list[str] = []
    yield folder, markers
    for marker in markers:
        (folder / f"{marker}.stop").touch()
    for marker in markers:  # a hopper that escaped stops itself within a hop or two
        wait_for(lambda m=marker: not _marked(m), timeout=10)


def _marked(marker: str) -> list[int]:
    """Live processes whose command line holds ``marker``."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if marker in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc.pid)
    return found


def _assert_gone(folder: Path, marker: str, timeout: float = 10.0) -> None:
    """The hopper hops no more: its count holds still for 0.2 s (a live one hops ~100 times
    meanwhile) and psutil sees none of its processes; within ``timeout`` s.

    psutil alone cannot tell: a scan lists pids, then reads each, and a process that
    changes its pid every millisecond is gone from the list by the time it is read.
    """
    deadline = time.monotonic() + timeout
    last = hops(folder, marker)
    while True:
        threading.Event().wait(0.2)  # the window in which a live hopper counts on
        now = hops(folder, marker)
        if now == last and not _marked(marker):
            return
        assert time.monotonic() < deadline, f"{marker} still hops after {timeout} s ({now})"
        last = now


def _start_hopping(app: Any, folder: Path, marker: str, setsid: int) -> Any:
    fut = app.infer({"op": "hopper", "marker": marker, "folder": str(folder), "setsid": setsid})
    wait_for(lambda: hops(folder, marker) > 20, timeout=20)  # it has changed its pid 20 times
    return fut


# -- the keeper SIGKILLed ---------------------------------------------------------------------------
@pytest.mark.parametrize("then", ["restart", "close"])
def test_no_helper_survives_its_keeper_being_killed(make_app, then: str) -> None:
    """Four kinds of helper; the keeper SIGKILLed (then the group restarts, or the app closes)."""
    app = make_app()
    helpers: list[int] = []
    for kind in KINDS:
        helpers += app.infer({"op": "helper", "kind": kind}).result(30).status["helpers"]
    assert alive(helpers) == helpers
    worker = app.workers()[0].pid
    keeper = psutil.Process(worker).ppid()
    assert "cosmos_gradio_nb._worker" in " ".join(psutil.Process(keeper).cmdline())
    try:
        os.kill(keeper, signal.SIGKILL)
        if then == "close":
            os.kill(worker, signal.SIGKILL)  # as pkill -9 -f does: both
            app.close()
        wait_for(lambda: not alive(helpers), timeout=10)
    finally:
        for pid in alive(helpers):
            os.kill(pid, signal.SIGKILL)
    if then == "restart":
        wait_for(lambda: app.workers()[0].state == "idle" and app.workers()[0].pid != worker, 30)
        assert app.infer({"op": "echo", "value": 1}).result(30).status["echo"] == 1
        wait_for(lambda: "after its keeper ended" in app.env.log_file.read_text(), timeout=10)
        line = next(
            x for x in app.env.log_file.read_text().splitlines() if "after its keeper ended" in x
        )
        assert "stopped 4 process(es) the model had left running" in line, line


# -- a helper that keeps changing its pid ----------------------------------------------------------
def test_a_pid_hopping_helper_does_not_survive_terminate(make_app, hoppers) -> None:
    folder, markers = hoppers
    app = make_app(factory_module="hopper_model")
    for run in range(5):
        marker = f"hopper-t{run}-{os.getpid()}-{time.monotonic_ns()}"
        markers.append(marker)
        fut = _start_hopping(app, folder, marker, setsid=run % 3)
        assert fut.terminate()
        _assert_gone(folder, marker)
        wait_for(lambda: app.workers()[0].state == "idle", timeout=30)


def test_a_pid_hopping_helper_does_not_survive_close(make_app, hoppers) -> None:
    folder, markers = hoppers
    for run in range(5):
        marker = f"hopper-c{run}-{os.getpid()}-{time.monotonic_ns()}"
        markers.append(marker)
        app = make_app(factory_module="hopper_model")
        _start_hopping(app, folder, marker, setsid=run % 3)
        app.close()
        _assert_gone(folder, marker)


# -- the reaper itself ------------------------------------------------------------------------------
def test_reap_kills_exactly_the_processes_carrying_the_tag(tmp_path: Path, hoppers) -> None:
    folder, markers = hoppers
    tag = f"test-{os.getpid()}-{time.monotonic_ns()}"

    def env(value: str | None) -> dict[str, str]:
        out = {k: v for k, v in os.environ.items() if k != reaper.TAG_VAR}
        return out if value is None else {**out, reaper.TAG_VAR: value}

    targets = [
        subprocess.Popen(SLEEPER, env=env(tag)),
        subprocess.Popen(SLEEPER, env=env(tag), start_new_session=True),
    ]
    decoys = [
        subprocess.Popen(SLEEPER, env=env(tag + "0")),
        subprocess.Popen(SLEEPER, env=env(tag[:-1])),
        subprocess.Popen(SLEEPER, env={**env(None), "OTHER": f"{reaper.TAG_VAR}={tag}"}),
    ]
    marker = f"hopper-r-{tag}"
    markers.append(marker)
    start_hopper(folder, marker, setsid=2, env=env(tag))  # a new session at every hop
    try:
        wait_for(lambda: hops(folder, marker) > 20, timeout=20)
        reaped = reaper.reap([tag])
        assert [p.wait(5) for p in targets] == [-9, -9]
        assert {p.pid for p in targets} <= reaped.killed.keys() and not reaped.left
        _assert_gone(folder, marker)
        assert [p.poll() for p in decoys] == [None, None, None]
    finally:
        for p in targets + decoys:
            p.kill()
            p.wait(5)


def test_reap_never_touches_its_caller(tmp_path: Path) -> None:
    tag = f"self-{os.getpid()}-{time.monotonic_ns()}"
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from cosmos_gradio_nb._worker import reaper\n"
        "print(len(reaper.reap([sys.argv[2]]).killed), flush=True)\n"
    )
    repo = str(Path(__file__).resolve().parents[2])
    out = subprocess.run(
        [sys.executable, "-c", code, repo, tag],
        env={**os.environ, reaper.TAG_VAR: tag},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and out.stdout.strip() == "0", out
