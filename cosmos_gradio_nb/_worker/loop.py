"""The worker process: build the model once, then serve requests from the parent.

:func:`serve` is a plain function over a connection and a model, so tests drive
it in-process with fakes; :func:`main` is the process entry point
(``python -m cosmos_gradio_nb._worker --fd N --parent PID``), started by the pool
in a fresh interpreter (spawn semantics: nothing is inherited but what the
parent sends).

``infer`` runs on the main thread; a control thread (``control.py``) reads the
connection meanwhile, for stops and health pings. Every reply is checked to be
strict JSON before it is sent (``_core/wire.py``): a value the wire cannot carry
fails that request with a message naming its key, and the worker stays loaded.
The worker never writes ``status.json``: rank 0's ``done`` carries what the app
needs to write it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pickle
import socket
import sys
import time
import traceback
from typing import Any, Protocol

from .._core.outputs import collect_files
from .._core.protocol import FactorySpec, InferMsg, InitMsg, factory_from_wire
from .._core.wire import WireError, find_bad, plain_str
from . import progress as _progress
from .channel import Channel
from .control import Connection, Control
from .keeper import start_keeper
from .oom import oom_message

__all__ = ["Model", "build_model", "main", "run_request", "serve"]

channel: Channel | None = None
"""This process's connection to the app, once :func:`main` made it (tests reach it)."""


class Model(Protocol):
    """What a factory must return: an object with ``infer(args) -> dict | None``."""

    def infer(self, args: dict[str, Any]) -> dict[str, Any] | None: ...


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
    """Type, one-line-first message and traceback of ``exc``, whatever its ``__str__`` does."""
    message = plain_str(exc) or type(exc).__name__
    if isinstance(exc, SystemExit):  # argparse in infer, say: report it, keep serving
        message = f"the model called sys.exit({plain_str(repr(exc.code))}) inside infer()"
    try:
        message = oom_message(exc) or message
    except Exception:
        pass
    try:
        trace = "".join(traceback.format_exception(exc))
    except BaseException as err:
        trace = f"(the traceback could not be formatted: {type(err).__name__})"
    return {"error_type": plain_str(type(exc).__name__), "message": message, "traceback": trace}


def _flush_std() -> None:
    # The parent reads stdout/stderr from a pipe; flushing before each reply
    # makes the request's printed lines arrive before its result.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def _returned_error(returned: object) -> str | None:
    """Why ``infer``'s return value cannot be recorded, or None."""
    if returned is not None and type(returned) is not dict:
        kind = type(returned).__name__
        return f"infer() returned {kind}; return a dict or None"
    bad = find_bad(returned)
    if bad is None:
        return None
    return (
        f"infer() returned a value strict JSON cannot hold {bad}; return plain numbers, "
        "strings, booleans, lists and dicts with string keys (NaN and Infinity are not JSON)"
    )


def _send_reply(conn: Connection, reply: dict[str, Any]) -> None:
    """Send ``reply``; if the wire refuses it, send an error reply saying why instead."""
    try:
        conn.send(reply)
    except WireError as exc:
        message = f"the reply of request {reply.get('id')} could not be sent: {exc}"
        error = {"type": "error", "id": reply.get("id"), "rank": reply.get("rank", 0)}
        conn.send({**error, "error_type": "WireError", "message": message, "traceback": ""})


def run_request(
    conn: Connection, model: Model, msg: InferMsg, *, rank: int, control: Control
) -> None:
    """Run one request and send its ``done``, ``error`` or ``stopped`` reply.

    Rank 0 makes the request folder, reports progress and lists the files the
    request made; other ranks only compute.
    """
    lead = rank == 0
    request_id = str(msg["id"])
    folder = str(msg["output_dir"])
    stop = control.begin(request_id)
    base: dict[str, Any] = {"id": request_id, "rank": rank}
    if lead:
        _progress.begin_request(request_id, stop, folder=folder, send=conn.send)
    else:
        _progress.begin_request(request_id, stop)
    try:
        try:
            if lead:
                os.makedirs(folder, exist_ok=True)  # a failure here fails the request, not us
            returned = model.infer(dict(msg["params"]))
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            if stop.is_set():
                reply = {"type": "stopped", **base, "how": f"raised {type(exc).__name__}"}
            else:
                reply = {"type": "error", **base, **_error_fields(exc)}
        else:
            finished = time.time()
            problem = None if stop.is_set() else _returned_error(returned)
            if stop.is_set():
                reply = {"type": "stopped", **base, "how": "returned"}
            elif problem is not None:
                reply = {"type": "error", **base, "error_type": "TypeError", "message": problem}
                reply["traceback"] = ""
            elif lead:
                out = returned or {}
                reply = {"type": "done", **base, "returned": out, "finished_at": finished}
                reply["files"] = collect_files(folder, out)
            else:
                reply = {"type": "done", **base}
    finally:
        _progress.end_request()
        control.end()
    _flush_std()
    _send_reply(conn, reply)


def serve(conn: Connection, model: Model, *, rank: int = 0) -> None:
    """Serve requests until the parent says ``shutdown`` or goes away (EOF)."""
    control = Control(conn, rank)
    control.start()
    while True:
        msg = control.next_message()
        if msg is None or msg.get("type") == "shutdown":
            return
        run_request(conn, model, msg, rank=rank, control=control)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    global channel
    args = argparse.ArgumentParser(prog="cosmos_gradio_nb._worker")
    args.add_argument("--fd", type=int, required=True, help="the control socket's descriptor")
    args.add_argument("--parent", type=int, required=True, help="the parent's pid")
    args.add_argument("--report", type=int, default=None, help="the keeper's exit-report pipe")
    ns = args.parse_args(argv)
    # First thing, before the model is imported: fork; this process stays above the
    # worker as its keeper (see keeper.py) and only the child returns here.
    start_keeper(ns.parent, (ns.fd,), ns.report)

    conn = channel = Channel(socket.socket(fileno=ns.fd))
    # Every message this loop sends is built of plain values (what infer returned is checked by
    # _returned_error, text goes through plain_str): no second walk over each one.
    conn.check = False
    # The parent knows the keeper's pid; this is the model's (what nvidia-smi will show).
    conn.send({"type": "started", "pid": os.getpid()})
    init: InitMsg = conn.recv()  # type: ignore[assignment]
    for entry in reversed(init["sys_path"]):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    _progress.install_tqdm_hook()
    started = time.monotonic()
    try:
        model = build_model(factory_from_wire(init["factory"]))
    except BaseException as exc:
        traceback.print_exc()
        _flush_std()
        conn.send({"type": "startup_error", **_error_fields(exc)})
        return 1
    _flush_std()
    conn.send({"type": "ready", "pid": os.getpid(), "startup_seconds": time.monotonic() - started})
    serve(conn, model, rank=init["rank"])
    close = getattr(model, "close", None)
    if callable(close):
        close()
    _flush_std()
    return 0
