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
from dataclasses import dataclass
from pathlib import Path
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
    _add_server_options(serve)
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


def _add_server_options(serve: argparse.ArgumentParser) -> None:
    """What clients (``connect()``, detached apps) need of a server: its name, its spec."""
    serve.add_argument(
        "--name",
        default=None,
        help="the server's name in RUNTIME_DIR, where connect(name=...) and "
        "NotebookApp(detach=True) find it (default: the factory; -2, -3... when a server "
        "of that name already runs)",
    )
    serve.add_argument(
        "--app-spec",
        default=None,
        metavar="FILE",
        help="used by NotebookApp(detach=True): the app's factory, validator and settings, "
        "pickled into an owner-only file (loaded once, then deleted); the server then keeps "
        "serving when the model fails to start, so the notebook reads the error",
    )


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


def _wait_ready(app: Any, stop: threading.Event, *, keep_serving: bool = False) -> int | None:
    """Wait for the workers, or for ``stop``; the exit code if the server must not go on.

    With ``keep_serving`` a model that cannot start is reported and the server goes on
    (a detached app's: its notebook reads the error through the API).
    """
    from ._core.exceptions import CosmosGradioError

    try:
        while not stop.is_set():
            try:
                app.wait_ready(0.2)
                return None
            except TimeoutError:
                continue
    except CosmosGradioError as exc:
        print(f"error: the model did not start: {exc}", file=sys.stderr, flush=True)
        return None if keep_serving else 1
    print("stopping before the workers were ready ...", flush=True)
    return 0


@dataclass
class _ServeSetup:
    """What ``serve`` starts: from the options, or from a detached app's spec file."""

    validator: Any
    factory: Any  # a callable, or "package.module:function"
    label: str
    header: str
    settings: dict[str, Any]
    app_kwargs: dict[str, Any]
    spec: dict[str, Any]
    detached: bool


def _setup(args: argparse.Namespace) -> _ServeSetup:
    """The app to serve, as the options (or ``--app-spec``) say; exits on a bad option."""
    from ._remote.spec import AppSpec, load_spec, object_label

    if args.app_spec:
        try:
            spec = load_spec(Path(args.app_spec))
        except (OSError, PermissionError, TypeError, ValueError) as exc:
            raise SystemExit(f"error: --app-spec: {exc}") from None
        factory = spec.factory if spec.factory is not None else spec.label
        return _ServeSetup(
            validator=spec.validator,
            factory=factory,
            label=spec.label,
            header=args.header or spec.name,
            settings={**spec.settings, **_settings(args)},
            app_kwargs={
                "worker_env": spec.worker_env,
                "max_queue_size": spec.max_queue_size,
                "history_size": spec.history_size,
            },
            spec=spec.fingerprint(),
            detached=True,
        )
    factory = args.factory or SAMPLE_FACTORY
    module, function = _spec(factory, "--factory")
    validator_spec = args.validator or (SAMPLE_VALIDATOR if args.factory is None else None)
    validator = _load_object(validator_spec) if validator_spec else None
    settings = _settings(args)
    header = args.header or ("Sample video model" if args.factory is None else module)
    fingerprint = AppSpec(
        name="", factory_module=module, factory_function=function, validator=validator
    ).fingerprint()
    fingerprint["validator"] = object_label(validator)
    return _ServeSetup(validator, factory, factory, header, settings, {}, fingerprint, False)


def _own_log() -> str | None:
    """The file our stdout goes to, when it is one (a detached server's log)."""
    try:
        target = os.readlink("/proc/self/fd/1")
    except OSError:
        return None
    return target if os.path.isfile(target) else None


def _server_name(args: argparse.Namespace, setup: _ServeSetup, env: Any) -> str | None:
    """The record's name: ``--name`` (refused when taken), else the factory (made unique)."""
    from ._core.runtime import find_record, runtime_dir
    from ._server.lifecycle import free_name

    folder = runtime_dir(env.runtime_dir)
    if args.name:
        running = find_record(folder, args.name)
        if running is not None:
            print(
                f"error: a server named {args.name!r} already runs (pid {running.pid}, "
                f"{running.url}): stop it, or choose another --name",
                file=sys.stderr,
                flush=True,
            )
            return None
        return str(args.name)
    return free_name(folder, setup.label)


