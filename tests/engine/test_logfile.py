"""LOG_FILE rotation: bounded size, a few old files kept, shared by two writers, read across it."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from cosmos_gradio_nb._core.logtail import read_tail
from cosmos_gradio_nb._engine.logfile import LogFile, rotated_paths


def test_rotates_at_the_size_and_keeps_the_backups(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    log = LogFile(path, max_bytes=1000, backups=2)
    for i in range(100):
        log.write([f"line {i:03d} " + "x" * 40])
    log.close()
    olds = rotated_paths(path, 2)
    assert [p.exists() for p in olds] == [True, True]
    assert not path.with_name("app.log.3").exists()
    assert all(p.stat().st_size <= 1000 for p in [path, *olds])
    newest = path.read_text().splitlines()
    assert newest[-1].startswith("line 099")
    assert olds[0].read_text().splitlines()[-1] < newest[0]  # .1 holds the lines just before
    assert read_tail(path).splitlines()[-1].startswith("line 099")  # the viewer reads the tail


def test_no_backups_truncates(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    log = LogFile(path, max_bytes=200, backups=0)
    for i in range(20):
        log.write([f"line {i:02d} " + "y" * 30])
    log.close()
    assert path.stat().st_size <= 200 and not path.with_name("app.log.1").exists()
    assert path.read_text().splitlines()[-1].startswith("line 19")


def test_two_writers_of_one_file_follow_each_others_rotation(tmp_path: Path) -> None:
    path = tmp_path / "shared.log"
    a = LogFile(path, max_bytes=500, backups=3)
    b = LogFile(path, max_bytes=500, backups=3)
    for i in range(30):
        (a if i % 2 else b).write([f"{'ab'[i % 2]} {i:02d} " + "z" * 30])
    a.close()
    b.close()
    kept = [path, *rotated_paths(path, 3)]
    text = "".join(p.read_text() for p in kept if p.exists())
    assert "b 29" in path.read_text()  # the last line went to the current file
    assert sum(text.count(f" {i:02d} ") for i in range(30)) >= 20  # nothing lost to a stale fd


def test_the_engine_rotates_a_chatty_models_log(make_app) -> None:
    app = make_app(log_max_mb=0.05, log_backups=2)
    for _ in range(4):
        app.infer({"op": "print", "lines": 2000, "value": "chatty"}).result(60)
    log = app.env.log_file
    assert log.stat().st_size <= 0.05 * 1024 * 1024
    assert all(p.exists() for p in rotated_paths(log, 2))
    assert not log.with_name(log.name + ".3").exists()
    assert "of request chatty" in read_tail(log)


# -- many writers of one file: nothing lost, nothing past the limit ------------------------------
LINE = "{who} {i:07d} " + "w" * 40  # 52 bytes with its newline
WRITER = """
import sys
sys.path.insert(0, {repo!r})
from pathlib import Path
from cosmos_gradio_nb._engine.logfile import LogFile
log = LogFile(Path({path!r}), max_bytes={max_bytes}, backups={backups})
who, n = sys.argv[1], int(sys.argv[2])
i = 0
while i < n:  # batches of 1..7 lines, as the engine writes them
    batch = [{line!r}.format(who=who, i=j) for j in range(i, min(n, i + 1 + i % 7))]
    log.write(batch)
    i += len(batch)
log.close()
"""


def _write_numbered(log: LogFile, who: str, n: int) -> None:
    i = 0
    while i < n:
        batch = [LINE.format(who=who, i=j) for j in range(i, min(n, i + 1 + i % 7))]
        log.write(batch)
        i += len(batch)


def _check_every_line_once(path: Path, writers: dict[str, int], max_bytes: int) -> int:
    """Every numbered line of every writer exactly once; no file past the limit. Files seen."""
    files = [p for p in [path, *rotated_paths(path, 100_000)] if p.exists()]
    seen: dict[str, list[int]] = {who: [] for who in writers}
    sizes = {}
    for p in files:
        data = p.read_bytes()
        sizes[p.name] = len(data)
        for line in data.decode().splitlines():
            who, number, _ = line.split(" ")
            seen[who].append(int(number))
    for who, n in writers.items():
        missing = sorted(set(range(n)) - set(seen[who]))
        assert not missing, f"{who}: {len(missing)} of {n} lines lost, first {missing[:5]}"
        assert len(seen[who]) == n, f"{who}: {len(seen[who]) - n} lines written twice"
    line = len(LINE.format(who="x", i=0)) + 1
    over = {name: size for name, size in sizes.items() if size > max_bytes}
    assert not over, f"files past the limit of {max_bytes} bytes: {over}"
    early = {name: size for name, size in sizes.items() if size + line <= max_bytes}
    early.pop(path.name, None)  # the current file fills up still
    assert not early, f"files rotated more than a line before the limit: {early}"
    return len(files)


def test_two_writers_in_one_process_lose_no_line_across_many_rotations(tmp_path: Path) -> None:
    path, max_bytes, n = tmp_path / "shared.log", 10_000, 20_000
    writers = [LogFile(path, max_bytes=max_bytes, backups=1000) for _ in range(2)]
    threads = [
        threading.Thread(target=_write_numbered, args=(log, who, n))
        for log, who in zip(writers, "ab", strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for log in writers:
        log.close()
    files = _check_every_line_once(path, {"a": n, "b": n}, max_bytes)
    assert files > 150  # 2.1 MB through a 10 KB file: about 200 rotations, half by each writer


def test_two_processes_lose_no_line_across_many_rotations(tmp_path: Path) -> None:
    path, max_bytes, n = tmp_path / "shared.log", 10_000, 20_000
    script = tmp_path / "writer.py"
    repo = str(Path(__file__).resolve().parents[2])
    script.write_text(
        WRITER.format(repo=repo, path=str(path), max_bytes=max_bytes, backups=1000, line=LINE)
    )
    procs = [subprocess.Popen([sys.executable, str(script), who, str(n)]) for who in "ab"]
    try:
        assert [p.wait(180) for p in procs] == [0, 0]
    finally:
        for p in procs:
            p.kill()
    files = _check_every_line_once(path, {"a": n, "b": n}, max_bytes)
    assert files > 150


def test_a_line_longer_than_the_limit_is_kept_whole_in_a_file_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    log = LogFile(path, max_bytes=100, backups=2)
    log.write(["short"])
    log.write(["x" * 300])
    log.write(["after"])
    log.close()
    assert path.read_text() == "after\n"
    assert rotated_paths(path, 2)[0].read_text() == "x" * 300 + "\n"
    assert rotated_paths(path, 2)[1].read_text() == "short\n"
