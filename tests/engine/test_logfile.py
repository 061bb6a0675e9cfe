"""LOG_FILE rotation: bounded size, a few old files kept, shared by two writers, read across it."""

from __future__ import annotations

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
