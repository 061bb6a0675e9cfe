"""Round three of the page's bounds (issue 15): bodies however they are sent, a NUL in a URL,
refusals in one line, the upload cache's quota, uploads moved, and "Use via API" samples
that run as shown.

One real ``cosmos-gradio-nb serve`` process (the fast ``Steps`` model, the sample's
validator) with small limits set in its environment as a deployment would:
``MAX_REQUEST_KB=256``, ``MAX_UPLOAD_MB=1``, ``UPLOAD_CACHE_MAX_MB=2``. Hostile clients
run in their own processes or on raw sockets, as an attacker's would.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from ui_helpers import Served, serve_process, wait_for

LIMIT_KB = 256
MAX_BODY = 4 * LIMIT_KB * 1024 + 64 * 1024  # what the guard lets through (escaping, envelope)
CACHE_MB = 2
UPLOAD_MB = 1


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    settings = {
        "MAX_REQUEST_KB": str(LIMIT_KB),
        "MAX_UPLOAD_MB": str(UPLOAD_MB),
        "UPLOAD_CACHE_MAX_MB": str(CACHE_MB),
    }
    with serve_process(tmp_path_factory.mktemp("hardening"), settings) as served:
        yield served


def _port(server: Served) -> int:
    return int(server.url.rstrip("/").rsplit(":", 1)[1])


def _while_probing(server: Served, action: Callable[[], Any]) -> tuple[Any, list[float]]:
    """Run ``action`` while another thread asks the page for its info every 20 ms."""
    latencies: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        session = requests.Session()
        while not stop.is_set():
            t0 = time.perf_counter()
            session.get(server.url + "gradio_api/info", timeout=30).raise_for_status()
            latencies.append(time.perf_counter() - t0)
            stop.wait(0.02)

    requests.get(server.url + "gradio_api/info", timeout=30)  # warm
    thread = threading.Thread(target=probe)
    thread.start()
    try:
        result = action()
    finally:
        stop.set()
        thread.join()
    return result, latencies


def _assert_page_kept_answering(latencies: list[float]) -> None:
    assert latencies, "the probe never ran"
    worst = max(latencies) * 1000
    assert worst < 100, f"the page took {worst:.0f} ms to answer while a hostile request ran"


# -- request bodies, however they are sent ------------------------------------------------------
# The hostile client runs in its own process, as in test_bounds.py: 200 MB of bytes must not
# share an interpreter lock with the probe that measures how fast the page answers.
_CHUNKED = r"""
import json, sys, requests
url, total_mb = sys.argv[1], int(sys.argv[2])
sent = [0]
def body():
    head = b'{"data": ["' + b"x" * (1024 * 1024 - 11)
    for i in range(total_mb):
        chunk = head if i == 0 else b"x" * (1024 * 1024)
        sent[0] += len(chunk)
        yield chunk
    yield b'"]}'
r = requests.post(url + "gradio_api/call/generate", data=body(),
                  headers={"content-type": "application/json"}, timeout=120)
print(json.dumps({"status": r.status_code, "message": r.json().get("detail"), "sent": sent[0],
                  "chunked": r.request.headers.get("transfer-encoding")}))
