"""The operations panels' pieces without a server: NVML against a fake module, CPU for real,
the sampler's pace, queue rows and their HTML, the trash, the state filter, provenance,
compare, and the page's request source.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cosmos_gradio_nb._core.history import differing_params, page_of_runs, run_state
from cosmos_gradio_nb._core.queue_view import duration_words, queue_rows
from cosmos_gradio_nb._core.stats import NodeSample, Nvml, sample_node, system_stats
from cosmos_gradio_nb._core.trash import TRASH_DIR, empty_expired, move_to_trash, restore
from cosmos_gradio_nb._notebook.ops_html import queue_html, stats_html


# -- NVML, against a fake pynvml ------------------------------------------------------------------
class FakeNvml:
    """What pynvml offers, for two GPUs: names as bytes (old pynvml) or str, one without rates."""

    class NVMLError(Exception):
        pass

    def __init__(self, *, fail_init: bool = False, processes: dict[int, list[int]] | None = None):
        self.fail_init = fail_init
        self.inits = 0
        self.processes = processes or {}
        self.gpus = [
            {"name": b"NVIDIA H200", "uuid": "GPU-aaaa", "used": 30 * 2**30, "total": 141 * 2**30},
            {
                "name": "NVIDIA A100 (MIG 1g)",
                "uuid": "GPU-bbbb",
                "used": 2**30,
                "total": 80 * 2**30,
            },
        ]

    def nvmlInit(self) -> None:
        self.inits += 1
        if self.fail_init:
            raise self.NVMLError("Driver Not Loaded")

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, h: int) -> Any:
        return self.gpus[h]["name"]

    def nvmlDeviceGetUUID(self, h: int) -> Any:
        return self.gpus[h]["uuid"]

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:
        return SimpleNamespace(used=self.gpus[h]["used"], total=self.gpus[h]["total"])

    def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:
        if h == 1:
            raise self.NVMLError("Not Supported")
        return SimpleNamespace(gpu=87, memory=40)

    def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> list[Any]:
        return [SimpleNamespace(pid=p, usedGpuMemory=5 * 2**30) for p in self.processes.get(h, [])]


def _worker(group: int, rank: int, gpu: str, pid: int | None, node: str = "n1") -> Any:
    return SimpleNamespace(
        group=group, rank=rank, gpu=gpu, pid=pid, state="busy", request_id=f"req{group}", node=node
    )


def test_nvml_reads_every_gpu_and_says_what_it_cannot() -> None:
    fake = FakeNvml(processes={0: [4242]})
    nvml = Nvml(fake)
    gpus, note = nvml.gpus()
    assert note == "" and [g.name for g in gpus] == ["NVIDIA H200", "NVIDIA A100 (MIG 1g)"]
    assert gpus[0].utilization == 87 and gpus[1].utilization is None  # not supported: n/a
    assert gpus[0].processes == {4242: 5 * 2**30} and gpus[0].memory_total == 141 * 2**30
    nvml.gpus()
    assert fake.inits == 1  # initialised once per process
    down = Nvml(FakeNvml(fail_init=True))
    assert down.gpus() == ([], "NVML unavailable: Driver Not Loaded")


def test_without_pynvml_the_note_says_whether_installing_it_would_help(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from cosmos_gradio_nb._core import stats

    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    monkeypatch.setattr(stats, "NVIDIA_DRIVER", str(tmp_path / "no-driver"))
    assert Nvml().gpus() == ([], "no NVIDIA driver on this machine")
    (tmp_path / "driver").mkdir()
    monkeypatch.setattr(stats, "NVIDIA_DRIVER", str(tmp_path / "driver"))
    assert Nvml().gpus() == ([], "NVML not installed (pip install nvidia-ml-py)")


def test_ranks_are_matched_to_gpus_by_process_then_uuid_then_index() -> None:
    fake = FakeNvml(processes={1: [111]})
    sample = sample_node([], nvml=Nvml(fake), node="n1")
    workers = [
        _worker(0, 0, "0", 111),  # its process is on GPU 1: that wins over the index
        _worker(1, 0, "GPU-aaaa", 222),  # by UUID
        _worker(2, 0, "1", 333),  # by index
        _worker(3, 0, "", 444),  # CPU
    ]
    stats = system_stats(workers, {"n1": sample})
    assert [r.gpu.index if r.gpu else None for r in stats.ranks] == [1, 0, 1, None]
    assert stats.ranks[0].gpu_memory == 5 * 2**30 and stats.ranks[1].gpu_memory is None
    node = stats.nodes[0]
    assert node.users == {1: ["g0 r0", "g2 r0"], 0: ["g1 r0"]}
    data = json.loads(json.dumps(stats.to_dict()))
    assert data["gpus"] is True and data["ranks"][1]["gpu"]["name"] == "NVIDIA H200"
    html = stats_html(stats)
    assert "NVIDIA H200" in html and "87%" in html and "g1 r0" in html and "n/a" in html
    assert "30.0 GiB / 141.0 GiB" in html


def test_a_node_sample_travels_as_json_and_rates_come_from_two_samples() -> None:
    sample = sample_node([os.getpid()], nvml=Nvml(FakeNvml(processes={0: [os.getpid()]})))
    again = NodeSample.from_dict(json.loads(json.dumps(sample.to_dict())))
    assert again == sample
    later = NodeSample(
        **{
            **sample.__dict__,
            "time": sample.time + 2.0,
            "cpu_busy": sample.cpu_busy + 1.0,
            "cpu_total": sample.cpu_total + 4.0,
            "procs": {
                os.getpid(): sample.procs[os.getpid()].__class__(
                    os.getpid(), sample.procs[os.getpid()].cpu_seconds + 0.5, 10
                )
            },
        }
    )
    me = _worker(0, 0, "", os.getpid(), node=sample.node)
    stats = system_stats([me], {sample.node: later}, {sample.node: sample})
    assert stats.nodes[0].cpu_percent == 25.0  # 1 busy s of 4 CPU-seconds
    assert stats.ranks[0].cpu_percent == 25.0 and stats.ranks[0].rss == 10  # 0.5 s in 2 s
    dead = system_stats([me], {sample.node: "node n1 did not answer within 2 s"})
    assert dead.nodes[0].error.startswith("node n1 did not answer")
    assert "did not answer" in stats_html(dead)


def test_the_cpu_path_for_real_and_the_sampler_samples_at_most_about_once_a_second() -> None:
    from cosmos_gradio_nb._app.system import SystemSampler

    here = socket.gethostname()

    class App:
        env = SimpleNamespace(backend="local")

        def workers(self) -> list[Any]:
            return [_worker(0, 0, "", os.getpid(), node=here)]

    app = App()
    sampler = SystemSampler(app)  # type: ignore[arg-type]
    first = sampler.stats()
    for _ in range(200):
        assert sampler.stats() is first  # every caller within the interval shares one sample
    assert sampler.samples_taken == 1
    node = first.nodes[0]
    assert node.node == here and node.cpu_percent is not None and node.memory_total > 0
    rank = first.ranks[0]
    assert rank.pid == os.getpid() and rank.rss and rank.rss > 0 and rank.cpu_percent is not None
    html = stats_html(first)
    if not first.has_gpus:  # this machine: say it is CPU only, and show CPU and memory
        assert "CPU only" in html and "showing CPU and memory use instead" in html
    start = time.monotonic()
    while sampler.samples_taken < 2:
        sampler.stats()
    assert time.monotonic() - start >= sampler.min_interval * 0.9
    assert sampler.stats().sampled_at > first.sampled_at


# -- queue rows and their HTML --------------------------------------------------------------------
ENTRIES = [
    {
        "id": "aaaaaaaaaaaa",
        "state": "running",
        "source": "page",
        "params": {"prompt": "p", "seed": 1, "steps": 9, "output_dir": "/x"},
        "position": None,
        "progress": 0.4,
        "message": "step 4/10",
        "preview": None,
        "queued_at": 100.0,
        "started_at": 110.0,
        "group": 1,
    },
    {
        "id": "bbbbbbbbbbbb",
        "state": "queued",
        "source": "api",
        "params": {"prompt": "p", "seed": 2, "steps": 5},
        "position": 0,
        "queued_at": 105.0,
    },
    {"id": "cccccccccccc", "state": "queued", "source": "python", "params": {}, "position": 1},
]


def test_queue_rows_keep_the_order_and_say_what_differs() -> None:
    rows = queue_rows(ENTRIES, defaults={"prompt": "p", "seed": 0, "steps": 5})
    assert [r.request_id for r in rows] == ["aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc"]
    assert rows[0].summary == 'prompt="p" seed=1 steps=9' and "output_dir" not in rows[0].params
    assert rows[1].summary == 'prompt="p" seed=2'  # steps is the default
    assert rows[0].elapsed(now=130.0) == 20.0 and rows[1].elapsed(now=130.0) == 25.0
    assert rows[2].elapsed() is None and rows[0].action() == "Stop" and rows[1].action() == "Cancel"
    listed = rows[0].to_dict(now=130.0)
    assert listed["running_s"] == 20.0 and listed["source"] == "page" and listed["group"] == 1
    assert rows[1].to_dict(now=130.0)["waiting_s"] == 25.0
    assert [duration_words(s) for s in (5, 65, 3725)] == ["5 s", "1 min 05 s", "1 h 02 min"]
    html = queue_html(rows, now=130.0, actions=True)
    assert html.index("aaaaaaaa") < html.index("bbbbbbbb") < html.index("cccccccc")
    assert 'data-request="aaaaaaaaaaaa" data-state="running"' in html
    assert html.count('data-action="stop"') == 1 and html.count('data-action="cancel"') == 2
    assert html.index('data-action="stop"') < html.index("bbbbbbbb")  # on the running row
    assert (
        "<b>1</b> running · <b>2</b> queued" in html
        and "next in line" in html
        and "1 ahead" in html
    )
    assert 'data-since="110.000"' in html and "40% · step 4/10" in html
    row = html[html.index("<tr data-request=") :]
    assert len(row) < 3 * 400  # styles once per table, not on every cell
    assert "and 2 more queued" in queue_html(rows, now=130.0, limit=1)
    assert "<button" not in queue_html(rows, now=130.0)
    stopping = queue_rows([{**ENTRIES[0], "stopping": True}])
    assert "stopping" in queue_html(stopping, now=1.0, actions=True)
    assert "<button" not in queue_html(stopping, now=1.0, actions=True)


# -- the trash ------------------------------------------------------------------------------------
def _run(root: Path, name: str, state: str = "succeeded", **params: Any) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    rid = name.split("_")[1]
    status = {"id": rid, "state": state, "params": params, "queued_at": time.time()}
    (folder / "status.json").write_text(json.dumps(status))
    return folder


def test_the_trash_moves_restores_and_empties_after_the_retention(tmp_path: Path) -> None:
    _run(tmp_path, "20260101-000001_aaaa1111")
    _run(tmp_path, "20260101-000002_bbbb2222")
    (tmp_path / "outside").mkdir()
    batch = move_to_trash(
        tmp_path, ["20260101-000001_aaaa1111", "../outside", "outside", "20260101-000009_nope9999"]
    )
    assert batch.moved == ["20260101-000001_aaaa1111"]
    assert set(batch.missing) == {"../outside", "outside", "20260101-000009_nope9999"}
    assert (tmp_path / "outside").is_dir() and (batch.folder / "20260101-000001_aaaa1111").is_dir()
    assert batch.folder.parent == tmp_path / TRASH_DIR
    assert [r.request_id for r in page_of_runs(tmp_path).records] == ["bbbb2222"]  # never listed
    restored, kept = restore(tmp_path, batch.batch)
    assert restored == ["20260101-000001_aaaa1111"] and kept == []
    assert not batch.folder.exists() and len(page_of_runs(tmp_path).records) == 2
    # a name taken again stays in the trash
    again = move_to_trash(tmp_path, ["20260101-000002_bbbb2222"])
    _run(tmp_path, "20260101-000002_bbbb2222")
    assert restore(tmp_path, again.batch) == ([], ["20260101-000002_bbbb2222"])
    assert restore(tmp_path, "../../etc") == ([], [])
    assert empty_expired(tmp_path, 7) == 0
    assert empty_expired(tmp_path, 7, now=time.time() + 8 * 86400) == 1
    assert not again.folder.exists()


def test_history_filters_by_state(tmp_path: Path) -> None:
    for i, state in enumerate(["succeeded", "failed", "cancelled", "failed", "running"]):
        _run(tmp_path, f"20260101-00000{i}_run{i}{i}{i}{i}", state)
    (tmp_path / "20260101-000009_brok9999").mkdir()
    failed = page_of_runs(tmp_path, states={"failed"})
    assert [r.request_id for r in failed.records] == ["run3333", "run1111"] and failed.total == 2
    assert page_of_runs(tmp_path, states={"cancelled", "succeeded"}).total == 2
    assert page_of_runs(tmp_path, states={"broken"}).records[0].request_id == "brok9999"
    assert page_of_runs(tmp_path).total == 6
    # a run still going is re-read when its status changes; a finished one never again
    folder = tmp_path / "20260101-000004_run4444"
    assert run_state(folder) == "running"
    status = json.loads((folder / "status.json").read_text())
    (folder / "status.json").write_text(json.dumps({**status, "state": "succeeded"}))
    os.utime(folder / "status.json", ns=(1, 1))  # a different mtime, whatever the clock
    assert run_state(folder) == "succeeded"
    assert page_of_runs(tmp_path, states={"succeeded"}).total == 2


# -- provenance -----------------------------------------------------------------------------------
def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_provenance_names_the_code_and_says_when_the_checkout_is_dirty(tmp_path: Path) -> None:
    from cosmos_gradio_nb._core.provenance import provenance
    from cosmos_gradio_nb.samples import SampleParams

    outside = provenance("pkg.mod:make", None, folder=tmp_path)
    assert outside["git"] is None and outside["validator"] is None
    assert outside["factory"] == "pkg.mod:make" and outside["host"] == socket.gethostname()
    assert outside["python"] == ".".join(map(str, sys.version_info[:3]))
    _git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "model.py").write_text("x = 1\n")
    _git(tmp_path, "add", "model.py")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    (tmp_path / "untracked.txt").write_text("outputs do not make it dirty")
    clean = provenance("pkg.mod:make", SampleParams, folder=tmp_path)
    assert clean["git"]["dirty"] is False and clean["git"]["branch"] == "main"
    assert len(clean["git"]["commit"]) == 40
    assert clean["validator"] == "cosmos_gradio_nb.samples.params:SampleParams"
    (tmp_path / "model.py").write_text("x = 2\n")
    assert provenance("f:g", folder=tmp_path)["git"]["dirty"] is True
    json.dumps(clean)  # plain JSON, for status.json


def test_provenance_reads_torch_and_cuda_without_importing_torch() -> None:
    code = (
        "import sys, json; from cosmos_gradio_nb._core.provenance import torch_versions; "
        "print(json.dumps([torch_versions(), 'torch' in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path.cwd()
    )
    (version, cuda), imported = json.loads(out.stdout)
    import torch

    assert not imported and version == torch.__version__ and cuda == torch.version.cuda


# -- compare --------------------------------------------------------------------------------------
def test_compare_shows_runs_side_by_side_with_only_the_differing_parameters(
    tmp_path: Path,
) -> None:
    import cosmos_gradio_nb as cg

    results = []
    for i, seed in enumerate((1, 2, 2)):
        folder = _run(tmp_path, f"20260101-00000{i}_cmp{i}{i}{i}{i}", prompt="same", seed=seed)
        video = folder / "video.mp4"
        video.write_bytes(b"\0\0\0\x18ftypmp42" + bytes(40))
        results.append(
            cg.InferenceResult(
                f"cmp{i}{i}{i}{i}",
                folder,
                files=[video],
                videos=[video],
                status=json.loads((folder / "status.json").read_text()),
                duration=1.5,
            )
        )
    shown = cg.compare(results[:2])
    assert shown.differing == ["seed"] and len(shown.runs) == 2
    html = shown._repr_html_()
    assert html.count('<video class="cg-cmp-video" src="data:video/mp4;base64,') == 2
    assert "<code>seed</code>" in html and "<code>prompt</code>" not in html
    assert "1 parameter(s) differ; 1 are the same" in html and "<script>" in html
    by_folder = cg.compare([r.output_dir for r in results[1:]])
    assert by_folder.differing == [] and "the same parameters" in by_folder._repr_html_()
    with pytest.raises(ValueError, match="2 to 4 runs, got 1"):
        cg.compare(results[:1])
    with pytest.raises(ValueError, match="got 5: pick some"):
        cg.compare(results + results[:2])
    with pytest.raises(TypeError, match="not int"):
        cg.compare([1, 2])
    assert differing_params([{"a": 1, "b": [1]}, {"a": 1, "b": [2], "c": None}]) == ["b", "c"]


# -- where a request comes from -------------------------------------------------------------------
def test_the_page_says_who_submits_through_the_calls_context() -> None:
    import asyncio
    import concurrent.futures

    from cosmos_gradio_nb._engine.tracking import request_source
    from cosmos_gradio_nb._page.api import ApiEndpoints
    from cosmos_gradio_nb._page.backend import Backend
    from cosmos_gradio_nb._page.uploads_panel import UploadsPanel

    seen: list[str] = []

    def infer(params: dict[str, Any]) -> dict[str, Any]:
        seen.append(request_source.get())
        return {"ok": True}

    backend = Backend(infer)
    backend.start({}).returned.result(timeout=10)
    backend.start({}, source="api").returned.result(timeout=10)
    api = ApiEndpoints(backend, "{}", UploadsPanel(backend, 1.0))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, api.api_generate("{}")).result(timeout=10)
    assert seen == ["page", "api", "api"] and request_source.get() == "python"
