"""A request's JSON text, as the page and the widgets receive it: its bounds, then parsing.

Users type requests by hand and scripts send them over HTTP, so the text is
checked before it costs anything: its size (``MAX_REQUEST_KB``), then, once
parsed, its nesting depth and number of keys. Every refusal is one readable
message (invalid JSON gives line, column and a caret). Standard library only.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MAX_DEPTH", "MAX_KEYS", "parse_request_json"]

MAX_DEPTH = 64
"""Objects and lists nested deeper than this are refused (no request needs more)."""
MAX_KEYS = 1000
"""Object keys a request may hold in all (lists may be long). Validating 60,000 unknown
keys costs seconds of the server's CPU with the interpreter lock held, which every other
page feels; no model has a thousand parameters."""


def _too_large(text: str, max_bytes: int) -> int | None:
    """The text's size in bytes if over ``max_bytes``, else None (cheap for small texts)."""
    if len(text) > max_bytes:  # at least one byte a character: no need to count them
        return len(text)
    if len(text) * 4 > max_bytes:  # at most four
        size = len(text.encode("utf-8", "surrogatepass"))
        return size if size > max_bytes else None
    return None


def _shape_problem(value: Any, max_depth: int, max_keys: int) -> str | None:
    """Why ``value`` is shaped as no request is (too deep, too many keys), or None.

    Iterative, so a 100,000-deep value cannot exhaust the stack.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    keys = 0
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            keys += len(item)
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            return (
                f"the request nests objects or lists more than {max_depth} levels deep: "
                "no parameter needs that, flatten it"
            )
        if keys > max_keys:
            return (
                f"the request has more than {max_keys:,} keys: no model takes that many "
                "parameters (is it the right JSON?)"
            )
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return None


def parse_request_json(
    text: str | None,
    max_bytes: int | None = None,
    max_depth: int = MAX_DEPTH,
    max_keys: int = MAX_KEYS,
) -> dict[str, Any]:
    """Parse the editor's text into a request dict.

    Parameters
    ----------
    max_bytes:
        Refuse a longer text before parsing it (``MAX_REQUEST_KB``); None for no limit.
    max_depth:
        Refuse objects and lists nested deeper than this.
    max_keys:
        Refuse more object keys than this in all.

    Raises
    ------
    ValueError
        Too large, not JSON (the message gives line, column and the offending line
        with a caret), nested too deeply, too many keys, or JSON that is not an object.
    """
    text = text or ""
    if max_bytes is not None:
        size = _too_large(text, max_bytes)
        if size is not None:
            raise ValueError(
                f"the request is {size / 1024:,.0f} KB, over the {max_bytes / 1024:g} KB limit "
                "(MAX_REQUEST_KB): send a smaller request, or upload large inputs as files"
            )
    if not text.strip():
        raise ValueError(
            'the request is empty: write a JSON object such as {"prompt": "a red car"}'
        )
    try:
        value = json.loads(text)
    except RecursionError:
        value = None
        problem: str | None = (
            f"the request nests objects or lists more than {max_depth} levels deep: "
            "no parameter needs that, flatten it"
        )
    except json.JSONDecodeError as exc:
        lines = text.splitlines() or [""]
        line = lines[min(exc.lineno, len(lines)) - 1][:200]
        caret = " " * min(exc.colno - 1, 200) + "^"
        raise ValueError(
            f"Invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}\n  {line}\n  {caret}"
        ) from None
    else:
        problem = _shape_problem(value, max_depth, max_keys)
    if problem:
        raise ValueError(problem)
    if not isinstance(value, dict):
        raise ValueError(
            f"the request must be a JSON object {{...}}, got {type(value).__name__} "
            f"({json.dumps(value)[:60]})"
        )
    return value
