"""The Ray backend: each model group one placement group, each rank one actor.

Why Ray: labs that outgrow one node already run it (KubeRay, ``ray start`` in a
Slurm allocation, a workstation's ``ray start --head``), and it places work by
GPU, moves data between nodes and reports lost nodes. This backend adds no
scheduler of its own:

- a group is a ``STRICT_PACK`` placement group of ``GPUS_PER_MODEL`` bundles
  (one GPU each on a GPU cluster; CPU only otherwise), so its ranks share a
  node as torch.distributed expects; placing it is bounded by
  ``PLACEMENT_TIMEOUT``, after which the start fails saying what was asked and
  what the cluster has (both in ``placement.py``);
- each rank is a :class:`~.agent.RankAgent` actor in its bundle, which runs
  the ordinary worker process on its node; ``MASTER_ADDR`` is rank 0's node,
  ``MASTER_PORT`` a port free there, ``CUDA_VISIBLE_DEVICES`` what Ray assigned;
- one thread per rank long-polls its actor for events (output lines, progress,
  replies, the worker's exit); a dead actor or node fails that call at once,
  which is how a crash or a lost node is noticed;
- when the node does not share ``OUTPUT_DIR`` (``SHARED_OUTPUT_DIR``, or a
  sentinel file the node cannot see), the worker writes into a node-local
  folder, and the files are streamed back in chunks into the request's folder
  here before the reply is handed on; uploads a request names go the other way.
  That whole path is one :class:`~.files.NodeFiles` per group: the backend
  hands it the group's messages and rank 0's replies, nothing more.

The queue, the futures and every policy stay in the app's process (``_engine/``).
The settings used here come as a :class:`~.config.RayConfig`, which the app builds.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from ..._engine.backend import (
    Died,
    Emit,
    Gone,
    GroupSpec,
    Output,
    RankInfo,
    Reply,
    SendError,
    StartFailed,
    WorkerBackend,
    message_event,
)
from ..._engine.pool import BackendFactory
from ..process import signal_name
from .agent import RankAgent
from .config import RayConfig
from .connect import connect, import_ray
from .files import FileMover, NodeFiles
from .placement import Placement, cluster_summary, death_reason

__all__ = ["RayBackend", "RayConfig", "ray_backend"]

logger = logging.getLogger("cosmos_gradio_nb")

KILL_AFTER = 10.0  # seconds a rank actor gets to stop its worker before it is killed


def ray_backend(config: RayConfig) -> BackendFactory:
    """The pool's backend factory for ``BACKEND=ray`` (raises at once if Ray is missing)."""
    import_ray()

    def make(emit: Emit) -> WorkerBackend:
        return RayBackend(emit, config)

    return make


@dataclass(eq=False)
class _Rank:
    rank: int
    actor: Any
    info: dict[str, Any] = field(default_factory=dict)
    worker_pid: int | None = None
    alive: bool = True
    reported: bool = False  # its death was told
    _run: Any = None  # ``actor.run`` with no return value, made once

    def tell(self, msg: dict[str, Any]) -> None:
        """Send the rank's worker a message; no answer is awaited (replies come as events)."""
        if self._run is None:
            self._run = self.actor.run.options(num_returns=0)
        self._run.remote(msg)


@dataclass(eq=False)
class _Group:
    spec: GroupSpec
    placement: Placement | None = None
    ranks: list[_Rank] = field(default_factory=list)
    running: bool = False  # every rank's worker was started
    stopping: bool = False
    released: bool = False
    files: NodeFiles | None = None  # its node does not share our folders


