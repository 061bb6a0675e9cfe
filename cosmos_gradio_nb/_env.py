"""Deployment settings read from environment variables (the seed's ``DeploymentEnv``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydantic
from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ._exceptions import ValidationError

__all__ = ["DeploymentEnv"]


class DeploymentEnv(BaseSettings):
    """Where the app writes, how many workers it starts, and how long a request may run.

    Every field reads the environment variable of the same name in upper case
    (``NUM_GPUS``, ``OUTPUT_DIR``...). Keyword arguments override the environment;
    the apps pass their own constructor arguments this way.

    Raises
    ------
    ValidationError
        A value is not a number, out of range, or ``NUM_GPUS`` is not a multiple of
        ``GPUS_PER_MODEL``. The message names the variable.
    """

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    model_name: str = Field("cosmos_model", description="Used in file names and by bootstrappers.")
    num_gpus: int = Field(1, ge=1, description="How many worker processes to start, one per GPU.")
    gpus_per_model: int | None = Field(
        None,
        ge=1,
        description="Ranks per torch.distributed model group; default NUM_GPUS (one model). "
        "1 gives NUM_GPUS independent replicas.",
    )
    uploads_dir: Path = Field(Path("uploads"), description="Where the UI stores uploaded assets.")
    output_dir: Path = Field(Path("outputs"), description="One folder per request is made here.")
    log_file: Path = Field(
        Path("outputs/cosmos_gradio_nb.log"), description="Worker output, rank-prefixed."
    )
    checkpoint_dir: Path = Field(Path("checkpoints"), description="For the model's own use.")
    worker_timeout: float = Field(
        3600.0, gt=0, description="Seconds a request may run before its group is restarted."
    )
    max_request_kb: float = Field(
        1024.0,
        gt=0,
        description="Largest request the page and its API accept (the JSON text, in KB); a "
        "larger one is refused at once, before it is parsed.",
    )
    upload_cache_max_age: float = Field(
        86400.0,
        gt=0,
        description="Seconds a file stays in Gradio's upload cache (GRADIO_TEMP_DIR) before "
        "the page deletes it; refused uploads are deleted at once.",
    )

    @model_validator(mode="after")
    def _check_topology(self) -> DeploymentEnv:
        per_model = self.gpus_per_model or self.num_gpus
        if self.num_gpus % per_model:
            raise ValueError(
                f"NUM_GPUS={self.num_gpus} is not a multiple of GPUS_PER_MODEL={per_model}: "
                "each model group needs the same number of GPUs"
            )
        return self

    def __init__(self, **values: Any) -> None:
        # Turn pydantic's error into ours, naming the environment variable to fix.
        try:
            super().__init__(**{k: v for k, v in values.items() if v is not None})
        except pydantic.ValidationError as exc:
            problems = []
            for err in exc.errors():
                loc = ".".join(str(p) for p in err["loc"]) or "NUM_GPUS"
                problems.append(f"{loc.upper()}: {err['msg']} (got {err.get('input')!r})")
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
