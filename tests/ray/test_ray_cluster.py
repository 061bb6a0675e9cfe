"""The Ray backend on a simulated two-node cluster: a CPU-only head and a node with 2 (fake) GPUs.

Both nodes share this machine's file system, so copying outputs back is forced
with ``shared_output_dir=False``: the worker then writes into its node-local
scratch folder, and the files must arrive, byte for byte, in OUTPUT_DIR here.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from enginetest import wait_for

import cosmos_gradio_nb as cg


@pytest.fixture(scope="module")
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    # A Cluster records its address as the machine's latest Ray (what ray.init() and
    # address="auto" join): in a folder of its own, not in the /tmp/ray of other Rays here.
    tmpdir = tempfile.mkdtemp(prefix="cgc", dir="/tmp")  # short: Ray's sockets live there
    os.environ["RAY_TMPDIR"] = tmpdir
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    gpu_node = c.add_node(num_cpus=2, num_gpus=2)
    ray.init(address=c.address)
    c.wait_for_nodes()
    c.gpu_node = gpu_node
    yield c
    ray.shutdown()
    c.shutdown()
    os.environ.pop("RAY_TMPDIR", None)
    shutil.rmtree(tmpdir, ignore_errors=True)


def rank_nodes(app) -> list[str]:
    return [r.info["node_id"] for g in app._pool.backend._groups.values() for r in g.ranks]


def test_a_group_is_placed_on_the_gpu_node_with_rays_devices(cluster, make_ray_app) -> None:
    app = make_ray_app(num_gpus=2)  # one group of two ranks: only the GPU node fits it
    env = app.infer({"op": "echo"}).result(60).status["env"]
    assert rank_nodes(app) == [cluster.gpu_node.node_id] * 2
    assert sorted(w.gpu for w in app.workers()) == ["0", "1"]  # as Ray assigned them
    assert env["CUDA_VISIBLE_DEVICES"] in ("0", "1") and env["WORLD_SIZE"] == "2"


def test_a_group_too_large_for_any_node_fails_saying_why(cluster, make_ray_app) -> None:
    app = make_ray_app(num_gpus=3, placement_timeout=2)
    t0 = time.monotonic()
    with pytest.raises(cg.WorkerStartupError) as info:
        app.wait_ready(30)
    assert time.monotonic() - t0 < 10
    text = str(info.value)
    assert (
        "asks for 3 bundle(s) of CPU 1, GPU 1 on one node" in text and "PLACEMENT_TIMEOUT" in text
    )
    assert "GPU 2" in text  # what the cluster has


def test_outputs_are_copied_back_when_not_shared(cluster, make_ray_app, tmp_path: Path) -> None:
    app = make_ray_app(num_gpus=1, shared_output_dir=False)
    upload = app.env.uploads_dir / "u1" / "input.bin"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(b"an uploaded asset " * 1000)
    read = app.infer({"op": "read", "path": str(upload)}).result(60)
    assert read.status["sha256"] == hashlib.sha256(upload.read_bytes()).hexdigest()
    assert read.status["seen_path"] != str(upload)  # the node read its own copy
    assert read.status["params"]["path"] == str(upload)  # the record keeps the app's path

    res = app.infer({"op": "big", "mb": 20}).result(120)  # 3 chunks of 8 MB
    copy = res.output_dir / "big.bin"
    assert res.files == [copy] and copy.stat().st_size == 20 * 2**20
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == res.status["sha256"]
    assert res.status["written_in"] == str(res.output_dir)  # the status names the copies
    scratch = Path(app._pool.backend._groups[0].files.scratch)
    assert read.status["seen_path"].startswith(str(scratch))
    assert str(copy) in (res.output_dir / "status.json").read_text()
    node_copy = scratch / "outputs" / res.output_dir.name
    wait_for(lambda: not node_copy.exists(), timeout=10)  # the node's copy is removed

    files = app.infer({"op": "write"}).result(60)
    assert {p.name for p in files.files} >= {"clip.mp4", "frame.png", "notes.txt"}
    assert all(p.is_file() and p.parent == files.output_dir for p in files.files)


def test_two_groups_on_one_node_each_receive_the_files_they_read(cluster, make_ray_app) -> None:
    app = make_ray_app(num_gpus=2, gpus_per_model=1, shared_output_dir=False)
    app.wait_ready(60)
    upload = app.env.uploads_dir / "u2" / "shared.bin"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(b"read by both groups " * 500)
    futures = [app.infer({"op": "read", "path": str(upload)}) for _ in range(2)]
    results = [f.result(60) for f in futures]  # both groups idle: one request each
    assert sorted(r.status["group"] for r in results) == [0, 1]
    digest = hashlib.sha256(upload.read_bytes()).hexdigest()
    assert [r.status["sha256"] for r in results] == [digest, digest]
    scratches = {app._pool.backend._groups[g].files.scratch for g in (0, 1)}
    assert len(scratches) == 2  # one folder per group: the file was pushed to each


def test_a_lost_node_fails_its_request_and_the_group_returns_on_a_new_node(
    cluster, make_ray_app
) -> None:
    app = make_ray_app(num_gpus=1, placement_timeout=3)
    app.wait_ready(60)
    hung = app.infer({"op": "hang"})
    wait_for(lambda: hung.state == "running", timeout=30)
    queued = app.infer({"op": "echo", "value": "kept"})
    lost = cluster.gpu_node
    t0 = time.monotonic()
    cluster.remove_node(lost)
    with pytest.raises(cg.WorkerCrashedError, match="lost") as crash:
        hung.result(30)
    assert time.monotonic() - t0 < 5
    assert crash.value.group == 0
    assert queued.state == "queued"  # kept while no node can take the group
    cluster.gpu_node = cluster.add_node(num_cpus=2, num_gpus=2)
    assert queued.result(90).status["echo"] == "kept"
    assert rank_nodes(app) == [cluster.gpu_node.node_id]
