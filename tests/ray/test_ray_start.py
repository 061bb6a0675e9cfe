"""Which Ray the app uses: its own private one unless told to join one (this module's Rays only).

The apps run in subprocesses (a process holds one Ray connection). The "other"
Ray, standing for another user's or another notebook's on a shared node, is a
real ``ray start --head`` with its own ``RAY_TMPDIR``: there it records its
address as the latest cluster of the machine, exactly what ``ray.init()`` and
``address="auto"`` look for, without touching the ``/tmp/ray`` of any other Ray
running here. Nothing outside this module's process trees is stopped.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from enginetest import wait_for

ENGINE_TESTS = str(Path(__file__).resolve().parents[1] / "engine")
REPO = str(Path(__file__).resolve().parents[2])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _environment(tmpdir: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_TMPDIR=tmpdir, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    env.update(RAY_USAGE_STATS_ENABLED="0")
    env["PYTHONPATH"] = os.pathsep.join([REPO, env.get("PYTHONPATH", "")])
    return env


def _run_app(tmp_path: Path, env: dict[str, str], **kwargs: object) -> dict[str, str]:
    """Start a NotebookApp on the Ray backend in a subprocess, run a request, close it."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {ENGINE_TESTS!r})
        import ray
        from cosmos_gradio_nb import NotebookApp
        app = NotebookApp(factory_module="models", backend="ray", output_dir={str(tmp_path / "o")!r},
                          log_file={str(tmp_path / "log")!r}, **{kwargs!r})
        print("echo=", app.infer({{"op": "echo", "value": 9}}).result(120).status["echo"])
        print("gcs=", ray.get_runtime_context().gcs_address)
        app.close()
        print("after close=", ray.is_initialized())
        """)
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=240
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return dict(line.split("= ", 1) for line in done.stdout.splitlines() if "= " in line)


def _serve(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "cosmos_gradio_nb", "serve", "--port", str(_free_port())]
    return subprocess.run(
        [*cmd, "--backend", "ray", *args], capture_output=True, text=True, env=env, timeout=120
    )


@pytest.fixture()
def ray_tmpdir() -> Iterator[str]:
    """A RAY_TMPDIR of the test's own, short: Ray's socket paths live there (107 bytes at most)."""
    path = tempfile.mkdtemp(prefix="cgr", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _raylets() -> list[int]:
    found = []
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == "raylet":
            found.append(proc.pid)
    return found


def test_ray_address_auto_with_no_cluster_is_one_line_and_exit_code_2(ray_tmpdir) -> None:
    # Runs before this module starts its other Ray. "auto" also joins any Ray found
    # running on the machine: another engineer's, on a shared development machine.
    # (A Ray of an earlier test module may still be exiting.)
    try:
        wait_for(lambda: not _raylets(), timeout=30)
    except AssertionError:
        pytest.fail("another Ray runs on this machine, which 'auto' would join: rerun alone")
    env = _environment(ray_tmpdir)
    done = _serve(env, "--ray-address", "auto")
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stdout + done.stderr
    assert errors == [
        "error: RAY_ADDRESS='auto' but no running Ray cluster was found on this machine: start "
        "one (ray start --head), give its address, or leave RAY_ADDRESS unset for a private "
        "local Ray"
    ], done.stderr
    # An address where nothing listens: the same, in seconds (Ray alone retries for minutes).
    nobody = f"127.0.0.1:{_free_port()}"
    done = _serve(env, "--ray-address", nobody)
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stdout + done.stderr
    assert len(errors) == 1 and errors[0].startswith(
        f"error: cannot reach the Ray cluster at RAY_ADDRESS='{nobody}' (Connection refused)"
    ), done.stderr


def test_with_no_ray_running_the_app_starts_one_and_stops_it_at_close(tmp_path, ray_tmpdir) -> None:
    out = _run_app(tmp_path, _environment(ray_tmpdir))
    assert out["echo"] == "9" and out["after close"] == "False"


@pytest.fixture(scope="module")
def other_ray() -> Iterator[tuple[str, str]]:
    """A running Ray (``ray start --head --block``): its address and its RAY_TMPDIR."""
    tmpdir = tempfile.mkdtemp(prefix="cgr", dir="/tmp")  # short: Ray's socket paths live here
    ray_cli = str(Path(sys.executable).parent / "ray")
    cmd = [ray_cli, "start", "--head", f"--port={_free_port()}", "--num-cpus=2", "--block"]
    cmd += ["--include-dashboard=false", "--disable-usage-stats"]
    proc = subprocess.Popen(
        cmd,
        env=_environment(tmpdir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    recorded = Path(tmpdir) / "ray" / "ray_current_cluster"
    tree: list[psutil.Process] = []
    try:
        wait_for(lambda: recorded.is_file() and recorded.read_text().strip(), timeout=120)
        wait_for(lambda: len(psutil.Process(proc.pid).children(recursive=True)) >= 2, 60)
        tree = psutil.Process(proc.pid).children(recursive=True)
        yield recorded.read_text().strip(), tmpdir
    finally:
        tree += psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []
        proc.send_signal(signal.SIGTERM)  # ray start --block stops what it started
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        for p in tree:  # and whatever it left behind, by pid
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        shutil.rmtree(tmpdir, ignore_errors=True)


def test_without_an_address_the_app_starts_a_private_ray_and_joins_none(
    other_ray, tmp_path
) -> None:
    address, tmpdir = other_ray
    out = _run_app(tmp_path, _environment(tmpdir))
    assert out["echo"] == "9"
    assert out["gcs"] != address  # not the Ray that runs on the machine
    assert out["after close"] == "False"  # its own: shut down by close()


def test_with_auto_or_an_address_the_app_joins_the_running_cluster(other_ray, tmp_path) -> None:
    address, tmpdir = other_ray
    out = _run_app(tmp_path / "auto", _environment(tmpdir), ray_address="auto")
    assert out["echo"] == "9" and out["gcs"] == address
    assert out["after close"] == "True"  # joined, not started: close() leaves it running
    # Ray's token authentication: "auto" takes this user's token by itself; with an explicit
    # address Ray asks for RAY_AUTH_MODE=token (the token is the same file, ~/.ray/auth_token).
    env = {**_environment(tempfile.gettempdir()), "RAY_ADDRESS": address, "RAY_AUTH_MODE": "token"}
    out = _run_app(tmp_path / "env", env)  # RAY_ADDRESS alone
    assert out["echo"] == "9" and out["gcs"] == address
