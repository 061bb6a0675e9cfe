"""The Ray backend's rank actor: one per rank, on the node Ray placed it, running the worker.

A :class:`RankAgent` does on its node what the local backend does on the app's
machine: it starts ``cosmos_gradio_nb._worker`` as a child process (so the
model contract, the keeper, tqdm forwarding and output capture at the
descriptor level are exactly the local ones) and watches it with the same
:class:`~cosmos_gradio_nb._backends.mux.ProcessMux`.

What reaches the app, and how
-----------------------------
Everything the worker says and prints is buffered here, in order, and leaves in
numbered *batches* (:data:`Batch`): each call that takes from the buffer takes a
contiguous run of it and numbers it, so the app hands the items on in the order
they happened however the answers overtake each other on the way back.

- :meth:`run` hands a request to the worker and *returns its reply*, with what
  was printed before it: the reply travels back as the answer of the call that
  carried the request, one Ray round trip, like a bare actor call;
- :meth:`events` is the app's long poll for the rest (lines and progress while a
  request runs, the worker's pid, its death): it never takes a reply that a
  :meth:`run` call is waiting for, so a reply is not split from its call.

Ray places the actor (one GPU bundle of its group's placement group) and sets
its ``CUDA_VISIBLE_DEVICES``; the worker inherits it. Files move in chunks
through Ray's object store (:meth:`read_chunk`, :meth:`write_chunk`) when the
node does not share the app's folders, so a multi-GB video is never in memory
whole. This module is imported on every node: nothing here imports Ray at
module level, nor gradio or torch.
"""

from __future__ import annotations

import collections
import os
import secrets
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ..._engine.backend import SendError
from ..._worker import reaper
from ..mux import MuxEvent, ProcessMux
from ..process import free_port, rank_environment

__all__ = ["CHUNK_BYTES", "Batch", "RankAgent", "remap_paths"]

CHUNK_BYTES = 16 * 1024 * 1024
MAX_BUFFERED_LINES = 20_000  # lines held for a slow poller before older ones are dropped
MAX_EVENTS_BYTES = 4 * 1024 * 1024  # one events() answer carries at most about this much

Batch = tuple[int | None, list[tuple[Any, ...]]]
"""``(number, items)``: numbers count up from 0 per agent, one per non-empty batch;
``(None, [])`` when there was nothing to take."""


def remap_paths(value: Any, mapping: dict[str, str]) -> Any:
    """``value`` with every string that is a key of ``mapping`` replaced (dicts and lists too)."""
    if isinstance(value, str):
        return mapping.get(value, value)
    if isinstance(value, list):
        return [remap_paths(v, mapping) for v in value]
    if isinstance(value, dict):
        return {k: remap_paths(v, mapping) for k, v in value.items()}
    return value


def _reply_id(item: tuple[Any, ...]) -> str | None:
    """The request id of a reply (``done``, ``error``, ``stopped``) message item, else None."""
    if item[0] == "message" and item[1].get("type") in ("done", "error", "stopped"):
        return str(item[1].get("id"))
    return None


