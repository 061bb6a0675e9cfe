"""The public apps: ``NotebookApp`` (returns at once, futures) and ``GradioApp`` (the seed's, blocking)."""

from __future__ import annotations

import abc
import inspect
import logging
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal, cast

from .._core import rich
from .._core.exceptions import ValidationError
from .._core.provenance import provenance
from .._core.public import public
from .._core.result import InferenceResult
from .._core.settings import DeploymentEnv, app_settings
from .._core.validation import app_asset_dirs, check_json, make_validator, pydantic_model_of
from .._engine import tracking as _tracking
from .._engine.config import EngineConfig
from .._engine.future import InferenceFuture, attach_progress_bar
from .._engine.pool import WorkerPool
from .._engine.request import RequestInfo, WorkerInfo, new_request
from .._remote.app import RemoteApp
from .arguments import check_arguments, constructor_signature, parameters_doc
from .compose import backend_factory, factory_spec, normalize_factory, resolve_env

__all__ = ["GradioApp", "NotebookApp", "WorkerInfo"]

logger = logging.getLogger("cosmos_gradio_nb")

# NotebookApps by name, so re-running a cell replaces the old app instead of piling up workers.
_named_apps: dict[str, weakref.ref[NotebookApp]] = {}
_named_lock = threading.Lock()


