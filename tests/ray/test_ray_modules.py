"""The Ray backend's modules without a Ray: what they import, and the non-shared-node path.

The agent module is imported on every Ray node, so it must stay light; the
backends take their settings as plain values, never the settings class; and
:class:`NodeFiles` (requests and outputs through a node that does not share
our folders) is driven here with a fake mover and fake actor, for the failures a
real cluster makes hard to cause: a file that cannot be pushed, outputs that
cannot be copied back.
"""

from __future__ import annotations

import ast
import concurrent.futures
import os
import subprocess
import sys
import threading
import typing
from pathlib import Path
from typing import Any

from enginetest import wait_for

import cosmos_gradio_nb
from cosmos_gradio_nb._backends.ray.backend import ray_backend
from cosmos_gradio_nb._backends.ray.config import RayConfig
from cosmos_gradio_nb._backends.ray.files import FileMover, NodeFiles
from cosmos_gradio_nb._engine.pool import BackendFactory

PACKAGE = Path(cosmos_gradio_nb.__file__).resolve().parent
BACKENDS = PACKAGE / "_backends"


def imports_of(path: Path) -> set[str]:
    """The modules ``path`` imports, relative ones resolved against the package."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = parts[: len(parts) - node.level] if node.level else []
            module = ".".join([*base, *(node.module or "").split(".")]).strip(".")
            out.add(module)
            out.update(f"{module}.{a.name}" for a in node.names)
    return out


def test_the_agent_module_imports_nothing_heavy() -> None:
    heavy = ["ray", "gradio", "pydantic_settings", "ipywidgets", "IPython", "torch"]
    code = (
        "import sys, cosmos_gradio_nb._backends.ray.agent\n"
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_no_backend_imports_the_settings_and_local_and_ray_stay_apart() -> None:
    for path in BACKENDS.rglob("*.py"):
        found = imports_of(path)
        assert "cosmos_gradio_nb._core.settings" not in found, path
        if path.parent.name == "ray":
            assert "cosmos_gradio_nb._backends.local" not in found, path
        if path.name == "local.py":
            assert not any(m.startswith("cosmos_gradio_nb._backends.ray") for m in found), path


class FakeMover:
    """Stands in for FileMover: records pushes, fails when told to."""

    def __init__(self, allowed: list[Path], *, push_error: Exception | None = None) -> None:
        self.allowed = allowed
        self.pushed: list[tuple[str, str]] = []
        self.push_error = push_error

    def push(self, actor: Any, node: str, src: str, dest: str) -> None:
        if self.push_error is not None:
            raise self.push_error
        self.pushed.append((src, dest))

    def sizes(self, actor: Any, paths: list[str]) -> dict[str, int]:
        return dict.fromkeys(paths, 3)

    def pull(self, actor: Any, path: str, size: int, local: str) -> None:
        raise ConnectionError("node unreachable")


def node_files(mover: FakeMover) -> tuple[NodeFiles, list[dict[str, Any]], list[dict[str, Any]]]:
    told: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    info = {"node_id": "n1", "ip": "10.0.0.2", "scratch": "/scratch/app-g0"}
    files = NodeFiles(
        mover,  # type: ignore[arg-type]
        object(),
        info,
        tell=told.append,
        refuse=refused.append,
        name="test-send",
    )
    return files, told, refused


def infer(tmp_path: Path, params: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "infer",
        "id": "r1",
        "params": params,
        "output_dir": str(tmp_path / "out" / "r1"),
    }


def test_a_request_is_sent_with_node_paths_once_its_files_are_pushed(tmp_path: Path) -> None:
    upload = tmp_path / "uploads" / "a.bin"
    upload.parent.mkdir()
    upload.write_bytes(b"abc")
    mover = FakeMover([tmp_path / "uploads"])
    files, told, refused = node_files(mover)
    files.send(infer(tmp_path, {"path": str(upload), "text": "kept"}))
    files.send({"type": "shutdown"})
    files.start()
    wait_for(lambda: len(told) == 2)
    files.close()
    node_path = f"/scratch/app-g0/files/{str(upload).lstrip('/')}"
    assert mover.pushed == [(str(upload), node_path)]
    assert told[0]["params"] == {"path": node_path, "text": "kept"}
    assert told[0]["output_dir"] == "/scratch/app-g0/outputs/r1"
    assert told[1] == {"type": "shutdown"} and refused == []


def test_a_request_whose_files_cannot_be_pushed_is_refused(tmp_path: Path) -> None:
    upload = tmp_path / "a.bin"
    upload.write_bytes(b"abc")
    files, told, refused = node_files(FakeMover([tmp_path], push_error=OSError("disk full")))
    files.start()
    files.send(infer(tmp_path, {"path": str(upload)}))
    wait_for(lambda: refused)
    files.close()
    assert told == []
    assert refused == [
        {
            "type": "error",
            "id": "r1",
            "error_type": "OSError",
            "message": "the request's files could not be sent to the node: disk full",
        }
    ]


def test_a_done_whose_outputs_cannot_be_copied_back_becomes_an_error(tmp_path: Path) -> None:
    files, told, _ = node_files(FakeMover([]))
    files.start()
    files.send(infer(tmp_path, {}))
    wait_for(lambda: told)
    files.close()
    unknown = {"type": "done", "id": "other", "status": {"output_dir": "/x"}}
    assert files.reply(unknown) is unknown  # not a request sent through here: as it is
    status = {"output_dir": "/scratch/app-g0/outputs/r1", "files": {"videos": ["/v.mp4"]}}
    reply = files.reply({"type": "done", "id": "r1", "status": status})
    assert reply["type"] == "error" and reply["error_type"] == "ConnectionError"
    assert (
        reply["message"] == "the outputs could not be copied back from 10.0.0.2: node unreachable"
    )
    done = {"type": "done", "id": "r1", "status": status}
    assert files.reply(done) is done  # the request was answered once; no second copy


def test_close_ends_the_sending_thread_even_before_it_starts(tmp_path: Path) -> None:
    files, _, _ = node_files(FakeMover([]))
    files.close()
    files.start()
    wait_for(lambda: not any(t.name == "test-send" for t in threading.enumerate()))


class FakeRef:
    def __init__(self, value: Any = None, error: BaseException | None = None) -> None:
        self.fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.value, self.error = value, error

    def future(self) -> concurrent.futures.Future[Any]:
        return self.fut

    def complete(self) -> None:
        if self.error is not None:
            self.fut.set_exception(self.error)
        else:
            self.fut.set_result(self.value)


class FakeActor:
    """Records write_chunk calls as a rank agent would receive them."""

    def __init__(self) -> None:
        self.chunks: list[tuple[str, int, int, bool]] = []
        outer = self

        class Method:
            def remote(self, path: str, offset: int, data: bytes, final: bool) -> FakeRef:
                outer.chunks.append((path, offset, len(data), final))
                ref = FakeRef()
                ref.complete()
                return ref

        self.write_chunk = Method()


class FakeRay:
    def get(self, refs: Any, timeout: float | None = None) -> Any:
        return [r.fut.result() for r in refs] if isinstance(refs, list) else refs.fut.result()


def test_a_file_is_pushed_once_per_node_destination_and_version(tmp_path: Path) -> None:
    # Two groups on one node have two scratch folders: each must receive the file.
    src = tmp_path / "uploads" / "a.bin"
    src.parent.mkdir()
    src.write_bytes(b"x" * 100)
    config = RayConfig(
        ray_address=None,
        placement_timeout=1,
        shared_output_dir=True,
        output_dir=tmp_path / "out",
        uploads_dir=tmp_path / "uploads",
        asset_dirs=(),
    )
    mover = FileMover(FakeRay(), config, "tok")
    actor = FakeActor()
    mover.push(actor, "node1", str(src), "/scratch/app-g0/files/a.bin")
    mover.push(actor, "node1", str(src), "/scratch/app-g1/files/a.bin")
    mover.push(actor, "node1", str(src), "/scratch/app-g0/files/a.bin")  # already there
    assert actor.chunks == [
        ("/scratch/app-g0/files/a.bin", 0, 100, True),
        ("/scratch/app-g1/files/a.bin", 0, 100, True),
    ]
    src.write_bytes(b"y" * 50)  # a new version
    os.utime(src, ns=(1, 1))
    mover.push(actor, "node1", str(src), "/scratch/app-g0/files/a.bin")
    assert actor.chunks[-1] == ("/scratch/app-g0/files/a.bin", 0, 50, True)
    mover.close()


def test_ray_backend_is_typed_as_the_engines_backend_factory() -> None:
    assert typing.get_type_hints(ray_backend)["return"] == BackendFactory
