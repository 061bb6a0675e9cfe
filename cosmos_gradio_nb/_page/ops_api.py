"""The operations endpoints scripts call with ``gradio_client``: the queue, stop, machine figures, delete.

``/queue`` lists every running and queued request in order (as the Queue tab shows
them), ``/stop_request`` cancels or stops one by id (the row's button, the same
``terminate()``), ``/system_stats`` gives the System tab's figures as JSON,
``/delete_runs`` moves runs to the trash (the History tab's Delete; the call is the
confirmation) and ``/restore_runs`` puts a deleted batch back. Each answers in
plain JSON and never raises for an id that matches nothing, so the samples under
"Use via API" run as shown.
"""

from __future__ import annotations

import time
from typing import Any

from .queue_panel import QueuePanel
from .run_ops import RunOps, parse_ids
from .system_panel import SystemPanel

__all__ = ["OpsEndpoints"]


class OpsEndpoints:
    """The operations API of one page (``page`` wires each method under its ``api_name``)."""

    def __init__(self, queue: QueuePanel, system: SystemPanel, runs: RunOps) -> None:
        self.queue = queue
        self.system = system
        self.runs = runs

    def api_queue(self) -> list[dict[str, Any]]:
        """Running then queued requests, in order: id, state, source, position, progress..."""
        now = time.time()
        return [row.to_dict(now) for row in self.queue.rows()]

    async def api_stop_request(self, request_id: str) -> dict[str, Any]:
        """Cancel a queued request or stop a running one: ``{"id", "stopped", "state", "message"}``."""
        return await self.queue.stop(request_id)

    def api_system_stats(self) -> dict[str, Any]:
        """GPUs (or CPU and memory) per node, and each worker rank's device and request."""
        return self.system.as_json()

    def api_delete_runs(self, request_ids: str) -> dict[str, Any]:
        """Move runs to the trash by request id (space- or comma-separated, or a JSON list)."""
        return self.runs.delete(parse_ids(request_ids)).to_dict()

    def api_restore_runs(self, trash_batch: str) -> dict[str, Any]:
        """Put back the runs of one delete (its ``trash_batch``)."""
        return self.runs.restore(trash_batch)
