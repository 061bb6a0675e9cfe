"""Fast tests of the upload cache's quota, the zips' lifetime and typed blob uploads (issue 15).

No server: :class:`UploadCache` over a folder laid out as Gradio's cache
(``<cache>/<sha>/<name>``, partial uploads ``<cache>/tmpXXXX``), :class:`ZipStore`
and its ASGI answer driven by hand, ``store_upload`` on real files.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import os
import time
from pathlib import Path
from typing import Any

import pytest

from cosmos_gradio_nb._core.uploads import UploadRejected, sniff_extension, store_upload
from cosmos_gradio_nb._page.cache import IDLE_SECONDS, UploadCache
from cosmos_gradio_nb._page.examples import example_png
from cosmos_gradio_nb._page.guard import GuardPolicy
from cosmos_gradio_nb._page.zips import ZipStore

KB = 1024


def _in_a_thread(coro: Any) -> Any:
    """``asyncio.run(coro)`` in a thread of its own: once the session's Playwright browser
    is up, the main thread has a running event loop and asyncio.run() refuses to start."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result(180)


def _cached(root: Path, name: str, size: int, age: float) -> Path:
    """A file as Gradio caches one, ``age`` seconds old."""
    folder = root / hashlib.sha256(name.encode()).hexdigest()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"x" * size)
    when = time.time() - age
    os.utime(path, (when, when))
    return path


