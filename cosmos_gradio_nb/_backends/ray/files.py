"""Files between the app's machine and a Ray node that does not share its folders.

Whether a node shares ``OUTPUT_DIR`` is asked once per group start: the app
writes a sentinel file with a random token into its folder, and the rank actor
looks for it (``SHARED_OUTPUT_DIR`` overrides the test). A group on a shared
node is sent its requests as they are. A group on a node that does not share
them gets a :class:`NodeFiles`, which owns that whole path:

- a request is rewritten for the node before it is sent: its folder becomes a
  node-local scratch folder, and every file it names under the app's folders
  (uploads, earlier outputs, ``ASSET_DIRS``) is pushed to the node first, once
  per node, file version and place. Pushing a multi-GB upload takes a while and
  ``send`` is called with the pool's lock held, so requests wait in the group's
  queue for one of the mover's threads, which sends them in order;
- the request is remembered (its folder here and on the node) until rank 0
  replies; a ``done`` then has its files pulled into the request's folder here
  and its file lists and returned values rewritten to name the copies before
  the reply is handed on, so the app never sees a path on another machine (the
  app alone writes status.json, from that reply).

:class:`FileMover` is what all of one app's groups share: the sentinel, the
record of files already pushed to each node, and a few threads for the
transfers (:data:`TRANSFER_THREADS`, however many groups there are; none until
a group needs one). Both directions move :data:`~.agent.CHUNK_BYTES` chunks
through Ray's object store with :data:`PIPELINE` in flight, so neither side ever
holds more than ``CHUNK_BYTES * PIPELINE`` of a file (128 MB), however large it
is. Pulled chunks come as byte arrays mapped from the object store and are
written to the file from there, without a copy into this process's memory.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .agent import CHUNK_BYTES, remap_paths
from .config import RayConfig

__all__ = ["PIPELINE", "PULL_THREADS", "TRANSFER_THREADS", "FileMover", "NodeFiles"]

logger = logging.getLogger("cosmos_gradio_nb")

PIPELINE = 8  # chunk transfers in flight per file (8 beat 4 in paired runs here)
PULL_THREADS = 4  # threads fetching and writing one file's chunks at once
TRANSFER_THREADS = 4  # the mover's threads: pushes, pulls and sends of every group together
TIMEOUT_S = 300.0  # one chunk's transfer


class FileMover:
    """Sentinels, pushes and pulls for one app's Ray backend (see the module docstring)."""

    def __init__(self, ray: Any, config: RayConfig, token: str) -> None:
        self._ray = ray
        self._config = config
        self._token = token
        self._lock = threading.Lock()
        self._pushed: set[tuple[str, str, str, int, int]] = set()  # node, src, dest, size, mtime
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._sentinel = self._write_sentinel(config.output_dir)
        self.allowed = [config.uploads_dir, config.output_dir, *config.asset_dirs]
        """The folders whose files a request may name, and so may be pushed to a node."""

    def close(self) -> None:
        if self._sentinel is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._sentinel)
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def submit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on one of the mover's threads (started on first use)."""
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    TRANSFER_THREADS, thread_name_prefix="cosmos-ray-files"
                )
            pool = self._pool
        with contextlib.suppress(RuntimeError):  # closed meanwhile
            pool.submit(_logged, fn)

    def shared(self, actor: Any) -> bool:
        """Whether the node of ``actor`` (a rank agent) sees our OUTPUT_DIR."""
        if self._config.shared_output_dir is not None:
            return self._config.shared_output_dir
        if self._sentinel is None:
            return False
        return bool(self._ray.get(actor.sees.remote(self._sentinel, self._token), timeout=60))

    def _write_sentinel(self, folder: Path) -> str | None:
        if self._config.shared_output_dir is not None:
            return None
        path = folder / f".cosmos-gradio-shared-{self._token}"
        with contextlib.suppress(OSError):
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(self._token)
            return str(path)
        return None

    def push(self, actor: Any, node: str, src: str, dest: str) -> None:
        """Send ``src`` to ``dest`` on the node (once per node, destination and file version)."""
        st = os.stat(src)
        key = (node, src, dest, st.st_size, int(st.st_mtime_ns))
        with self._lock:
            if key in self._pushed:
                return
        pending: collections.deque[Any] = collections.deque()
        with open(src, "rb") as f:
            offset = 0
            while True:
                data = f.read(CHUNK_BYTES)
                final = len(data) < CHUNK_BYTES
                pending.append(actor.write_chunk.remote(dest, offset, data, final))
                if len(pending) >= PIPELINE:
                    self._ray.get(pending.popleft(), timeout=TIMEOUT_S)
                offset += len(data)
                if final:
                    break
        self._ray.get(list(pending), timeout=TIMEOUT_S)
        with self._lock:
            self._pushed.add(key)

    def sizes(self, actor: Any, paths: list[str]) -> dict[str, int]:
        """The size of each of ``paths`` that exists on the node of ``actor``."""
        return dict(self._ray.get(actor.file_sizes.remote(paths), timeout=120))

    def pull(self, actor: Any, path: str, size: int, local: str) -> None:
        """Copy ``path`` (``size`` bytes) from the node of ``actor`` to ``local`` here.

        Chunks are fetched by :data:`PULL_THREADS` threads at once, each writing its
        chunk at its offset: a chunk's transfer overlaps another's write to disk
        (fetched then written one after the other, the copy reached about a quarter
        of a plain ``ray.get``'s speed). At most :data:`PIPELINE` chunks are in flight.
        """
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        part = f"{local}.part"
        offsets = range(0, size, CHUNK_BYTES)
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            if len(offsets) <= 1:  # one chunk: no thread to start
                for offset in offsets:
                    self._write_at(fd, actor.read_chunk.remote(path, offset, CHUNK_BYTES), offset)
            else:
                threads = min(PULL_THREADS, len(offsets))
                with ThreadPoolExecutor(threads, thread_name_prefix="cosmos-ray-pull") as pool:
                    pending: collections.deque[Future[None]] = collections.deque()
                    for offset in offsets:
                        ref = actor.read_chunk.remote(path, offset, CHUNK_BYTES)
                        pending.append(pool.submit(self._write_at, fd, ref, offset))
                        if len(pending) >= PIPELINE:
                            pending.popleft().result()
                    for done in pending:
                        done.result()
        finally:
            os.close(fd)
        os.replace(part, local)

    def _write_at(self, fd: int, ref: Any, offset: int) -> None:
        chunk = self._ray.get(ref, timeout=TIMEOUT_S)  # mapped from the object store
        view = memoryview(chunk).cast("B")
        written = 0
        while written < len(view):
            written += os.pwrite(fd, view[written:], offset + written)
        del view, chunk


