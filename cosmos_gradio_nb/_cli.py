"""``cosmos-gradio-nb serve``: the standalone server (also ``python -m cosmos_gradio_nb``).

``cosmos-gradio-nb doctor [--json]`` checks this machine instead (see ``_doctor/``).

Starts a :class:`GradioApp` (blocks until the workers are ready), puts the
default page on it and serves until Ctrl-C or SIGTERM, then stops the page and
every worker. Anything not given on the command line comes from
:class:`DeploymentEnv` (``NUM_GPUS``, ``OUTPUT_DIR``...). With no ``--factory``
it serves the sample video model, which is what the README's first command runs.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

__all__ = ["main"]

SAMPLE_FACTORY = "cosmos_gradio_nb.samples.video_model:create_worker"
SAMPLE_VALIDATOR = "cosmos_gradio_nb.samples.params:SampleParams"


def _spec(value: str, what: str) -> tuple[str, str]:
    module, sep, attr = value.partition(":")
    if not sep or not module or not attr:
        raise argparse.ArgumentTypeError(f"{what} {value!r}: use 'package.module:name'")
    return module, attr


def _load_object(value: str) -> Any:
    module, attr = _spec(value, "--validator")
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as exc:
        raise SystemExit(f"error: --validator {value!r}: cannot import {module!r}: {exc}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise SystemExit(f"error: --validator {value!r}: {module!r} has no {attr!r}") from None
    return obj


def _flag(value: str) -> bool:
    low = value.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{value!r}: use 1 or 0 (true/false)")


def _add_settings(parser: argparse.ArgumentParser) -> None:
    """One option per setting of DeploymentEnv (``num_gpus`` -> ``--num-gpus``), with its help."""
    from ._core.settings import DeploymentEnv, app_settings, env_var

    for name in [*app_settings(), "auth"]:
        info = DeploymentEnv.model_fields[name]
        text = str(info.annotation)
        kind: Any = str
        if "bool" in text:
            kind = _flag
        elif "float" in text:
            kind = float
        elif "int" in text:
            kind = int
        choices = ["local", "ray"] if name == "backend" else None
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=kind,
            default=None,
            choices=choices,
            metavar=None if choices else env_var(name),
            help=f"{info.description} (env {env_var(name)})",
        )


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    from ._core.settings import app_settings

    return {name: getattr(args, name) for name in app_settings() if getattr(args, name) is not None}


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface: ``serve`` and ``doctor``."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="cosmos-gradio-nb",
        description="Serve a generative model behind the cosmos_gradio_nb web page.",
    )
    parser.add_argument("--version", action="version", version=f"cosmos-gradio-nb {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve",
        help="start the workers and the web page",
        description="Start the model workers and serve the page until Ctrl-C or SIGTERM. "
        "Every setting below also reads its environment variable; an option overrides it.",
    )
    serve.add_argument(
        "--factory",
        default=None,
        help=f"model factory 'package.module:function' (default: the sample model, {SAMPLE_FACTORY})",
    )
    serve.add_argument(
        "--validator",
        default=None,
        help="parameter validator 'package.module:name': a function dict -> dict or a pydantic "
        f"model class (default with the sample model: {SAMPLE_VALIDATOR})",
    )
    serve.add_argument("--header", default=None, help="title shown on the page")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    _add_settings(serve)
    serve.add_argument(
        "--exit-with-parent",
        action="store_true",
        help="stop cleanly when the process that started us dies (used by the JupyterLab "
        "launcher: jupyter-server-proxy does not always stop its servers)",
    )
    _add_doctor(sub)
    return parser


def _add_doctor(sub: Any) -> None:
    """The ``doctor`` command: a self-check of this machine (GPUs, workers, collectives)."""
    doctor = sub.add_parser(
        "doctor",
        help="check that workers, GPUs and torch.distributed work on this machine",
        description="Start real workers as an app would: one sample-model worker per GPU "
        "(the CUDA_VISIBLE_DEVICES it sees, the device it used), a 2-rank NCCL all-reduce "
        "with two or more GPUs, GPU memory after terminate() and close(); without a GPU, "
        "the CPU path (a sample request, terminate(), a 2-rank gloo all-reduce). Exit code "
        "0 when every check passes, 1 otherwise.",
    )
    doctor.add_argument("--json", action="store_true", help="print one JSON report")


def _run_doctor(args: argparse.Namespace) -> int:
    from ._doctor.report import main as doctor_main

    return doctor_main(as_json=args.json)


def port_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be served on, or None: checked before any worker starts.

    Binding a throw-away socket as the server would answers in microseconds, where
    the server itself would fail only after the model has loaded.
    """
    from ._core.net import bind_problem

    why = bind_problem(host, port)
    if why is None:
        return None
    if "cannot be resolved" in why:
        return f"--host {why}"
    return (
        f"--port {port} cannot be used on {host} ({why}): stop what serves there, "
        "or pick another port with --port N"
    )