"""


def test_a_chunked_200_mb_body_is_refused_as_its_bytes_arrive(server: Served) -> None:
    def send() -> dict[str, Any]:
        out = subprocess.run(
            [sys.executable, "-c", _CHUNKED, server.url, "200"],
            capture_output=True,
            text=True,
            timeout=180,
            env={**os.environ, "PYTHONPATH": ""},
        )
        assert out.returncode == 0, out.stderr
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))

    answer, latencies = _while_probing(server, send)
    assert answer["chunked"] == "chunked"  # no Content-Length: the case the old guard missed
    assert answer["status"] == 413, answer
    assert f"over the {LIMIT_KB} KB limit (MAX_REQUEST_KB)" in answer["message"]
    # The server stopped reading: most of the 200 MB was never sent (it was all taken before).
    assert answer["sent"] < 120 * 1024 * 1024, answer
    _assert_page_kept_answering(latencies)


def _request_head(server: Served, path: str, extra: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{_port(server)}\r\n"
        f"Content-Type: application/json\r\n{extra}\r\n"
    ).encode()


def _read_answer(sock: socket.socket, timeout: float = 30) -> bytes:
    """Everything the server sends until it closes (or ``timeout``)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def test_a_slow_drip_is_refused_once_it_passes_the_limit_while_it_still_drips(
    server: Served,
) -> None:
    def drip() -> tuple[int, bytes]:
        sent = 0
        chunk = b"x" * 16384
        with socket.create_connection(("127.0.0.1", _port(server)), timeout=30) as sock:
            sock.sendall(
                _request_head(server, "/gradio_api/call/generate", "Transfer-Encoding: chunked\r\n")
            )
            sock.sendall(b'10\r\n{"data": ["xxxxx\r\n')
            try:
                while sent < 20 * 1024 * 1024:
                    if select.select([sock], [], [], 0)[0]:
                        break  # the server answered while we were still sending
                    sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                    sent += len(chunk)
                    time.sleep(0.01)  # about 1.6 MB/s
            except (BrokenPipeError, ConnectionResetError):
                pass
            return sent, _read_answer(sock)

    (sent, answer), latencies = _while_probing(server, drip)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"MAX_REQUEST_KB" in answer
    assert MAX_BODY < sent < 20 * 1024 * 1024, f"answered after {sent} bytes"
    _assert_page_kept_answering(latencies)


def test_a_body_longer_than_its_small_content_length_is_cut_at_that_length(
    server: Served,
) -> None:
    body = b'{"data": []}'
    sent = 0
    with socket.create_connection(("127.0.0.1", _port(server)), timeout=30) as sock:
        head = f"Content-Length: {len(body)}\r\n"
        sock.sendall(_request_head(server, "/gradio_api/call/generate_default_request", head))
        sock.sendall(body)
        try:
            while sent < 20 * 1024 * 1024:
                sock.sendall(b"x" * 65536)  # 20 MB more than announced
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = _read_answer(sock)
    # The announced body was answered; the bytes after it were taken for a next request,
    # refused as not HTTP, and the connection closed: never read into the server's memory.
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    assert b"event_id" in answer and b"HTTP/1.1 400" in answer, answer[:600]
    assert sent < 20 * 1024 * 1024
    assert requests.get(server.url + "gradio_api/info", timeout=10).status_code == 200


# -- a NUL byte, and refusals in one line --------------------------------------------------------
def _printed_since(server: Served, mark: int) -> str:
    return "".join(server.output[mark:])


def test_a_nul_byte_in_a_file_url_is_404_in_one_line_without_a_traceback(server: Served) -> None:
    mark = len(server.output)
    for target in (server.log_file, server.output_dir / "x", server.uploads_dir / "a.png"):
        r = requests.get(f"{server.url}gradio_api/file={target}%00.png", timeout=10)
        assert r.status_code == 404, (target, r.status_code, r.text[:300])
        assert r.json()["detail"] == "not found: the URL holds a NUL byte"
    r = requests.get(f"{server.url}gradio_api/file={server.log_file}", timeout=10)
    assert r.status_code == 200  # the same file without the NUL is served
    time.sleep(0.2)  # nothing to wait for: the server must print nothing; give it the chance
    assert "Traceback" not in _printed_since(server, mark)


def test_the_pages_own_routes_never_shadow_a_served_file(server: Served) -> None:
    mine = server.uploads_dir / "20990101-000000_mine"
    mine.mkdir(parents=True, exist_ok=True)
    (mine / "cosmos_example.png").write_bytes(b"\x89PNG not the example")
    (mine / "cosmos_zip").mkdir(exist_ok=True)
    (mine / "cosmos_zip" / "x.png").write_bytes(b"\x89PNG not a zip")
    for name, body in (("cosmos_example.png", b"not the example"), ("cosmos_zip/x.png", b"zip")):
        r = requests.get(f"{server.url}gradio_api/file={mine / name}", timeout=10)
        assert r.status_code == 200 and body in r.content, (name, r.status_code, r.content[:80])
    example = requests.get(server.url + "cosmos_example.png", timeout=10)
    assert example.headers["content-type"] == "image/png" and example.content.startswith(b"\x89PNG")
    assert b"not the example" not in example.content


