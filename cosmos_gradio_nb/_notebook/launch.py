"""A notebook-aware ``launch`` for the default UI: the page inline, wherever the browser is.

Gradio's own ``launch(inline=True)`` points its iframe at ``http://127.0.0.1:PORT``,
which only works when the browser runs on the kernel's machine. Here we find out
where the notebook is shown and do what works there:

``jupyter``
    Local Jupyter: an iframe at ``http://127.0.0.1:PORT/``.
``proxy``
    Behind jupyter-server-proxy (JupyterHub, a remote server, or when asked):
    Gradio is launched with ``root_path=<base_url>proxy/<port>`` (without it the
    page loads but every event fails) and the iframe is the relative,
    same-origin ``<base_url>proxy/<port>/``.
``colab``
    Google Colab: an iframe at the URL of Colab's kernel port proxy.
``vscode``
    VS Code notebooks render no iframe to a kernel port: we say so and show the
    widget UI (``create_widget_UI``) instead.
``terminal``
    Not in a kernel: exactly ``gr.Blocks.launch``.

Re-running a cell must not pile up servers: launching on a port where a server of
ours already runs closes that one first, and so does launching the same UI (or
another UI of the same app) again without a port.

Closing a page (``interface.close()``, or a launch that replaces it) replaces every
cell output that shows its iframe by a note saying so: an iframe left on a closed
server would keep polling it (behind jupyter-server-proxy, a traceback in
JupyterLab's log each time).
"""

from __future__ import annotations

import functools
import inspect
import os
import threading
import time
import weakref
from typing import Any

from .._core.net import bind_problem
from .._core.presentation import esc
from .frontend import Frontend, check_proxy_version, detect_frontend

__all__ = [
    "find_free_port",
    "install_launch",
    "notebook_launch",
    "proxy_root_path",
    "show_server_page",
]

_DEFAULT_PORT = 7860
_PORT_RANGE = 100
_IFRAME_HEIGHT = 900


# -- ports and our servers ------------------------------------------------------------------
def find_free_port(start: int | None = None, host: str = "127.0.0.1") -> int:
    """The first free port from ``start`` (``GRADIO_SERVER_PORT`` or 7860), as Gradio scans."""
    first = start or int(os.environ.get("GRADIO_SERVER_PORT") or _DEFAULT_PORT)
    for port in range(first, first + _PORT_RANGE):
        if bind_problem(host, port) is None:
            return port
    raise OSError(f"no free port in {first}..{first + _PORT_RANGE - 1}: pass server_port=")


_lock = threading.Lock()
# port -> (the Blocks serving there, the slot it was launched for)
_servers: dict[int, tuple[weakref.ref[Any], str]] = {}


def _close_demo(demo: Any) -> None:
    try:
        demo.close(verbose=False)
    except TypeError:  # an older signature without ``verbose``
        demo.close()


def _release(port: int | None, slot: str, demo: Any) -> list[int]:
    """Close servers of ours that this launch replaces: same port, same slot, or same demo.

    Returns the ports that were freed, so that a re-run can take its old port (and
    its iframe URL) back.
    """
    with _lock:
        doomed: list[tuple[int, Any]] = []
        for known_port, (ref, known_slot) in list(_servers.items()):
            old = ref()
            if old is None or not getattr(old, "is_running", False):
                del _servers[known_port]
                continue
            if known_port == port or old is demo or (port is None and known_slot == slot):
                doomed.append((known_port, old))
                del _servers[known_port]
    freed = []
    for known_port, old in doomed:
        _close_demo(old)
        freed.append(known_port)
    if getattr(demo, "is_running", False):
        own_port = getattr(demo, "server_port", None)
        _close_demo(demo)
        if isinstance(own_port, int) and own_port not in freed:
            freed.append(own_port)
    return freed


def _wait_free(port: int, host: str, timeout: float = 5.0) -> bool:
    """Wait (bounded) until a port we just closed can be bound again."""
    deadline = time.monotonic() + timeout
    while True:
        if bind_problem(host, port) is None:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _slot(demo: Any, app: Any) -> str:
    """Which earlier UI a port-less launch replaces: one per app (or per page title)."""
    if app is not None:
        return f"app:{getattr(app, 'name', None) or id(app)}"
    return f"title:{getattr(demo, 'title', '') or id(demo)}"


