"""The worker's end of its control socket: framed strict-JSON messages (``_core/wire.py``).

The worker may block on its own socket (its control thread waits in ``recv``);
what must never block is the app's side, which reads without blocking. Sends
come from two threads (the main thread's replies and progress, the control
thread's pongs), so each frame is written whole under one lock.
"""

from __future__ import annotations

import collections
import socket
import threading
from typing import Any

from .._core.wire import FrameReader, encode

__all__ = ["Channel"]

RECV_BYTES = 1024 * 1024


class Channel:
    """Messages over a connected stream socket: ``send(dict)``, ``recv() -> dict``.

    ``send`` raises :class:`~cosmos_gradio_nb._core.wire.WireError` for a message that
    is not strict JSON (nothing is written then) and ``OSError`` when the app is gone;
    ``recv`` raises ``EOFError`` once the app closed its end.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()
        """Held while a frame is written, so frames of two threads never interleave."""
        self.frames_sent = 0
        self.check = True
        """Walk every message with ``find_bad`` before sending (the loop turns it off for
        the messages it builds itself from values it checked)."""
        self._reader = FrameReader()
        self._inbox: collections.deque[dict[str, Any]] = collections.deque()

    def send(self, msg: dict[str, Any]) -> None:
        # Checked by find_bad here once, cheaply: the loop validated what infer returned already,
        # and everything else it sends is made of plain strings and numbers.
        data = encode(msg, check=self.check)
        with self.lock:
            self.sock.sendall(data)
            self.frames_sent += 1

    def recv(self) -> dict[str, Any]:
        while not self._inbox:
            data = self.sock.recv(RECV_BYTES)
            if not data:
                raise EOFError("the app closed the control socket")
            self._inbox.extend(self._reader.feed(data))
        return self._inbox.popleft()
