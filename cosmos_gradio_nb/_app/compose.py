"""What an app is composed of: the model factory as workers receive it, the settings, the backend.

The apps (``apps.py``) and a detached app's spec use these before anything starts,
so that every mistake in the arguments raises first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._backends.local import LocalBackend
from .._core.protocol import FactorySpec
from .._core.settings import DeploymentEnv
from .._engine.pool import BackendFactory

__all__ = ["backend_factory", "factory_spec", "normalize_factory", "resolve_env"]


def normalize_factory(
    factory: Callable[[], Any] | str | None, module: str | None, function: str | None
) -> tuple[Callable[[], Any] | None, str, str]:
    """Check the user's way of naming the factory: ``(callable or None, module, function)``."""
    if factory is not None and module is not None:
        raise TypeError("give either factory=... or factory_module=..., not both")
    if isinstance(factory, str):
        module, sep, function = factory.partition(":")
        if not sep or not module or not function:
            raise ValueError(f"factory={factory!r}: use 'package.module:function'")
        factory = None
    if factory is not None:
        if not callable(factory):
            raise TypeError(f"factory must be callable, got {type(factory).__name__}")
        module = getattr(factory, "__module__", None) or "?"
        function = getattr(factory, "__qualname__", None) or "?"
        return factory, module, function
    if not module:
        raise TypeError(
            "no model factory: pass factory_module='my_pkg.my_model' (and factory_function), "
            "or factory=create_worker"
        )
    return None, module, function or "create_worker"


def factory_spec(
    factory: Callable[[], Any] | str | None, module: str | None, function: str | None
) -> tuple[FactorySpec, str]:
    """What a worker needs to build the model, plus the factory's label."""
    fn, module, function = normalize_factory(factory, module, function)
    label = f"{module}:{function}"
    if fn is not None:
        import cloudpickle  # by value for notebook-defined (__main__) functions, by reference otherwise

        return {"pickled": cloudpickle.dumps(fn)}, label
    return {"module": module, "function": function}, label


def resolve_env(env: DeploymentEnv | None, settings: dict[str, Any]) -> DeploymentEnv:
    """The app's settings: ``env`` (or the environment), overridden by its arguments."""
    if env is None:
        env = DeploymentEnv(**settings)
    elif settings:
        env = DeploymentEnv(**{**env.model_dump(exclude_none=True), **settings})
    return env.resolved()


def backend_factory(env: DeploymentEnv) -> BackendFactory:
    """How the pool makes its worker-group backend (imports Ray only when asked for)."""
    if env.backend == "ray":
        from .._backends.ray.backend import RayConfig, ray_backend

        return ray_backend(
            RayConfig(
                ray_address=env.ray_address,
                placement_timeout=env.placement_timeout,
                shared_output_dir=env.shared_output_dir,
                output_dir=env.output_dir,
                uploads_dir=env.uploads_dir,
                asset_dirs=tuple(env.asset_dirs),
            )
        )
    return lambda emit: LocalBackend(emit, num_gpus=env.num_gpus, group_size=env.group_size)
