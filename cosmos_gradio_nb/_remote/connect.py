"""``cosmos_gradio_nb.connect()``: the ``NotebookApp`` API for a server started elsewhere.

A server is found by its URL or its name (its runtime record in ``RUNTIME_DIR``);
its access token comes from that record unless given. A server started by
another user (with the page's ``--auth``) is reached with ``auth=(user,
password)``, since its record is not readable by anyone else.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from .._core.exceptions import CosmosGradioError
from .._core.public import public
from .._core.runtime import RuntimeRecord, find_record, live_records, runtime_dir
from .._core.settings import DeploymentEnv, parse_auth
from . import http
from .app import RemoteApp
from .http import ApiClient, ServerUnreachable

__all__ = ["connect", "open_record"]


def _same_server(a: str, b: str) -> bool:
    x, y = urlsplit(a), urlsplit(b)
    loopback = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}
    host_x = "127.0.0.1" if x.hostname in loopback else x.hostname
    host_y = "127.0.0.1" if y.hostname in loopback else y.hostname
    return (host_x, x.port or 80) == (host_y, y.port or 80)


def open_record(
    record: RuntimeRecord | None,
    url: str,
    *,
    token: str | None = None,
    auth: tuple[str, str] | None = None,
    history_size: int = 1000,
    process: Any = None,
) -> RemoteApp:
    """Connect to the server at ``url`` (described by ``record`` when known)."""
    client = ApiClient(url, token or (record.token if record else None), auth)
    try:
        info = client.get("info", timeout=http.PROBE_TIMEOUT)
    except ServerUnreachable as exc:
        client.close()
        raise CosmosGradioError(f"no cosmos_gradio_nb server answers at {url}: {exc}") from None
    except BaseException:
        client.close()
        raise
    return RemoteApp(client, info, record=record, history_size=history_size, process=process)


@public
def connect(
    url: str | None = None,
    *,
    name: str | None = None,
    token: str | None = None,
    auth: tuple[str, str] | str | None = None,
) -> RemoteApp:
    """Use a running server (``cosmos-gradio-nb serve``, a detached app) from Python.

    Returns an app with the ``NotebookApp`` API (``isinstance(app, NotebookApp)``):
    ``infer``/``submit``/``map``, ``validate``, ``workers()``, ``history``,
    ``attach(request_id)``, ``launch()``; its futures are ``InferenceFuture``\\ s.
    ``close()`` disconnects; ``shutdown()`` stops the server.

    Parameters
    ----------
    url:
        The server's address (``"http://127.0.0.1:8080"``).
    name:
        Instead: the server's name in ``RUNTIME_DIR`` (``serve --name``, or a detached
        app's name). With neither, the one server running, if there is exactly one.
    token:
        The access token; default: from the server's runtime record.
    auth:
        The page's ``(user, password)`` (or ``"user:password"``), for a server whose
        record this user cannot read.

    Raises
    ------
    CosmosGradioError
        No such server, or it does not answer. ``PermissionError`` when it refuses
        the credentials.
    """
    credentials = parse_auth(auth) if isinstance(auth, str) else auth
    folder = runtime_dir(DeploymentEnv().runtime_dir)
    record: RuntimeRecord | None = None
    if name is not None:
        record = find_record(folder, name)
        if record is None:
            running = ", ".join(repr(r.name) for r in live_records(folder)) or "none"
            raise CosmosGradioError(
                f"no server named {name!r} runs (records in {folder}; running: {running})"
            )
        url = record.url
    elif url is None:
        records = live_records(folder)
        if len(records) != 1:
            running = ", ".join(f"{r.name!r} at {r.url}" for r in records) or "none"
            raise CosmosGradioError(
                f"connect() needs url= or name= when not exactly one server runs "
                f"(records in {folder}: {running})"
            )
        record = records[0]
        url = record.url
    else:
        record = next((r for r in live_records(folder) if _same_server(r.url, url)), None)
    return open_record(record, url, token=token, auth=credentials)
