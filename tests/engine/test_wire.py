"""Frames and strict JSON (``_core/wire.py``), byte by byte."""

from __future__ import annotations

import socket
import threading

import pytest

from cosmos_gradio_nb._core.protocol import factory_from_wire, factory_to_wire
from cosmos_gradio_nb._core.wire import (
    HEADER,
    MAX_DEPTH,
    FrameReader,
    WireError,
    decode,
    encode,
    find_bad,
    plain_str,
)


def test_a_frame_fed_one_byte_at_a_time_comes_out_whole_once() -> None:
    frames = encode({"type": "a", "n": 1}) + encode({"type": "b", "text": "é ☃"})
    reader = FrameReader()
    out = []
    for i in range(len(frames)):
        out += reader.feed(frames[i : i + 1])
        if i < len(frames) - 1:
            assert len(out) <= 1
    assert out == [{"type": "a", "n": 1}, {"type": "b", "text": "é ☃"}]
    assert reader.pending == 0


def test_half_a_frame_waits_and_the_rest_completes_it() -> None:
    frame = encode({"type": "progress", "fraction": 0.5})
    reader = FrameReader()
    assert reader.feed(frame[:7]) == [] and reader.pending == 7
    assert reader.feed(frame[7:] + frame) == [{"type": "progress", "fraction": 0.5}] * 2


def test_garbage_and_absurd_lengths_are_protocol_errors() -> None:
    with pytest.raises(WireError, match="over the"):
        FrameReader().feed(HEADER.pack(2**31) + b"x")
    with pytest.raises(WireError, match="not JSON"):
        FrameReader().feed(HEADER.pack(3) + b"\x80\x04K")  # a pickle, say
    with pytest.raises(WireError, match="holds list"):
        decode(b"[1, 2]")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({"a": [1, {"b": float("nan")}]}, "at key 'a[1].b': float: nan"),
        ({"a": (1, 2)}, "at key 'a': tuple: (1, 2) (use a list)"),
        ({"a": {1: "x"}}, "at key 'a.1': the key is int: 1, not a string"),
        ({"s": {"x", "y"}}, "at key 's': set"),
        ({"x": 1, "y": [[[[object]]]]}, "at key 'y[0][0][0][0]': type"),
        (float("inf"), "at key '(root)'"),
    ],
)
def test_find_bad_names_the_first_bad_value(value: object, fragment: str) -> None:
    bad = find_bad(value)
    assert bad is not None and fragment in bad, bad


def test_plain_values_and_deep_but_bounded_nesting_pass() -> None:
    assert find_bad({"ok": [1, 2.5, "s", True, None, {"k": []}]}) is None
    deep: object = 1
    for _ in range(MAX_DEPTH):
        deep = [deep]
    assert find_bad(deep) is None and find_bad({"a": deep}) is not None  # 100 levels, then 101
    bad = find_bad({"out": [deep] * 3}) or ""
    assert bad.startswith("at key 'out[0][0][0]") and "...[0]" in bad and len(bad) < 200, bad
    assert bad.endswith("nested deeper than 100 levels")


def test_encode_refuses_what_find_bad_refuses_and_writes_nothing() -> None:
    class Sub(str):
        pass

    with pytest.raises(WireError, match="at key 'v'"):
        encode({"v": Sub("x")})
    assert encode({"v": Sub("x")}, check=False)  # the app's own messages skip the walk


def test_plain_str_never_raises() -> None:
    class Sub(str):
        pass

    class Bad:
        def __str__(self) -> str:
            raise ValueError("no")

    assert type(plain_str(Sub("x"))) is str and plain_str(Sub("x")) == "x"
    assert plain_str(Bad()) == "<Bad whose str() raised ValueError>"
    assert plain_str(3) == "3"


def test_a_pickled_factory_travels_as_base64_text() -> None:
    spec = {"pickled": b"\x80\x05binary\x00"}
    wire = factory_to_wire(spec)
    assert wire == {"pickled_b64": "gAViaW5hcnkA"} and find_bad(wire) is None
    assert factory_from_wire(wire) == spec
    assert factory_from_wire(factory_to_wire({"module": "m", "function": "f"})) == {
        "module": "m",
        "function": "f",
    }


def test_frames_through_a_real_socket_pair() -> None:
    from cosmos_gradio_nb._worker.channel import Channel

    a, b = socket.socketpair()
    with a, b:
        left, right = Channel(a), Channel(b)
        big = {"type": "infer", "params": {"prompt": "x" * 3_000_000}}
        sender = threading.Thread(target=left.send, args=(big,))
        sender.start()
        assert right.recv() == big
        sender.join(5)
        left.sock.shutdown(socket.SHUT_WR)
        with pytest.raises(EOFError):
            right.recv()


def test_iso_time_writes_what_datetime_isoformat_writes() -> None:
    import datetime
    import random

    from cosmos_gradio_nb._core.outputs import iso_time

    rng = random.Random(7)
    edges = [0.0, 1.9999996, 1.0004999, 1234567890.9995, 1329922778.4289994]
    for epoch in edges + [rng.uniform(0, 2e9) for _ in range(20_000)]:
        expected = datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc).isoformat(
            timespec="milliseconds"
        )
        assert iso_time(epoch) == expected, epoch
    assert iso_time(None) is None
