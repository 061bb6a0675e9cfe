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
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "MIN_PROXY_VERSION",
    "Frontend",
    "detect_frontend",
    "find_free_port",
    "install_launch",
    "jupyter_server_info",
    "proxy_version",
]

MIN_PROXY_VERSION = (4, 4)
FrontendKind = Literal["terminal", "jupyter", "proxy", "colab", "vscode"]
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_DEFAULT_PORT = 7860
_PORT_RANGE = 100
_IFRAME_HEIGHT = 900


@dataclass(frozen=True)
class Frontend:
    """Where the notebook is shown, and why we think so.

    Attributes
    ----------
    kind:
        ``terminal``, ``jupyter``, ``proxy``, ``colab`` or ``vscode``.
    base_url:
        The Jupyter server's base URL (``/`` or ``/user/<name>/``), ending with ``/``.
    reason:
        What decided it (shown in messages and checked by tests).
    """

    kind: FrontendKind
    base_url: str = "/"
    reason: str = ""


# -- where are we -------------------------------------------------------------------------
def in_kernel() -> bool:
    """True inside a Jupyter kernel (an IPython shell with a kernel attached)."""
    ipython_mod = sys.modules.get("IPython")
    if ipython_mod is None:
        return False
    try:
        shell = ipython_mod.get_ipython()  # type: ignore[attr-defined]
    except Exception:
        return False
    return shell is not None and getattr(shell, "kernel", None) is not None


def _candidate_server_pids() -> list[int]:
    """The kernel's parent first (jupyter_client sets ``JPY_PARENT_PID``), then its ancestors."""
    pids: list[int] = []
    env_pid = os.environ.get("JPY_PARENT_PID", "")
    if env_pid.isdigit():
        pids.append(int(env_pid))
    pid = os.getppid()
    for _ in range(3):  # parent, grand-parent, ...: kernels launched through a wrapper
        if pid <= 1:
            break
        if pid not in pids:
            pids.append(pid)
        try:
            import psutil

            pid = psutil.Process(pid).ppid()
        except Exception:
            break
    return pids


def _runtime_dirs() -> list[Path]:
    dirs = []
    try:
        from jupyter_core.paths import jupyter_runtime_dir

        dirs.append(Path(jupyter_runtime_dir()))
    except Exception:
        pass
    if os.environ.get("JUPYTER_RUNTIME_DIR"):
        dirs.append(Path(os.environ["JUPYTER_RUNTIME_DIR"]))
    return dirs


_server_info_cache: dict[str, Any] = {}


def jupyter_server_info(*, refresh: bool = False) -> dict[str, Any] | None:
    """The running Jupyter server that started this kernel, from its runtime file.

    Jupyter servers write ``jpserver-<pid>.json`` (``base_url``, ``port``, ``url``,
    ``token``, ``root_dir``, ``pid``) into the runtime folder; the kernel is that
    server's child. Returns None outside a kernel or when no such file is found
    (a kernel started by VS Code, nbclient, or a remote gateway).
    """
    if "info" in _server_info_cache and not refresh:
        return _server_info_cache["info"]  # type: ignore[no-any-return]
    info: dict[str, Any] | None = None
    for pid in _candidate_server_pids():
        for folder in _runtime_dirs():
            for prefix in ("jpserver", "nbserver"):
                path = folder / f"{prefix}-{pid}.json"
                try:
                    info = json.loads(path.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue
                break
            if info:
                break
        if info:
            break
    _server_info_cache["info"] = info
    return info


def _proxy_loaded(info: dict[str, Any]) -> bool | None:
    """Ask the server whether jupyter-server-proxy answers (its ``servers-info`` endpoint).

    Returns True or False when the server answered, None when it could not be asked
    (no URL, no token, refused...).
    """
    url = str(info.get("url") or "")
    if not url:
        return None
    target = url.rstrip("/") + "/server-proxy/servers-info"
    headers = {}
    if info.get("token"):
        headers["Authorization"] = f"token {info['token']}"
    request = urllib.request.Request(target, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError as exc:  # 404: no proxy there; 401/403: cannot tell
        return False if exc.code == 404 else None
    except (OSError, ValueError):
        return None


def _proxy_enabled_in_config() -> bool:
    """Whether jupyter-server-proxy is an enabled server extension in Jupyter's config."""
    try:
        from jupyter_core.paths import jupyter_config_path
        from jupyter_server.extension.config import ExtensionConfigManager

        manager = ExtensionConfigManager(read_config_path=jupyter_config_path())
        return bool(manager.enabled("jupyter_server_proxy"))
    except Exception:
        return False


def _proxy_setting() -> bool | None:
    """``COSMOS_GRADIO_PROXY`` as DeploymentEnv reads it (1/0, true/false; unset: None)."""
    from ._env import DeploymentEnv

    return DeploymentEnv().proxy


def _norm_base(base: str | None) -> str:
    base = (base or "/").strip()
    if not base.startswith("/"):
        base = "/" + base
    return base if base.endswith("/") else base + "/"


def _in_colab() -> bool:
    if "google.colab" in sys.modules:
        return True
    try:
        import importlib.util

        return importlib.util.find_spec("google.colab") is not None
    except (ImportError, ValueError):
        return False


def detect_frontend(proxy: bool | None = None, *, base_url: str | None = None) -> Frontend:
    """Decide how to show the UI in this kernel.

    Parameters
    ----------
    proxy:
        True or False forces (or forbids) jupyter-server-proxy; None decides from
        ``COSMOS_GRADIO_PROXY``, JupyterHub's ``JUPYTERHUB_SERVICE_PREFIX``, and
        whether the proxy extension runs on the Jupyter server that owns this kernel.
    base_url:
        The Jupyter server's base URL, when known better than we can find it.

    Returns
    -------
    Frontend
        The decision and its reason.
    """
    if not in_kernel():
        return Frontend("terminal", "/", "not running in a Jupyter kernel")
    info = jupyter_server_info()
    hub_prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX")
    base = _norm_base(base_url or (info or {}).get("base_url") or hub_prefix)
    if proxy is None:
        proxy = _proxy_setting()
        reason = "COSMOS_GRADIO_PROXY"
    else:
        reason = "proxy argument"
    if proxy is True:
        return Frontend("proxy", base, f"{reason}=1")
    if proxy is None:
        if _in_colab():
            return Frontend("colab", "/", "google.colab is importable")
        if hub_prefix:
            return Frontend("proxy", base, "JUPYTERHUB_SERVICE_PREFIX is set (JupyterHub)")
        if os.environ.get("VSCODE_PID") or os.environ.get("VSCODE_CWD"):
            return Frontend("vscode", base, "VSCODE_PID/VSCODE_CWD is set (VS Code)")
        if info is not None:
            loaded = _proxy_loaded(info)
            if loaded is None:
                loaded = _proxy_enabled_in_config()
            if loaded:
                return Frontend(
                    "proxy", base, f"jupyter-server-proxy runs on the server at {info.get('url')}"
                )
        return Frontend("jupyter", base, "local Jupyter: the browser reaches 127.0.0.1")
    # proxy is False: forbidden by the caller; still honour VS Code and Colab.
    if _in_colab():
        return Frontend("colab", "/", "google.colab is importable")
    if os.environ.get("VSCODE_PID") or os.environ.get("VSCODE_CWD"):
        return Frontend("vscode", base, "VSCODE_PID/VSCODE_CWD is set (VS Code)")
    return Frontend("jupyter", base, f"{reason}=0")


# -- jupyter-server-proxy version -----------------------------------------------------------
def _parse_version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def proxy_version() -> str | None:
    """The jupyter-server-proxy version serving this kernel, or None if it cannot be found.

    The proxy runs in the Jupyter server's environment, which may not be the
    kernel's: we read this environment first, then ask the server's own Python.
    """
    try:
        return importlib.metadata.version("jupyter-server-proxy")
    except importlib.metadata.PackageNotFoundError:
        pass
    info = jupyter_server_info()
    if not info or not info.get("pid"):
        return None
    try:
        import psutil

        exe = psutil.Process(int(info["pid"])).exe()
        out = subprocess.run(
            [exe, "-c", "import importlib.metadata as m; print(m.version('jupyter-server-proxy'))"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.strip() or None
    except Exception:
        return None


def check_proxy_version() -> str:
    """Raise a clear error unless jupyter-server-proxy >= 4.4 serves this kernel.

    Why: older versions buffer Gradio's event stream (no live progress) and have
    published security holes.
    """
    version = proxy_version()
    need = ".".join(map(str, MIN_PROXY_VERSION))
    if version is None:
        raise RuntimeError(
            "the UI is to be shown through jupyter-server-proxy, but it is not installed: "
            f"pip install 'jupyter-server-proxy>={need}' in the Jupyter server's environment "
            "and restart the server, or call launch(proxy=False) / set COSMOS_GRADIO_PROXY=0"
        )
    if _parse_version(version) < MIN_PROXY_VERSION:
        raise RuntimeError(
            f"jupyter-server-proxy {version} is too old (need >= {need}: older versions buffer "
            f"the UI's event stream and have known security holes): "
            f"pip install -U 'jupyter-server-proxy>={need}' and restart the Jupyter server"
        )
    return version


# -- ports and our servers ------------------------------------------------------------------
def _port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether Gradio could listen on ``port``: bound as it binds (SO_REUSEADDR).

    Without SO_REUSEADDR, connections of a just-closed server lingering in
    TIME_WAIT (the proxy keeps keep-alive connections) would look like a listener.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def find_free_port(start: int | None = None, host: str = "127.0.0.1") -> int:
    """The first free port from ``start`` (``GRADIO_SERVER_PORT`` or 7860), as Gradio scans."""
    first = start or int(os.environ.get("GRADIO_SERVER_PORT") or _DEFAULT_PORT)
    for port in range(first, first + _PORT_RANGE):
        if _port_free(port, host):
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
        if _port_free(port, host):
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
    import html

    h = f"{height}px" if isinstance(height, int) else str(height)
    w = f"{width}px" if isinstance(width, int) else str(width)
    url = html.escape(src, quote=True)
    return (
        f'<div class="cosmos-gradio-ui"><iframe src="{url}" '
        f'style="width:{w};height:{h};border:0" '
        'allow="autoplay; camera; microphone; clipboard-read; clipboard-write; fullscreen" '
        "allowfullscreen></iframe>"
        f'<div style="font-size:12px;text-align:right"><a href="{url}" target="_blank" '
        'rel="noopener">open the UI in a new tab &#8599;</a></div></div>'
    )


def _show(html_text: str, plain: str) -> None:
    from IPython.display import display

    display({"text/html": html_text, "text/plain": plain}, raw=True)


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
        from ._widgets import create_widget_UI
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
    _show(_iframe_html(src, height, width), f"Cosmos Gradio UI at {src} ({frontend.reason})")
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
    return demo
