"""One worker process: how it is started, its environment, its descriptors, its output.

A worker is a fresh interpreter running ``cosmos_gradio_nb._worker`` (spawn
semantics, nothing inherited but what is sent), in its own session, with three
descriptors its owner waits on: a control socket, a pipe carrying its stdout and
stderr, and a pidfd that becomes readable the moment it dies. Its first act is
to fork the keeper (``keeper.py``), which outlives it long enough to stop
anything the model started. Used by the local backend and, on each node, by
the Ray backend's rank actors.

Output is read in bounded bites and every line is cut at :data:`MAX_LINE_BYTES`,
so a model printing a 200 MB tensor costs a few milliseconds and 64 KB, not a
stalled engine and a gigabyte of memory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from .._core.exceptions import CosmosGradioError
from .._core.net import free_port

__all__ = [
    "MAX_LINE_BYTES",
    "WorkerProcess",
    "free_port",
    "gpu_assignment",
    "nvidia_present",
    "rank_environment",
    "signal_name",
]

MAX_LINE_BYTES = 64 * 1024  # longer lines are cut, and say so
READ_BYTES = 1024 * 1024  # read at most this much per call: others get their turn
_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])  # the folder holding the package


def signal_name(code: int | None) -> str | None:
    """``"SIGKILL"`` for exit code -9; None for a plain exit."""
    if code is None or code >= 0:
        return None
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def nvidia_present() -> bool:
    """Whether this machine shows an NVIDIA GPU (its device node or driver), without torch."""
    return Path("/dev/nvidia0").exists() or Path("/proc/driver/nvidia/gpus").is_dir()


def gpu_assignment(n: int) -> list[str]:
    """The GPU id each of ``n`` workers gets, honouring the parent's CUDA_VISIBLE_DEVICES.

    ``CUDA_VISIBLE_DEVICES=""`` in the parent, or no NVIDIA GPU on the machine, means
    CPU: every worker gets "" (and displays say CPU, not "GPU 0").
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return [str(i) for i in range(n)] if nvidia_present() else [""] * n
    devices = [d.strip() for d in visible.split(",") if d.strip()]
    if not devices:
        return [""] * n
    if len(devices) < n:
        raise CosmosGradioError(
            f"NUM_GPUS={n} but CUDA_VISIBLE_DEVICES={visible!r} lists only {len(devices)} "
            "device(s); lower NUM_GPUS or widen CUDA_VISIBLE_DEVICES"
        )
    return devices[:n]


