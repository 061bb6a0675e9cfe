"""The client's HTTP side: one ``httpx`` connection pool to a server's API, with its credentials.

Every call carries the access token (``Authorization: Bearer``) or the page's user
and password (HTTP Basic). A refusal is one clear error; an error the server
sent is rebuilt as the same exception (``_core/apicodec.py``); a server that
cannot be reached raises :class:`ServerUnreachable`, which the app turns into
words about the server (exited, or not answering).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .._core.apicodec import decode_error
from .._core.exceptions import CosmosGradioError

__all__ = ["API_PREFIX", "PROBE_TIMEOUT", "ApiClient", "ServerUnreachable"]

API_PREFIX = "cosmos/api/v1"
CALL_TIMEOUT = 60.0  # seconds for one API call (validation runs in it; never a request's run)
PROBE_TIMEOUT = 10.0  # seconds for a server's first answer (/info): a live one takes milliseconds


class ServerUnreachable(ConnectionError):
    """No answer from the server (refused, reset, timed out)."""


class ApiClient:
    """Calls one server's API (see the module docstring).

    Parameters
    ----------
    url:
        The server's root URL (``http://127.0.0.1:8080/``).
    token:
        The server's access token, or None with ``auth``.
    auth:
        ``(user, password)`` of the page's ``--auth``.
    """

    def __init__(self, url: str, token: str | None, auth: tuple[str, str] | None) -> None:
        import httpx

        self.url = url if url.endswith("/") else url + "/"
        self.base = self.url + API_PREFIX
        headers = {"Accept-Encoding": "identity"}  # no compression: events must not be held
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._auth = httpx.BasicAuth(*auth) if auth and not token else None
        self.headers = headers
        # A proxy from the environment (HTTP_PROXY) never sees a loopback server's token.
        self._trust_env = urlsplit(self.url).hostname not in ("127.0.0.1", "localhost", "::1")
        self._client = httpx.Client(
            headers=headers,
            auth=self._auth,
            timeout=httpx.Timeout(CALL_TIMEOUT, connect=10.0),
            trust_env=self._trust_env,
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
        )

    # -- calls ----------------------------------------------------------------------------
    def get(self, path: str, *, timeout: float | None = None, **params: Any) -> Any:
        extra = {} if timeout is None else {"timeout": timeout}
        return self._call("GET", path, params=params or None, **extra)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._call("POST", path, json=body or {})

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            response = self._client.request(method, f"{self.base}/{path}", **kwargs)
        except httpx.TransportError as exc:
            raise ServerUnreachable(f"{type(exc).__name__}: {exc}") from None
        return self._decode(response)

    def _decode(self, response: Any) -> Any:
        if response.status_code == 401:
            raise PermissionError(
                f"the server at {self.url} refused this client (401): its access token "
                "(from the server's runtime record) or the page's user and password are "
                "missing or wrong; pass token=... or auth=(user, password) to connect()"
            )
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code >= 400:
            if isinstance(data, dict) and isinstance(data.get("error"), dict):
                raise decode_error(data["error"])
            raise CosmosGradioError(
                f"the server at {self.url} answered HTTP {response.status_code}: "
                f"{response.text[:300]}"
            )
        return data

    # -- streams --------------------------------------------------------------------------
    @contextlib.contextmanager
    def stream_events(self, since: int | None, boot: str | None) -> Iterator[Iterator[str]]:
        """The server's event stream, as lines; closes when the block ends."""
        import httpx

        params: dict[str, Any] = {}
        if since is not None:
            params["since"] = since
        if boot:
            params["boot"] = boot
        # A read timeout three keep-alives long: a stream that went silent is a dead link.
        timeout = httpx.Timeout(30.0, connect=10.0)
        try:
            with (
                httpx.Client(
                    headers=self.headers,
                    auth=self._auth,
                    timeout=timeout,
                    trust_env=self._trust_env,
                ) as client,
                client.stream("GET", f"{self.base}/events", params=params) as response,
            ):
                if response.status_code != 200:
                    response.read()
                    self._decode(response)
                    raise CosmosGradioError(f"events: HTTP {response.status_code}")
                yield response.iter_lines()
        except httpx.TransportError as exc:
            raise ServerUnreachable(f"{type(exc).__name__}: {exc}") from None

    def download(self, server_path: str, target: Path, chunk: int = 1 << 20) -> None:
        """Stream one server file into ``target`` (written aside, then renamed into place)."""
        import httpx

        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
        try:
            with self._client.stream(
                "GET", f"{self.base}/file", params={"path": server_path}, timeout=None
            ) as response:
                if response.status_code != 200:
                    response.read()
                    self._decode(response)
                with open(tmp, "wb") as out:
                    for block in response.iter_bytes(chunk):
                        out.write(block)
            os.replace(tmp, target)
        except httpx.TransportError as exc:
            raise ServerUnreachable(f"{type(exc).__name__}: {exc}") from None
        finally:
            tmp.unlink(missing_ok=True)

    def close(self) -> None:
        self._client.close()
