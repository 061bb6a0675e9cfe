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
from cosmos_gradio_nb._backends.ray.agent import Batch, RankAgent
from cosmos_gradio_nb._backends.ray.backend import ray_backend
from cosmos_gradio_nb._backends.ray.calls import CallWaiter
from cosmos_gradio_nb._backends.ray.config import RayConfig
from cosmos_gradio_nb._backends.ray.files import FileMover, NodeFiles
from cosmos_gradio_nb._backends.ray.group import Rank
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
    """Stands in for FileMover: records pushes, fails when told to; runs its "threads' work"
    when the test says (:meth:`drain`), so nothing here depends on timing."""

    def __init__(self, allowed: list[Path], *, push_error: Exception | None = None) -> None:
        self.allowed = allowed
        self.pushed: list[tuple[str, str]] = []
        self.push_error = push_error
        self.submitted: list[Any] = []

    def submit(self, fn: Any) -> None:
        self.submitted.append(fn)

    def drain(self) -> None:
        while self.submitted:
            self.submitted.pop(0)()

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
    assert mover.submitted == []  # nothing is sent before the group's workers are up
    files.start()
    mover.drain()
    files.close()
    node_path = f"/scratch/app-g0/files/{str(upload).lstrip('/')}"
    assert mover.pushed == [(str(upload), node_path)]
    assert told[0]["params"] == {"path": node_path, "text": "kept"}
    assert told[0]["output_dir"] == "/scratch/app-g0/outputs/r1"
    assert told[1] == {"type": "shutdown"} and refused == []


def test_a_request_whose_files_cannot_be_pushed_is_refused(tmp_path: Path) -> None:
    upload = tmp_path / "a.bin"
    upload.write_bytes(b"abc")
    mover = FakeMover([tmp_path], push_error=OSError("disk full"))
    files, told, refused = node_files(mover)
    files.start()
    files.send(infer(tmp_path, {"path": str(upload)}))
    mover.drain()
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
    mover = FakeMover([])
    files, told, _ = node_files(mover)
    files.start()
    files.send(infer(tmp_path, {}))
    mover.drain()
    assert len(told) == 1
    files.close()
    unknown = {"type": "done", "id": "other", "files": {"videos": ["/x/v.mp4"]}}
    assert files.reply(unknown) is unknown  # not a request sent through here: as it is
    produced = {"videos": ["/scratch/app-g0/outputs/r1/v.mp4"], "images": [], "other": []}
    reply = files.reply({"type": "done", "id": "r1", "files": produced, "returned": {}})
    assert reply["type"] == "error" and reply["error_type"] == "ConnectionError"
    assert (
        reply["message"] == "the outputs could not be copied back from 10.0.0.2: node unreachable"
    )
    done = {"type": "done", "id": "r1", "files": produced, "returned": {}}
    assert files.reply(done) is done  # the request was answered once; no second copy


def test_after_close_nothing_queued_is_sent(tmp_path: Path) -> None:
    mover = FakeMover([])
    files, told, refused = node_files(mover)
    files.send(infer(tmp_path, {}))
    files.close()
    files.send({"type": "shutdown"})
    files.start()
    files.send(infer(tmp_path, {}))
    mover.drain()
    assert told == [] and refused == []


def test_one_sender_at_a_time_per_group_and_in_order(tmp_path: Path) -> None:
    mover = FakeMover([])
    files, told, _ = node_files(mover)
    files.start()
    for i in range(3):
        files.send({"type": "note", "i": i})
    assert len(mover.submitted) == 1  # one job sends the whole queue, in order
    mover.drain()
    assert [m["i"] for m in told] == [0, 1, 2]
    files.send({"type": "note", "i": 3})  # the job ended: the next send starts another
    mover.drain()
    assert [m["i"] for m in told] == [0, 1, 2, 3]


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


