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
- a request travels as one actor call per rank whose answer is that rank's reply
  (with the lines printed before it), and each rank has one long poll out for
  the rest (lines and progress while it runs, the worker's death); every such
  call is waited on by one thread, :class:`~.calls.CallWaiter`'s, whatever the
  number of ranks; a dead actor or node fails those calls at once, which is how
  a crash or a lost node is noticed;
- when the node does not share ``OUTPUT_DIR`` (``SHARED_OUTPUT_DIR``, or a
  sentinel file the node cannot see), the worker writes into a node-local
  folder, and the files are streamed back in chunks into the request's folder
  here before the reply is handed on; uploads a request names go the other way.
  That whole path is one :class:`~.files.NodeFiles` per group: the backend
  hands it the group's messages and rank 0's replies, nothing more; the copies
  run on the file mover's few threads, shared by every group.

The queue, the futures and every policy stay in the app's process (``_engine/``).
The settings used here come as a :class:`~.config.RayConfig`, which the app builds.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import uuid
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
from .agent import Batch, RankAgent
from .calls import CallWaiter
from .config import RayConfig
from .connect import connect, import_ray
from .files import FileMover, NodeFiles
from .group import Group, Rank, start_ranks
from .placement import Placement, cluster_summary, death_reason

__all__ = ["RayBackend", "RayConfig", "ray_backend"]

logger = logging.getLogger("cosmos_gradio_nb")

KILL_AFTER = 10.0  # seconds a rank actor gets to stop its worker before it is killed
POLL_S = 60.0  # a long poll's answer when nothing happens (a dead actor answers at once)


def ray_backend(config: RayConfig) -> BackendFactory:
    """The pool's backend factory for ``BACKEND=ray`` (raises at once if Ray is missing)."""
    import_ray()

    def make(emit: Emit) -> WorkerBackend:
        return RayBackend(emit, config)

    return make


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
        self._groups: dict[int, Group] = {}
        self._files = FileMover(ray, config, self._token)
        self._waiter = CallWaiter()
        self._closed = False

    # -- the backend interface ----------------------------------------------------------------
    def start(self, spec: GroupSpec) -> None:
        group = Group(spec)
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
            self._deliver(g, msg)
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
                    rank.actor.tell.remote({"type": "shutdown"})
                else:
                    rank.actor.stop.remote()
        if not graceful:
            self._waiter.after(KILL_AFTER, lambda: self._kill_ranks(g))

    def ranks(self, group: int) -> list[RankInfo]:
        """One row per rank of the group; a rank not placed yet (a restart) has no pid."""
        with self._lock:
            g = self._groups.get(group)
            if g is None:
                return []
            placed = {r.rank: r for r in g.ranks}
            size = g.spec.size
        rows = []
        for index in range(size):
            r = placed.get(index)
            info = r.info if r is not None else {}
            rows.append(
                RankInfo(
                    rank=index,
                    pid=r.worker_pid if r is not None else None,
                    node=str(info.get("ip") or info.get("host") or "?"),
                    device=str(info.get("cuda_visible_devices", "")) if self._gpus else "",
                )
            )
        return rows

    def close(self) -> None:
        with self._lock:
            self._closed = True
            groups = list(self._groups.values())
        for g in groups:
            self._release(g, announce=False)
        self._waiter.close()
        self._files.close()
        if self._started_ray:
            with contextlib.suppress(Exception):
                self._ray.shutdown()

    # -- starting a group (its own thread: placement may take a while) -------------------------
    def _start_group(self, group: Group) -> None:
        spec = group.spec
        try:
            if not self._place(group):
                return
            start_ranks(self._ray, self._agent, group, token=self._token, gpus=self._gpus)
            if not self._files.shared(group.ranks[0].actor):
                group.files = self._node_files(group)
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
            self._poll(group, rank)

    def _place(self, group: Group) -> bool:
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

    # -- calls out to the ranks, and their answers (on the waiter's one thread) ------------------
    def _deliver(self, group: Group, msg: dict[str, Any]) -> None:
        """Send ``msg`` to every rank: an infer as a call whose answer is the reply."""
        infer = msg.get("type") == "infer"
        for rank in group.ranks:
            if infer:
                ref = rank.actor.run.remote(msg)
                self._waiter.watch(ref, functools.partial(self._answered, group, rank))
            else:
                rank.actor.tell.remote(msg)

    def _poll(self, group: Group, rank: Rank) -> None:
        ref = rank.actor.events.remote(POLL_S)
        self._waiter.watch(ref, lambda v, e: self._polled(group, rank, v, e))

    def _polled(self, group: Group, rank: Rank, batch: Batch | None, exc: Any) -> None:
        self._answered(group, rank, batch, exc)
        if exc is None and rank.alive and not rank.finished and not group.released:
            self._poll(group, rank)

    def _answered(self, group: Group, rank: Rank, batch: Batch | None, exc: Any) -> None:
        if group.released or not rank.alive:
            return
        if exc is not None:  # what came before, then the rank is gone
            rank.flush_held()
            self._handle(group, rank)
            if isinstance(exc, self._ray.exceptions.RayTaskError):  # the method raised: a bug
                logger.error("cosmos_gradio_nb: a rank actor's call failed: %s", exc)
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else "?"
                how = f"its Ray actor failed: {first[:200]}"  # no reply would ever come
            else:  # the actor or its node died
                how = death_reason(self._ray, exc, rank.info)
            self._rank_gone(group, rank, how, None)
            return
        assert batch is not None
        if any(item[0] == "exit" for item in batch[1]):
            rank.finished = True
        rank.arrived(batch)
        self._handle(group, rank)

    def _handle(self, group: Group, rank: Rank) -> None:
        """Hand on the rank's backlog, in order, until a reply must first be copied back."""
        spec = group.spec
        while rank.backlog and not rank.copying:
            item = rank.backlog.popleft()
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

    def _on_message(self, group: Group, rank: Rank, msg: dict[str, Any]) -> None:
        files = group.files
        if msg.get("type") in ("done", "error", "stopped") and rank.rank == 0 and files is not None:
            rank.copying = True  # a done's outputs are copied back first, off this thread
            self._files.submit(lambda: self._copied(group, rank, files.reply(msg)))
            return
        self._tell(group, rank, msg)

    def _copied(self, group: Group, rank: Rank, msg: dict[str, Any]) -> None:
        def resume() -> None:
            rank.copying = False
            if not group.released and rank.alive:
                self._tell(group, rank, msg)
                self._handle(group, rank)

        self._waiter.post(resume)

    def _tell(self, group: Group, rank: Rank, msg: dict[str, Any]) -> None:
        event = message_event(group.spec.index, group.spec.incarnation, rank.rank, msg)
        if event is not None:
            self._emit(event)

    def _rank_gone(
        self, group: Group, rank: Rank, how: str, code: int | None, *, final: bool = True
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

    def _release(self, group: Group, *, announce: bool = True) -> None:
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

    def _kill_ranks(self, group: Group) -> None:
        """A stop's last resort: the actors did not stop their workers in time."""
        if not group.released:
            for rank in list(group.ranks):
                with contextlib.suppress(Exception):
                    self._ray.kill(rank.actor, no_restart=True)

    # -- files, when the node does not share our folders ---------------------------------------
    def _node_files(self, group: Group) -> NodeFiles:
        """The group's path for requests and outputs through rank 0's node (``files.py``)."""
        spec, lead = group.spec, group.ranks[0]

        def refuse(reply: dict[str, Any]) -> None:
            for rank in group.ranks:
                self._emit(Reply(spec.index, spec.incarnation, rank.rank, reply))

        return NodeFiles(
            self._files,
            lead.actor,
            lead.info,
            tell=lambda m: self._deliver(group, m),
            refuse=refuse,
        )