class RankAgent:
    """One rank of one group on a Ray node (see the module docstring).

    Parameters
    ----------
    group, rank:
        Where it sits; used in its log prefix.
    scratch:
        A name for this app's node-local folder (outputs and uploads when the
        node does not share the app's file system).
    """

    def __init__(self, group: int, rank: int, scratch: str) -> None:
        self.group = group
        self.rank = rank
        # Not "cosmos_gradio_nb": a folder of that name in the temp dir would shadow the package
        # for any script run from there (a namespace package wins over an editable install).
        self.scratch = Path(tempfile.gettempdir()) / "cosmos-gradio-scratch" / scratch
        self._key = (group, rank)
        self._cond = threading.Condition()
        self._events: collections.deque[tuple[Any, ...]] = collections.deque()
        self._batch = 0  # the number of the next non-empty batch
        self._awaited: set[str] = set()  # requests whose reply a run() call returns
        self._replied: set[str] = set()  # ... and whose reply is in the buffer now
        self._ended = False  # the worker is gone: no reply will come
        self._dropped = 0
        # In the worker's environment, inherited by all it starts: killed once it is gone.
        self._tag = f"{scratch}-r{rank}-{os.getpid()}-{secrets.token_hex(3)}"
        self._mux = ProcessMux(self._on_mux, name=f"cosmos-gradio-rank-g{group}r{rank}")

    # -- facts about where we are -------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """Node address and id, host name, devices and pid, for the app's displays and set-up."""
        import ray

        return {
            "ip": ray.util.get_node_ip_address(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "host": socket.gethostname(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
            "pid": os.getpid(),
            "scratch": str(self.scratch),
        }

    def free_port(self) -> int:
        """A port free on this node now (rank 0's answer becomes the group's MASTER_PORT)."""
        return free_port("0.0.0.0")

    def sees(self, path: str, token: str) -> bool:
        """Whether ``path`` here holds ``token``: the app's folder is shared with this node."""
        try:
            return Path(path).read_text() == token
        except OSError:
            return False

    # -- the worker ---------------------------------------------------------------------------
    def start(
        self,
        settings: dict[str, str],
        *,
        size: int,
        master_addr: str,
        master_port: int,
        init: dict[str, Any],
        cwd: str,
        gpus: bool,
    ) -> None:
        """Start the worker process with this node's environment plus ours."""
        env = rank_environment(
            {**settings, reaper.TAG_VAR: self._tag},
            rank=self.rank,
            size=size,
            master_addr=master_addr,
            master_port=master_port,
            device=None if gpus else "",  # Ray set CUDA_VISIBLE_DEVICES for a GPU bundle
            base=dict(os.environ),
        )
        workdir = cwd if os.path.isdir(cwd) else os.getcwd()
        self._mux.spawn(self._key, f"[g{self.group} r{self.rank}]", env, init, workdir)

    def run(self, msg: dict[str, Any]) -> Batch:
        """Hand an infer message to the worker; return once its reply is here (or the worker is
        gone), with every item buffered before it, the reply last."""
        rid = str(msg["id"])
        with self._cond:
            self._awaited.add(rid)
        try:
            self._mux.send(self._key, msg)
        except SendError:
            pass  # the worker is gone: its death is in the buffer, or on its way
        with self._cond:
            while rid not in self._replied and not self._ended:
                self._cond.wait()
            self._awaited.discard(rid)
            self._replied.discard(rid)
            return self._take(bounded=False)

    def tell(self, msg: dict[str, Any]) -> None:
        """Hand the worker a message that has no reply (``shutdown``)."""
        self._mux.send(self._key, msg)

    def stop(self) -> None:
        """Stop the worker and everything it started (its keeper does); an exit event follows."""
        self._mux.stop(self._key)

    def events(self, timeout: float = 30.0) -> Batch:
        """What happened since the last call, in order; waits up to ``timeout`` s for something.

        Items: ``("lines", [...])``, ``("message", {...})``, ``("started", pid)``,
        ``("died", code, pid)`` (the worker ended) and ``("exit", code, pid)`` (all is gone).
        A reply that a :meth:`run` call waits for, and what follows it, is left to that call.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._takeable() and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
            return self._take(bounded=True)

    def _takeable(self) -> bool:
        if self._dropped:
            return True
        return bool(self._events) and _reply_id(self._events[0]) not in self._awaited

    def _take(self, *, bounded: bool) -> Batch:
        """Take items from the buffer (with the lock held) as the next numbered batch.

        ``bounded`` (the long poll): stop before a reply a :meth:`run` call waits for, and
        after about :data:`MAX_EVENTS_BYTES` of lines.
        """
        out: list[tuple[Any, ...]] = []
        if self._dropped:
            out.append(("lines", [f"[{self._dropped} lines dropped: the app was not reading]"]))
            self._dropped = 0
        size = 0
        while self._events:
            item = self._events[0]
            if bounded and (size >= MAX_EVENTS_BYTES or _reply_id(item) in self._awaited):
                break
            self._events.popleft()
            if item[0] == "lines":
                size += sum(len(line) for line in item[1])
            out.append(item)
        if not out:
            return None, []
        number = self._batch
        self._batch += 1
        return number, out

    def _on_mux(self, ev: MuxEvent) -> None:
        if ev.kind == "exit":  # its keeper is gone (killed, maybe): what carries the tag goes too
            reaped = reaper.reap([self._tag])
            if reaped.killed:
                with self._cond:
                    self._events.append(("lines", [reaped.log_line()]))
        with self._cond:
            if ev.kind == "lines":
                self._events.append(("lines", ev.lines or []))
                self._trim()
            elif ev.kind == "message":
                msg = ev.message or {}
                self._events.append(("message", msg))
                rid = _reply_id(("message", msg))
                if rid in self._awaited:
                    self._replied.add(rid)
            elif ev.kind == "started":
                self._events.append(("started", ev.pid))
            elif ev.kind in ("died", "exit"):
                self._events.append((ev.kind, ev.exitcode, ev.pid))
                self._ended = True
            else:
                self._events.append(("exit", None, None))
                self._ended = True
            self._cond.notify_all()

    def _trim(self) -> None:
        lines = sum(len(item[1]) for item in self._events if item[0] == "lines")
        while lines > MAX_BUFFERED_LINES:
            for i, item in enumerate(self._events):
                if item[0] == "lines":
                    del self._events[i]
                    lines -= len(item[1])
                    self._dropped += len(item[1])
                    break

    # -- files ------------------------------------------------------------------------------
    def read_chunk(self, path: str, offset: int, size: int = CHUNK_BYTES) -> Any:
        """``size`` bytes of ``path`` from ``offset`` (fewer at its end), as a uint8 array.

        An array, not ``bytes``: Ray stores it as it is and the app reads it where it
        lies in the object store, where bytes would be copied into its memory first.
        """
        import numpy  # Ray's own dependency: on every node that runs this

        with open(path, "rb") as f:
            f.seek(offset)
            left = max(0, min(size, os.fstat(f.fileno()).st_size - offset))
            chunk = numpy.empty(left, dtype=numpy.uint8)
            got = f.readinto(chunk.data)
        return chunk[:got]

    def file_sizes(self, paths: list[str]) -> dict[str, int]:
        """The size of each file that exists (the app copies those back)."""
        out = {}
        for path in paths:
            try:
                out[path] = os.stat(path).st_size
            except OSError:
                pass
        return out

    def write_chunk(self, path: str, offset: int, data: bytes, final: bool) -> None:
        """Write one chunk of a file the app sends; the file appears whole when ``final``."""
        part = f"{path}.part"
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(part, "r+b" if offset else "wb") as f:
            f.seek(offset)
            f.write(data)
        if final:
            os.replace(part, path)

    def remove_folder(self, path: str) -> None:
        """Delete a node-local request folder once the app has its copy."""
        import shutil

        if Path(path).resolve().is_relative_to(self.scratch.resolve()):
            shutil.rmtree(path, ignore_errors=True)
