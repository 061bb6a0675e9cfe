"""Read the end of the log file without reading the rest of it.

The UI refreshes its log viewer about once a second for every open page, and
``LOG_FILE`` only grows: after a week of generating it can be gigabytes. So
the tail is found by seeking to a fixed window before the end of the file;
the cost is bounded by the window, never by the file's size.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["read_tail"]

DEFAULT_MAX_BYTES = 64 * 1024
DEFAULT_MAX_LINES = 200


def read_tail(
    path: str | os.PathLike[str],
    max_lines: int = DEFAULT_MAX_LINES,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> str:
    """The last ``max_lines`` lines of ``path``, reading at most ``max_bytes`` from its end.

    Parameters
    ----------
    path:
        The log file. A missing file reads as ``""`` (no worker has written yet).
    max_lines:
        How many lines to keep at most.
    max_bytes:
        How far back from the end to read. A partial first line (cut by the
        window) is dropped, so every line shown is whole.

    Returns
    -------
    str
        The lines joined with ``\\n`` (no trailing newline); undecodable bytes
        are replaced rather than raising, since workers may print anything.
    """
    if max_lines <= 0 or max_bytes <= 0:
        return ""
    try:
        with Path(path).open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            start = max(0, size - max_bytes)
            fh.seek(start)
            data = fh.read(size - start)
    except OSError:  # missing, unreadable, a folder: nothing to show yet
        return ""
    lines = data.decode("utf-8", errors="replace").splitlines()
    if start > 0 and lines:
        lines = lines[1:]  # cut by the window: not a whole line
    return "\n".join(lines[-max_lines:])