class _BaseApp:
    """What both apps share: settings, validation, the worker pool and the history.

    The constructor's parameters are documented on the public classes
    (:func:`~.arguments.parameters_doc`).
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        check_arguments(cls, args, kwargs)  # a wrong keyword named on the public class
        return super().__new__(cls)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # inspect.signature(App) and help(App) show __init__'s parameters, not __new__'s.
        cls.__signature__ = constructor_signature(cls.__init__)  # type: ignore[attr-defined]

    def __init__(
        self,
        validator: Any = None,
        factory_module: str | None = None,
        factory_function: str | None = "create_worker",
        *,
        factory: Callable[[], Any] | str | None = None,
        name: str | None = None,
        env: DeploymentEnv | None = None,
        model_name: str | None = None,
        num_gpus: int | None = None,
        gpus_per_model: int | None = None,
        checkpoint_dir: str | Path | None = None,
        worker_timeout: float | None = None,
        startup_timeout: float | None = None,
        stop_grace: float | None = None,
        health_interval: float | None = None,
        health_timeout: float | None = None,
        backend: Literal["local", "ray"] | None = None,
        ray_address: str | None = None,
        shared_output_dir: bool | None = None,
        placement_timeout: float | None = None,
        output_dir: str | Path | None = None,
        uploads_dir: str | Path | None = None,
        asset_dirs: list[str | Path] | str | None = None,
        log_file: str | Path | None = None,
        log_max_mb: float | None = None,
        log_backups: int | None = None,
        max_upload_mb: float | None = None,
        max_request_kb: float | None = None,
        upload_cache_max_age: float | None = None,
        upload_cache_max_mb: float | None = None,
        runtime_dir: str | Path | None = None,
        idle_timeout: float | None = None,
        trash_retention_days: float | None = None,
        max_queue_size: int | None = None,
        worker_env: dict[str, str] | None = None,
        echo_logs: bool = False,
        history_size: int = 1000,
        detach: bool = False,
        replace: bool = False,
    ) -> None:
        given = locals()
        _check_detach(type(self), detach, replace)
        settings = {k: given[k] for k in app_settings() if given[k] is not None}
        # Everything that can be wrong is checked before anything is started or replaced.
        spec, label = factory_spec(factory, factory_module, factory_function)
        self.name = name or label
        self.env = resolve_env(env, settings)
        if max_queue_size is not None and max_queue_size < 1:
            raise ValueError(f"max_queue_size must be at least 1 (got {max_queue_size})")
        self.validator = validator
        self._validate = make_validator(validator)
        self._history: deque[InferenceFuture] = deque(maxlen=history_size)
        make_backend = backend_factory(self.env)
        # The engine gets only the settings it uses, as plain values.
        config = EngineConfig(
            factory=spec,
            num_groups=self.env.num_groups,
            group_size=self.env.group_size,
            model_name=self.env.model_name,
            log_file=self.env.log_file,
            log_max_bytes=int(self.env.log_max_mb * 1024 * 1024),
            log_backups=self.env.log_backups,
            startup_timeout=self.env.startup_timeout,
            worker_env={**self.env.worker_environment(), **(worker_env or {})},  # the user's win
            max_queue_size=max_queue_size,
            echo_logs=echo_logs,
            stop_grace=self.env.stop_grace,
            health_interval=self.env.health_interval,
            health_timeout=self.env.health_timeout,
            status_extra={"provenance": provenance(label, validator)},
        )
        self._pool = WorkerPool(config, make_backend)
        # Closes the workers when the app is garbage-collected or the interpreter exits.
        self._finalizer = weakref.finalize(self, self._pool.close)
        self._before_start()  # only now: everything that could be refused has been checked
        self._pool.start()
        self._after_start()

    def _before_start(self) -> None:
        """Called once the arguments are checked, before any worker starts."""

    def _after_start(self) -> None:
        """Called once the workers are starting."""

    # ------------------------------------------------------------------ validation
    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        """Validate ``params`` as ``submit`` would, without queueing anything.

        ``output_dir`` is dropped (the app sets it per request). Raises
        :class:`ValidationError` with a message naming the offending key.
        """
        if not isinstance(params, dict):
            raise ValidationError(
                f"parameters must be a JSON object (dict), got {type(params).__name__}"
            )
        validated = {k: v for k, v in params.items() if k != "output_dir"}
        if self.validator is not None:  # (none: nothing runs that could check an asset path)
            with app_asset_dirs([self.env.uploads_dir, self.env.output_dir, *self.env.asset_dirs]):
                validated = dict(self._validate(validated))
            validated.pop("output_dir", None)
        check_json(validated)
        return validated

    @property
    def default_request(self) -> dict[str, Any] | None:
        """The validator's pydantic defaults as a request, or None."""
        model = pydantic_model_of(self.validator)
        if model is None:
            return None
        try:
            defaults = dict(model().model_dump(mode="json"))
        except Exception:  # required fields: no complete default
            return None
        defaults.pop("output_dir", None)
        return defaults

    @property
    def params_schema(self) -> dict[str, Any] | None:
        """The validator's JSON schema (field descriptions are the UI's help), or None."""
        model = pydantic_model_of(self.validator)
        return None if model is None else dict(model.model_json_schema())

    # ------------------------------------------------------------------ requests
    def _make_request(
        self, validated: dict[str, Any], timeout: float | None, source: str | None = None
    ) -> InferenceFuture:
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds (got {timeout!r})")
        limit = self.env.worker_timeout if timeout is None else timeout
        source = source or _tracking.request_source.get()
        return new_request(self._pool, validated, self.env.output_dir, limit, source=source).future

    def submit(
        self,
        params: dict[str, Any],
        *,
        timeout: float | None = None,
        source: str | None = None,
    ) -> InferenceFuture:
        """Validate and queue one request; return its future at once.

        Parameters
        ----------
        params:
            JSON-serializable parameters for the model's ``infer``.
        timeout:
            Seconds the request may run once started (default ``WORKER_TIMEOUT``);
            past it the request fails with InferenceTimeoutError and its group restarts.
        source:
            Who submits it, recorded in its status.json and in :meth:`requests`:
            ``"python"`` (the default), ``"page"`` or ``"api"``.

        Raises
        ------
        ValidationError, QueueFullError, AppClosedError, WorkerStartupError
        """
        future = self._make_request(self.validate(params), timeout, source)
        self._pool.submit(future._request)
        self._history.append(future)
        _tracking.register(future)  # the page follows it even through a wrapper of infer
        return future

    def map(
        self,
        params_list: Iterable[dict[str, Any]],
        *,
        timeout: float | None = None,
        progress: bool = True,
    ) -> list[InferenceFuture]:
        """Queue many requests, all or nothing; one progress bar.

        Every item is validated, then all are queued at once, in order: either
        every request is queued and its future returned, or none is (nothing
        runs, nothing is left behind) and the error is raised.

        Raises
        ------
        ValidationError
            Naming the index of the first bad item; nothing was queued.
        QueueFullError
            When the queue has no room for all of them (``max_queue_size``);
            nothing was queued.
        AppClosedError, WorkerStartupError
            As :meth:`submit`; nothing was queued.
        """
        validated = []
        for index, params in enumerate(params_list):
            try:
                validated.append(self.validate(params))
            except ValidationError as exc:
                raise ValidationError(f"item {index}: {exc}", key=exc.key, index=index) from None
        futures = [self._make_request(v, timeout) for v in validated]
        if not futures:
            return futures
        self._pool.submit_many([future._request for future in futures])
        self._history.extend(futures)
        if progress:
            attach_progress_bar(futures, f"{self.env.model_name}")
        return futures

    # ------------------------------------------------------------------ state
    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until the workers have loaded the model; raise WorkerStartupError if none could."""
        self._pool.wait_ready(timeout)

    @property
    def ready(self) -> bool:
        return self._pool.ready

    @property
    def closed(self) -> bool:
        return self._pool.closed

    @property
    def queue_length(self) -> int:
        return self._pool.queue_length

    def workers(self) -> list[WorkerInfo]:
        """One entry per worker process: group, rank, GPU, pid, node, state, current request."""
        return self._pool.workers()

    def requests(self) -> list[RequestInfo]:
        """Every running request (oldest first), then every queued one in queue order.

        Each is a dict: ``id``, ``state`` (running or queued), ``source``, ``params``,
        ``position`` (0 for the next to run; None while running), ``progress``,
        ``message``, ``preview`` (the latest preview.jpg), ``queued_at``,
        ``started_at``, ``group`` and ``stopping``. A snapshot, cheap to take.
        """
        return self._pool.requests()

    def restart_workers(self) -> int:
        """Start given-up (or backing-off) worker groups now, rather than at their next retry.

        A group is given up after failed starts (a broken factory, a full GPU); it is
        retried on its own after a while, and this retries it at once once the cause
        is fixed. Returns how many groups were restarted.
        """
        return self._pool.restart_failed()

    @property
    def history(self) -> list[InferenceFuture]:
        """Every request from this app (Python or UI), oldest first, the last ``history_size``."""
        return list(self._history)

    def close(self, timeout: float = 5.0) -> None:
        """Fail pending requests with AppClosedError and stop every worker within ``timeout`` s."""
        self._pool.close(timeout)

    def __enter__(self) -> _BaseApp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        groups = {w.group for w in self.workers()}
        state = "closed" if self.closed else "ready" if self.ready else "starting"
        return (
            f"<{type(self).__name__} {self.name!r} {state}, {len(groups)} group(s) of "
            f"{self.env.group_size}, queue={self.queue_length}>"
        )


@public
class NotebookApp(_BaseApp, metaclass=abc.ABCMeta):
    """The app for notebooks and scripts: returns at once, ``infer`` gives a future.

    Creating a NotebookApp with the ``name`` of a live one (default: the factory)
    closes the old one first, so re-running a cell never piles up workers; a
    mistake in the new app's arguments raises before the old one is touched.
    Displaying the app in a notebook shows a live panel of its workers and jobs.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> NotebookApp:
        # detach=True: the app runs in a server; what is returned is its client, which
        # isinstance() counts as a NotebookApp (registered below) and __init__ skips.
        if kwargs.get("detach"):
            check_arguments(cls, args, kwargs)  # a wrong keyword named on the public class
            return _detached(args, kwargs)
        return cast(NotebookApp, super().__new__(cls, *args, **kwargs))

    def _before_start(self) -> None:
        with _named_lock:
            ref = _named_apps.get(self.name)
            old = ref() if ref else None
        if old is not None and not old.closed:
            logger.info("closing the previous NotebookApp %r before starting a new one", self.name)
            old.close()

    def _after_start(self) -> None:
        with _named_lock:
            _named_apps[self.name] = weakref.ref(self)

    def infer(self, params: dict[str, Any], *, timeout: float | None = None) -> InferenceFuture:
        """Queue one request and return its :class:`InferenceFuture` at once."""
        return self.submit(params, timeout=timeout)

    def _ipython_display_(self) -> None:
        rich.display_app(self)


