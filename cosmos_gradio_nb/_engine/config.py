"""What the engine needs to run: plain values, built by the app from its settings.

The app reads, checks and resolves its settings (``DeploymentEnv``, a pydantic
model of every option the page, the notebook and the workers know about). The
engine uses a dozen of them, so it takes exactly those, already converted
(megabytes to bytes, settings to the workers' environment variables), and never
imports the settings model: the engine can be built and tested from plain
values, and a new page option does not touch it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._core.protocol import FactorySpec

__all__ = ["EngineConfig"]


@dataclass(frozen=True)
class EngineConfig:
    """What the pool needs to start workers and keep its log (the app builds it)."""

    factory: FactorySpec
    """How a worker builds the model."""
    num_groups: int
    """How many independent model groups serve the queue."""
    group_size: int
    """Ranks in each group (one torch.distributed job)."""
    model_name: str
    """Written in each request's status.json."""
    log_file: Path
    """Every worker's output, rank-prefixed, and the engine's ``[app]`` lines."""
    log_max_bytes: int
    """``log_file`` is rotated when it reaches this size."""
    log_backups: int
    """Rotated log files kept beside ``log_file``."""
    startup_timeout: float
    """Seconds a group may take to become ready before its start counts as failed."""
    worker_env: dict[str, str] = field(default_factory=dict)
    """Environment variables of every worker: the settings as variables, then the user's own."""
    max_queue_size: int | None = None
    """Refuse new requests with QueueFullError past this many waiting (None: no limit)."""
    echo_logs: bool = False
    """Also copy worker output to this process's stderr."""
    cwd: str = field(default_factory=os.getcwd)
    """The workers' working directory."""
    sys_path: list[str] = field(default_factory=lambda: list(sys.path))
    """The workers' ``sys.path`` (so they import what the caller could)."""
    retry_after: float = 60.0
    """Seconds before a given-up group is tried again (doubling, at most ten times that)."""
    stop_grace: float = 10.0
    """Seconds a request asked to stop may take before its group is killed and restarted."""
    health_interval: float = 30.0
    """Seconds between health pings of an idle group."""
    health_timeout: float = 10.0
    """Seconds a pinged group has to answer before it is restarted."""
    status_extra: dict[str, Any] = field(default_factory=dict)
    """Static keys added to every status.json (the app's ``provenance``)."""