def test_every_refused_api_request_prints_one_line_in_the_server_terminal(
    server: Served, tmp_path: Path
) -> None:
    from gradio_client import Client, handle_file

    client = Client(server.url, verbose=False)
    mark = len(server.output)
    refusals = [
        (lambda: client.predict('{"seed": -1}', api_name="/generate"), "Invalid parameters"),
        (lambda: client.predict("{oops", api_name="/generate"), "Not a request"),
        (lambda: client.predict("../etc", api_name="/request_status"), "not a request id"),
        (lambda: client.predict("abc123", api_name="/request_status"), "no request abc123"),
    ]
    script = tmp_path / "run.sh"
    script.write_text("echo no\n")
    refusals.append(
        (lambda: client.predict(handle_file(str(script)), api_name="/upload_file"), "not accepted")
    )
    outside = {"path": "/etc/hostname", "meta": {"_type": "gradio.FileData"}}
    refusals.append((lambda: _call_raw(server, "upload_file", [outside]), "Input refused"))
    for call, words in refusals:
        with pytest.raises(Exception, match=words):
            call()
    wait_for(
        lambda: _printed_since(server, mark).count("\nAPI /") + 1 >= len(refusals),
        10,
        "a line per refusal",
    )
    printed = _printed_since(server, mark)
    assert "Traceback" not in printed, printed[:3000]
    lines = [line for line in printed.splitlines() if line.startswith("API /")]
    assert len(lines) == len(refusals), printed
    assert any(line.startswith("API /generate: Invalid parameters: seed: ") for line in lines)


def _call_raw(server: Served, api: str, data: list[Any]) -> Any:
    """Call an endpoint over plain HTTP (as curl does); raise with the error it streams."""
    r = requests.post(f"{server.url}gradio_api/call/{api}", json={"data": data}, timeout=30)
    r.raise_for_status()
    url = f"{server.url}gradio_api/call/{api}/{r.json()['event_id']}"
    kind = ""
    with requests.get(url, stream=True, timeout=60) as resp:
        for line in resp.iter_lines(decode_unicode=True):
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and kind in ("complete", "error"):
                payload = json.loads(line[5:])
                if kind == "error":
                    raise RuntimeError(str(payload))
                return payload
    raise AssertionError(f"{api}: no answer")


# -- the upload cache ---------------------------------------------------------------------------
def _cache_bytes(server: Served) -> int:
    """Bytes in the upload cache now. The server deletes files and empty folders while this
    walks (the quota at work): what vanishes meanwhile counts as gone, not as an error
    (``rglob`` raised FileNotFoundError for a folder removed under it)."""
    total = 0
    for folder, _dirs, files in os.walk(server.cache_dir):  # os.walk skips vanished folders
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(os.path.join(folder, name)).st_size
    return total


def _upload_raw(server: Served, name: str, data: bytes) -> str:
    r = requests.post(server.url + "gradio_api/upload", files={"files": (name, data)}, timeout=30)
    r.raise_for_status()
    return str(r.json()[0])


def test_the_upload_cache_stays_under_its_quota_oldest_first_leaving_no_empty_folders(
    server: Served,
) -> None:
    quota = CACHE_MB * 1024 * 1024
    paths = []
    for i in range(24):  # 6 MB through Gradio's own upload route, three times the quota
        paths.append(_upload_raw(server, f"flood-{i}.png", bytes([i]) * (256 * 1024)))
    wait_for(lambda: _cache_bytes(server) <= quota, 15, "the cache back under its quota")
    kept = [p for p in paths if Path(p).exists()]
    assert Path(paths[-1]).exists(), "the newest upload must stay"
    assert not Path(paths[0]).exists(), "the oldest upload must go first"
    assert kept == paths[-len(kept) :], "deleted oldest first"
    assert len(kept) >= 4
    for gone in paths[: -len(kept)]:
        assert not Path(gone).parent.exists(), "a folder emptied by the quota is removed"
    # One upload larger than the whole cache is refused before it is stored.
    r = requests.post(
        server.url + "gradio_api/upload",
        files={"files": ("big.png", b"x" * (CACHE_MB * 1024 * 1024 + 4096))},
        timeout=30,
    )
    assert r.status_code == 413 and "UPLOAD_CACHE_MAX_MB" in r.text


