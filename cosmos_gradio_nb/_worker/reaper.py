"""The reaper: find every process a worker group started by the tag it inherited, and kill it.

Why a tag
---------
The keeper (``keeper.py``) stops what the model started by walking its own
descendants: as a child subreaper it inherits every orphan below it. But when
the keeper itself is SIGKILLed (``pkill -9 -f cosmos_gradio_nb._worker`` does
that), its orphans go to init and nothing knows them any more: every helper
survived, ``app.close()`` included. So each worker process gets an environment
variable, :data:`TAG_VAR` (``COSMOS_GRADIO_TAG``), unique to its group's
incarnation, and everything it starts inherits it (an environment is copied by
``fork`` and kept by ``exec``, ``setsid`` and double forks alike). The app's
backend calls :func:`reap` once a group's processes are gone and when it
closes, and the keeper calls it too: whatever still carries the tag is killed,
wherever it was re-parented.

What is touched: only processes of this user (``/proc/<pid>`` owned by our
uid) whose environment holds ``COSMOS_GRADIO_TAG`` set exactly to one of the
tags asked for, never the calling process. A process that clears its
environment, or overwrites it in place (``setproctitle`` does), is not found
this way; the keeper's walk of its descendants still finds it while the
keeper lives.

Processes that fork faster than a scan
--------------------------------------
A helper that keeps changing its pid (fork, the parent exits, every
millisecond) escaped a scan-then-kill loop: by the time the scan of ``/proc``
ended and the kill was sent, the pid it found was gone and its child lived on.
Three things catch it:

- *newest first, then chase*: ``/proc`` is listed, then read from the highest
  pid down, where a process that keeps forking lives; then listed again, and
  only the processes new since are read, while new ones keep appearing
  (:data:`CHASE_ROUNDS`): a child born during the scan is read within a
  fraction of a millisecond of its birth (one scan alone missed a process
  hopping every millisecond a third of the time on a loaded machine);
- *freeze on sight*: each process found is sent SIGSTOP at once, before the rest
  of the scan; a stopped process forks no more. Once the scan is done, every
  frozen one is sent SIGKILL (and its whole process group: ``killpg`` reaches
  every member of a group, even one forked during the signal, which a pid
  cannot);
- *again until clean*: scans repeat until :data:`CLEAN_SCANS` in a row find
  nothing, within a time bound (a process stuck in the kernel cannot be killed;
  the caller names what is left).

Each signal goes through a pidfd opened after the tag was seen and checked
again, so a pid reused by another process in between is never signalled.

Standard library only, and no import of the package above ``_core``: the keeper
runs this in the worker's process tree.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

__all__ = ["CHASE_ROUNDS", "CLEAN_SCANS", "TAG_VAR", "Reaped", "group_tag", "reap", "sweep"]

TAG_VAR = "COSMOS_GRADIO_TAG"
CLEAN_SCANS = 2  # sweeps in a row that must find nothing before the tag counts as gone
CHASE_ROUNDS = 10  # per sweep: listings of /proc while new processes keep appearing
REAP_BOUND_S = 5.0  # give up on what will not die (a process stuck in the kernel)
_KEY = TAG_VAR.encode() + b"="


def group_tag(app: str, group: int, incarnation: int) -> str:
    """The tag of one incarnation of one group of one app."""
    return f"{app}-g{group}-i{incarnation}"


@dataclass
class Reaped:
    """What a :func:`reap` killed (``pid -> name``) and what it could not (pids)."""

    killed: dict[int, str] = field(default_factory=dict)
    left: list[int] = field(default_factory=list)

    def describe(self) -> str:
        """``"123 (python3), 456 (sleep)"``."""
        return ", ".join(f"{pid} ({name})" for pid, name in self.killed.items())

    def log_line(self) -> str:
        """The line the app logs after a group's keeper ended, when this reap killed anything."""
        return (
            f"cosmos_gradio_nb: stopped {len(self.killed)} process(es) the model had left "
            f"running after its keeper ended: {self.describe()}"
        )


