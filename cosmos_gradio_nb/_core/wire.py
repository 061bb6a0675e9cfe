"""The bytes between the app and its workers: length-prefixed, strict-JSON frames.

Why not ``multiprocessing.connection``
--------------------------------------
A pickled message is read with a blocking ``recv()``: a worker stopped half-way
through writing one (SIGSTOP, a frozen cgroup) would hold the reader, and with it
every group's events, forever. And a pickle carries whatever the model handed
it, so a value that cannot be pickled killed the worker as it replied. Here:

- a *frame* is a 4-byte big-endian length, then that many bytes of UTF-8 JSON
  holding one object (a message dict). :class:`FrameReader` is fed whatever
  bytes are available and hands back the messages that are complete; the rest
  waits for the next read, so the reader never blocks on a half-written frame;
- the JSON is *strict*: only plain ``dict`` (string keys), ``list``, ``str``,
  ``int``, ``float`` (finite), ``bool`` and ``None``, nested at most
  :data:`MAX_DEPTH` levels. Subclasses, tuples, sets, NaN and non-string keys
  are refused by :func:`find_bad`, which names the key path of the first bad
  value, so the worker can fail that request with a clear message instead of
  dying, and what the app receives is exactly what ``status.json`` will hold.

Standard library only (the worker imports this on its first line of work).
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

__all__ = [
    "HEADER",
    "MAX_DEPTH",
    "MAX_FRAME",
    "FrameReader",
    "WireError",
    "decode",
    "encode",
    "find_bad",
    "plain_str",
]

HEADER = struct.Struct(">I")
MAX_FRAME = 256 * 1024 * 1024  # a longer frame is a protocol error (a broken or hostile peer)
MAX_DEPTH = 100  # containers nested deeper than this are refused (JSON and pickle both recurse)


_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))  # made once, not per call


class WireError(ValueError):
    """A message that cannot be framed or read: not strict JSON, too large, or garbled."""


def plain_str(value: object) -> str:
    """``value`` as an exact ``str``, never raising: a subclass is copied; ``str()`` that
    raises is described instead (a model's exception whose ``__str__`` raises, say)."""
    if type(value) is str:
        return value
    try:
        text = value if isinstance(value, str) else str(value)
        return "".join([text])  # an exact str even when __str__ returned a subclass
    except BaseException as exc:
        return f"<{type(value).__name__} whose str() raised {type(exc).__name__}>"


def _describe(value: object) -> str:
    """``numpy.float64: 0.5``: a value's type and a short, safe repr."""
    cls = type(value)
    name = cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    try:
        shown = repr(value)
    except BaseException:
        shown = "?"
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{name}: {shown}"


def _key_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _shown(path: str) -> str:
    """A key path for a message: ``(root)`` for none, shortened in the middle past 120 chars."""
    if not path:
        return "(root)"
    return path if len(path) <= 120 else f"{path[:80]}...{path[-30:]}"


def find_bad(value: object, path: str = "") -> str | None:
    """Why ``value`` is not strict JSON, naming the key path of the first bad value; or None.

    ``{"a": [1, {"b": nan}]}`` gives ``"at key 'a[1].b': float: nan (NaN and Infinity
    are not JSON)"``. Types are compared exactly (``type(x) is str``), so a subclass
    is refused before any of its methods runs.
    """
    # An explicit stack, not recursion: a value nested 980 deep must not exhaust ours.
    stack: list[tuple[object, str, int]] = [(value, path, 0)]
    while stack:
        item, where, depth = stack.pop()
        cls = type(item)
        if item is None or cls is str or cls is bool or cls is int:
            continue
        shown = _shown(where)
        if cls is float:
            if not math.isfinite(item):  # type: ignore[arg-type]
                return f"at key {shown!r}: {_describe(item)} (NaN and Infinity are not JSON)"
            continue
        if cls is not dict and cls is not list:
            hint = " (use a list)" if cls is tuple else ""
            return f"at key {shown!r}: {_describe(item)}{hint}"
        if depth >= MAX_DEPTH:
            return f"at key {shown!r}: nested deeper than {MAX_DEPTH} levels"
        children: list[tuple[object, str, int]] = []
        if cls is dict:
            for key, child in item.items():  # type: ignore[attr-defined]
                if type(key) is not str:
                    return (
                        f"at key {_shown(_key_path(where, plain_str(key)))!r}: the key is "
                        f"{_describe(key)}, not a string (JSON keys are strings)"
                    )
                children.append((child, _key_path(where, key), depth + 1))
        else:
            for index, child in enumerate(item):  # type: ignore[arg-type]
                children.append((child, f"{where}[{index}]", depth + 1))
        stack.extend(reversed(children))  # depth first, in order: the *first* bad value
    return None


def encode(msg: dict[str, Any], *, check: bool = True) -> bytes:
    """One frame holding ``msg``. ``check`` (the worker's side) refuses what is not strict
    JSON by :func:`find_bad`; the app's messages are plain by construction."""
    if check:
        bad = find_bad(msg)
        if bad is not None:
            raise WireError(f"not strict JSON {bad}")
    try:
        body = _ENCODER.encode(msg).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise WireError(f"not strict JSON: {exc}") from None
    if len(body) > MAX_FRAME:
        raise WireError(
            f"a message of {len(body) / 2**20:.0f} MB is over the {MAX_FRAME >> 20} MB limit"
        )
    return HEADER.pack(len(body)) + body


def decode(body: bytes | bytearray) -> dict[str, Any]:
    """The message of one frame's body; :class:`WireError` if it is not a JSON object."""
    try:
        msg = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise WireError(f"a frame is not JSON: {str(exc)[:100]}") from None
    if not isinstance(msg, dict):
        raise WireError(f"a frame holds {type(msg).__name__}, not an object")
    return msg


class FrameReader:
    """Bytes in as they arrive, whole messages out; a partial frame waits for the rest."""

    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held of a frame not yet complete."""
        return len(self._buf)

    def feed(self, data: bytes | memoryview) -> list[dict[str, Any]]:
        """Add ``data``; return the messages now complete, in order (WireError on garbage)."""
        self._buf += data
        out: list[dict[str, Any]] = []
        start = 0
        size = HEADER.size
        buf = self._buf
        while len(buf) - start >= size:
            (length,) = HEADER.unpack_from(buf, start)
            if length > MAX_FRAME:
                raise WireError(f"a frame announces {length} bytes, over the {MAX_FRAME} limit")
            end = start + size + length
            if end > len(buf):
                break
            out.append(decode(buf[start + size : end]))
            start = end
        if start:
            del buf[:start]
        return out
