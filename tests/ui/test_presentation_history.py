"""One presentation of states and errors; past runs read from status.json; validator messages."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pydantic
import pytest

from cosmos_gradio_nb import (
    InferenceError,
    InferenceTimeoutError,
    QueueFullError,
    ValidationError,
    WorkerCrashedError,
    load_results,
)
from cosmos_gradio_nb._core.filetypes import FileKind, kind_of
from cosmos_gradio_nb._core.history import list_run_names, page_of_runs, read_run
from cosmos_gradio_nb._core.outputs import base_status, finish_status, write_status
from cosmos_gradio_nb._core.presentation import (
    STATES,
    ErrorCategory,
    classify_error,
    classify_error_record,
    queue_wording,
)
from cosmos_gradio_nb._core.validation import MAX_PROBLEMS, make_validator


# -- one table of states, one queue wording ---------------------------------------------------
def test_every_front_end_uses_the_same_state_colours() -> None:
    from cosmos_gradio_nb._notebook import display as _display
    from cosmos_gradio_nb._page.render import CSS, status_html

    for state in ("queued", "running", "succeeded", "failed", "cancelled"):
        style = STATES[state]
        assert f".cg-{state} .cg-badge {{ background: {style.color}; }}" in CSS
        assert f"background:{style.color}" in _display.badge(state)
        assert f">{style.word}<" in _display.badge(state)
    assert ">queued<" in status_html("queued", queue_position=0)
    assert STATES["queued"].color != STATES["cancelled"].color


@pytest.mark.parametrize(
    ("position", "words"),
    [(None, "queued"), (0, "next in line"), (1, "1 ahead"), (20, "20 ahead"), (21, "21 ahead")],
)
def test_queue_wording(position: int | None, words: str) -> None:
    assert queue_wording(position) == words


def test_errors_are_classified_by_class_not_by_name() -> None:
    class MyModelFailed(InferenceError):  # a subclass with another name: still the model's error
        pass

    view = classify_error(MyModelFailed("KeyError: 'x'", error_type="KeyError"))
    assert view.title == "The model raised KeyError" and view.category is ErrorCategory.WORKER
    assert view.message == "'x'"
    crash = classify_error(WorkerCrashedError("died", rank=1, signal_name="SIGKILL"))
    assert "killed by SIGKILL" in crash.title and "restarted" in crash.message
    assert classify_error(InferenceTimeoutError("ran past 5 s")).title == "Timed out"
    refused = classify_error(ValidationError("seed: bad"))
    assert refused.title == "Invalid parameters" and not refused.ran
    assert classify_error(QueueFullError("full")).category is ErrorCategory.REFUSED
    assert classify_error(KeyError("k")).category is ErrorCategory.OTHER
    # A status.json error: the model's own class name, or ours turned back into its class.
    assert classify_error_record({"type": "ValueError", "message": "m"}).title == (
        "The model raised ValueError"
    )
    rec = classify_error_record({"type": "WorkerCrashedError", "message": "rank 0 died"})
    assert rec.title == "Worker crashed" and rec.category is ErrorCategory.WORKER


# -- validator messages ----------------------------------------------------------------------
class Params(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    seed: int = 0
    width: int = pydantic.Field(64, ge=32)


def plain_validator(params: dict[str, Any]) -> dict[str, Any]:
    """The seed's way: a plain function that lets pydantic's ValidationError out."""
    return Params.model_validate(params).model_dump()


def test_a_plain_function_validator_gives_the_pydantic_class_message() -> None:
    bad = {"seed": "x", "width": 8, "colour": "red"}
    with pytest.raises(ValidationError) as from_class:
        make_validator(Params)(bad)
    with pytest.raises(ValidationError) as from_function:
        make_validator(plain_validator)(bad)
    assert str(from_function.value) == str(from_class.value)
    assert from_function.value.key == from_class.value.key == "seed"
    lines = str(from_function.value).splitlines()
    assert len(lines) == 3
    assert re.match(r"^seed: .+ \(got 'x'\)$", lines[0]), lines
    assert lines[1].startswith("width: ") and "(got 8)" in lines[1]
    assert lines[2].startswith("colour: ")
    assert "validation error" not in str(from_function.value).lower()
    assert "invalid parameters" not in str(from_function.value).lower()


def test_a_validation_message_lists_at_most_20_problems() -> None:
    many = {f"unknown_{i}": i for i in range(5000)}
    with pytest.raises(ValidationError) as err:
        make_validator(Params)(many)
    lines = str(err.value).splitlines()
    assert len(lines) == MAX_PROBLEMS + 1
    assert lines[-1] == f"... and {5000 - MAX_PROBLEMS} more problems"
    assert len(str(err.value)) < 4000


# -- status.json: ISO times, partial files -----------------------------------------------------
def _status(folder: Path, rid: str) -> dict[str, Any]:
    now = time.time()
    return base_status(
        request_id=rid,
        model_name="m",
        params={"seed": 1, "output_dir": str(folder)},
        output_dir=str(folder),
        queued_at=now - 2,
        started_at=now - 1,
        group=0,
    )


def test_status_json_has_iso_times_and_a_stopped_run_lists_partial_files(tmp_path: Path) -> None:
    folder = tmp_path / "20260101-000000_aaaaaaaaaaaa"
    folder.mkdir()
    (folder / "video.mp4").write_bytes(b"\0" * 48)  # what a killed encoder leaves
    status = finish_status(_status(folder, "aaaaaaaaaaaa"), "cancelled")
    write_status(str(folder), status)
    data = json.loads((folder / "status.json").read_text())
    assert data["files"]["videos"] == [] and data["files"]["images"] == []
    assert data["files"]["partial"] == [str(folder / "video.mp4")]
    for key in ("queued_at", "started_at", "finished_at"):
        iso = data[f"{key}_iso"]
        assert iso.endswith("+00:00"), iso
        parsed = time.mktime(time.strptime(iso[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        assert abs(parsed - data[key]) < 2
    ok = finish_status(_status(folder, "aaaaaaaaaaaa"), "succeeded")
    assert ok["files"]["videos"] == [str(folder / "video.mp4")] and "partial" not in ok["files"]


# -- past runs ---------------------------------------------------------------------------------
def _make_runs(root: Path, n: int, broken: dict[int, bytes] | None = None) -> list[str]:
    """``n`` request folders as the engine leaves them, one second apart, some broken."""
    broken = broken or {}
    names = []
    base = time.mktime(time.strptime("20260101-000000", "%Y%m%d-%H%M%S"))
    for i in range(n):
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(base + i))
        rid = f"{i:012x}"
        folder = root / f"{stamp}_{rid}"
        folder.mkdir(parents=True)
        names.append(folder.name)
        if i in broken:
            if broken[i]:
                (folder / "status.json").write_bytes(broken[i])
            continue
        status = {
            "id": rid,
            "state": "succeeded" if i % 3 else "failed",
            "params": {"seed": i, "prompt": f"run {i}"},
            "output_dir": str(folder),
            "queued_at": base + i,
            "duration": 0.5,
            "files": {"videos": [], "images": [], "other": []},
            "error": None if i % 3 else {"type": "RuntimeError", "message": f"boom {i}"},
        }
        (folder / "status.json").write_text(json.dumps(status))
    return names


def test_broken_and_half_written_status_files_are_listed_as_broken(tmp_path: Path) -> None:
    _make_runs(tmp_path, 6, broken={1: b'{"id": "x", "sta', 2: b"", 3: b"[1, 2]", 4: b"\xff\xfe"})
    (tmp_path / "app.log").write_text("not a run")
    (tmp_path / "notes").mkdir()  # not a request folder
    page = page_of_runs(tmp_path, 0, 10)
    assert page.total == 6
    states = {int(r.request_id, 16): (r.state, r.broken) for r in page.records}
    for i in (1, 2, 3, 4):
        assert states[i][0] == "broken" and states[i][1], states[i]
    assert "not valid JSON" in str(states[1][1])
    assert "list" in str(states[3][1])
    assert states[5] == ("succeeded", None) and states[0] == ("failed", None)
    results = load_results(tmp_path)
    assert [r.request_id for r in results] == [f"{i:012x}" for i in range(5, -1, -1)]
    assert (
        results[4].status["state"] == "broken" and "not valid JSON" in results[4].status["broken"]
    )
    html = results._repr_html_()
    assert html.count("<tr>") == 7 and "broken" in html and "boom 0" in html
    assert "6</b> of 6 runs" in html.replace("<b>", "")


def test_ten_thousand_runs_page_fast_and_only_the_page_is_read(tmp_path: Path) -> None:
    names = _make_runs(tmp_path, 10_000, broken={9_999: b"{"})
    list_run_names(tmp_path)  # the first listing (cold)
    t0 = time.perf_counter()
    page = page_of_runs(tmp_path, 0, 20)
    warm = time.perf_counter() - t0
    assert page.total == 10_000 and page.records[0].name == names[-1]
    assert page.records[0].state == "broken"
    assert [r.name for r in page.records] == sorted(names, reverse=True)[:20]
    last = page_of_runs(tmp_path, 9_990, 20)
    assert [r.name for r in last.records] == sorted(names, reverse=True)[9_990:]
    assert warm < 0.25, f"a page of 20 out of 10,000 runs took {warm * 1000:.0f} ms"
    found = page_of_runs(tmp_path, 0, 5, contains=f"_{1234:012x}")
    assert found.total == 1 and read_run(found.records[0].folder).params["seed"] == 1234


def test_the_one_file_type_table() -> None:
    assert kind_of("a/B.MP4") is FileKind.VIDEO and kind_of("x.webp") is FileKind.IMAGE
    assert kind_of("s.json") is FileKind.JSON and kind_of("n.md") is FileKind.TEXT
    assert kind_of("x.bin") is FileKind.OTHER
    from cosmos_gradio_nb._core.uploads import ALLOWED_EXTENSIONS

    assert ".html" not in ALLOWED_EXTENSIONS and ".svg" not in ALLOWED_EXTENSIONS
