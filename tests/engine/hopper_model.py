"""A model whose helper keeps changing its pid: fork, the parent exits, about every millisecond.

``{"op": "hopper", "marker": m, "folder": f, "setsid": n}`` starts one and hangs
(a running request to terminate); every other op is the fault model's. ``setsid``
0: it stays in the worker's process group; 1: it calls ``setsid()`` once, then
hops; 2: it calls ``setsid()`` at every hop, so no process group holds it.
The hopper counts its hops in ``<folder>/<marker>.beat`` and exits on its own once
``<folder>/<marker>.stop`` exists (the tests' teardown, whatever happened).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from models import FaultModel

HOPPER = textwrap.dedent(
    """
    import os, signal, sys, time
    marker, folder, setsid = sys.argv[1], sys.argv[2], int(sys.argv[3])
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if setsid:
        os.setsid()  # out of the worker's process group and session
    beat = os.open(os.path.join(folder, marker + ".beat"), os.O_WRONLY | os.O_CREAT, 0o644)
    stop = os.path.join(folder, marker + ".stop")
    hops = 0
    while not os.path.exists(stop):
        hops += 1
        os.pwrite(beat, b"%12d" % hops, 0)
        time.sleep(0.001)
        if os.fork():
            os._exit(0)  # the parent goes; the child carries on under a new pid
        if setsid == 2:
            os.setsid()
    """
)


def hops(folder: Path, marker: str) -> int:
    """How many times the hopper of ``marker`` changed its pid so far (0 before it started)."""
    try:
        return int((folder / f"{marker}.beat").read_bytes() or b"0")
    except (FileNotFoundError, ValueError):
        return 0


def start_hopper(folder: Path, marker: str, setsid: int, env: dict[str, str] | None = None) -> None:
    subprocess.Popen(
        [sys.executable, "-c", HOPPER, marker, str(folder), str(setsid)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )


class HopperModel(FaultModel):
    def infer(self, args: dict[str, Any]) -> dict[str, Any] | None:
        if args.get("op") != "hopper":
            return super().infer(args)
        folder = Path(args["folder"])
        start_hopper(folder, args["marker"], int(args.get("setsid", 0)))
        while True:
            time.sleep(0.05)


def create_worker() -> HopperModel:
    return HopperModel()
