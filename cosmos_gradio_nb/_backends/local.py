"""The local backend: each rank a subprocess of the app, all watched by one thread.

:class:`LocalBackend` maps groups and ranks onto a :class:`~.mux.ProcessMux`
(one thread waiting on every worker's descriptors): devices from
``CUDA_VISIBLE_DEVICES``, a free ``MASTER_PORT`` on 127.0.0.1 per start, and the
contract of ``_engine/backend.py`` (``Gone`` once every rank of an incarnation is reaped).
Each incarnation's ranks carry a tag (``_worker/reaper.py``): before ``Gone``,
whatever still carries it is killed, so nothing a model started survives its
group, even when its keeper was SIGKILLed; ``close`` does the same for every group.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

from .._engine.backend import (
    BackendBroken,
    Died,
    Emit,
    Gone,
    GroupSpec,
    Output,
    RankInfo,
    SendError,
    message_event,
)
from .._worker import reaper
from .mux import MuxEvent, ProcessMux
from .process import free_port, gpu_assignment, rank_environment, signal_name

__all__ = ["LocalBackend"]

logger = logging.getLogger("cosmos_gradio_nb")


@dataclass
class _LocalGroup:
    incarnation: int
    size: int
    alive: set[int]
    stopping: bool = False
    reported: set[int] = field(default_factory=set)  # ranks whose death was told
    tag: str = ""  # in every rank's environment, inherited by all they start


class LocalBackend:
    """Model groups as local subprocesses (see the module docstring)."""

    name = "local"

    def __init__(self, emit: Emit, *, num_gpus: int, group_size: int) -> None:
        self._emit = emit
        self._devices = gpu_assignment(num_gpus)  # raises at once on a bad CUDA_VISIBLE_DEVICES
        self._size = group_size
        self._node = socket.gethostname()
        self._lock = threading.Lock()
        self._groups: dict[int, _LocalGroup] = {}
        self._app = f"{os.getpid()}-{secrets.token_hex(3)}"  # this backend's part of the tags
        self._reaping: set[str] = set()  # tags being reaped before their group's Gone
        self._closed = False
        self._mux = ProcessMux(self._on_mux, name=f"cosmos-gradio-local-{id(self):x}")

    def _device(self, group: int, rank: int) -> str:
        return self._devices[group * self._size + rank]

    def start(self, spec: GroupSpec) -> None:
        port = free_port()
        tag = reaper.group_tag(self._app, spec.index, spec.incarnation)
        with self._lock:
            self._groups[spec.index] = _LocalGroup(
                spec.incarnation, spec.size, set(range(spec.size)), tag=tag
            )
        for rank in range(spec.size):
            env = rank_environment(
                {**spec.env, reaper.TAG_VAR: tag},
                rank=rank,
                size=spec.size,
                master_addr="127.0.0.1",
                master_port=port,
                device=self._device(spec.index, rank),
            )
            init = {
                "type": "init",
                "factory": spec.factory,
                "sys_path": spec.sys_path,
                "group": spec.index,
                "rank": rank,
                "world_size": spec.size,
            }
            key = (spec.index, spec.incarnation, rank)
            self._mux.spawn(key, f"[g{spec.index} r{rank}]", env, init, spec.cwd)

    def send(self, group: int, msg: dict[str, Any]) -> None:
        with self._lock:
            g = self._groups.get(group)
            if g is None or g.stopping:
                raise SendError(f"group {group} is not running")
            keys = [(group, g.incarnation, r) for r in range(g.size)]
        for key in keys:
            self._mux.send(key, msg)

    def stop(self, group: int, *, graceful: bool = False) -> None:
        with self._lock:
            g = self._groups.get(group)
            if g is None:
                return
            g.stopping = True
            keys = [(group, g.incarnation, r) for r in sorted(g.alive)]
        for key in keys:
            if graceful:
                try:
                    self._mux.send(key, {"type": "shutdown"})
                except SendError:
                    self._mux.stop(key)
            else:
                self._mux.stop(key)

    def ranks(self, group: int) -> list[RankInfo]:
        with self._lock:
            g = self._groups.get(group)
            inc = g.incarnation if g is not None else None
        return [
            RankInfo(
                rank=r,
                pid=self._mux.pid((group, inc, r)) if inc is not None else None,
                node=self._node,
                device=self._device(group, r),
            )
            for r in range(self._size)
        ]

    def close(self) -> None:
        self._mux.close()
        with self._lock:
            self._closed = True
            tags = self._reaping | {g.tag for g in self._groups.values()}
        reaper.reap(tags)

    def _reap_then_gone(self, group: int, inc: int, tag: str) -> None:
        """Every rank of the incarnation ended: kill what still carries its tag, then ``Gone``.

        Its keepers stopped everything below them, unless one was killed first
        (SIGKILL): then its helpers were re-parented away, and only the tag finds them.
        """
        reaped = reaper.reap([tag])
        with self._lock:
            self._reaping.discard(tag)
            closed = self._closed
        if closed:
            return  # no event after close()
        if reaped.killed:
            self._emit(Output(group, inc, 0, [reaped.log_line()]))
        self._emit(Gone(group, inc))

    # -- the mux thread: process events become group events -----------------------------------
    def _on_mux(self, ev: MuxEvent) -> None:
        if ev.kind == "broken":
            self._emit(BackendBroken("the local worker thread failed: " + "".join(ev.lines or [])))
            return
        key: tuple[int, int, int] = ev.key  # type: ignore[assignment]
        group, inc, rank = key
        if ev.kind == "lines":
            self._emit(Output(group, inc, rank, ev.lines or []))
        elif ev.kind == "message" and ev.message is not None:
            event = message_event(group, inc, rank, ev.message)
            if event is not None:
                self._emit(event)
        elif ev.kind in ("died", "exit"):
            with self._lock:
                g = self._groups.get(group)
                if g is None or g.incarnation != inc:
                    return
                tell = not g.stopping and rank not in g.reported
                g.reported.add(rank)
                last = False
                if ev.kind == "exit":
                    g.alive.discard(rank)
                    last = not g.alive
                    if last:
                        self._reaping.add(g.tag)
            if tell:
                code = ev.exitcode
                how = signal_name(code) or (
                    f"exit code {code}" if code is not None else "not started"
                )
                self._emit(Died(group, inc, rank, how, ev.pid, code, signal_name(code)))
            if last:  # the reap takes a few scans of /proc: not on the mux thread
                threading.Thread(
                    target=self._reap_then_gone,
                    args=(group, inc, g.tag),
                    name=f"cosmos-gradio-reap-g{group}",
                    daemon=True,
                ).start()
