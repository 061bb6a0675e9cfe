"""The one sanctioned hop up the layers: rich notebook display of lower-layer objects.

``InferenceResult``, ``ResultList``, ``InferenceFuture`` and the apps show
themselves in a notebook (``_repr_html_``, ``_ipython_display_``). What they show
is built by the notebook layer, which sits above them; they reach it only
through these functions, which import it when a notebook asks for a display,
never at import time. No other module below the notebook layer imports it
(``tests/test_architecture.py`` checks). A connected app shows its server's page
the same way (:func:`show_page`), and a detached app asks, before its server
starts, which root path that page will need to be shown here (:func:`page_root_path`).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "display_app",
    "display_future",
    "future_html",
    "page_root_path",
    "result_html",
    "results_html",
    "show_page",
]


def result_html(result: Any) -> str:
    """An ``InferenceResult`` as HTML: inline videos and images, other files, errors."""
    from .._notebook.display import result_html as render

    return render(result)


def results_html(results: Any) -> str:
    """A ``ResultList`` (``load_results``) as a table with thumbnails."""
    from .._notebook.display import results_table_html

    return results_table_html(results)


def future_html(future: Any) -> str:
    """An ``InferenceFuture`` as it is now: its state and progress, or its outcome."""
    from .._notebook.display import future_html as render

    return render(future)


def display_future(future: Any) -> None:
    """Show a live progress bar for ``future`` in the current cell, then its result."""
    from .._notebook.panels import display_future as show

    show(future)


def display_app(app: Any) -> None:
    """Show the live panel of an app (its workers, queue and recent requests)."""
    from .._notebook.panels import display_app_panel

    display_app_panel(app)


def show_page(
    url: str,
    *,
    app: Any = None,
    inline: bool = True,
    height: int = 900,
    proxy: bool | None = None,
    root_path: str = "",
) -> str:
    """Show a running server's page (a connected app's) in the current cell; its URL there."""
    from .._notebook.launch import show_server_page

    return show_server_page(
        url, app=app, inline=inline, height=height, proxy=proxy, root_path=root_path
    )


def page_root_path(port: int) -> str:
    """The root path a page on ``port`` needs to be shown in this notebook ("" if none).

    Behind jupyter-server-proxy the page is shown at ``<base_url>proxy/<port>/``, so
    a server started for this notebook (a detached app's) must know it when it starts.
    """
    from .._notebook.launch import proxy_root_path

    return proxy_root_path(port)
