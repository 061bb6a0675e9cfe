"""The worker process: build the model once, then serve requests from the parent.

:func:`serve` is a plain function over a connection and a model, so tests drive
it in-process with fakes; :func:`main` is the process entry point
(``python -m cosmos_gradio_nb._worker --fd N --parent PID``), started by the pool
in a fresh interpreter (spawn semantics: nothing is inherited but what the
parent sends).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pickle
import sys
import threading
import time
import traceback
from typing import Any, Protocol

from .._core.outputs import base_status, finish_status, write_status
from .._core.protocol import FactorySpec, InferMsg, InitMsg
from . import progress as _progress
from .keeper import start_keeper

__all__ = ["Model", "build_model", "main", "serve"]


class Model(Protocol):
    """What a factory must return: an object with ``infer(args) -> dict | None``."""

    def infer(self, args: dict[str, Any]) -> dict[str, Any] | None: ...


class Connection(Protocol):
    """The subset of ``multiprocessing.connection.Connection`` the loop uses."""

    def send(self, obj: Any) -> None: ...

    def recv(self) -> Any: ...


def build_model(spec: FactorySpec) -> Model:
    """Import (or unpickle) the factory and call it."""
    if "pickled" in spec:
        factory = pickle.loads(spec["pickled"])
    else:
        module = importlib.import_module(spec["module"])
        try:
            factory = getattr(module, spec["function"])
        except AttributeError:
            raise AttributeError(
                f"module {spec['module']!r} has no factory function {spec['function']!r}"
            ) from None
    model = factory()
    if not callable(getattr(model, "infer", None)):
        raise TypeError(
            f"the factory returned {type(model).__name__}, which has no infer(args) method"
        )
    return model  # type: ignore[no-any-return]


def _error_fields(exc: BaseException) -> dict[str, str]:
    return {
        "error_type": type(exc).__name__,
        "message": str(exc) or type(exc).__name__,
        "traceback": "".join(traceback.format_exception(exc)),
    }


def _flush_std() -> None:
    # The parent reads stdout/stderr from a pipe; flushing before each reply
    # makes the request's printed lines arrive before its result.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def run_request(
    conn: Connection, model: Model, msg: InferMsg, *, rank: int, group: int, model_name: str
) -> None:
    """Run one request and send its ``done`` or ``error`` reply.

    Rank 0 creates the request folder, reports progress, collects the files and
    writes ``status.json``; other ranks only compute.
    """
    lead = rank == 0
    send_lock = threading.Lock()
    request_id = msg["id"]
    status: dict[str, Any] | None = None
    if lead:
        try:
            os.mkdir(msg["output_dir"])
        except FileExistsError:
            pass
        except FileNotFoundError:
            os.makedirs(msg["output_dir"], exist_ok=True)
        status = base_status(
            request_id=request_id,
            model_name=model_name,
            params=msg["params"],
            output_dir=msg["output_dir"],
            queued_at=msg["queued_at"],
            started_at=msg["started_at"],
            group=group,
        )

        def reporter(fraction: float | None, message: str) -> None:
            with send_lock:
                conn.send(
                    {"type": "progress", "id": request_id, "fraction": fraction, "message": message}
                )

        _progress.set_reporter(reporter)
    try:
        returned = model.infer(dict(msg["params"]))
        check_returned(returned)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        fields = _error_fields(exc)
        if isinstance(exc, SystemExit):  # argparse in infer, say: report it, keep serving
            fields["message"] = f"the model called sys.exit({exc.code!r}) inside infer()"
        if status is not None:
            error = {"type": fields["error_type"], "message": fields["message"]}
            error["traceback"] = fields["traceback"]
            write_status(msg["output_dir"], finish_status(status, "failed", error=error))
        _flush_std()
        with send_lock:
            conn.send({"type": "error", "id": request_id, "rank": rank, **fields})
        return
    finally:
        if lead:
            _progress.set_reporter(None)
    if status is not None:
        finish_status(status, "succeeded", returned=returned or {})
        write_status(msg["output_dir"], status)
    _flush_std()
    with send_lock:
        conn.send({"type": "done", "id": request_id, "status": status})


def check_returned(returned: object) -> None:
    """Refuse a return value that status.json (strict JSON) could not hold, naming the key."""
    if returned is None:
        return
    if not isinstance(returned, dict):
        raise TypeError(f"infer() returned {type(returned).__name__}; return a dict or None")
    try:
        json.dumps(returned, allow_nan=False)
        return
    except (TypeError, ValueError, RecursionError):
        pass
    from .._core.validation import find_unserializable

    bad = find_unserializable(returned)
    where, value = bad if bad is not None else ("(root)", returned)
    raise TypeError(
        f"infer() returned a value that JSON cannot hold at key {where!r} "
        f"({type(value).__name__}: {value!r:.80}); return numbers, strings, booleans, "
        "lists and dicts (NaN and Infinity are not JSON)"
    )


def serve(
    conn: Connection, model: Model, *, rank: int = 0, group: int = 0, model_name: str = ""
) -> None:
    """Serve requests until the parent says ``shutdown`` or goes away (EOF)."""
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        kind = msg.get("type")
        if kind == "infer":
            run_request(conn, model, msg, rank=rank, group=group, model_name=model_name)
        elif kind == "shutdown":
            return
        else:
            print(f"cosmos_gradio_nb worker: ignoring unknown message {kind!r}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(prog="cosmos_gradio_nb._worker")
    args.add_argument("--fd", type=int, required=True, help="the control socket's descriptor")
    args.add_argument("--parent", type=int, required=True, help="the parent's pid")
    args.add_argument("--report", type=int, default=None, help="the keeper's exit-report pipe")
    ns = args.parse_args(argv)
    # First thing, before the model is imported: fork; this process stays above the
    # worker as its keeper (see keeper.py) and only the child returns here.
    start_keeper(ns.parent, (ns.fd,), ns.report)

    from multiprocessing.connection import Connection as MpConnection

    conn = MpConnection(ns.fd)
    # The parent knows the keeper's pid; this is the model's (what nvidia-smi will show).
    conn.send({"type": "started", "pid": os.getpid()})
    init: InitMsg = conn.recv()
    for entry in reversed(init["sys_path"]):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    _progress.install_tqdm_hook()
    started = time.monotonic()
    try:
        model = build_model(init["factory"])
    except BaseException as exc:
        traceback.print_exc()
        _flush_std()
        conn.send({"type": "startup_error", **_error_fields(exc)})
        return 1
    _flush_std()
    conn.send({"type": "ready", "pid": os.getpid(), "startup_seconds": time.monotonic() - started})
    serve(
        conn,
        model,
        rank=init["rank"],
        group=init["group"],
        model_name=os.environ.get("MODEL_NAME", ""),
    )
    close = getattr(model, "close", None)
    if callable(close):
        close()
    _flush_std()
    return 0