def test_an_upload_is_moved_into_uploads_dir_not_copied(server: Served) -> None:
    cached = _upload_raw(server, "moved.png", b"\x89PNG moved once" * 1000)
    inode = os.stat(cached).st_ino
    answer = _call_raw(
        server, "upload_file", [{"path": cached, "meta": {"_type": "gradio.FileData"}}]
    )
    stored = Path(answer[0])
    assert stored.is_relative_to(server.uploads_dir) and stored.name == "moved.png"
    assert os.stat(stored).st_ino == inode, "the file Gradio wrote, renamed: written once"
    assert not Path(cached).exists() and not Path(cached).parent.exists()
    umask = os.umask(0o022)
    os.umask(umask)  # the server inherited it: a stored upload gets a new file's mode
    assert stored.stat().st_mode & 0o777 == 0o666 & ~umask


# -- "Use via API" --------------------------------------------------------------------------------
def _shown_snippets(page: Any, tab: str, marker: str, count: int) -> list[str]:
    """The ``count`` code blocks the "Use via API" panel shows in ``tab`` with ``marker``."""
    page.click(f"li:has-text('{tab}')")

    def shown() -> list[str]:
        texts = [str(t) for t in page.eval_on_selector_all("pre", "ps => ps.map(p => p.innerText)")]
        found = [t for t in texts if marker in t]
        return found if len(found) == count else []

    return list(wait_for(shown, 15, f"the {count} {tab} samples"))


def test_every_use_via_api_sample_runs_as_shown(
    server: Served, page: Any, tmp_path: Path, artifacts_dir: Path
) -> None:
    from ui_helpers import shot

    page.goto(server.url)
    page.wait_for_selector("#cg-generate", timeout=30_000)
    page.click("text=Use via API")
    page.wait_for_selector("text=API documentation", timeout=15_000)
    info = requests.get(server.url + "gradio_api/info", timeout=10).json()
    count = len(info["named_endpoints"])  # every endpoint the page offers has its sample
    assert count >= 11, sorted(info["named_endpoints"])
    python = _shown_snippets(page, "Python", "from gradio_client import", count)
    shot(page, artifacts_dir, "20-use-via-api")
    curl = _shown_snippets(page, "cURL", "curl -X POST", count)
    env = {**os.environ, "PYTHONPATH": ""}
    for code in python:  # exactly as shown, from another process as a user would run it
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=180,
            env=env,
            cwd=tmp_path,
        )
        assert out.returncode == 0, f"{code}\n--- failed:\n{out.stderr[-2000:]}"
        assert "Error" not in out.stdout, out.stdout
    # Gradio's cURL samples end with `... | read EVENT_ID; curl .../$EVENT_ID`, which needs the
    # last command of a pipeline to run in the shell itself (zsh does; bash with lastpipe).
    # The upload sample's file is Gradio's placeholder, the one thing filled in here.
    mine = tmp_path / "mine.png"
    mine.write_bytes(requests.get(server.url + "cosmos_example.png", timeout=10).content)
    for code in curl:
        code = code.replace("/path/to/your/file", str(mine))
        out = subprocess.run(
            ["bash", "-O", "lastpipe", "-c", code], capture_output=True, text=True, timeout=180
        )
        assert out.returncode == 0 and "event: complete" in out.stdout, f"{code}\n{out.stdout}"
        assert "event: error" not in out.stdout, f"{code}\n{out.stdout}"
