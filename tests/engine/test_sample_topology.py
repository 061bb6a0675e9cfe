"""The sample model through the real engine: a 2-rank gloo group, and 2 replicas."""

from __future__ import annotations

import av
import pytest

import cosmos_gradio_nb as cg
from cosmos_gradio_nb.samples import FACTORY_MODULE, SampleParams

TINY = {"num_frames": 6, "width": 64, "height": 48, "fps": 6}


def decoded_frames(path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_distributed_sample_renders_one_video_from_two_ranks(make_app) -> None:
    app = make_app(validator=SampleParams, factory_module=FACTORY_MODULE, num_gpus=2)
    app.wait_ready(120)
    fut = app.infer({"prompt": "two ranks", "seed": 3, **TINY})
    res = fut.result(120)
    assert res.status["world_size"] == 2
    assert [p.name for p in res.videos] == ["video.mp4"] and [p.name for p in res.images] == [
        "poster.png"
    ]
    assert decoded_frames(res.videos[0]) == 6
    assert {line.split("]")[0] + "]" for line in res.log} == {"[g0 r0]", "[g0 r1]"}
    assert fut.progress == 1.0


def test_sample_replicas_share_the_queue(make_app) -> None:
    app = make_app(
        validator=SampleParams, factory_module=FACTORY_MODULE, num_gpus=2, gpus_per_model=1
    )
    app.wait_ready(120)  # else the first group up may drain this small batch alone
    futs = app.map([{"seed": s, "frame_delay": 0.05, **TINY} for s in range(4)], progress=False)
    results = [f.result(120) for f in futs]
    assert [r.status["params"]["seed"] for r in results] == [0, 1, 2, 3]
    assert {r.status["group"] for r in results} == {0, 1}
    assert all(decoded_frames(r.videos[0]) == 6 for r in results)
    with pytest.raises(cg.ValidationError, match="width"):
        app.infer({"width": 65})
