"""The one way this package probes ports: bind a throw-away socket as a server would.

Three callers need it: a model group's ``MASTER_PORT`` (any free port), ``serve``
checking ``--port`` before the model loads (minutes, on a GPU), and the
notebook's ``launch`` scanning for a port as Gradio does. Binding with
``SO_REUSEADDR``, as servers bind, keeps a just-closed port whose connections
linger in TIME_WAIT from looking busy. Standard library only.
"""

from __future__ import annotations

import socket

__all__ = ["bind_problem", "free_port"]


def _bind(host: str, port: int) -> int:
    """Bind a socket to ``host:port`` as a server would, then close it; the port bound.

    Raises OSError (or ``socket.gaierror`` for a host that does not resolve).
    """
    family, kind, proto, _name, addr = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        return int(sock.getsockname()[1])


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now, chosen by the system (a group's MASTER_PORT)."""
    return _bind(host, 0)


def bind_problem(host: str, port: int) -> str | None:
    """Why a server could not listen on ``host:port`` now, or None if it could."""
    try:
        _bind(host, port)
    except socket.gaierror as exc:
        return f"{host!r} cannot be resolved ({exc.strerror or exc})"
    except OSError as exc:
        return exc.strerror or str(exc)
    return None
