"""Which Ray the app uses: the cluster it was asked to join, or a private one of its own.

- Ray already initialised in this process (the user called ``ray.init``): that one.
- ``RAY_ADDRESS`` (``ray_address=``) set: ``"auto"`` (Ray's own meaning: the
  address in ``RAY_ADDRESS``, else the latest ``ray start`` on this machine, else
  any Ray running here), ``"host:port"`` or ``"ray://host:port"``: that cluster;
  when it cannot be joined, one line says so (:class:`CosmosGradioError`), where
  Ray would print a long traceback or, for an address nobody answers, retry for
  minutes.
- Unset (or ``"local"``): a new local Ray of the app's own (``address="local"``),
  shut down by ``close()``. Never one that merely runs on the machine: on a
  shared node that may be another user's, and ``ray.init()`` or
  ``address="auto"`` would join it (and place this app's models on its GPUs).
"""

from __future__ import annotations

import re
import signal
import socket
import threading
from typing import Any

from ..._core.exceptions import CosmosGradioError

__all__ = ["connect", "import_ray"]

REACH_TIMEOUT_S = 5.0  # a TCP connection to a given address, before Ray is asked to join it
_HOST_PORT = re.compile(r"^(?:ray://)?\[?([^\s\[\]/]+?)\]?:(\d{1,5})/?$")


def import_ray() -> Any:
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise CosmosGradioError(
            "backend='ray' needs Ray, which is not installed: "
            "pip install 'cosmos_gradio_nb[ray]' (on every node of the cluster)"
        ) from None
    return ray


def connect(ray: Any, address: str | None) -> bool:
    """Join the cluster asked for, or start a private one; True when this call started one.

    ``ray.init`` replaces the process's SIGTERM handler with one that exits at
    once; the process is not Ray's (a server that must close its page and
    workers, a notebook kernel), so the handlers in place before are put back.
    """
    if ray.is_initialized():
        return False
    address = (address or "").strip() or None
    private = address in (None, "local")
    if not private:
        _check_reachable(str(address))
    main = threading.current_thread() is threading.main_thread()
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
    try:
        if private:
            ray.init(address="local")
            return True
        try:
            ray.init(address=address)
        except Exception as exc:  # ConnectionError, a version mismatch, a refused token...
            raise CosmosGradioError(no_cluster(str(address), exc)) from None
        return False
    finally:
        for sig, handler in saved.items():
            if handler is not None:
                signal.signal(sig, handler)


def no_cluster(address: str, exc: BaseException) -> str:
    """The one line said when ``ray.init(address=address)`` raised ``exc``."""
    if address == "auto" and isinstance(exc, ConnectionError):
        return (
            "RAY_ADDRESS='auto' but no running Ray cluster was found on this machine: start "
            "one (ray start --head), give its address, or leave RAY_ADDRESS unset for a "
            "private local Ray"
        )
    why = _first_line(exc)
    cause = exc.__cause__ or exc.__context__
    while cause is not None and (cause.__cause__ or cause.__context__) is not None:
        cause = cause.__cause__ or cause.__context__
    if cause is not None and _first_line(cause) != why:
        why += f" ({_first_line(cause)[:300]})"  # a refused token, say: the reason is there
    return f"cannot join the Ray cluster at RAY_ADDRESS={address!r}: {why}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _check_reachable(address: str) -> None:
    """Fail at once, in one line, when nothing listens at a ``host:port`` address."""
    match = _HOST_PORT.match(address)
    if match is None:
        return  # "auto", or a form Ray will judge itself
    host, port = match.group(1), int(match.group(2))
    try:
        socket.create_connection((host, port), timeout=REACH_TIMEOUT_S).close()
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise CosmosGradioError(
            f"cannot reach the Ray cluster at RAY_ADDRESS={address!r} ({why}): check the "
            "address and that the cluster runs, or leave RAY_ADDRESS unset for a private "
            "local Ray"
        ) from None