def _tag_of(environ: bytes) -> bytes | None:
    start = 0
    while (i := environ.find(_KEY, start)) >= 0:
        if i == 0 or environ[i - 1] == 0:
            end = environ.find(b"\0", i)
            return environ[i + len(_KEY) : end if end >= 0 else len(environ)]
        start = i + 1
    return None


def _tagged(pid: int, tags: Collection[bytes], uid: int) -> bool:
    try:
        if os.stat(f"/proc/{pid}").st_uid != uid:
            return False
        with open(f"/proc/{pid}/environ", "rb") as f:
            return _tag_of(f.read()) in tags
    except OSError:  # gone, a zombie (empty), or not ours to read
        return False


def _name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


class _Handle:
    """A process found by its tag, held by a pidfd (where the kernel has them)."""

    def __init__(self, pid: int, fd: int | None) -> None:
        self.pid = pid
        self.fd = fd

    @classmethod
    def open(cls, pid: int, tags: Collection[bytes], uid: int) -> _Handle | None:
        """Hold ``pid``, then check its tag again: a pid reused meanwhile is never held."""
        fd = None
        with contextlib.suppress(AttributeError, OSError):
            fd = os.pidfd_open(pid)
        if not _tagged(pid, tags, uid):
            if fd is not None:
                os.close(fd)
            return None
        return cls(pid, fd)

    def signal(self, sig: int) -> None:
        with contextlib.suppress(OSError):
            if self.fd is not None:
                signal.pidfd_send_signal(self.fd, sig)
            else:
                os.kill(self.pid, sig)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def sweep(tags: Collection[str], *, exclude: Collection[int] = ()) -> dict[int, str]:
    """One scan: freeze every process carrying one of ``tags`` as it is found, then kill them
    and their process groups. Returns what was found (``pid -> name``)."""
    wanted = {tag.encode() for tag in tags if tag}
    if not wanted:
        return {}
    uid, me = os.getuid(), os.getpid()
    skip = {me, *exclude}
    spare_groups = {os.getpgrp()} | {g for g in map(_pgid, skip) if g is not None}
    found: list[_Handle] = []
    seen: set[int] = set()
    for _ in range(CHASE_ROUNDS):  # the first round reads every process, the next the new ones
        try:
            pids = sorted((int(n) for n in os.listdir("/proc") if n.isdigit()), reverse=True)
        except OSError:
            break
        new = [pid for pid in pids if pid not in seen]
        if not new:
            break
        seen.update(new)
        for pid in new:  # newest first: where a process that keeps forking is
            if pid in skip or not _tagged(pid, wanted, uid):
                continue
            handle = _Handle.open(pid, wanted, uid)
            if handle is not None:
                handle.signal(signal.SIGSTOP)  # frozen: it forks no more
                found.append(handle)
    names = {h.pid: _name(h.pid) for h in found}
    groups = {g for g in map(_pgid, names) if g is not None and g > 1} - spare_groups
    for pgid in groups:
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)  # every member, even one being forked now
    for handle in found:
        handle.signal(signal.SIGKILL)
        handle.close()
    return names


def reap(
    tags: Collection[str],
    *,
    exclude: Collection[int] = (),
    bound_s: float = REAP_BOUND_S,
    between: Callable[[], None] | None = None,
) -> Reaped:
    """Kill every process of this user carrying one of ``tags``, until none is left.

    Sweeps (:func:`sweep`) repeat until :data:`CLEAN_SCANS` in a row find
    nothing, or ``bound_s`` passed. ``between`` runs after each sweep (the
    keeper reaps its children there). ``exclude``: pids never touched (the
    caller is never touched either).
    """
    out = Reaped()
    if not any(tags):
        return out
    deadline = time.monotonic() + bound_s
    clean = 0
    while clean < CLEAN_SCANS:
        found = sweep(tags, exclude=exclude)
        if between is not None:
            between()
        for pid, name in found.items():
            out.killed.setdefault(pid, name)
        clean = 0 if found else clean + 1
        if found and time.monotonic() > deadline:
            out.left = sorted(found)
            break
    return out
