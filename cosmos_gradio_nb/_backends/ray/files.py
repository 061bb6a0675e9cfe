"""Files between the app's machine and a Ray node that does not share its folders.

Whether a node shares ``OUTPUT_DIR`` is asked once per group start: the app
writes a sentinel file with a random token into its folder, and the rank actor
looks for it (``SHARED_OUTPUT_DIR`` overrides the test). When it is not shared,
a request is rewritten for the node before it is sent: its folder becomes a
node-local scratch folder, and every file it names under the app's folders
(uploads, earlier outputs, ``ASSET_DIRS``) is pushed to the node first, once per
file version. When rank 0 replies, its files are pulled into the request's
folder here and the status is rewritten to name the copies. Both directions
move 8 MB chunks through Ray's object store with a few in flight, so neither
side ever holds a whole multi-GB video in memory.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from ..._core.outputs import write_status
from .agent import CHUNK_BYTES, remap_paths
from .config import RayConfig

__all__ = ["FileMover"]

PIPELINE = 4  # chunk transfers in flight per file


class FileMover:
    """Sentinels, pushes and pulls for one app's Ray backend (see the module docstring)."""

    def __init__(self, ray: Any, config: RayConfig, token: str) -> None:
        self._ray = ray
        self._config = config
        self._token = token
        self._pushed: set[tuple[str, str, int, int]] = set()  # (node, path, size, mtime) sent
        self._sentinel = self._write_sentinel(config.output_dir)

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

    def localize(
        self, actor: Any, node: str, scratch: str, msg: dict[str, Any]
    ) -> tuple[dict[str, Any], str]:
        """``msg`` as the node must see it, after pushing the files it names; and its folder."""
        folder = str(msg["output_dir"])
        mapping = {folder: f"{scratch}/outputs/{Path(folder).name}"}
        allowed = [self._config.uploads_dir, self._config.output_dir, *self._config.asset_dirs]
        for value in _strings(msg["params"]):
            path = Path(value)
            if value in mapping or not path.is_absolute() or not path.is_file():
                continue
            if any(path.resolve().is_relative_to(d) for d in allowed):
                mapping[value] = f"{scratch}/files/{value.lstrip(os.sep)}"
                self._push(actor, node, value, mapping[value])
        out = dict(msg, params=remap_paths(msg["params"], mapping), output_dir=mapping[folder])
        return out, folder

    def _push(self, actor: Any, node: str, src: str, dest: str) -> None:
        """Send ``src`` to ``dest`` on the node (once per node and file version)."""
        st = os.stat(src)
        key = (node, src, st.st_size, int(st.st_mtime_ns))
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

    def fetch(
        self, actor: Any, status: dict[str, Any], params: dict[str, Any], folder: str
    ) -> dict[str, Any]:
        """Stream the request's files into ``folder`` here; the status then names the copies."""
        remote_dir = str(status.get("output_dir") or "")
        files = status.get("files") or {}
        remote = [
            p for kind in ("videos", "images", "other", "partial") for p in files.get(kind, [])
        ]
        sizes = self._ray.get(actor.file_sizes.remote(remote), timeout=120)
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
                self._pull(actor, path, sizes[path], local)
        copied = remap_paths(status, mapping)
        copied["params"] = params
        copied["output_dir"] = folder
        write_status(folder, copied)
        with contextlib.suppress(Exception):
            actor.remove_folder.remote(remote_dir)
        return dict(copied)

    def _pull(self, actor: Any, path: str, size: int, local: str) -> None:
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


def _strings(value: Any) -> list[str]:
    """Every string inside ``value`` (dict values, list items), depth first."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []
