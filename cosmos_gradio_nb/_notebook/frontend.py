"""Where is this notebook shown? Jupyter, JupyterHub behind jupyter-server-proxy, Colab or VS Code.

The kernel cannot see the browser, so it reads the clues it has, in this order:
the caller's ``proxy=`` argument, ``COSMOS_GRADIO_PROXY``, Colab, JupyterHub's
``JUPYTERHUB_SERVICE_PREFIX``, VS Code, and whether the Jupyter server that
started this kernel (its ``jpserver-<pid>.json`` runtime file) runs
jupyter-server-proxy. ``launch`` then shows the page the way that front end
needs; see :class:`Frontend` for the kinds.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "MIN_PROXY_VERSION",
    "Frontend",
    "check_proxy_version",
    "detect_frontend",
    "in_kernel",
    "jupyter_server_info",
    "proxy_version",
]

MIN_PROXY_VERSION = (4, 4)
FrontendKind = Literal["terminal", "jupyter", "proxy", "colab", "vscode"]


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
    from .._core.settings import DeploymentEnv

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
