"""Hostile requests, the upload cache, and which files the page serves (issues 8 and 10).

A real ``cosmos-gradio-nb serve`` process (the sample's validator, the fast
``Steps`` model), with ``MAX_REQUEST_KB=256`` and ``UPLOAD_CACHE_MAX_AGE=3`` set in
its environment as a deployment would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from ui_helpers import Served, serve_process, wait_for

LIMIT_KB = 256
CACHE_AGE_S = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``serve`` in its own process, with MAX_REQUEST_KB and UPLOAD_CACHE_MAX_AGE set in its
    environment: the set-up the issue's hostile requests were tried against (a test's own
    process, with a heap of every earlier test, would measure its garbage collector)."""
    settings = {"MAX_REQUEST_KB": str(LIMIT_KB), "UPLOAD_CACHE_MAX_AGE": str(CACHE_AGE_S)}
    with serve_process(tmp_path_factory.mktemp("bounds"), settings) as served:
        yield served


# The hostile client runs in its own process: its 20 MB of JSON must not share an
# interpreter lock with the probe that measures how fast the page answers.
_SENDER = r"""
import json, sys, requests
url, kind = sys.argv[1], sys.argv[2]
if kind == "huge":
    text = json.dumps({f"k{i}": i for i in range(1_700_000)})  # about 20 MB
elif kind == "keys":
    text = json.dumps({f"k{i}": i for i in range(12_000)})  # under the size limit
elif kind == "unknown":
    text = json.dumps({f"unknown_{i}": i for i in range(900)})
else:
    text = "[" * 100_000 + "]" * 100_000
s = requests.Session()
r = s.post(url + "gradio_api/call/generate", json={"data": [text]}, timeout=120)
if r.status_code != 200:
    print(json.dumps({"status": r.status_code, "message": r.json()["detail"], "size": len(text)}))
    sys.exit(0)
event = r.json()["event_id"]
with s.get(url + "gradio_api/call/generate/" + event, stream=True, timeout=120) as resp:
    kind = ""
    for line in resp.iter_lines(decode_unicode=True):
        if line.startswith("event:"):
            kind = line.split(":", 1)[1].strip()
        elif line.startswith("data:") and kind in ("complete", "error"):
            data = json.loads(line[5:])
            message = data if kind == "complete" else (data or {}).get("error", str(data))
            print(json.dumps({"status": kind, "message": message, "size": len(text)}))
            break
"""


def _hostile(server: Served, kind: str) -> tuple[dict[str, Any], list[float]]:
    """Send one hostile request from another process; ping the page while it is handled."""
    latencies: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        session = requests.Session()
        while not stop.is_set():
            t0 = time.perf_counter()
            session.get(server.url + "gradio_api/info", timeout=30).raise_for_status()
            latencies.append(time.perf_counter() - t0)
            stop.wait(0.02)  # a probe every 20 ms

    requests.get(server.url + "gradio_api/info", timeout=30)  # warm
    sender = subprocess.Popen(
        [sys.executable, "-c", _SENDER, server.url, kind],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": ""},
    )
    thread = threading.Thread(target=probe)
    thread.start()
    try:
        out, _ = sender.communicate(timeout=180)
    finally:
        stop.set()
        thread.join()
    assert sender.returncode == 0, out
    return json.loads(out.strip().splitlines()[-1]), latencies


def _assert_page_kept_answering(latencies: list[float]) -> None:
    assert latencies, "the probe never ran"
    worst = max(latencies) * 1000
    assert worst < 100, f"the page took {worst:.0f} ms to answer while a hostile request ran"


def test_a_20_mb_request_is_refused_at_once_naming_the_limit(server: Served) -> None:
    t0 = time.monotonic()
    answer, latencies = _hostile(server, "huge")
    took = time.monotonic() - t0
    assert answer["status"] == 413, answer
    assert f"over the {LIMIT_KB} KB limit (MAX_REQUEST_KB)" in answer["message"]
    assert answer["size"] > 19 * 1024 * 1024
    assert took < 20, f"{took:.1f} s (it was 92 s before the limit)"
    _assert_page_kept_answering(latencies)


def test_a_request_under_the_size_limit_with_thousands_of_keys_is_refused_quickly(
    server: Served,
) -> None:
    answer, latencies = _hostile(server, "keys")
    assert answer["status"] == "error" and "more than 1,000 keys" in answer["message"]
    assert answer["size"] < LIMIT_KB * 1024
    _assert_page_kept_answering(latencies)


