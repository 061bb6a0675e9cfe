"""One worker process: how it is started, its environment, its descriptors, its output.

The pool (``_pool.py``) decides *when* to start and stop workers; this module
knows *how*: a fresh interpreter running ``cosmos_gradio_nb._worker`` (spawn
semantics, nothing inherited but what is sent), in its own session so
``killpg`` reaches anything it started, with three descriptors the parent waits
on: a control socket, a pipe carrying its stdout and stderr, and a pidfd that
becomes readable the moment it dies.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from ._env import DeploymentEnv
from ._exceptions import CosmosGradioError

__all__ = ["WorkerProcess", "free_port", "gpu_assignment", "group_environment", "signal_name"]

TAIL_LINES = 40  # lines kept per worker for crash reports
_PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a group's MASTER_PORT)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def signal_name(code: int | None) -> str | None:
    """``"SIGKILL"`` for exit code -9; None for a plain exit."""
    if code is None or code >= 0:
        return None
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def gpu_assignment(n: int) -> list[str]:
    """The GPU id each of ``n`` workers gets, honouring the parent's CUDA_VISIBLE_DEVICES.

    ``CUDA_VISIBLE_DEVICES=""`` in the parent means no GPU: every worker gets "".
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return [str(i) for i in range(n)]
    devices = [d.strip() for d in visible.split(",") if d.strip()]
    if not devices:
        return [""] * n
    if len(devices) < n:
        raise CosmosGradioError(
            f"NUM_GPUS={n} but CUDA_VISIBLE_DEVICES={visible!r} lists only {len(devices)} "
            "device(s); lower NUM_GPUS or widen CUDA_VISIBLE_DEVICES"
        )
    return devices[:n]


def group_environment(
    env: DeploymentEnv, group: int, size: int, port: int, extra: dict[str, str]
) -> dict[str, str]:
    """The environment shared by a group's ranks: torchrun's variables and our settings."""
    out = dict(os.environ)
    out.update(
        {
            "MODEL_NAME": env.model_name,
            "NUM_GPUS": str(env.num_gpus),
            "GPUS_PER_MODEL": str(env.group_size),
            "OUTPUT_DIR": str(env.output_dir),
            "UPLOADS_DIR": str(env.uploads_dir),
            "LOG_FILE": str(env.log_file),
            "CHECKPOINT_DIR": str(env.checkpoint_dir),
            "WORKER_TIMEOUT": str(env.worker_timeout),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "WORLD_SIZE": str(size),
            "LOCAL_WORLD_SIZE": str(size),
            "GROUP_RANK": "0",
            "COSMOS_GRADIO_GROUP": str(group),
            "PYTHONUNBUFFERED": "1",
            # The worker imports this package the way the parent did, installed or not.
            "PYTHONPATH": os.pathsep.join(
                p for p in (_PACKAGE_PARENT, os.environ.get("PYTHONPATH", "")) if p
            ),
        }
    )
    if "OMP_NUM_THREADS" not in os.environ:  # as torchrun: do not oversubscribe the CPUs
        out["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // env.num_gpus))
    out.update(extra)
    return out


class WorkerProcess:
    """One rank of one group: its process, descriptors, and the tail of its output.

    Parameters
    ----------
    group, rank, gpu:
        Where it sits; ``gpu`` is the CUDA_VISIBLE_DEVICES value it gets.
    on_close_fd:
        Called with each descriptor just before it is closed (the pool drops it
        from its epoll set there).
    """

    def __init__(self, group: int, rank: int, gpu: str, on_close_fd: Callable[[int], None]) -> None:
        self.group = group
        self.rank = rank
        self.gpu = gpu
        self.proc: subprocess.Popen[bytes] | None = None
        self.conn: Connection | None = None
        self.out_fd: int | None = None
        self.pidfd: int | None = None
        self.ready = False
        self.prefix = f"[g{group} r{rank}]"
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._partial = b""
        self._on_close_fd = on_close_fd

    @property
    def alive(self) -> bool:
        """True from spawn until the process was reaped and released."""
        return self.proc is not None

    def spawn(self, env: dict[str, str], init: dict[str, Any], cwd: str) -> None:
        """Start the process and send it its init message (factory, sys.path, rank)."""
        parent_sock, child_sock = socket.socketpair()
        child_fd = child_sock.fileno()
        try:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cosmos_gradio_nb._worker",
                    "--fd",
                    str(child_fd),
                    "--parent",
                    str(os.getpid()),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(child_fd,),
                env=env,
                cwd=cwd,
                start_new_session=True,  # own process group: killpg reaches its children
            )
        finally:
            child_sock.close()
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
        self.ready = False
        self._partial = b""
        self.conn.send(init)

    def handles(self) -> list[tuple[int, str]]:
        """(descriptor, kind) pairs to wait on: ``conn``, ``out`` and ``pid``."""
        pairs = []
        if self.conn is not None:
            pairs.append((self.conn.fileno(), "conn"))
        if self.out_fd is not None:
            pairs.append((self.out_fd, "out"))
        if self.pidfd is not None:
            pairs.append((self.pidfd, "pid"))
        return pairs

    def read_lines(self) -> list[str]:
        """Complete output lines available now, without blocking.

        A carriage-return-redrawn line (a tqdm bar) keeps only its last state.
        At EOF the output descriptor is closed and a final partial line returned.
        """
        if self.out_fd is None:
            return []
        chunks = []
        while True:
            try:
                chunk = os.read(self.out_fd, 65536)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:  # EOF: the process closed its output (or died)
                self._close_fd(self.out_fd)
                self.out_fd = None
                break
            chunks.append(chunk)
        if not chunks and self.out_fd is not None:
            return []
        *complete, self._partial = (self._partial + b"".join(chunks)).split(b"\n")
        if self.out_fd is None and self._partial:
            complete.append(self._partial)
            self._partial = b""
        lines = [
            raw.decode("utf-8", "replace").rstrip("\r").rsplit("\r", 1)[-1] for raw in complete
        ]
        self.tail.extend(f"{self.prefix} {line}" for line in lines)
        return lines

    def kill(self) -> None:
        """SIGKILL its whole process group (it and anything it started)."""
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def reap(self, timeout: float) -> int:
        """Wait for the exit code; kill it if it is still running after ``timeout`` s."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:  # its socket closed, yet it lives: finish it
            self.kill()
            return self.proc.wait()

    def release(self) -> None:
        """Close every descriptor and forget the process (after it was reaped)."""
        for fd in (self.out_fd, self.pidfd):
            if fd is not None:
                self._close_fd(fd)
        if self.conn is not None:
            with contextlib.suppress(OSError):
                self._on_close_fd(self.conn.fileno())
                self.conn.close()
        self.out_fd = self.pidfd = None
        self.conn = None
        self.proc = None
        self.ready = False

    def _close_fd(self, fd: int) -> None:
        self._on_close_fd(fd)
        with contextlib.suppress(OSError):
            os.close(fd)
