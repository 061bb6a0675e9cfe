"""The keeper: one small process above each worker that outlives it to stop what it started.

A model may start helper processes: a data loader, a compiler, a ``Popen`` it
keeps between requests, a daemon that calls ``setsid()`` or double-forks. On a
GPU node such a leftover keeps GPU memory. None of them may survive the worker's
group being stopped, restarted or closed, nor the app's process being killed.

The means, and why this one
---------------------------
- *Process groups* (``killpg``) miss anything that calls ``setsid()`` or
  ``setpgid()``.
- *Parent-death signals* reach only direct children, and only those that ask.
- *cgroups* catch everything, but are rarely writable for the user a notebook
  runs as (and not at all in most containers).
- *A child subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``) is what we use: every
  process below the keeper that loses its parent (a double fork, a ``setsid``
  daemon whose parent exited) is re-parented to the keeper instead of to init, so
  all of them stay its descendants and a walk of ``/proc`` finds them. It works
  unprivileged on any Linux since 3.4.

How it runs: the worker's entry point forks once, first thing, before the model
is imported. The parent half becomes the keeper (this module; the pool's pidfd
watches it), the child half becomes the worker. The keeper waits, and when the
worker exits, when the pool asks it to stop (SIGTERM), or when the app's process
dies (its parent-death signal, SIGTERM too), it SIGKILLs the worker and every
descendant, reaps them, names in the log what it had to stop, and exits the way
the worker did (the same exit code, or the same signal), so the pool reports a
crash exactly as if it had watched the worker itself. The worker in turn has a
parent-death SIGKILL on the keeper, so killing the keeper alone frees the GPU too.

What the keeper cannot do is outlive its own SIGKILL: its orphans then go to
init. So every worker carries its group's tag in its environment
(``reaper.py``), inherited by all it starts; the keeper kills what carries it
as well as what is below it, and the app's backend does the same once the
group's processes are gone, whoever killed the keeper.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import sys
import time
from types import FrameType

from . import reaper

__all__ = ["descendants", "set_parent_death_signal", "start_keeper"]

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
CLEANUP_BOUND_S = 5.0  # give up on a descendant that will not die (stuck in the kernel)


def _prctl(option: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        return bool(ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0)
    except Exception:
        return False


def set_parent_death_signal(sig: int) -> bool:
    """Ask Linux to send ``sig`` when our parent dies (PR_SET_PDEATHSIG); False where unsupported.

    Callers should then compare ``os.getppid()`` with the parent they expect, in
    case it died first.
    """
    return _prctl(PR_SET_PDEATHSIG, sig)


def descendants(root: int) -> list[int]:
    """Every live (non-zombie) process below ``root``, found by one scan of ``/proc``."""
    children: dict[int, list[int]] = {}
    zombies = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        pid = int(entry.name)
        children.setdefault(int(fields[1]), []).append(pid)
        if fields[0] == b"Z":
            zombies.add(pid)
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            todo.append(child)
            if child not in zombies:
                found.append(child)
    return found


def _name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


class _Stop(Exception):
    """Raised by the SIGTERM handler: the pool or the app's death asks us to stop."""


def _on_term(_signum: int, _frame: FrameType | None) -> None:
    raise _Stop


def _reap_children() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def _stop_descendants(worker: int) -> list[str]:
    """SIGKILL everything below us and everything carrying our tag, reap it; return the
    leftovers' names (not the worker).

    Two ways to find them, until neither finds anything :data:`~.reaper.CLEAN_SCANS`
    times in a row: the walk of our descendants (a process that cleared its
    environment is still below us), and the tag (:func:`~.reaper.sweep`: newest
    first, each frozen on sight, so one that keeps forking is caught).
    """
    me = os.getpid()
    tag = os.environ.get(reaper.TAG_VAR, "")
    stopped: dict[int, str] = {}
    deadline = time.monotonic() + CLEANUP_BOUND_S
    clean = 0
    while clean < reaper.CLEAN_SCANS and time.monotonic() < deadline:
        found = reaper.sweep([tag], exclude=[me])
        alive = descendants(me)
        for pid in alive:
            if pid not in found:
                found[pid] = _name(pid)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        for pid, name in found.items():
            if pid != worker:
                stopped.setdefault(pid, name)
        _reap_children()
        clean = 0 if found else clean + 1
        if found:
            time.sleep(0.001)  # a moment for the killed to become zombies
    _reap_children()
    return [f"{pid} ({name})" for pid, name in stopped.items()]


def _exit_like(status: int) -> None:
    """End this process with the worker's own exit code or signal."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file of the keeper
        if sig not in (signal.SIGKILL, signal.SIGSTOP):  # those two cannot be handled
            signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
        os.kill(os.getpid(), sig)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)


def _report(fd: int | None, status: int) -> None:
    """Tell the app how the worker ended, at once, before the clean-up (which can take a while).

    A peer rank learns of the death the instant the kernel closes the worker's
    sockets; this report lets the app learn as fast, with the exit code or signal.
    """
    if fd is None:
        return
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    with contextlib.suppress(OSError):
        os.write(fd, f"{code}\n".encode())
    with contextlib.suppress(OSError):
        os.close(fd)


def start_keeper(app_pid: int, close_fds: tuple[int, ...], report_fd: int | None = None) -> None:
    """Fork; return in the child (the worker). The parent stays the keeper and never returns.

    ``close_fds`` are closed in the keeper (the control socket: the app sees EOF
    the moment the worker dies); ``report_fd`` is the keeper's alone (closed in the
    worker): it carries the worker's exit code, written the moment it is known.
    """
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    keeper = os.getpid()
    signal.signal(signal.SIGTERM, _on_term)
    worker = os.fork()
    if worker == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        set_parent_death_signal(signal.SIGKILL)
        if os.getppid() != keeper:  # the keeper died before prctl took effect
            os._exit(1)
        if report_fd is not None:
            os.close(report_fd)
        return
    for fd in close_fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    set_parent_death_signal(signal.SIGTERM)  # the app died: clean up, as if asked
    status: int | None = None
    try:
        if os.getppid() != app_pid:
            raise _Stop
        while status is None:  # orphans re-parented to us are reaped here as they exit
            pid, wstatus = os.waitpid(-1, 0)
            if pid == worker:
                status = wstatus
    except _Stop:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if status is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGKILL)
            status = os.waitpid(worker, 0)[1]
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _report(report_fd, status)
    stopped = _stop_descendants(worker)
    if stopped:
        print(
            f"cosmos_gradio_nb: stopped {len(stopped)} process(es) the model had left running: "
            + ", ".join(stopped),
            flush=True,
        )
    _exit_like(status)
