"""Runtime records: how a client finds a running server, and proves it may talk to it.

Every server (``cosmos-gradio-nb serve``, and so every detached app) writes one
JSON record into ``RUNTIME_DIR`` while it runs, as Jupyter writes its
``jpserver-<pid>.json``: its name, URL, pid, factory, settings, start time,
version and a fresh access token. ``connect(name=...)`` and
``NotebookApp(detach=True)`` read it; the server removes it when it stops.

Security: the folder is made owner-only (0700) and each record is created
owner-only (0600) before the token is written into it, so no other user of the
machine can read a token (the API refuses every call without it). A record
whose process is gone (a SIGKILLed server) is *stale*: it is recognised by its
pid and the process's start time (a reused pid is another process) and removed
by the next reader.

Standard library plus psutil (a dependency) only: the client, the server and
the CLI all read these records.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = [
    "RECORD_FORMAT",
    "RuntimeRecord",
    "default_runtime_dir",
    "find_record",
    "live_records",
    "name_lock",
    "private_file_problem",
    "process_alive",
    "process_started",
    "record_path",
    "remove_record",
    "runtime_dir",
    "server_log_path",
    "write_private",
    "write_record",
]

RECORD_FORMAT = 1
_PREFIX = "server-"


@dataclass
class RuntimeRecord:
    """What a running server tells its clients (one JSON file in ``RUNTIME_DIR``)."""

    name: str
    url: str
    """Where the server answers, ``http://127.0.0.1:8080/`` (the API is under it)."""
    pid: int
    token: str
    """The access token every API call must carry (``Authorization: Bearer ...``)."""
    factory: str = ""
    """The model factory's label, ``package.module:function``."""
    spec: dict[str, Any] = field(default_factory=dict)
    """The fingerprint a detached app compares (factory, validator, settings)."""
    settings: dict[str, Any] = field(default_factory=dict)
    """The server's settings (``DeploymentEnv``, without the page's password)."""
    started_at: float = field(default_factory=time.time)
    version: str = ""
    pid_started: float | None = None
    """The process's start time (psutil), so a reused pid is not taken for the server."""
    root_path: str = ""
    """The page's root path behind jupyter-server-proxy (``/user/x/proxy/8080``), else ``""``."""
    log: str | None = None
    """The server's own output (a detached server's stdout and stderr), if it has a file."""
    hostname: str = ""
    format: int = RECORD_FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RuntimeRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def alive(self) -> bool:
        return process_alive(self.pid, self.pid_started)

    def __repr__(self) -> str:  # never the token
        return f"RuntimeRecord(name={self.name!r}, url={self.url!r}, pid={self.pid})"


# -- where ---------------------------------------------------------------------------------
def default_runtime_dir() -> Path:
    """``<Jupyter runtime folder>/cosmos_gradio_nb``, else ``$XDG_RUNTIME_DIR/cosmos_gradio_nb``,
    else ``~/.cosmos_gradio_nb/runtime`` (the folder is not created here)."""
    try:
        from jupyter_core.paths import jupyter_runtime_dir

        return Path(jupyter_runtime_dir()) / "cosmos_gradio_nb"
    except Exception:  # jupyter_core is in the notebook extra only
        pass
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg):
        return Path(xdg) / "cosmos_gradio_nb"
    return Path.home() / ".cosmos_gradio_nb" / "runtime"


def runtime_dir(setting: str | os.PathLike[str] | None = None) -> Path:
    """The records' folder (``RUNTIME_DIR`` or the default), made and kept owner-only (0700)."""
    folder = Path(setting).expanduser() if setting else default_runtime_dir()
    folder = folder.resolve()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = folder.stat()
    if st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(folder, 0o700)  # ours: nobody else lists which servers run, or their logs
    return folder


def _slug(name: str) -> str:
    """A file-name-safe form of ``name``, unique per name (a short hash keeps it so)."""
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._")[:60] or "server"
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{readable}-{digest}"


def record_path(folder: Path, name: str) -> Path:
    return folder / f"{_PREFIX}{_slug(name)}.json"


def server_log_path(log_file: Path, name: str) -> Path:
    """A detached server's own output file, next to ``LOG_FILE`` (workers' output stays there)."""
    return log_file.with_name(f"{log_file.stem}.server-{_slug(name)}.log")


# -- files ---------------------------------------------------------------------------------
def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, created 0600: no moment when others may read it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask says
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)


def private_file_problem(path: Path) -> str | None:
    """Why ``path`` is not a file only this user could have written, or None.

    Checked before a record's token is trusted or a shipped pickle is loaded.
    """
    try:
        st = path.lstat()
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    if not stat.S_ISREG(st.st_mode):
        return f"{path} is not a regular file"
    if st.st_uid != os.getuid():
        return f"{path} belongs to another user (uid {st.st_uid})"
    if st.st_mode & 0o077:
        return f"{path} is readable or writable by others (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def write_record(folder: Path, record: RuntimeRecord) -> Path:
    """Write ``record`` as ``folder/server-<name>.json`` (0600); returns its path."""
    path = record_path(folder, record.name)
    write_private(path, record.to_json().encode())
    return path


def _read(path: Path) -> RuntimeRecord | None:
    if private_file_problem(path) is not None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("pid"), int):
            return None
        return RuntimeRecord.from_dict(data)
    except (OSError, ValueError, TypeError):
        return None


# -- processes -----------------------------------------------------------------------------
def process_started(pid: int) -> float | None:
    """The start time of process ``pid`` (psutil's ``create_time``), or None if it is gone."""
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.Error, OSError):
        return None


def process_alive(pid: int, started: float | None = None) -> bool:
    """Process ``pid`` runs (not a zombie), and is the one started at ``started`` if given."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(proc.create_time() - started) < 1.0
    except (psutil.Error, OSError):
        return False


# -- reading -------------------------------------------------------------------------------
def live_records(folder: Path) -> list[RuntimeRecord]:
    """Every live server's record in ``folder``; stale ones (their process is gone) are removed."""
    out = []
    for path in sorted(folder.glob(f"{_PREFIX}*.json")):
        record = _read(path)
        if record is None:
            continue
        if record.alive:
            out.append(record)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
    return out


def find_record(folder: Path, name: str) -> RuntimeRecord | None:
    """The live server named ``name``, or None (a stale record of that name is removed)."""
    path = record_path(folder, name)
    record = _read(path)
    if record is None or record.name != name:
        return None
    if record.alive:
        return record
    with contextlib.suppress(OSError):
        path.unlink()
    return None


def remove_record(folder: Path, name: str, pid: int) -> None:
    """Remove ``name``'s record if it is still the one process ``pid`` wrote."""
    path = record_path(folder, name)
    record = _read(path)
    if record is not None and record.pid == pid:
        with contextlib.suppress(OSError):
            path.unlink()


@contextlib.contextmanager
def name_lock(folder: Path, name: str, timeout: float = 300.0) -> Iterator[None]:
    """Hold the lock of ``name`` (an flock on ``server-<name>.lock``) while checking or starting.

    Two kernels creating the same detached app at once must not start two servers:
    the second waits, then finds the first's record. Bounded by ``timeout``.
    """
    path = folder / f"{_PREFIX}{_slug(name)}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"another process has been starting the server {name!r} for "
                        f"{timeout:.0f} s (lock {path})"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock
