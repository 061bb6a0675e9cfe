"""Files between the app's machine and a Ray node that does not share its folders.

Whether a node shares ``OUTPUT_DIR`` is asked once per group start: the app
writes a sentinel file with a random token into its folder, and the rank actor
looks for it (``SHARED_OUTPUT_DIR`` overrides the test). A group on a shared
node is sent its requests as they are. A group on a node that does not share
them gets a :class:`NodeFiles`, which owns that whole path:

- a request is rewritten for the node before it is sent: its folder becomes a
  node-local scratch folder, and every file it names under the app's folders
  (uploads, earlier outputs, ``ASSET_DIRS``) is pushed to the node first, once
  per node, file version and destination. Pushing a multi-GB upload takes a while and
  ``send`` is called with the pool's lock held, so requests wait in a queue for
  a thread of the group's own, which sends them in order;
- the request is remembered (its parameters and its folder here) until rank 0
  replies; a ``done`` then has its files pulled into the request's folder here
  and its status rewritten to name the copies before the reply is handed on,
  so the app never sees a path on another machine.

:class:`FileMover` is what all of one app's groups share: the sentinel, the
record of files already pushed to each node, and the transfers themselves. Both
directions move 8 MB chunks through Ray's object store with a few in flight, so
neither side ever holds a whole multi-GB video in memory.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..._core.outputs import write_status
from .agent import CHUNK_BYTES, remap_paths
from .config import RayConfig

__all__ = ["FileMover", "NodeFiles"]

PIPELINE = 4  # chunk transfers in flight per file


class FileMover:
    """Sentinels, pushes and pulls for one app's Ray backend (see the module docstring)."""

    def __init__(self, ray: Any, config: RayConfig, token: str) -> None:
        self._ray = ray
        self._config = config
        self._token = token
        self._pushed: set[tuple[str, str, str, int, int]] = set()  # node, src, dest, size, mtime
        self._sentinel = self._write_sentinel(config.output_dir)
        self.allowed = [config.uploads_dir, config.output_dir, *config.asset_dirs]
        """The folders whose files a request may name, and so may be pushed to a node."""

    def close(self) -> None:
        if self._sentinel is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._sentinel)

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
        """Send ``src`` to ``dest`` on the node (once per node, destination and file version).

        The destination is part of the key: each group has a scratch folder of its own, so
        two groups on one node each need the file in theirs.
        """
        st = os.stat(src)
        key = (node, src, dest, st.st_size, int(st.st_mtime_ns))
        if key in self._pushed:
            return
        refs = []
        with open(src, "rb") as f:
            offset = 0
            while True:
                data = f.read(CHUNK_BYTES)
                final = len(data) < CHUNK_BYTES
                refs.append(actor.write_chunk.remote(dest, offset, data, final))
                if len(refs) >= PIPELINE:
                    self._ray.get(refs.pop(0), timeout=300)
                offset += len(data)
                if final:
                    break
        self._ray.get(refs, timeout=300)
        self._pushed.add(key)

    def sizes(self, actor: Any, paths: list[str]) -> dict[str, int]:
        """The size of each of ``paths`` that exists on the node of ``actor``."""
        return dict(self._ray.get(actor.file_sizes.remote(paths), timeout=120))

    def pull(self, actor: Any, path: str, size: int, local: str) -> None:
        """Copy ``path`` (``size`` bytes) from the node of ``actor`` to ``local`` here."""
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        part = f"{local}.part"
        offsets = list(range(0, max(size, 1), CHUNK_BYTES))
        with open(part, "wb") as f:
            pending = []
            for offset in offsets:
                pending.append(actor.read_chunk.remote(path, offset, CHUNK_BYTES))
                if len(pending) >= PIPELINE:
                    f.write(self._ray.get(pending.pop(0), timeout=300))
            for ref in pending:
                f.write(self._ray.get(ref, timeout=300))
        os.replace(part, local)


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
    name:
        The sending thread's name.
    """

    def __init__(
        self,
        mover: FileMover,
        lead: Any,
        info: dict[str, Any],
        *,
        tell: Callable[[dict[str, Any]], None],
        refuse: Callable[[dict[str, Any]], None],
        name: str,
    ) -> None:
        self._mover = mover
        self._lead = lead
        self._node = str(info.get("node_id"))
        self._where = info.get("ip")
        self.scratch = str(info["scratch"])
        """The node-local folder: requests' outputs under ``outputs/``, pushed files under ``files/``."""
        self._tell = tell
        self._refuse = refuse
        self._name = name
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._inflight: dict[str, tuple[dict[str, Any], str]] = {}  # id -> (params, folder here)

    def start(self) -> None:
        """Start sending (the group's workers are up); what was sent before waits till now."""
        threading.Thread(target=self._send_loop, name=self._name, daemon=True).start()

    def send(self, msg: dict[str, Any]) -> None:
        """Queue ``msg`` for the group; it is sent once the files it names are on the node."""
        self._queue.put(msg)

    def close(self) -> None:
        """Stop sending: the thread ends after what is queued (safe to call more than once)."""
        self._queue.put(None)

    def reply(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Rank 0's ``done`` or ``error`` as it is to be handed on.

        A ``done`` of a request sent here, with a status, comes back with its files
        copied into the request's folder here and its status naming the copies; or as
        an ``error`` if they cannot be copied.
        """
        request = self._inflight.pop(str(msg.get("id")), None)
        if request is None or msg.get("type") != "done" or not msg.get("status"):
            return msg
        params, folder = request
        try:
            return {**msg, "status": self._fetch(msg["status"], params, folder)}
        except Exception as exc:
            return {
                "type": "error",
                "id": msg.get("id"),
                "error_type": type(exc).__name__,
                "message": f"the outputs could not be copied back from {self._where}: {exc}",
                "traceback": "",
            }

    def _send_loop(self) -> None:
        """Push the files a request names, point it at node-local folders, send it."""
        while (msg := self._queue.get()) is not None:
            try:
                if msg.get("type") == "infer":
                    local, folder = self._localize(msg)
                    self._inflight[str(msg["id"])] = (msg["params"], folder)
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

    def _fetch(self, status: dict[str, Any], params: dict[str, Any], folder: str) -> dict[str, Any]:
        """Stream the request's files into ``folder`` here; the status then names the copies."""
        remote_dir = str(status.get("output_dir") or "")
        files = status.get("files") or {}
        remote = [
            p for kind in ("videos", "images", "other", "partial") for p in files.get(kind, [])
        ]
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
        copied = remap_paths(status, mapping)
        copied["params"] = params
        copied["output_dir"] = folder
        write_status(folder, copied)
        with contextlib.suppress(Exception):
            self._lead.remove_folder.remote(remote_dir)
        return dict(copied)


def _strings(value: Any) -> list[str]:
    """Every string inside ``value`` (dict values, list items), depth first."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []
