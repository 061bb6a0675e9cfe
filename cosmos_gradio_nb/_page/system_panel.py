"""The System tab's handler: the GPUs (or CPU and memory) under the app's workers, once a second.

Every page asks the app's one sampler (``_app/system.py``), which reads the
machines at most once a second and only when asked: the tab's timer runs only
while the tab is shown, so a page on another tab, or no page at all, costs no
sampling. ``/system_stats`` returns the same figures as JSON.
"""

from __future__ import annotations

from typing import Any

from .._app.system import SystemSampler, sampler_for
from .._notebook.ops_html import stats_html
from .backend import Backend

__all__ = ["SystemPanel"]


class SystemPanel:
    """Handlers of the System tab and ``/system_stats`` (``page`` wires them)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    @property
    def sampler(self) -> SystemSampler:
        return sampler_for(self.backend.app)

    def render(self) -> str:
        """The panel's HTML from the latest sample (at most a second old)."""
        return stats_html(self.sampler.stats())

    def as_json(self) -> dict[str, Any]:
        """The same figures as plain JSON (``/system_stats``)."""
        return self.sampler.stats().to_dict()
