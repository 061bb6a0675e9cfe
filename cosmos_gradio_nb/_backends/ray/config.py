"""What the Ray backend needs to know of the app's settings, as a plain dataclass.

The app reads its settings (``_core/settings.py``, a pydantic-settings class)
and builds a :class:`RayConfig` from them in ``_app/apps.py``; the backend sees
nothing else. So the backend depends on the handful of values it uses, not on
how settings are read, and a test or a benchmark can make one by hand. It has
no defaults of its own: each value has one source, the settings class.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["RayConfig"]


@dataclass(frozen=True, kw_only=True)
class RayConfig:
    """The settings the Ray backend uses (the app's ``DeploymentEnv`` has their documentation).

    The folders are absolute (the app resolves them first): they are compared with
    the paths a request names, and the sentinel that tells whether a node shares
    ``output_dir`` is written there.
    """

    ray_address: str | None
    """Cluster to join (``RAY_ADDRESS``); ``None``: the Ray in this process, else a new
    private local one (``connect.py``)."""
    placement_timeout: float
    """Seconds a group's placement may take before its start fails."""
    shared_output_dir: bool | None
    """Whether every node shares ``output_dir``; ``None``: asked once per group start."""
    output_dir: Path
    uploads_dir: Path
    asset_dirs: tuple[Path, ...]
    """With ``output_dir`` and ``uploads_dir``: where the files a request names may be
    pushed from, to a node that does not share them."""