def test_a_validation_message_lists_the_first_20_problems_then_a_count(server: Served) -> None:
    answer, latencies = _hostile(server, "unknown")
    lines = answer["message"].splitlines()
    assert answer["status"] == "error" and lines[0].startswith("Invalid parameters: unknown_0: ")
    assert len(lines) == 21 and lines[-1] == "... and 880 more problems"
    assert len(answer["message"]) < 5000
    _assert_page_kept_answering(latencies)


def test_deep_nesting_gets_a_plain_message(server: Served) -> None:
    answer, latencies = _hostile(server, "deep")
    assert answer["status"] == "error"
    assert "nests objects or lists more than 64 levels deep" in answer["message"]
    assert "RecursionError" not in answer["message"]
    _assert_page_kept_answering(latencies)


def test_a_normal_request_still_runs(server: Served) -> None:
    from gradio_client import Client

    status, _files = Client(server.url, verbose=False).predict(
        json.dumps({"seed": 3, "prompt": "p" * 1000}), api_name="/generate"
    )
    assert status["state"] == "succeeded"


# -- Gradio's upload cache ------------------------------------------------------------------------
def _cache_files(server: Served) -> set[Path]:
    return {p for p in server.cache_dir.rglob("*") if p.is_file()}


def test_uploads_leave_nothing_in_gradio_cache_and_old_outputs_are_deleted(
    server: Served, tmp_path: Path
) -> None:
    from gradio_client import Client, handle_file

    client = Client(server.url, verbose=False)
    refused = tmp_path / "refused-upload.sh"
    refused.write_text("echo refused\n")
    kept = tmp_path / "kept-upload.txt"
    kept.write_text("kept upload\n")
    with pytest.raises(Exception, match="not accepted"):
        client.predict(handle_file(str(refused)), api_name="/upload_file")
    stored = Path(client.predict(handle_file(str(kept)), api_name="/upload_file"))
    assert stored.read_text() == "kept upload\n"
    names = {p.name for p in _cache_files(server)}
    assert "refused-upload.sh" not in names and "kept-upload.txt" not in names
    # An output served to a client is copied into the cache; past the age it is deleted.
    status, files = client.predict(json.dumps({"seed": 9}), api_name="/generate")
    downloaded = {Path(f).resolve() for f in files}  # gradio_client's own copies share the folder
    mine = [
        p
        for p in _cache_files(server)
        if p.name == "echo.json" and status["id"] in p.read_text() and p.resolve() not in downloaded
    ]
    assert mine, "the served output should be in Gradio's cache"
    wait_for(
        lambda: not any(p.exists() for p in mine),
        CACHE_AGE_S + 15,
        f"the cached output to be deleted after {CACHE_AGE_S} s",
    )
    assert (Path(status["output_dir"]) / "echo.json").exists(), "outputs themselves stay"


# -- which files are served -----------------------------------------------------------------------
def test_hard_links_symlinks_and_rotated_logs_are_not_served_and_files_are_nosniff(
    server: Served, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG secret")
    uploads = server.uploads_dir
    planted = uploads / "20990101-000000_planted"
    planted.mkdir(parents=True)
    os.link(secret, planted / "hardlink.png")  # a second name of a file elsewhere
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "elsewhere.png").write_bytes(b"\x89PNG elsewhere")
    (uploads / "20990101-000001_linked").symlink_to(outside, target_is_directory=True)
    log = server.log_file
    rotated = log.with_name(log.name + ".1")
    rotated.write_text("yesterday's log\n")
    good = uploads / "20990101-000002_good" / "fine.png"
    good.parent.mkdir()
    good.write_bytes(b"\x89PNG fine")
    base = server.url + "gradio_api/file="
    for path in (planted / "hardlink.png", outside / "elsewhere.png", rotated):
        r = requests.get(base + str(path), timeout=10)
        assert r.status_code >= 400 and b"secret" not in r.content and b"yesterday" not in r.content
    r = requests.get(base + str(uploads / "20990101-000001_linked" / "elsewhere.png"), timeout=10)
    assert r.status_code >= 400 and b"elsewhere" not in r.content
    r = requests.get(base + str(good), timeout=10)
    assert r.status_code == 200 and r.content == b"\x89PNG fine"
    assert r.headers.get("x-content-type-options") == "nosniff"
    r = requests.get(base + str(log), timeout=10)
    assert r.status_code == 200 and r.headers.get("x-content-type-options") == "nosniff"
    # The uploads list offers neither the hard link nor the symlinked folder's files.
    from cosmos_gradio_nb._core.uploads import list_uploads

    listed = {p.name for p in list_uploads(uploads)}
    assert "fine.png" in listed
    assert "hardlink.png" not in listed and "elsewhere.png" not in listed
    from gradio_client import Client

    api_listed = {
        f["name"] for f in Client(server.url, verbose=False).predict(api_name="/upload_file_list")
    }
    assert api_listed == listed
