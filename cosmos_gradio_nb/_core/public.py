"""Public names live in ``cosmos_gradio_nb``, wherever their code is.

Classes, functions and exceptions of the public API are defined in private
modules (``_core/exceptions.py``, ``_app/apps.py``...). :func:`public` sets their
``__module__`` to the package, as httpx does, so reprs and tracebacks say
``cosmos_gradio_nb.WorkerCrashedError`` and pickles (exceptions cross processes:
a worker, a Ray node, a notebook's ``pickle``) name the public path, which a later
move of the private module cannot break.
"""

from __future__ import annotations

from typing import TypeVar

__all__ = ["PACKAGE", "public"]

PACKAGE = "cosmos_gradio_nb"
T = TypeVar("T")


def public(obj: T) -> T:
    """Mark ``obj`` (a class or function exported by the package) as the package's own."""
    obj.__module__ = PACKAGE
    return obj
