"""The GPUs panel's figures of Ray workers, read on their node by a pinned Ray task (real Ray)."""

from __future__ import annotations

import json

import pytest
from enginetest import wait_for


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    import ray

    ray.init(num_cpus=3, include_dashboard=False)
    yield ray
    ray.shutdown()


def test_ray_workers_are_read_on_their_node(make_ray_app) -> None:
    from cosmos_gradio_nb._app.system import sampler_for
    from cosmos_gradio_nb._backends.ray.stats import RayNodeStats

    app = make_ray_app(num_gpus=2, gpus_per_model=1)
    app.wait_ready(120)
    workers = app.workers()
    sampler = sampler_for(app)
    assert sampler.ray
    first = sampler.stats()
    assert [n.node for n in first.nodes] == ["127.0.0.1"]
    if first.nodes[0].error:  # Ray is starting a process on the node for its first task
        assert "first answer" in first.nodes[0].error

    def answered() -> object:  # an answer, and one after it to take the CPU rate against
        found = sampler.stats()
        return None if found.nodes[0].error or found.nodes[0].cpu_percent is None else found

    stats = wait_for(answered, 60, 0.2)
    node = stats.nodes[0]
    assert node.memory_total > 0 and node.cpu_percent is not None
    by_pid = {r.pid: r for r in stats.ranks}
    assert set(by_pid) == {w.pid for w in workers}
    for rank in stats.ranks:  # psutil ran on the node, next to the worker process
        assert rank.rss and rank.rss > 0 and rank.cpu_percent is not None
    json.dumps(stats.to_dict())
    reader = RayNodeStats(timeout=5)
    missing = reader.sample({"10.255.255.1": []})
    assert missing == {"10.255.255.1": "no live Ray node at 10.255.255.1"}
    again = reader.sample({"127.0.0.1": [workers[0].pid]})
    assert again["127.0.0.1"].procs[workers[0].pid].rss > 0  # type: ignore[union-attr]
