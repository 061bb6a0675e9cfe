"""Every setting of cosmos_gradio_nb, in one place (the seed's ``DeploymentEnv``).

Each field reads the environment variable of the same name in upper case
(``NUM_GPUS``, ``OUTPUT_DIR``...), unless its ``env`` says otherwise. The same
fields are the apps' keyword arguments (``NotebookApp(num_gpus=2)``), the
``serve`` command's options (``--num-gpus 2``), the variables each worker gets,
and the rows of the README's table; tests keep all four in step with this
class, so a new setting is added here and nowhere else.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .exceptions import ValidationError
from .public import public

__all__ = ["DeploymentEnv", "app_settings", "env_var", "parse_auth"]

Backend = Literal["local", "ray"]


def _setting(
    default: Any, description: str, *, env: str | None = None, app: bool = True, **kw: Any
) -> Any:
    """A field. ``env`` names its variable when it is not the field's name in upper case;
    ``app=False`` keeps it out of the apps' keyword arguments."""
    extra: dict[str, Any] = {"app": app}
    if env is not None:
        kw["validation_alias"] = AliasChoices(env, env.lower())
        extra["env"] = env
    return Field(default, description=description, json_schema_extra=extra, **kw)


@public
class DeploymentEnv(BaseSettings):
    """Where the app writes, how many workers it starts and where, and the page's limits.

    Keyword arguments override the environment; the apps pass their own
    arguments this way. Paths are kept as given; the apps make them absolute.

    Raises
    ------
    ValidationError
        A value is not a number, out of range, or ``NUM_GPUS`` is not a multiple of
        ``GPUS_PER_MODEL``. The message names the variable.
    """

    model_config = SettingsConfigDict(
        case_sensitive=False,
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        env_ignore_empty=True,  # VAR= (empty) means unset, as in a shell
    )

    # -- the model and its workers ---------------------------------------------------------
    model_name: str = _setting("cosmos_model", "Used in file names and by bootstrappers.")
    num_gpus: int = _setting(1, "How many worker processes to start, one per GPU.", ge=1)
    gpus_per_model: int | None = _setting(
        None,
        "Ranks per torch.distributed model group; default NUM_GPUS (one model). "
        "1 gives NUM_GPUS independent replicas.",
        ge=1,
    )
    checkpoint_dir: Path = _setting(Path("checkpoints"), "For the model's own use.")
    worker_timeout: float = _setting(
        3600.0, "Seconds a request may run before its group is restarted.", gt=0
    )
    startup_timeout: float = _setting(
        1800.0,
        "Seconds a model group may take to load before it fails with WorkerStartupError.",
        gt=0,
    )
    stop_grace: float = _setting(
        10.0,
        "Seconds a running request asked to stop (terminate, Cancel) may take to stop on its "
        "own before its worker group is killed and restarted.",
        ge=0,
    )
    health_interval: float = _setting(
        30.0, "Seconds between health checks (a ping) of each idle worker group.", gt=0
    )
    health_timeout: float = _setting(
        10.0,
        "Seconds a worker group has to answer a health check before it is restarted.",
        gt=0,
    )
    # -- where the workers run -------------------------------------------------------------
    backend: Backend = _setting("local", "Where workers run: local subprocesses, or Ray actors.")
    ray_address: str | None = _setting(
        None,
        "Ray cluster to join ('auto', 'host:port', 'ray://...'); unset: the Ray already "
        "initialised in this process, else a new private local one (never one that merely "
        "runs on the machine).",
    )
    shared_output_dir: bool | None = _setting(
        None,
        "Whether OUTPUT_DIR and UPLOADS_DIR are one shared file system on every Ray node; "
        "unset: detected once per node. When not shared, outputs are copied back.",
    )
    placement_timeout: float = _setting(
        60.0,
        "Seconds a Ray model group may wait for a node with enough free GPUs before it "
        "fails with WorkerStartupError.",
        gt=0,
    )
    # -- files -----------------------------------------------------------------------------
    output_dir: Path = _setting(Path("outputs"), "One folder per request is made here.")
    uploads_dir: Path = _setting(Path("uploads"), "Where the page stores uploaded assets.")
    asset_dirs: Annotated[list[Path], NoDecode] = _setting(
        [],
        f"Extra folders request parameters may point into (check_asset_path), "
        f"'{os.pathsep}'-separated.",
    )
    log_file: Path = _setting(Path("outputs/cosmos_gradio_nb.log"), "Worker output, rank-prefixed.")
    log_max_mb: float = _setting(100.0, "LOG_FILE is rotated when it reaches this size (MB).", gt=0)
    log_backups: int = _setting(
        3, "Rotated log files kept beside LOG_FILE (LOG_FILE.1 is the newest).", ge=0
    )
    # -- the page and the notebook ---------------------------------------------------------
    max_upload_mb: float = _setting(500.0, "Size limit of one upload through the page (MB).", gt=0)
    max_request_kb: float = _setting(
        1024.0,
        "Largest request the page and its API accept (the JSON text, in KB); a larger one is "
        "refused at once, before it is parsed.",
        gt=0,
    )
    upload_cache_max_age: float = _setting(
        86400.0,
        "Seconds a file stays in Gradio's upload cache (GRADIO_TEMP_DIR) before the page "
        "deletes it; refused uploads are deleted at once.",
        gt=0,
    )
    upload_cache_max_mb: float = _setting(
        2048.0,
        "Size quota of the page's files in Gradio's upload cache (MB): past it the oldest "
        "that no request names are deleted as uploads arrive; at least MAX_UPLOAD_MB.",
        gt=0,
    )
    # -- servers (serve, detached apps) ---------------------------------------------------
    runtime_dir: Path | None = _setting(
        None,
        "Where servers (serve, detached apps) write their runtime records (URL, pid, access "
        "token), owner-only; unset: the Jupyter runtime folder's cosmos_gradio_nb/, else "
        "$XDG_RUNTIME_DIR/cosmos_gradio_nb/, else ~/.cosmos_gradio_nb/runtime/.",
    )
    idle_timeout: float | None = _setting(
        None,
        "Seconds a server (serve, a detached app's) waits with no request, no API client and "
        "no open page before it stops by itself; unset: it never does.",
        gt=0,
    )
    trash_retention_days: float = _setting(
        7.0,
        "Days a run deleted from the page's History (or /delete_runs) stays in "
        "OUTPUT_DIR/.trash, where it can be restored, before it is removed for good.",
        ge=0,
    )
    # These three are about how the page is served and shown, not about an app: they
    # are read from the environment (or given to ``launch``), not app keywords.
    auth: str | None = _setting(
        None, "'user:password' for the page.", env="COSMOS_GRADIO_AUTH", app=False, repr=False
    )
    proxy: bool | None = _setting(
        None,
        "1 forces, 0 forbids the jupyter-server-proxy iframe in notebooks; unset: detected.",
        env="COSMOS_GRADIO_PROXY",
        app=False,
    )
    embed_max_mb: float = _setting(
        4.0,
        "Largest video or image embedded in a notebook output (MB); three times that per output.",
        env="COSMOS_GRADIO_EMBED_MAX_MB",
        app=False,
        ge=0,
    )

    @field_validator("asset_dirs", mode="before")
    @classmethod
    def _split_dirs(cls, value: Any) -> Any:
        if isinstance(value, (str, Path)):
            return [d for d in str(value).split(os.pathsep) if d.strip()]
        return value

    @field_validator("auth")
    @classmethod
    def _check_auth(cls, value: str | None) -> str | None:
        parse_auth(value)
        return value or None

    @model_validator(mode="after")
    def _check_topology(self) -> DeploymentEnv:
        per_model = self.gpus_per_model or self.num_gpus
        if self.num_gpus % per_model:
            raise ValueError(
                f"NUM_GPUS={self.num_gpus} is not a multiple of GPUS_PER_MODEL={per_model}: "
                "each model group needs the same number of GPUs"
            )
        if self.upload_cache_max_mb < self.max_upload_mb:
            raise ValueError(
                f"UPLOAD_CACHE_MAX_MB={self.upload_cache_max_mb:g} is below MAX_UPLOAD_MB="
                f"{self.max_upload_mb:g}: one upload would not fit in the upload cache"
            )
        return self

    def __init__(self, **values: Any) -> None:
        # Turn pydantic's error into ours, naming the environment variable to fix.
        try:
            super().__init__(**{k: v for k, v in values.items() if v is not None})
        except pydantic.ValidationError as exc:
            problems = []
            fields = {env_var(f).lower(): f for f in type(self).model_fields}
            for err in exc.errors():
                if not err["loc"]:  # a check across settings: its message names them
                    problems.append(str(err["msg"]).removeprefix("Value error, "))
                    continue
                loc = str(err["loc"][0]).lower()
                field = fields.get(loc, loc)
                name = env_var(field) if field in type(self).model_fields else loc.upper()
                shown = "(hidden)" if field == "auth" else repr(err.get("input"))
                problems.append(f"{name}: {err['msg']} (got {shown})")
            raise ValidationError(
                "invalid deployment settings: " + "; ".join(problems), key=problems[0]
            ) from None

    @property
    def group_size(self) -> int:
        """Ranks in each model group (``GPUS_PER_MODEL``, defaulting to ``NUM_GPUS``)."""
        return self.gpus_per_model or self.num_gpus

    @property
    def num_groups(self) -> int:
        """How many independent model groups serve the queue."""
        return self.num_gpus // self.group_size

    def resolved(self) -> DeploymentEnv:
        """A copy with absolute paths: workers, the page and status.json must agree."""
        return self.model_copy(
            update={
                "output_dir": self.output_dir.expanduser().resolve(),
                "uploads_dir": self.uploads_dir.expanduser().resolve(),
                "log_file": self.log_file.expanduser().resolve(),
                "checkpoint_dir": self.checkpoint_dir.expanduser().resolve(),
                "asset_dirs": [d.expanduser().resolve() for d in self.asset_dirs],
                "runtime_dir": (
                    None if self.runtime_dir is None else self.runtime_dir.expanduser().resolve()
                ),
            }
        )

    def worker_environment(self) -> dict[str, str]:
        """The settings as the variables a worker gets (the model reads them as the seed says).

        The page's password is not among them: a model has no use for it.
        """
        out = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name == "auth" or value is None:
                continue
            if isinstance(value, list):
                value = os.pathsep.join(str(v) for v in value)
            elif isinstance(value, bool):
                value = int(value)
            out[env_var(name)] = str(value)
        out["GPUS_PER_MODEL"] = str(self.group_size)
        return out


def env_var(field: str) -> str:
    """The environment variable of a :class:`DeploymentEnv` field (``num_gpus`` -> ``NUM_GPUS``)."""
    info = DeploymentEnv.model_fields[field]
    extra = info.json_schema_extra
    if isinstance(extra, dict) and isinstance(extra.get("env"), str):
        return str(extra["env"])
    return field.upper()


def app_settings() -> list[str]:
    """The fields that are also the apps' keyword arguments, in declaration order."""
    out = []
    for name, info in DeploymentEnv.model_fields.items():
        extra = info.json_schema_extra
        if not isinstance(extra, dict) or extra.get("app", True):
            out.append(name)
    return out


def parse_auth(value: str | None) -> tuple[str, str] | None:
    """``"user:password"`` as ``(user, password)``; None for no value.

    The password may contain ``:``; the user may not. Raises ValueError naming the
    expected form. The one parser of ``COSMOS_GRADIO_AUTH`` and ``--auth``.
    """
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ValueError("must be 'user:password'")
    return user, password
