"""With no Ray running (this module starts none), ``backend="ray"`` starts one and stops it at close."""

from __future__ import annotations

import os
import sys


def test_with_no_ray_running_the_app_starts_one_and_stops_it_at_close(tmp_path) -> None:
    import subprocess
    import textwrap
    from pathlib import Path

    script = tmp_path / "start_ray.py"
    script.write_text(
        textwrap.dedent(f"""
        import os, sys
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        os.environ.pop("RAY_ADDRESS", None)
        sys.path.insert(0, {str(Path(__file__).resolve().parents[1] / "engine")!r})
        import ray
        from cosmos_gradio_nb import NotebookApp
        app = NotebookApp(factory_module="models", backend="ray", output_dir={str(tmp_path / "o")!r},
                          log_file={str(tmp_path / "log")!r})
        print("echo", app.infer({{"op": "echo", "value": 9}}).result(120).status["echo"])
        print("started", ray.is_initialized())
        app.close()
        print("after close", ray.is_initialized())
        """)
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=180
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "echo 9" in done.stdout and "started True" in done.stdout
    assert "after close False" in done.stdout