def test_the_call_waiter_runs_handlers_in_completion_order_on_one_thread() -> None:
    waiter = CallWaiter(name="test-waiter")
    seen: list[tuple[str, Any, str]] = []

    def handler(name: str) -> Any:
        def handle(value: Any, exc: BaseException | None) -> None:
            seen.append(
                (name, value if exc is None else repr(exc), threading.current_thread().name)
            )

        return handle

    a, b, c = FakeRef(1), FakeRef(2), FakeRef(error=RuntimeError("died"))
    for name, ref in (("a", a), ("b", b), ("c", c)):
        waiter.watch(ref, handler(name))
    assert waiter.pending == 3
    b.complete()
    c.complete()
    a.complete()
    waiter.after(0.05, lambda: seen.append(("timer", None, threading.current_thread().name)))
    wait_for(lambda: len(seen) == 4)
    assert [(n, v) for n, v, _ in seen] == [
        ("b", 2),
        ("c", "RuntimeError('died')"),
        ("a", 1),
        ("timer", None),
    ]
    assert {t for _, _, t in seen} == {"test-waiter"} and waiter.pending == 0
    late = FakeRef(3)
    waiter.watch(late, handler("late"))
    waiter.close()
    late.complete()
    assert not any(t.name == "test-waiter" for t in threading.enumerate())
    assert len(seen) == 4  # closed: no handler runs after


def test_batches_are_handed_on_in_their_order_whatever_order_they_arrive() -> None:
    rank = Rank(0, actor=None)
    rank.arrived((None, []))
    rank.arrived((1, [("lines", ["b"])]))
    assert list(rank.backlog) == []  # batch 0 has not come yet
    rank.arrived((0, [("lines", ["a"])]))
    rank.arrived((3, [("lines", ["d"])]))
    assert [item[1] for item in rank.backlog] == [["a"], ["b"]]
    rank.flush_held()  # the actor died: batch 2 never comes
    assert [item[1] for item in rank.backlog] == [["a"], ["b"], ["d"]]


def test_ray_backend_is_typed_as_the_engines_backend_factory() -> None:
    assert typing.get_type_hints(ray_backend)["return"] == BackendFactory


def test_the_agent_returns_a_reply_as_its_calls_answer_after_the_lines_before_it(
    tmp_path: Path,
) -> None:
    """The rank agent in this process (no Ray), running a real worker."""
    agent = RankAgent(0, 0, f"test-{os.getpid()}")
    init = {"type": "init", "factory": {"module": "models", "function": "create_worker"}}
    init.update(
        sys_path=[str(Path(__file__).resolve().parents[1] / "engine")],
        group=0,
        rank=0,
        world_size=1,
    )
    agent.start(
        {}, size=1, master_addr="127.0.0.1", master_port=29555, init=init, cwd=".", gpus=False
    )
    items: list[tuple[Any, ...]] = []
    numbers: list[int] = []

    def poll() -> bool:
        number, got = agent.events(5.0)
        if number is not None:
            numbers.append(number)
            items.extend(got)
        return any(i[0] == "message" and i[1]["type"] == "ready" for i in items)

    wait_for(poll, timeout=60)
    polled: list[Batch] = []
    poller = threading.Thread(target=lambda: polled.append(agent.events(5.0)))
    poller.start()  # a long poll is out while the request runs, as in the app
    msg = {"type": "infer", "id": "r1", "params": {"op": "print", "lines": 2, "value": "v"}}
    msg.update(output_dir=str(tmp_path / "r1"), queued_at=0.0, started_at=0.0)
    number, answer = agent.run(msg)
    poller.join(10)
    assert answer[-1][0] == "message" and answer[-1][1]["type"] == "done"
    assert answer[-1][1]["id"] == "r1"  # the reply is the call's answer, last
    early = [(n, got) for n, got in polled if n is not None]
    assert all(i[0] != "message" for _, got in early for i in got)  # never the reply
    order = sorted([*early, (number, answer)])
    assert [n for n, _ in order] == list(range(numbers[-1] + 1, numbers[-1] + 1 + len(order)))
    lines = [line for _, got in order for i in got if i[0] == "lines" for line in i[1]]
    assert lines[-3:] == ["line 0 of request v", "line 1 of request v", "to stderr"]
    agent.stop()
    wait_for(lambda: any(i[0] == "exit" for i in agent.events(5.0)[1]), timeout=30)