# The signature callers see (help(), inspect) is the constructor's, not __new__'s (*args).
NotebookApp.__new__.__signature__ = inspect.signature(_BaseApp.__init__)  # type: ignore[attr-defined]
NotebookApp.register(RemoteApp)  # a connected or detached app is a NotebookApp to isinstance()


def _check_detach(cls: type, detach: bool, replace: bool) -> None:
    if detach and not issubclass(cls, NotebookApp):
        raise TypeError(f"detach=True is for NotebookApp, not {cls.__name__}")
    if replace and not detach:
        raise TypeError("replace=True goes with detach=True (it replaces a running server)")


def _detached(args: tuple[Any, ...], kwargs: dict[str, Any]) -> NotebookApp:
    """``NotebookApp(..., detach=True)``: reuse, replace or start its server, and connect."""
    from .._remote.detach import open_detached
    from .._remote.spec import AppSpec

    bound = inspect.signature(_BaseApp.__init__).bind(None, *args, **kwargs)
    bound.apply_defaults()
    given = bound.arguments
    fn, module, function = normalize_factory(
        given["factory"], given["factory_module"], given["factory_function"]
    )
    settings = {k: given[k] for k in app_settings() if given[k] is not None}
    env = resolve_env(given["env"], settings)  # a bad setting raises here, before anything
    spec = AppSpec.of_app(given, fn, module, function, env)
    with _named_lock:  # an app of that name in this kernel gives its GPUs to the server
        ref = _named_apps.pop(spec.name, None)
    local = ref() if ref else None
    if local is not None and not local.closed:
        local.close()
    return cast(NotebookApp, open_detached(spec, env, replace=bool(given["replace"])))


@public
class GradioApp(_BaseApp):
    """The seed's app: the constructor waits for the workers, ``infer`` blocks.

    ``GradioApp(validator, factory_module, factory_function)`` keeps the seed's
    signature; ``submit`` gives a future as on :class:`NotebookApp`. The wait is
    bounded by ``STARTUP_TIMEOUT``.
    """

    def _after_start(self) -> None:
        try:
            self.wait_ready()
        except BaseException:
            self.close()
            raise

    def infer(self, params: dict[str, Any], *, timeout: float | None = None) -> InferenceResult:
        """Run one request and return its result (blocking)."""
        result: InferenceResult = self.submit(params, timeout=timeout).result()
        return result


for _app in (NotebookApp, GradioApp):  # help(NotebookApp) lists what it takes
    _app.__doc__ = (_app.__doc__ or "").rstrip() + "\n" + parameters_doc()
