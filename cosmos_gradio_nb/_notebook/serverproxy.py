"""A "Cosmos Gradio" launcher tile in JupyterLab, through jupyter-server-proxy.

jupyter-server-proxy reads the ``jupyter_serverproxy_servers`` entry point
(declared in pyproject) and calls :func:`setup_cosmos_gradio` for the server's
description: the command starting the standalone server on the sample model,
how long it may take to come up, and the tile. The tile opens
``<base_url>cosmos-gradio/``; the proxy strips that prefix before forwarding, so
Gradio needs it as ``root_path`` to build its own URLs (events, uploads, files).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

__all__ = ["SERVER_NAME", "setup_cosmos_gradio"]

SERVER_NAME = "cosmos-gradio"
"""The entry point's name: jupyter-server-proxy serves it at ``<base_url>cosmos-gradio/``."""


def setup_cosmos_gradio() -> dict[str, Any]:
    """The server process description jupyter-server-proxy asks for.

    Returns
    -------
    dict
        ``command`` and ``environment`` (the proxy fills in ``{port}`` and ``{base_url}``;
        ``GRADIO_ROOT_PATH`` carries the prefix, so any version of the CLI works),
        ``timeout`` (workers load the model before the page answers),
        ``environment``, ``absolute_url`` and ``launcher_entry``.
    """
    icon = Path(__file__).resolve().parents[1] / "static" / "cosmos.svg"
    return {
        "command": [
            sys.executable,
            "-m",
            "cosmos_gradio_nb",
            "serve",
            "--port",
            "{port}",
            "--exit-with-parent",
        ],
        # The sample model's workers start (spawn, import torch) before the page answers.
        "timeout": 180,
        "environment": {
            # Gradio reads its root path from here at launch: the page's own URLs then
            # carry the proxy's prefix, which the proxy strips before forwarding.
            "GRADIO_ROOT_PATH": "{base_url}" + SERVER_NAME,
            "GRADIO_ANALYTICS_ENABLED": "False",
            "HF_HUB_DISABLE_TELEMETRY": "1",
        },
        "absolute_url": False,
        "new_browser_tab": False,
        "launcher_entry": {
            "enabled": True,
            "title": "Cosmos Gradio",
            "icon_path": str(icon),
            "category": "Notebook",
        },
    }
