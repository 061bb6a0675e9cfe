"""Test models for the engine: each one a real factory the workers import.

Behaviour is picked by request parameters, so one worker serves every fault:
``{"op": "echo"}``, ``"raise"``, ``"crash"`` (SIGKILL itself), ``"exit"`` (os._exit),
``"segfault"``, ``"hang"``, ``"sleep"``, ``"progress"``, ``"tqdm"``, ``"print"``, ``"write"``,
``"helper"`` (starts a helper process), ``"flood"``, ``"bad_return"``, ``"sysexit"``,
``"big"`` (a large output file), ``"read"`` (an input file), ``"steps"`` (progress until
stopped), ``"ignore_stop"``, ``"preview"``, ``"block"`` (until a file exists),
``"hostile"`` (a return value the wire refuses), ``"fail_one"`` (one rank raises, the
others hang) and ``"halfstop"`` (after replying, half a frame, then SIGSTOP).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

from cosmos_gradio_nb import report_progress, stop_requested


class FaultModel:
    def __init__(self) -> None:
        self.rank = int(os.environ.get("RANK", "0"))
        self.pid = os.getpid()
        self.calls = 0
        print(f"fault model ready on rank {self.rank}", flush=True)

    def infer(self, args: dict[str, Any]) -> dict[str, Any] | None:
        self.calls += 1
        op = args.get("op", "echo")
        only_rank = args.get("only_rank")
        active = only_rank is None or only_rank == self.rank
        if op == "echo":
            return {
                "echo": args.get("value"),
                "pid": self.pid,
                "calls": self.calls,
                "rank": self.rank,
                "env": {
                    k: os.environ.get(k)
                    for k in (
                        "RANK",
                        "LOCAL_RANK",
                        "WORLD_SIZE",
                        "LOCAL_WORLD_SIZE",
                        "MASTER_ADDR",
                        "MASTER_PORT",
                        "CUDA_VISIBLE_DEVICES",
                        "MODEL_NAME",
                    )
                },
            }
        if op == "raise" and active:
            raise RuntimeError(f"boom: {args.get('value')}")
        if op == "crash" and active:
            os.kill(os.getpid(), signal.SIGKILL)
        if op == "exit" and active:
            os._exit(int(args.get("code", 3)))
        if op == "segfault" and active:
            ctypes.string_at(0)
        if op == "hang" and active:
            while True:
                time.sleep(0.05)
        if op == "sleep":
            time.sleep(float(args.get("seconds", 0.1)))
            return {"slept": args.get("seconds")}
        if op == "progress":
            steps = int(args.get("steps", 5))
            for i in range(steps):
                report_progress((i + 1) / steps, f"step {i + 1}/{steps}")
                time.sleep(float(args.get("step_seconds", 0.06)))
            return {"steps": steps}
        if op == "tqdm":
            from tqdm import tqdm

            for _ in tqdm(range(int(args.get("steps", 4))), desc="denoise", mininterval=0):
                time.sleep(0.06)
            return {}
        if op == "print":
            for i in range(int(args.get("lines", 3))):
                print(f"line {i} of request {args.get('value')}")
            print("to stderr", file=sys.stderr)
            return {}
        if op == "helper":
            return {"helpers": start_helper(args.get("kind", "plain"), Path(args["output_dir"]))}
        if op == "flood":  # one line of `mb` MB, as a model printing a huge tensor would
            chunk = "x" * 2**20
            for _ in range(int(args.get("mb", 1))):
                sys.stdout.write(chunk)
            sys.stdout.write("\n")
            sys.stdout.flush()
            return {}
        if op == "bad_return":
            bad: Any = {"nan": float("nan"), "set": {1, 2}, "lambda": lambda: 0}[args["what"]]
            return {"ok": 1, "metrics": {"score": bad}}
        if op == "sysexit":
            sys.exit(int(args.get("code", 3)))
        if op == "big":  # a large output file, and its digest to compare the copy with
            data = os.urandom(int(float(args.get("mb", 1)) * 2**20))
            (Path(args["output_dir"]) / "big.bin").write_bytes(data)
            return {"sha256": hashlib.sha256(data).hexdigest(), "written_in": args["output_dir"]}
        if op == "read":  # an input file named in the request
            data = Path(args["path"]).read_bytes()
            return {"sha256": hashlib.sha256(data).hexdigest(), "seen_path": args["path"]}
        if op == "steps":  # honours a stop: report_progress raises StopRequested
            out = Path(args["output_dir"])
            (out / "partial.txt").write_text("first steps")
            for i in range(int(args.get("steps", 600))):
                report_progress(i / 600, f"step {i}")
                time.sleep(0.05)
            return {"finished": True}
        if op == "ignore_stop":  # never reports, never checks
            for _ in range(int(args.get("seconds", 60) * 20)):
                time.sleep(0.05)
            return {"stopped_by_itself": stop_requested()}
        if op == "preview":
            import numpy as np

            frame = np.zeros((720, 1280, 3), np.uint8)
            for i in range(int(args.get("steps", 3))):
                frame[:, : (i + 1) * 100] = 255
                report_progress((i + 1) / 3, f"step {i + 1}", preview=frame)
                time.sleep(float(args.get("step_seconds", 0.6)))
            return {}
        if op == "block":  # until the test creates args["release"] (bounded)
            release = Path(args["release"])
            deadline = time.monotonic() + 60
            while not release.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            return {"released": release.exists()}
        if op == "hostile":
            from hostile import hostile_values

            return hostile_values()[args["case"]]  # type: ignore[no-any-return]
        if op == "fail_one":
            if self.rank == args.get("rank", 1):
                raise ValueError(f"rank {self.rank} fails")
            while True:
                time.sleep(0.05)
        if op == "halfstop":
            threading.Thread(target=_half_frame_then_stop, daemon=True).start()
            return {"pid": self.pid}
        if op == "write":
            out = Path(args["output_dir"])
            (out / "clip.mp4").write_bytes(b"\x00fake")
            (out / "frame.png").write_bytes(b"\x89PNG")
            (out / "notes.txt").write_text("hi")
            extra = out.parent / f"named-{out.name}.webm"
            extra.write_bytes(b"x")
            return {"videos": [str(extra)], "answer": 42}
        return None


_HELPER = textwrap.dedent(
    """
    import os, signal, sys, time
    kind, pidfile = sys.argv[1], sys.argv[2]
    if kind == "doublefork":  # a classic daemon: fork, setsid, fork again, parent exits
        if os.fork():
            os._exit(0)
        os.setsid()
        if os.fork():
            os._exit(0)
    if kind in ("doublefork", "ignore_term"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with open(pidfile + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(pidfile + ".tmp", pidfile)
    time.sleep(600)
    """
)


def start_helper(kind: str, folder: Path) -> list[int]:
    """Start a helper process of ``kind`` (plain, setsid, doublefork, ignore_term); its pid."""
    pidfile = folder / f"helper-{kind}.pid"
    subprocess.Popen(
        [sys.executable, "-c", _HELPER, kind, str(pidfile)],
        start_new_session=kind == "setsid",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not pidfile.exists():
        if time.monotonic() > deadline:
            raise RuntimeError("the helper did not start")
        time.sleep(0.01)
    return [int(pidfile.read_text())]


def _half_frame_then_stop() -> None:
    """Once this request's reply is sent: half a frame on the control socket, then SIGSTOP.

    What a worker frozen in the middle of a message looks like to the app.
    """
    from cosmos_gradio_nb._worker import loop

    channel = loop.channel
    assert channel is not None
    sent = channel.frames_sent
    deadline = time.monotonic() + 30
    while channel.frames_sent == sent and time.monotonic() < deadline:
        time.sleep(0.005)  # the reply is being sent by the main thread
    with channel.lock:
        channel.sock.sendall((100).to_bytes(4, "big") + b'{"type": "progr')
        os.kill(os.getpid(), signal.SIGSTOP)


def create_worker() -> FaultModel:
    return FaultModel()


def broken_factory() -> FaultModel:
    raise ValueError("checkpoint not found: /nowhere/model.pt")


def dying_factory() -> FaultModel:
    os._exit(7)


def hanging_factory() -> FaultModel:
    """A weight load stuck on a network file system."""
    print("loading weights from /nfs/stuck/model.safetensors", flush=True)
    while True:
        time.sleep(1)


class NoInfer:
    pass


def no_infer_factory() -> NoInfer:
    return NoInfer()