def rank_environment(
    settings: dict[str, str],
    *,
    rank: int,
    size: int,
    master_addr: str,
    master_port: int,
    device: str | None,
    base: dict[str, str] | None = None,
) -> dict[str, str]:
    """A rank's whole environment: ``base`` (default ours), our settings, torchrun's variables.

    ``device`` None leaves ``CUDA_VISIBLE_DEVICES`` as ``base`` has it (Ray sets it
    for its actors); a string pins the rank to that GPU, ``""`` to none.
    """
    out = dict(os.environ if base is None else base)
    out.update(settings)
    out.update(
        {
            "MASTER_ADDR": master_addr,
            "MASTER_PORT": str(master_port),
            "WORLD_SIZE": str(size),
            "LOCAL_WORLD_SIZE": str(size),
            "GROUP_RANK": "0",
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "PYTHONUNBUFFERED": "1",
            # The worker imports this package the way its owner did, installed or not.
            "PYTHONPATH": os.pathsep.join(
                p for p in (_PACKAGE_PARENT, out.get("PYTHONPATH", "")) if p
            ),
        }
    )
    if device is not None:
        out["CUDA_VISIBLE_DEVICES"] = device
    if "OMP_NUM_THREADS" not in out:  # as torchrun: do not oversubscribe the CPUs
        out["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // size))
    return out


class _LineSplitter:
    """Bytes in, whole lines out; a line past MAX_LINE_BYTES is cut and marked."""

    def __init__(self) -> None:
        self._partial = bytearray()
        self._dropped = 0  # bytes of the current line thrown away

    def feed(self, data: bytes) -> list[str]:
        *complete, rest = data.split(b"\n")
        lines = [self._finish(part) for part in complete]
        self._keep(rest)
        return lines

    def flush(self) -> list[str]:
        """The final partial line, at EOF."""
        if not self._partial and not self._dropped:
            return []
        return [self._finish(b"")]

    def _keep(self, part: bytes) -> None:
        room = MAX_LINE_BYTES - len(self._partial)
        if len(part) > room:
            self._dropped += len(part) - max(room, 0)
            part = part[: max(room, 0)]
        self._partial += part

    def _finish(self, part: bytes) -> str:
        self._keep(part)
        raw, dropped = bytes(self._partial), self._dropped
        self._partial.clear()
        self._dropped = 0
        # A carriage-return-redrawn line (a tqdm bar) keeps only its last state.
        line = raw.decode("utf-8", "replace").rstrip("\r").rsplit("\r", 1)[-1]
        if dropped:
            line += f" ... [line cut: {len(raw) + dropped} bytes, {MAX_LINE_BYTES} shown]"
        return line


class WorkerProcess:
    """One worker process: start it, talk to it, read its output, kill it, release it.

    ``send`` may be called from any thread; everything else from the one thread
    that owns the process's descriptors (its parent-death signal is tied to the
    thread that started it, so that thread must live as long as the process).
    """

    def __init__(self, prefix: str, on_close_fd: Callable[[int], None]) -> None:
        self.prefix = prefix
        self._on_close_fd = on_close_fd  # called just before a descriptor is closed
        self.proc: subprocess.Popen[bytes] | None = None
        self.conn: Connection | None = None
        self.out_fd: int | None = None
        self.pidfd: int | None = None
        self.worker_pid: int | None = None  # the model's process, below the keeper
        self.report_fd: int | None = None  # the keeper writes the worker's exit code here
        self.kill_at: float | None = None  # asked to stop: SIGKILL everything if not gone by then
        self._lines = _LineSplitter()
        self._send_lock = threading.Lock()

    @property
    def alive(self) -> bool:
        """True from spawn until the process was reaped and released."""
        return self.proc is not None

    @property
    def pid(self) -> int | None:
        """The keeper's pid: the process we started, wait for and signal."""
        return self.proc.pid if self.proc is not None else None

    def spawn(self, env: dict[str, str], init: dict[str, Any], cwd: str) -> None:
        """Start the process and send it its init message (factory, sys.path, rank)."""
        parent_sock, child_sock = socket.socketpair()
        child_fd = child_sock.fileno()
        report_r, report_w = os.pipe()
        try:
            proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "cosmos_gradio_nb._worker"),
                    *("--fd", str(child_fd), "--parent", str(os.getpid())),
                    *("--report", str(report_w)),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(child_fd, report_w),
                env=env,
                cwd=cwd,
                start_new_session=True,  # own process group: killpg reaches its children
            )
        except BaseException:
            os.close(report_r)
            raise
        finally:
            child_sock.close()
            os.close(report_w)
        self.report_fd = report_r
        self.proc = proc
        self.conn = Connection(parent_sock.detach())
        assert proc.stdout is not None
        self.out_fd = os.dup(proc.stdout.fileno())
        proc.stdout.close()
        os.set_blocking(self.out_fd, False)
        try:
            self.pidfd = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):
            self.pidfd = None  # old kernel: the control socket's EOF tells of the death
        self._lines = _LineSplitter()
        self.send(init)

    def send(self, msg: dict[str, Any]) -> None:
        """Send one message; OSError if the process is gone (from any thread)."""
        with self._send_lock:
            if self.conn is None:
                raise BrokenPipeError("the worker process is gone")
            self.conn.send(msg)

    def handles(self) -> list[tuple[int, str]]:
        """(descriptor, kind) pairs to wait on: ``conn``, ``out`` and ``pid``."""
        pairs = []
        if self.conn is not None:
            pairs.append((self.conn.fileno(), "conn"))
        if self.out_fd is not None:
            pairs.append((self.out_fd, "out"))
        if self.pidfd is not None:
            pairs.append((self.pidfd, "pid"))
        if self.report_fd is not None:
            pairs.append((self.report_fd, "report"))
        return pairs

    def read_report(self) -> int | None:
        """The worker's exit code as its keeper reported it (once), else None."""
        if self.report_fd is None:
            return None
        try:
            data = os.read(self.report_fd, 64)
        except OSError:
            data = b""
        self._close_fd(self.report_fd)
        self.report_fd = None
        try:
            return int(data.strip())
        except ValueError:
            return None

    def read_lines(self, max_bytes: int = READ_BYTES) -> list[str]:
        """Complete output lines available now, reading at most ``max_bytes``; never blocks.

        At EOF the output descriptor is closed and a final partial line returned.
        """
        if self.out_fd is None:
            return []
        lines: list[str] = []
        budget = max_bytes
        while budget > 0:
            try:
                chunk = os.read(self.out_fd, min(65536, budget))
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:  # EOF: the process closed its output (or died)
                self._close_fd(self.out_fd)
                self.out_fd = None
                lines += self._lines.flush()
                break
            budget -= len(chunk)
            lines += self._lines.feed(chunk)
        return lines

    def kill(self) -> None:
        """SIGKILL its process group at once (the keeper, the worker, helpers in the group).

        The last resort: a helper that left the group (``setsid``) survives this,
        which is why a stop starts with :meth:`terminate`.
        """
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def terminate(self, kill_after: float = 5.0) -> None:
        """SIGTERM the keeper: it kills the worker and every descendant, then exits.

        If it is still there after ``kill_after`` s, its owner calls :meth:`kill`.
        """
        if self.proc is not None and self.proc.returncode is None:
            if self.kill_at is None:
                self.kill_at = time.monotonic() + kill_after
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.proc.pid, signal.SIGTERM)

    def poll(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    def reap(self, timeout: float) -> int:
        """Wait for the exit code; kill it if it is still running after ``timeout`` s."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:  # its socket closed, yet it lives: finish it
            self.kill()
            return self.proc.wait()

    def close_conn(self) -> None:
        """Close the control socket alone (the worker closed its end)."""
        with self._send_lock:
            if self.conn is not None:
                self._on_close_fd(self.conn.fileno())
                with contextlib.suppress(OSError):
                    self.conn.close()
            self.conn = None

    def release(self) -> None:
        """Close every descriptor and forget the process (after it was reaped)."""
        for fd in (self.out_fd, self.pidfd, self.report_fd):
            if fd is not None:
                self._close_fd(fd)
        self.close_conn()
        self.out_fd = self.pidfd = self.report_fd = None
        self.proc = None
        self.kill_at = None

    def _close_fd(self, fd: int) -> None:
        self._on_close_fd(fd)
        with contextlib.suppress(OSError):
            os.close(fd)
