"""Request ids and folder names: drawn in batches for speed, never repeated, never shared."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from cosmos_gradio_nb._core import outputs
from cosmos_gradio_nb._core.history import _RUN_NAME


def test_ids_are_12_hex_digits_and_never_repeat() -> None:
    ids = [outputs.new_request_id() for _ in range(20_000)]  # ~80 batches
    assert all(re.fullmatch(r"[0-9a-f]{12}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_a_forked_child_does_not_reuse_its_parents_batch() -> None:
    outputs.new_request_id()  # a batch is drawn and held
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, then out at once
        os.close(read)
        os.write(write, " ".join(outputs.new_request_id() for _ in range(5)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        child = f.read().split()
    os.waitpid(pid, 0)
    parent = [outputs.new_request_id() for _ in range(5)]
    assert len(child) == 5 and not set(child) & set(parent)


def test_folder_names_sort_by_time_and_match_what_history_reads() -> None:
    before = time.strftime("%Y%m%d-%H%M%S")
    name = outputs.folder_name("0123456789ab")
    after = time.strftime("%Y%m%d-%H%M%S")
    assert before <= name[:15] <= after and name.endswith("_0123456789ab")
    assert _RUN_NAME.match(name)  # what the History tab and load_results read
    fixed = outputs.request_folder(Path("/out"), "0123456789ab", now=0.0)
    assert fixed.name == time.strftime("%Y%m%d-%H%M%S", time.localtime(0.0)) + "_0123456789ab"
