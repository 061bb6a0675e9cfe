"""``NotebookApp(..., detach=True)``: the model in a server of its own, that outlives the kernel.

Under the name's lock (two kernels never start two servers of one name):

1. A live server of that name whose fingerprint (factory, validator, settings:
   ``spec.py``) matches is *reused*: connecting takes about a second, and no
   model is loaded again. This is what a re-run cell after a kernel restart does.
2. One that differs is reported in one message listing each difference, and
   replaced only with ``replace=True`` (it is shut down, then a new one starts).
   A server whose model failed to start holds nothing worth keeping: it is
   replaced without asking.
3. Otherwise a server is started: ``python -m cosmos_gradio_nb serve --app-spec
   FILE ...`` in a session of its own (``start_new_session``, no parent-death
   signal: a kernel restart, which kills the kernel's process group, does not
   reach it), its output appended to a file next to ``LOG_FILE``. It gets the
   kernel's ``sys.path`` (so it imports what the notebook could) and, behind
   jupyter-server-proxy, the root path its page needs there. The app is returned
   as soon as the server answers; the model loads meanwhile (``wait_ready``).

The server stops on ``app.shutdown()``, SIGTERM, or after ``IDLE_TIMEOUT``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .._core import rich
from .._core.exceptions import CosmosGradioError
from .._core.net import free_port
from .._core.runtime import (
    find_record,
    name_lock,
    process_alive,
    runtime_dir,
    server_log_path,
)
from .app import RemoteApp
from .connect import open_record
from .spec import AppSpec, describe_differences, write_spec

__all__ = ["START_TIMEOUT", "open_detached"]

START_TIMEOUT = 180.0  # seconds for a new server to answer (gradio's import, not the model)
PORT_TRIES = 3  # a port taken between choosing and binding: try another


def open_detached(spec: AppSpec, env: Any, *, replace: bool = False) -> RemoteApp:
    """The app ``spec`` describes, in its server: reused, replaced or started (module doc)."""
    folder = runtime_dir(env.runtime_dir)
    with name_lock(folder, spec.name):
        app = _reuse_or_start(folder, spec, env, replace)
    app._replaces_earlier()
    return app


def _reuse_or_start(folder: Path, spec: AppSpec, env: Any, replace: bool) -> RemoteApp:
    """Under the name's lock: the running server if it fits, else a new one (module doc)."""
    record = find_record(folder, spec.name)
    if record is None:
        return _start(folder, spec, env)
    try:
        app = open_record(record, record.url, history_size=spec.history_size)
    except CosmosGradioError as exc:  # its process runs, but it does not answer
        if not replace:
            raise CosmosGradioError(
                f"{exc}; its process still runs (pid {record.pid}): pass replace=True to stop "
                "it and start anew"
            ) from None
        _stop_unanswering(record)
        return _start(folder, spec, env)
    if app._link.state.get("closed"):  # it is stopping: wait for it, then start anew
        app.shutdown()
        return _start(folder, spec, env)
    differences = describe_differences(record.spec, spec.fingerprint())
    if not differences:
        return app
    broken = bool(app._link.state.get("startup_error"))
    if not (replace or broken):
        app.close()
        raise CosmosGradioError(
            f"a server named {spec.name!r} runs ({record.url}, pid {record.pid}) "
            f"with another model or settings: {'; '.join(differences)}. Pass "
            "replace=True to stop it and start this one, another name= to run both, "
            f"or cosmos_gradio_nb.connect(name={spec.name!r}) to use it as it is"
        )
    app.shutdown()
    return _start(folder, spec, env)


def _stop_unanswering(record: Any, grace: float = 30.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` s, the recorded process of a server that is stuck
    (the record's pid and start time say it is that server; its workers die with it)."""
    import signal

    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not process_alive(record.pid, record.pid_started):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, sig)
            os.kill(record.pid, signal.SIGCONT)  # a stopped process handles SIGTERM only then
        deadline = time.monotonic() + grace
        while process_alive(record.pid, record.pid_started) and time.monotonic() < deadline:
            time.sleep(0.05)


def _child_env(env: Any, port: int) -> dict[str, str]:
    """The kernel's environment, its ``sys.path``, and the page's root path behind a proxy."""
    child = dict(os.environ)
    paths = [p for p in sys.path if p and os.path.isdir(p)]
    if child.get("PYTHONPATH"):
        paths.append(child["PYTHONPATH"])
    child["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    root = rich.page_root_path(port)
    if root:
        child["GRADIO_ROOT_PATH"] = root
    else:
        child.pop("GRADIO_ROOT_PATH", None)
    child.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    return child


def _start(folder: Path, spec: AppSpec, env: Any) -> RemoteApp:
    log_path = server_log_path(Path(env.log_file), spec.name)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(PORT_TRIES):
        port = free_port("127.0.0.1")
        spec_file = write_spec(folder, spec)
        command = [
            sys.executable, "-m", "cosmos_gradio_nb", "serve",
            "--host", "127.0.0.1", "--port", str(port),
            "--name", spec.name, "--app-spec", str(spec_file),
        ]  # fmt: skip
        with open(log_path, "ab") as log:
            log.write(
                f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {spec.name!r}\n".encode()
            )
            log.flush()
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_child_env(env, port),
                cwd=os.getcwd(),
                start_new_session=True,  # not in the kernel's process group or session
                close_fds=True,
            )
        try:
            record = _wait_for_record(folder, spec.name, process, log_path)
        except BaseException as exc:
            spec_file.unlink(missing_ok=True)  # the server loads and deletes it; it never did
            if not isinstance(exc, _PortTaken):
                raise
            if attempt + 1 == PORT_TRIES:
                raise CosmosGradioError(
                    f"could not start the server {spec.name!r}: no free port after "
                    f"{PORT_TRIES} tries (see {log_path})"
                ) from None
            continue
        return open_record(record, record.url, history_size=spec.history_size, process=process)
    raise AssertionError("unreachable")  # pragma: no cover


class _PortTaken(Exception):
    pass


def _wait_for_record(folder: Path, name: str, process: Any, log_path: Path) -> Any:
    """Wait until the server's record appears (it answers), or it exits (then say why)."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        record = find_record(folder, name)
        if record is not None and record.pid == process.pid:
            return record
        code = process.poll()
        if code is not None:
            tail = _tail_text(log_path)
            if code == 2 and "cannot be used on" in tail:
                raise _PortTaken()
            raise CosmosGradioError(
                f"the server {name!r} exited while starting (exit code {code}); its last "
                f"lines ({log_path}):\n{tail}"
            )
        if time.monotonic() > deadline:
            process.terminate()
            raise CosmosGradioError(
                f"the server {name!r} did not answer within {START_TIMEOUT:.0f} s "
                f"(stopped it); its last lines ({log_path}):\n{_tail_text(log_path)}"
            )
        time.sleep(0.05)


def _tail_text(path: Path, lines: int = 25) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 16384))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])
