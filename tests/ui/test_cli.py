"""``python -m cosmos_gradio_nb serve`` as a real subprocess: serves, then stops cleanly."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest
import requests
from ui_helpers import free_port, wait_for

REPO = Path(__file__).resolve().parents[2]


def test_serve_answers_http_and_stops_on_sigterm_with_no_worker_left(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "OUTPUT_DIR": str(tmp_path / "outputs"),
        "UPLOADS_DIR": str(tmp_path / "uploads"),
        "LOG_FILE": str(tmp_path / "outputs" / "app.log"),
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "cosmos_gradio_nb", "serve", "--port", str(port), "--num-gpus", "1"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out: list[str] = []
    reader = threading.Thread(
        target=lambda: out.extend(iter(proc.stdout.readline, "")), daemon=True
    )  # type: ignore[union-attr]
    reader.start()
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for(
            lambda: any(url in line for line in out) or proc.poll() is not None, 120, "the URL line"
        )
        assert proc.poll() is None, "".join(out)
        page = requests.get(url, timeout=10)
        assert page.status_code == 200 and "Sample video model" in page.text
        workers = psutil.Process(proc.pid).children(recursive=True)
        assert workers, "the sample model's worker must run"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, "".join(out)
        reader.join(timeout=5)
        assert "stopped" in "".join(out)
        _gone, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive, f"workers left running: {alive}"
        with pytest.raises(requests.ConnectionError):
            requests.get(url, timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_binding_beyond_loopback_without_auth_prints_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from cosmos_gradio_nb import create_gradio_UI
    from cosmos_gradio_nb._cli import main
    from cosmos_gradio_nb._core.settings import parse_auth

    monkeypatch.setenv("OUTPUT_DIR", str(tmp_path / "outputs"))
    monkeypatch.setenv("UPLOADS_DIR", str(tmp_path / "uploads"))
    monkeypatch.setenv("LOG_FILE", str(tmp_path / "outputs" / "app.log"))
    demo = create_gradio_UI(lambda params: params, header="plain")
    for kwargs, warned in (({"auth": ("u", "p")}, False), ({}, True)):
        demo.launch(
            server_name="0.0.0.0",
            server_port=free_port(),
            prevent_thread_lock=True,
            quiet=True,
            **kwargs,
        )
        try:
            err = capfd.readouterr().err
            assert ("without authentication" in err) is warned, err
        finally:
            demo.close()
    assert parse_auth("user:pa:ss") == ("user", "pa:ss")
    with pytest.raises(ValueError, match="user:password"):
        parse_auth("nocolon")
    with pytest.raises(SystemExit, match=r"COSMOS_GRADIO_AUTH.*user:password"):
        main(["serve", "--auth", "nocolon", "--port", str(free_port())])


def test_exit_with_parent_stops_serve_and_its_workers_when_the_parent_dies(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.out"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "OUTPUT_DIR": str(tmp_path / "outputs"),
        "LOG_FILE": str(tmp_path / "outputs" / "app.log"),
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    # A stand-in for jupyter-server-proxy: a parent that starts serve, then is killed -9.
    launcher = (
        "import subprocess, sys\n"
        f"out = open({str(log)!r}, 'w')\n"
        "p = subprocess.Popen([sys.executable, '-m', 'cosmos_gradio_nb', 'serve', '--port', "
        f"'{port}', '--exit-with-parent'], stdout=out, stderr=subprocess.STDOUT)\n"
        "print(p.pid, flush=True)\n"
        "p.wait()\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", launcher], cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        serve_pid = int(parent.stdout.readline())  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}/"
        wait_for(lambda: log.exists() and url in log.read_text(), 120, "serve to be up")
        serve = psutil.Process(serve_pid)
        workers = serve.children(recursive=True)
        assert workers
        parent.kill()
        parent.wait(10)
        serve.wait(timeout=30)  # not our child: psutil cannot read its exit code
        assert not serve.is_running(), log.read_text()
        _gone, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive, f"workers left running: {alive}"
        assert "stopped" in log.read_text()
    finally:
        parent.kill()
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(serve_pid)
            for proc in [*root.children(recursive=True), root]:
                proc.kill()


def test_a_busy_port_is_refused_at_once_in_one_line_naming_port(tmp_path: Path) -> None:
    import socket
    import time

    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "OUTPUT_DIR": str(tmp_path / "outputs"),
        "LOG_FILE": str(tmp_path / "outputs" / "app.log"),
    }
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        t0 = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "cosmos_gradio_nb", "serve", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        took = time.monotonic() - t0
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"--port {port}" in lines[0] and "Traceback" not in done.stderr
    assert "starting workers" not in done.stdout, "the check must come before the model loads"
    assert not (tmp_path / "outputs" / "app.log").exists(), "no worker may have started"
    assert took < 30, f"took {took:.1f} s"


def test_version_prints_the_package_version() -> None:
    import cosmos_gradio_nb

    done = subprocess.run(
        [sys.executable, "-m", "cosmos_gradio_nb", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == f"cosmos-gradio-nb {cosmos_gradio_nb.__version__}"
    assert cosmos_gradio_nb.__version__ != "0.0.0+unknown"


def test_cosmos_gradio_auth_guards_a_page_launched_without_auth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cosmos_gradio_nb import create_gradio_UI

    monkeypatch.setenv("OUTPUT_DIR", str(tmp_path / "outputs"))
    monkeypatch.setenv("UPLOADS_DIR", str(tmp_path / "uploads"))
    monkeypatch.setenv("LOG_FILE", str(tmp_path / "outputs" / "app.log"))
    monkeypatch.setenv("COSMOS_GRADIO_AUTH", "ada:s3cret")
    demo = create_gradio_UI(lambda params: params, header="guarded")
    port = free_port()
    demo.launch(server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        assert requests.get(url + "config", timeout=10).status_code == 401
        s = requests.Session()
        login = s.post(url + "login", data={"username": "ada", "password": "s3cret"}, timeout=10)
        assert login.status_code == 200
        assert s.get(url + "config", timeout=10).status_code == 200
    finally:
        demo.close()