def _wait_ready(app: Any, stop: threading.Event) -> int | None:
    """Wait for the workers, or for ``stop``; the exit code if the server must not go on."""
    from ._core.exceptions import CosmosGradioError

    try:
        while not stop.is_set():
            try:
                app.wait_ready(0.2)
                return None
            except TimeoutError:
                continue
    except CosmosGradioError as exc:
        app.close()
        print(f"error: the model did not start: {exc}", file=sys.stderr, flush=True)
        return 1
    print("stopping before the workers were ready ...", flush=True)
    app.close()
    print("stopped", flush=True)
    return 0


def serve(args: argparse.Namespace, stop: threading.Event | None = None) -> int:
    """Run the server until ``stop`` is set (by SIGINT/SIGTERM when run from :func:`main`)."""
    from ._app.apps import NotebookApp
    from ._core.exceptions import CosmosGradioError
    from ._core.settings import DeploymentEnv, parse_auth
    from ._page.page import create_gradio_UI

    factory = args.factory or SAMPLE_FACTORY
    module, function = _spec(factory, "--factory")
    validator_spec = args.validator or (SAMPLE_VALIDATOR if args.factory is None else None)
    validator = _load_object(validator_spec) if validator_spec else None
    try:
        auth = parse_auth(DeploymentEnv(auth=args.auth).auth)
    except CosmosGradioError as exc:
        raise SystemExit(f"error: {exc}") from None
    header = args.header or ("Sample video model" if args.factory is None else module)
    stop = stop or threading.Event()
    problem = port_problem(args.host, args.port)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr, flush=True)
        return 2

    print(f"starting workers for {module}:{function} ...", flush=True)
    try:
        # Not GradioApp: its constructor would block, deaf to Ctrl-C and SIGTERM, while
        # the model loads. Here the wait is ours, and a signal ends it at once.
        app = NotebookApp(validator, module, function, echo_logs=True, **_settings(args))
    except CosmosGradioError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    code = _wait_ready(app, stop)
    if code is not None:
        return code
    demo = None
    try:
        demo = create_gradio_UI(app.infer, header=header, max_upload_mb=app.env.max_upload_mb)
        demo.launch(
            server_name=args.host,
            server_port=args.port,
            auth=auth,
            prevent_thread_lock=True,
            inbrowser=False,
            quiet=True,
        )
        # Everything loaded so far (gradio, pydantic, the app) lives as long as the server:
        # moved out of the collector's reach, a full collection walks only what requests
        # allocate (measured: pauses of 110-190 ms every ~90 requests fell to 20-75 ms).
        gc.freeze()
        shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
        env = app.env
        print(
            f"\n  cosmos-gradio-nb is serving {header!r}\n"
            f"  open  http://{shown}:{args.port}/\n"
            f"  workers: {env.num_gpus} ({env.num_groups} model group(s)) · outputs: "
            f"{env.output_dir} · log: {env.log_file}\n"
            "  press Ctrl-C to stop\n",
            flush=True,
        )
        while not stop.wait(1.0):  # wakes on the signal handler's set()
            pass
        print("stopping: closing the page and the workers ...", flush=True)
    finally:
        if demo is not None:
            demo.close()
        app.close()
    print("stopped", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cosmos-gradio-nb`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.command == "doctor":
        return _run_doctor(args)
    if args.command != "serve":  # pragma: no cover - argparse enforces the choice
        return 2
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    if args.exit_with_parent:
        from ._worker.keeper import set_parent_death_signal

        parent = os.getppid()
        set_parent_death_signal(signal.SIGTERM)  # -> on_signal -> a clean shutdown
        if os.getppid() != parent:
            stop.set()
    try:
        return serve(args, stop)
    except KeyboardInterrupt:
        return 130
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