class RayBackend:
    """Model groups as Ray placement groups of rank actors (see the module docstring)."""

    name = "ray"

    def __init__(self, emit: Emit, config: RayConfig) -> None:
        self._ray = ray = import_ray()
        self._emit = emit
        self._config = config
        self._started_ray = connect(ray, config.ray_address)
        self._token = uuid.uuid4().hex[:12]
        self._agent = ray.remote(RankAgent)
        self._gpus = float(ray.cluster_resources().get("GPU", 0)) > 0
        self._lock = threading.Lock()
        self._groups: dict[int, _Group] = {}
        self._files = FileMover(ray, config, self._token)
        self._closed = False

    # -- the backend interface ----------------------------------------------------------------
    def start(self, spec: GroupSpec) -> None:
        group = _Group(spec)
        with self._lock:
            self._groups[spec.index] = group
        threading.Thread(
            target=self._start_group,
            args=(group,),
            name=f"cosmos-ray-start-g{spec.index}",
            daemon=True,
        ).start()

    def send(self, group: int, msg: dict[str, Any]) -> None:
        with self._lock:
            g = self._groups.get(group)
            if g is None or not g.running or g.stopping:
                raise SendError(f"group {group} is not running")
        if g.files is None:
            for rank in g.ranks:
                rank.tell(msg)
        else:
            g.files.send(msg)

    def stop(self, group: int, *, graceful: bool = False) -> None:
        with self._lock:
            g = self._groups.get(group)
            if g is None or g.released:
                return
            g.stopping = True
            ranks = [r for r in g.ranks if r.alive]
            placed = g.running
        if g.files is not None:
            g.files.close()
        if not placed:
            return  # the starting thread sees ``stopping`` and releases it
        for rank in ranks:
            with contextlib.suppress(Exception):
                if graceful:
                    rank.tell({"type": "shutdown"})
                else:
                    rank.actor.stop.remote()
        if not graceful:
            timer = threading.Timer(KILL_AFTER, self._kill_ranks, args=(g,))
            timer.daemon = True
            timer.start()

    def ranks(self, group: int) -> list[RankInfo]:
        with self._lock:
            g = self._groups.get(group)
            ranks = list(g.ranks) if g is not None else []
        return [
            RankInfo(
                rank=r.rank,
                pid=r.worker_pid,
                node=str(r.info.get("ip") or r.info.get("host") or "?"),
                device=str(r.info.get("cuda_visible_devices", "")) if self._gpus else "",
            )
            for r in ranks
        ]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            groups = list(self._groups.values())
        for g in groups:
            self._release(g, announce=False)
        self._files.close()
        if self._started_ray:
            with contextlib.suppress(Exception):
                self._ray.shutdown()

    # -- starting a group (its own thread: placement may take a while) -------------------------
    def _start_group(self, group: _Group) -> None:
        spec = group.spec
        try:
            if not self._place(group):
                return
            self._create_ranks(group)
        except Exception as exc:  # a rank died while starting, Ray refused, a timeout...
            if not group.stopping:
                logger.debug("ray group start failed", exc_info=True)
                summary = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                self._emit(StartFailed(spec.index, spec.incarnation, 0, summary, str(exc)))
            self._release(group)
            return
        with self._lock:
            group.running = not group.stopping
        if group.stopping:
            self._release(group)
            return
        if group.files is not None:
            group.files.start()
        for rank in group.ranks:
            threading.Thread(
                target=self._poll,
                args=(group, rank),
                name=f"cosmos-ray-poll-g{spec.index}r{rank.rank}",
                daemon=True,
            ).start()

    def _place(self, group: _Group) -> bool:
        """Create the group's placement group and wait (bounded) until Ray places it."""
        spec, limit = group.spec, self._config.placement_timeout
        name = f"cosmos-gradio-{self._token}-g{spec.index}-i{spec.incarnation}"
        group.placement = Placement(self._ray, size=spec.size, gpus=self._gpus, name=name)
        placed = group.placement.wait(limit)
        if group.stopping:
            self._release(group)
            return False
        if not placed:
            summary = group.placement.unplaced(spec.index, limit)
            failed = StartFailed(
                spec.index, spec.incarnation, 0, summary, cluster_summary(self._ray)
            )
            self._emit(failed)
            self._release(group)
            return False
        return True

    def _create_ranks(self, group: _Group) -> None:
        ray, spec, placement = self._ray, group.spec, group.placement
        assert placement is not None
        for r in range(spec.size):
            actor = self._agent.options(
                num_cpus=1,
                num_gpus=1 if self._gpus else 0,
                scheduling_strategy=placement.strategy(r),
                max_concurrency=8,
            ).remote(spec.index, r, f"{self._token}-g{spec.index}")
            group.ranks.append(_Rank(r, actor))
        infos = ray.get([rank.actor.describe.remote() for rank in group.ranks], timeout=300)
        for rank, info in zip(group.ranks, infos, strict=True):
            rank.info = info
        lead = group.ranks[0]
        if not self._files.shared(lead.actor):
            group.files = self._node_files(group)
        port = ray.get(lead.actor.free_port.remote(), timeout=60)
        init = {
            "type": "init",
            "factory": spec.factory,
            "sys_path": spec.sys_path,
            "group": spec.index,
            "world_size": spec.size,
        }
        ray.get(
            [
                rank.actor.start.remote(
                    spec.env,
                    size=spec.size,
                    master_addr=str(lead.info["ip"]),
                    master_port=int(port),
                    init={**init, "rank": rank.rank},
                    cwd=spec.cwd,
                    gpus=self._gpus,
                )
                for rank in group.ranks
            ],
            timeout=120,
        )

    # -- one thread per rank: its events ------------------------------------------------------
    def _poll(self, group: _Group, rank: _Rank) -> None:
        spec = group.spec
        while True:
            try:
                items = self._ray.get(rank.actor.events.remote(10.0))
            except Exception as exc:  # RayActorError: the actor or its node died
                self._rank_gone(group, rank, death_reason(self._ray, exc, rank.info), None)
                return
            for item in items:
                kind = item[0]
                if kind == "lines":
                    self._emit(Output(spec.index, spec.incarnation, rank.rank, item[1]))
                elif kind == "started":
                    rank.worker_pid = item[1]
                elif kind == "message":
                    self._on_message(group, rank, item[1])
                elif kind in ("died", "exit"):
                    code = item[1]
                    how = signal_name(code) or (f"exit code {code}" if code is not None else "lost")
                    self._rank_gone(group, rank, how, code, final=kind == "exit")
                    if kind == "exit":
                        return

    def _on_message(self, group: _Group, rank: _Rank, msg: dict[str, Any]) -> None:
        spec, kind = group.spec, msg.get("type")
        if kind in ("done", "error") and rank.rank == 0 and group.files is not None:
            msg = group.files.reply(msg)  # a done's outputs copied back here first
        event = message_event(spec.index, spec.incarnation, rank.rank, msg)
        if event is not None:
            self._emit(event)

    def _rank_gone(
        self, group: _Group, rank: _Rank, how: str, code: int | None, *, final: bool = True
    ) -> None:
        """A rank's worker ended (``final``: and everything of it is gone)."""
        spec = group.spec
        with self._lock:
            if not rank.alive:
                return
            tell = not (group.stopping or self._closed or rank.reported)
            rank.reported = True
            if final:
                rank.alive = False
            last = final and not any(r.alive for r in group.ranks)
        if tell:
            self._emit(
                Died(
                    spec.index,
                    spec.incarnation,
                    rank.rank,
                    how,
                    rank.worker_pid,
                    code,
                    signal_name(code),
                )
            )
        if last:
            self._release(group)

    def _release(self, group: _Group, *, announce: bool = True) -> None:
        """Kill the group's actors, remove its placement group; then ``Gone``."""
        with self._lock:
            if group.released:
                return
            group.released = True
            group.stopping = True
            for rank in group.ranks:
                rank.alive = False
        for rank in group.ranks:
            with contextlib.suppress(Exception):
                self._ray.kill(rank.actor, no_restart=True)
        if group.placement is not None:
            group.placement.remove()
        if group.files is not None:
            group.files.close()
        if announce and not self._closed:
            self._emit(Gone(group.spec.index, group.spec.incarnation))

    def _kill_ranks(self, group: _Group) -> None:
        """A stop's last resort: the actors did not stop their workers in time."""
        if not group.released:
            for rank in list(group.ranks):
                with contextlib.suppress(Exception):
                    self._ray.kill(rank.actor, no_restart=True)

    # -- files, when the node does not share our folders ---------------------------------------
    def _node_files(self, group: _Group) -> NodeFiles:
        """The group's path for requests and outputs through rank 0's node (``files.py``)."""
        spec, lead = group.spec, group.ranks[0]

        def tell(msg: dict[str, Any]) -> None:
            for rank in group.ranks:
                with contextlib.suppress(Exception):
                    rank.tell(msg)

        def refuse(reply: dict[str, Any]) -> None:
            for rank in group.ranks:
                self._emit(Reply(spec.index, spec.incarnation, rank.rank, reply))

        name = f"cosmos-ray-send-g{spec.index}"
        return NodeFiles(self._files, lead.actor, lead.info, tell=tell, refuse=refuse, name=name)