# -- display --------------------------------------------------------------------------------
def _iframe_html(src: str, height: int | str, width: int | str = "100%") -> str:
    h = f"{height}px" if isinstance(height, int) else str(height)
    w = f"{width}px" if isinstance(width, int) else str(width)
    url = esc(src)
    return (
        f'<div class="cosmos-gradio-ui"><iframe src="{url}" '
        f'style="width:{w};height:{h};border:0" '
        'allow="autoplay; camera; microphone; clipboard-read; clipboard-write; fullscreen" '
        "allowfullscreen></iframe>"
        f'<div style="font-size:12px;text-align:right"><a href="{url}" target="_blank" '
        'rel="noopener">open the UI in a new tab &#8599;</a></div></div>'
    )


# The outputs showing each page's iframe, so that closing the page replaces them by a note:
# an iframe left on a closed server keeps polling it, and behind jupyter-server-proxy every
# failed poll is a traceback in JupyterLab's log.
_shown: weakref.WeakKeyDictionary[Any, list[tuple[Any, str]]] = weakref.WeakKeyDictionary()


def _show(demo: Any, src: str, html_text: str, plain: str) -> None:
    from IPython.display import display

    handle = display({"text/html": html_text, "text/plain": plain}, raw=True, display_id=True)
    if handle is not None and demo is not None:
        with _lock:
            _shown.setdefault(demo, []).append((handle, src))


def _closed_note(demo: Any) -> None:
    """Replace every output still showing ``demo``'s iframe by a note that it is closed."""
    with _lock:
        shown = _shown.pop(demo, [])
    for handle, src in shown:
        text = (
            f"The Gradio page at {src} that was shown here is closed (close(), or launched "
            "again). Run launch() to open it again."
        )
        note = (
            '<div class="cosmos-gradio-closed" style="font-size:13px;padding:8px 12px;'
            f'border:1px solid #d1d5db;border-radius:6px;color:#4b5563">{esc(text)}</div>'
        )
        try:
            handle.update({"text/html": note, "text/plain": text}, raw=True)
        except Exception:  # no kernel to send it through any more: nothing shows it either
            pass


def _show_vscode(port: int, app: Any, frontend: Frontend) -> None:
    """VS Code: no iframe to a kernel port renders there; say so and show widgets."""
    from IPython.display import display

    url = f"http://127.0.0.1:{port}/"
    message = (
        f"VS Code notebooks cannot show the Gradio page inline ({frontend.reason}). "
        f"It runs at {url} (VS Code forwards the port: open it in a browser)."
    )
    if app is None:
        print(message)
        return
    try:
        from .form import create_widget_UI
    except ImportError:
        print(message + " Install ipywidgets for the widget UI here.")
        return
    print(message + " Here is the same UI as widgets:")
    display(create_widget_UI(app))