def serve(args: argparse.Namespace, stop: threading.Event | None = None) -> int:
    """Run the server until ``stop`` is set (by SIGINT/SIGTERM when run from :func:`main`).

    The page and its API answer once the workers are ready; if they cannot start,
    the server stops with exit code 1. A detached app's server (``--app-spec``)
    answers at once instead, while the model loads (the notebook gets its app
    back), and keeps serving if the model cannot start, so that the notebook
    reads the startup error through the API.
    """
    from ._app.apps import NotebookApp
    from ._core.exceptions import CosmosGradioError
    from ._core.settings import DeploymentEnv, parse_auth

    # gradio is imported before any worker starts (seconds): once the model loads, the
    # main thread only waits, and a signal ends it at once.
    from ._page.page import create_gradio_UI  # noqa: F401
    from ._server.lifecycle import ServerRuntime  # noqa: F401

    setup = _setup(args)
    try:
        auth = parse_auth(DeploymentEnv(auth=args.auth).auth)
    except CosmosGradioError as exc:
        raise SystemExit(f"error: {exc}") from None
    stop = stop or threading.Event()
    problem = port_problem(args.host, args.port)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr, flush=True)
        return 2

    try:
        name = _server_name(args, setup, DeploymentEnv(**setup.settings).resolved())
    except CosmosGradioError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    if name is None:
        return 2
    print(f"starting workers for {setup.label} ...", flush=True)
    try:
        # Not GradioApp: its constructor would block, deaf to Ctrl-C and SIGTERM, while
        # the model loads. Here the wait is ours, and a signal ends it at once.
        app = NotebookApp(
            setup.validator,
            factory=setup.factory,
            echo_logs=not setup.detached,  # a detached server's output file is no second log
            **setup.app_kwargs,
            **setup.settings,
        )
    except CosmosGradioError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    return _run(args, setup, app, name, auth, stop)


def _run(
    args: argparse.Namespace,
    setup: _ServeSetup,
    app: Any,
    name: str,
    auth: tuple[str, str] | None,
    stop: threading.Event,
) -> int:
    """Serve ``app``'s page and API until ``stop``; then stop clients, workers, page, in order."""
    from ._page.page import create_gradio_UI
    from ._server.lifecycle import ServerRuntime

    demo = runtime = None
    code: int | None = 0
    try:
        if not setup.detached:  # the model first: a signal while it loads ends it at once
            code = _wait_ready(app, stop)
            if code is not None:
                return code
        runtime = ServerRuntime(
            app, name=name, spec=setup.spec, stop=stop, auth=auth, log=_own_log()
        )
        demo = create_gradio_UI(app.infer, header=setup.header, max_upload_mb=app.env.max_upload_mb)
        demo.launch(
            server_name=args.host,
            server_port=args.port,
            auth=auth,
            prevent_thread_lock=True,
            inbrowser=False,
            quiet=True,
            app_kwargs=runtime.app_kwargs(),
        )
        runtime.publish(args.host, args.port, os.environ.get("GRADIO_ROOT_PATH", ""))
        if setup.detached:  # the page first: the notebook gets its app back while it loads
            code = _wait_ready(app, stop, keep_serving=True)
            if code is not None:
                return code
        code = 0
        # Everything loaded so far (gradio, pydantic, the app) lives as long as the server:
        # moved out of the collector's reach, a full collection walks only what requests
        # allocate (measured: pauses of 110-190 ms every ~90 requests fell to 20-75 ms).
        gc.freeze()
        _banner(args, setup, app, name)
        while not stop.wait(1.0):  # wakes on the signal handler's set()
            pass
        print("stopping: closing the page and the workers ...", flush=True)
    finally:
        if runtime is not None:
            runtime.withdraw()  # stopping: no new client should find this server
        app.close()  # then: clients still connected read why their requests ended
        if runtime is not None:
            runtime.close()
        if demo is not None:
            demo.close()
        if code == 0:
            print("stopped", flush=True)
    return 0


def _banner(args: argparse.Namespace, setup: _ServeSetup, app: Any, name: str) -> None:
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    env = app.env
    print(
        f"\n  cosmos-gradio-nb is serving {setup.header!r}\n"
        f"  open  http://{shown}:{args.port}/\n"
        f"  workers: {env.num_gpus} ({env.num_groups} model group(s)) · outputs: "
        f"{env.output_dir} · log: {env.log_file}\n"
        f"  name: {name!r} (cosmos_gradio_nb.connect(name={name!r}) from Python)\n"
        "  press Ctrl-C to stop\n",
        flush=True,
    )


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