def test_the_cache_is_trimmed_oldest_first_sparing_named_and_kept_files(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    files = [_cached(root, f"f{i}.png", 100 * KB, age=100 - i) for i in range(10)]  # f0 oldest
    keep = [str(files[0])]  # an example Gradio keeps
    cache = UploadCache(root, max_bytes=450 * KB, max_age=86400, tracked=lambda: (files, keep))
    cache.note_body(f'{{"data": [{{"path": "{files[1]}"}}]}}'.encode())  # a request names f1
    report = cache.trim()
    assert report.total_bytes == 1000 * KB
    gone = [f for f in files if not f.exists()]
    assert gone == files[2:8], "the oldest six that nothing names (1000 - 600 <= 450 KB)"
    assert report.kept_bytes <= 450 * KB and sorted(report.deleted) == sorted(gone)
    assert report.folders_removed == 6 and not any(f.parent.exists() for f in gone)
    assert cache.trim().deleted == [], "under the quota: nothing more goes"


def test_partial_uploads_go_first_and_empty_folders_left_by_age_are_removed(
    tmp_path: Path,
) -> None:
    root = tmp_path / "cache"
    files = [_cached(root, f"f{i}.png", 100 * KB, age=10) for i in range(3)]
    partial = root / "tmpabc123"
    partial.write_bytes(b"p" * 150 * KB)  # an upload cut off mid-body, on no list
    fresh = root / "tmpfresh"
    fresh.write_bytes(b"p" * 150 * KB)  # an upload still arriving
    old = time.time() - IDLE_SECONDS - 5
    os.utime(partial, (old, old))
    empty = root / ("ab" * 32)  # a <sha> folder Gradio's deletion by age emptied
    empty.mkdir()
    os.utime(empty, (old, old))
    just_made = root / ("cd" * 32)  # a folder Gradio made for a file about to arrive
    just_made.mkdir()
    gradio_own = root / "vibe_edit_history"  # not one of the <sha> folders: never touched
    gradio_own.mkdir()
    os.utime(gradio_own, (old, old))
    cache = UploadCache(root, max_bytes=400 * KB, max_age=86400, tracked=lambda: (files, []))
    report = cache.trim()
    assert not partial.exists() and fresh.exists()
    assert all(f.exists() for f in files), "450 KB - 150 KB fits: no upload deleted"
    assert not empty.exists() and just_made.exists() and gradio_own.exists()
    assert report.deleted == [partial]


def test_a_partial_upload_older_than_the_age_goes_even_under_the_quota(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    root.mkdir()
    partial = root / "tmpold"
    partial.write_bytes(b"p")
    old = time.time() - 7200
    os.utime(partial, (old, old))
    UploadCache(root, max_bytes=10**9, max_age=3600, tracked=lambda: ([], [])).trim()
    assert not partial.exists()


def test_one_zip_per_session_deleted_once_sent_whole(tmp_path: Path) -> None:
    store = ZipStore(max_zips=3)
    first = store.slot("tab-a", "run1.zip")
    first.write_bytes(b"PK first")
    link = store.publish("tab-a", first)
    assert link.startswith("cosmos_zip/") and link.endswith("/run1.zip")
    second = store.slot("tab-a", "run2.zip")  # the same tab zips again: the first goes
    assert not first.exists() and not first.parent.exists()
    second.write_bytes(b"PK second" * 300_000)  # about 2.7 MB: three reads
    token = store.publish("tab-a", second).split("/")[1]
    other = store.slot("tab-b", "run3.zip")
    other.write_bytes(b"PK other")
    store.publish("tab-b", other)
    assert len(store.files()) == 2

    sent: list[dict[str, Any]] = []

    async def serve(disconnect_after: int | None) -> None:
        async def receive() -> dict[str, Any]:
            while disconnect_after is None or len(sent) < disconnect_after:
                await asyncio.sleep(0.01)
            return {"type": "http.disconnect"}

        async def send(message: Any) -> None:
            sent.append(dict(message))
            await asyncio.sleep(0.02)

        await store.serve(token, receive, send, head=False)

    _in_a_thread(serve(disconnect_after=2))  # the client leaves after the first bytes
    assert second.exists(), "an interrupted download may be retried"
    sent.clear()
    _in_a_thread(serve(disconnect_after=None))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert body == b"PK second" * 300_000 and sent[0]["status"] == 200
    assert not second.exists() and len(store.files()) == 1, "deleted once sent whole"
    sent.clear()
    _in_a_thread(serve(disconnect_after=None))
    assert sent[0]["status"] == 404
    store.forget_session("tab-b")  # its tab closed
    assert store.files() == []
    store.close()


def test_at_most_max_zips_in_all(tmp_path: Path) -> None:
    store = ZipStore(max_zips=2)
    paths = []
    for i in range(4):
        path = store.slot(f"tab-{i}", f"z{i}.zip")
        path.write_bytes(b"PK")
        store.publish(f"tab-{i}", path)
        paths.append(path)
    assert [p.exists() for p in paths] == [False, False, True, True]
    store.close()
    assert not any(p.exists() for p in paths)


def test_a_nameless_upload_is_typed_by_its_first_bytes_never_as_text(tmp_path: Path) -> None:
    png = tmp_path / "blob"
    png.write_bytes(example_png())
    assert sniff_extension(png) == ".png"
    stored = store_upload(png, tmp_path / "uploads", original_name="blob", move=True)
    assert stored.name == "blob.png" and not png.exists()
    html = tmp_path / "page"
    html.write_bytes(b"<html><script>alert(1)</script></html>")
    with pytest.raises(UploadRejected, match="not accepted"):
        store_upload(html, tmp_path / "uploads", original_name="page")
    mp4 = tmp_path / "clip"
    mp4.write_bytes(b"\x00\x00\x00\x20ftypisom" + b"\x00" * 64)
    assert sniff_extension(mp4) == ".mp4"


def test_a_nul_byte_is_no_such_file_for_the_guard(tmp_path: Path) -> None:
    policy = GuardPolicy(1024, tmp_path / "out", tmp_path / "up", tmp_path / "out" / "app.log")
    assert policy.refusal(str(tmp_path / "out" / "a\x00b")) == "no such file"
    assert policy.too_big(5000, upload=False) is None
    assert "more than" in str(policy.too_big(10**7, upload=False, counted=True))
    assert policy.too_big(10**12, upload=True) is None  # no upload bound given


def test_an_upload_leaves_gradios_cache_moved_once_even_when_sent_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cosmos_gradio_nb._page.backend import Backend
    from cosmos_gradio_nb._page.uploads_panel import UploadsPanel

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("UPLOADS_DIR", str(tmp_path / "uploads"))
    cached = _cached(tmp_path / "cache", "twice.png", 3000, age=0)
    inode = cached.stat().st_ino
    panel = UploadsPanel(Backend(lambda params: params), upload_limit_mb=1)
    _choices, last, message = panel.on_upload([str(cached), str(cached)])
    stored = Path(last)
    assert message.count("Stored as") == 1 and "refused" not in message
    assert stored.stat().st_ino == inode and not cached.exists() and not cached.parent.exists()