def _launch_arguments(demo: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """``launch``'s arguments by name, bound to ``gr.Blocks.launch``'s signature.

    Bound to the base class because a subclass (the UI's) may take ``*args, **kwargs``.
    """
    import gradio as gr

    target = gr.Blocks.launch if isinstance(demo, gr.Blocks) else type(demo).launch
    bound = inspect.signature(target).bind_partial(demo, *args, **kwargs).arguments
    params = {k: v for k, v in bound.items() if k not in ("self", "args", "kwargs")}
    params.update(bound.get("kwargs", {}) or {})
    return params


def _app_of(demo: Any) -> Any:
    """The app behind a page built by ``create_gradio_UI`` (its backend keeps it), or None."""
    backend = getattr(demo, "cosmos_backend", None)
    return getattr(backend, "app", None)


def notebook_launch(
    demo: Any,
    original: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    proxy: bool | None = None,
    app: Any = None,
) -> Any:
    """Launch ``demo`` the way this notebook front end needs; see the module docstring."""
    frontend = detect_frontend(proxy)
    if frontend.kind == "terminal":
        return original(*args, **kwargs)
    params = _launch_arguments(demo, args, kwargs)
    if app is None:
        app = _app_of(demo)
    inline = params.pop("inline", None)
    inline = True if inline is None else bool(inline)
    height = params.get("height", _IFRAME_HEIGHT)
    width = params.get("width", "100%")
    host = params.get("server_name") or os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1"
    asked_port = params.get("server_port")
    if asked_port is None and os.environ.get("GRADIO_SERVER_PORT"):
        asked_port = int(os.environ["GRADIO_SERVER_PORT"])
    slot = _slot(demo, app)
    freed = _release(asked_port, slot, demo)
    if asked_port is None and freed and _wait_free(freed[0], host):
        port = freed[0]  # a re-run keeps its port, so its URL stays the same
    elif asked_port is None:
        port = find_free_port(host=host)
    else:
        port = asked_port
    if asked_port is not None and not _wait_free(port, host, 5.0 if freed else 0.0):
        raise OSError(
            f"port {port} is in use by a process other than this kernel's UI servers: "
            "choose another server_port, or stop that process"
        )
    params.update(server_name=host, server_port=port, inline=False)
    params.setdefault("prevent_thread_lock", True)
    params.setdefault("quiet", True)  # Gradio's own banner names 127.0.0.1, wrong behind a proxy
    src = f"http://127.0.0.1:{port}/" if host in ("127.0.0.1", "0.0.0.0", "localhost") else None
    if frontend.kind == "proxy":
        check_proxy_version()
        root = params.get("root_path") or f"{frontend.base_url}proxy/{port}"
        params["root_path"] = root
        src = root.rstrip("/") + "/"
    elif frontend.kind == "colab":
        params.setdefault("share", False)
    result = original(**params)
    with _lock:
        _servers[port] = (weakref.ref(demo), slot)
    if not inline:
        return result
    if frontend.kind == "colab":
        from google.colab.kernel import proxyPort  # type: ignore[import-not-found]

        src = proxyPort(port, cache=False)
    elif frontend.kind == "vscode":
        _show_vscode(port, app, frontend)
        return result
    if src is None:
        src = f"http://{host}:{port}/"
    _show(
        demo,
        src,
        _iframe_html(src, height, width),
        f"Cosmos Gradio UI at {src} ({frontend.reason})",
    )
    return result


def install_launch(demo: Any, app: Any = None) -> Any:
    """Give ``demo`` (a ``gr.Blocks``) our notebook-aware ``launch``.

    Parameters
    ----------
    demo:
        The Blocks that ``create_gradio_UI`` built.
    app:
        The app behind it, when known (the widget UI needs it in VS Code, and it
        names the slot that a re-run replaces).

    Returns
    -------
    demo
        The same object, for chaining.

    Notes
    -----
    The new ``launch`` takes Gradio's arguments plus ``proxy=True/False`` (force
    or forbid jupyter-server-proxy). Outside a kernel it is ``gr.Blocks.launch``.
    """
    original = demo.launch
    if getattr(original, "_cosmos_notebook_launch", False):
        return demo

    @functools.wraps(original)
    def launch(*args: Any, proxy: bool | None = None, **kwargs: Any) -> Any:
        return notebook_launch(demo, original, args, kwargs, proxy=proxy, app=app)

    launch._cosmos_notebook_launch = True  # type: ignore[attr-defined]
    demo.launch = launch
    original_close = demo.close

    @functools.wraps(original_close)
    def close(*args: Any, **kwargs: Any) -> Any:
        try:
            return original_close(*args, **kwargs)
        finally:
            _closed_note(demo)  # the cells showing it stop polling a dead server

    demo.close = close
    return demo


# -- a page served by another process (a connected or detached app's server) ----------------
def proxy_root_path(port: int, proxy: bool | None = None) -> str:
    """``<base_url>proxy/<port>`` when this notebook shows pages through jupyter-server-proxy."""
    frontend = detect_frontend(proxy)
    return f"{frontend.base_url}proxy/{port}" if frontend.kind == "proxy" else ""


def show_server_page(
    url: str,
    *,
    app: Any = None,
    inline: bool = True,
    height: int = 900,
    proxy: bool | None = None,
    root_path: str = "",
) -> str:
    """Show the page a server already serves at ``url`` in this cell, as ``launch`` would.

    Nothing is launched: the server (a detached app's, or one ``connect()`` reached)
    runs elsewhere. Behind jupyter-server-proxy the iframe goes through the proxy,
    which works only if the server was started with that root path (a detached app
    started from this notebook is); otherwise the cell says so. Returns the URL shown.
    """
    from urllib.parse import urlsplit

    frontend = detect_frontend(proxy)
    port = urlsplit(url).port or 80
    if frontend.kind == "terminal" or not inline:
        return url
    src, note = url, ""
    if frontend.kind == "proxy":
        check_proxy_version()
        wanted = f"{frontend.base_url}proxy/{port}"
        src = wanted + "/"
        if root_path.rstrip("/") != wanted:
            note = (
                f"this server was started with root path {root_path or '/'!r}, not {wanted!r}: "
                "its page may not work through the proxy (a detached app started from this "
                "notebook, or replace=True, gets the right one)"
            )
    elif frontend.kind == "colab":
        from google.colab.kernel import proxyPort

        src = proxyPort(port, cache=False)
    elif frontend.kind == "vscode":
        _show_vscode(port, app, frontend)
        return url
    html_text = _iframe_html(src, height)
    if note:
        html_text = f'<div style="font-size:12px;color:#a60">{esc(note)}</div>' + html_text
    _show(None, src, html_text, f"Cosmos Gradio UI at {src} ({frontend.reason})")
    return src