def _logged(fn: Callable[[], None]) -> None:
    try:
        fn()
    except Exception:
        logger.exception("cosmos_gradio_nb: a Ray file transfer failed")


class NodeFiles:
    """One group's requests when its node does not share our folders (see the module docstring).

    Parameters
    ----------
    mover:
        The app's :class:`FileMover`.
    lead, info:
        Rank 0's actor, and what it described of itself (node id and address, scratch folder):
        files are pushed to and pulled from its node.
    tell:
        Sends a message, as the node must see it, to every rank of the group.
    refuse:
        Hands on an error reply as every rank's, for a request whose files could not be sent.
    """

    def __init__(
        self,
        mover: FileMover,
        lead: Any,
        info: dict[str, Any],
        *,
        tell: Callable[[dict[str, Any]], None],
        refuse: Callable[[dict[str, Any]], None],
    ) -> None:
        self._mover = mover
        self._lead = lead
        self._node = str(info.get("node_id"))
        self._where = info.get("ip")
        self.scratch = str(info["scratch"])
        """The node-local folder: requests' outputs under ``outputs/``, pushed files under ``files/``."""
        self._tell = tell
        self._refuse = refuse
        self._lock = threading.Lock()
        self._queue: collections.deque[dict[str, Any]] = collections.deque()
        self._started = False
        self._sending = False  # a mover thread is sending this group's queue
        self._closed = False
        self._inflight: dict[str, tuple[str, str]] = {}  # id -> (folder there, folder here)

    def start(self) -> None:
        """Start sending (the group's workers are up); what was sent before waits till now."""
        with self._lock:
            self._started = True
            self._kick()

    def send(self, msg: dict[str, Any]) -> None:
        """Queue ``msg`` for the group; it is sent once the files it names are on the node."""
        with self._lock:
            if not self._closed:
                self._queue.append(msg)
                self._kick()

    def close(self) -> None:
        """Stop sending: what is still queued is dropped (safe to call more than once)."""
        with self._lock:
            self._closed = True
            self._queue.clear()

    def reply(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Rank 0's ``done``, ``error`` or ``stopped`` as it is to be handed on (blocks
        while copying).

        A ``done`` of a request sent here comes back with its files copied into the
        request's folder here, its file lists and returned values naming the copies;
        or as an ``error`` if they cannot be copied.
        """
        request = self._inflight.pop(str(msg.get("id")), None)
        if request is None or msg.get("type") != "done" or "files" not in msg:
            return msg
        remote_dir, folder = request
        try:
            return self._fetch(msg, remote_dir, folder)
        except Exception as exc:
            return {
                "type": "error",
                "id": msg.get("id"),
                "error_type": type(exc).__name__,
                "message": f"the outputs could not be copied back from {self._where}: {exc}",
                "traceback": "",
            }

    def _kick(self) -> None:
        """(Lock held.) Have a mover thread send the queue, unless one is at it already."""
        if self._started and not self._sending and not self._closed and self._queue:
            self._sending = True
            self._mover.submit(self._send_queued)

    def _send_queued(self) -> None:
        """Push the files each queued request names, point it at node-local folders, send it."""
        while True:
            with self._lock:
                if self._closed or not self._queue:
                    self._sending = False
                    return
                msg = self._queue.popleft()
            try:
                if msg.get("type") == "infer":
                    local, folder = self._localize(msg)
                    self._inflight[str(msg["id"])] = (str(local["output_dir"]), folder)
                    msg = local
            except Exception as exc:
                reply = {"type": "error", "id": msg.get("id"), "error_type": type(exc).__name__}
                reply["message"] = f"the request's files could not be sent to the node: {exc}"
                self._refuse(reply)
                continue
            self._tell(msg)

    def _localize(self, msg: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """``msg`` as the node must see it, after pushing the files it names; and its folder."""
        folder = str(msg["output_dir"])
        mapping = {folder: f"{self.scratch}/outputs/{Path(folder).name}"}
        for value in _strings(msg["params"]):
            path = Path(value)
            if value in mapping or not path.is_absolute() or not path.is_file():
                continue
            if any(path.resolve().is_relative_to(d) for d in self._mover.allowed):
                mapping[value] = f"{self.scratch}/files/{value.lstrip(os.sep)}"
                self._mover.push(self._lead, self._node, value, mapping[value])
        out = dict(msg, params=remap_paths(msg["params"], mapping), output_dir=mapping[folder])
        return out, folder

    def _fetch(self, reply: dict[str, Any], remote_dir: str, folder: str) -> dict[str, Any]:
        """Stream the request's files into ``folder`` here; the reply then names the copies."""
        files = reply.get("files") or {}
        remote = [p for kind in ("videos", "images", "other") for p in files.get(kind, [])]
        sizes = self._mover.sizes(self._lead, remote)
        mapping = {remote_dir: folder}
        for path in remote:
            rel = (
                os.path.relpath(path, remote_dir)
                if path.startswith(remote_dir + os.sep)
                else Path(path).name
            )
            local = os.path.join(folder, rel)
            mapping[path] = local
            if path in sizes:
                self._mover.pull(self._lead, path, sizes[path], local)
        copied = {
            **reply,
            "files": remap_paths(files, mapping),
            "returned": remap_paths(reply.get("returned") or {}, mapping),
        }
        with contextlib.suppress(Exception):
            self._lead.remove_folder.remote(remote_dir)
        return copied


def _strings(value: Any) -> list[str]:
    """Every string inside ``value`` (dict values, list items), depth first."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []
