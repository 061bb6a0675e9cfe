"""What a detached server is started with, and how a later app tells whether it matches.

:class:`AppSpec` is everything ``NotebookApp(...)`` was given that the server needs:
the factory, the validator, the settings, ``worker_env``, ``max_queue_size``. It is
shipped to the server as a cloudpickled file (see :func:`write_spec`), because a
factory or a pydantic validator defined in the notebook itself exists nowhere
else. The security of that file: it is written by this user into the owner-only
``RUNTIME_DIR`` (0700), created 0600, and the server refuses to load it unless it
still is a regular file owned by the same user and unreadable by others; it is
deleted once loaded. Loading a pickle runs code, but only code this same user
could run anyway.

:meth:`AppSpec.fingerprint` is what ``detach=True`` compares with a running
server's record: the factory's and validator's names, for ones defined in the
notebook a hash of their source (a notebook function's pickle differs from one
kernel to the next, its source does not), and the settings that change what the
server does. A factory named by module is compared by name only: after editing
that module, ``replace=True`` loads the new code.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._core.runtime import private_file_problem, write_private
from .._core.settings import app_settings, env_var

__all__ = ["AppSpec", "describe_differences", "load_spec", "object_label", "write_spec"]

# Settings that do not change what a server does for its clients (where records live,
# when it stops by itself): a difference there is no reason to replace a server.
UNCOMPARED = frozenset({"runtime_dir", "idle_timeout"})


def object_label(obj: Any) -> str | None:
    """``module:qualname`` of a function or class (a validator's), None for None."""
    if obj is None:
        return None
    module = getattr(obj, "__module__", None) or "?"
    name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{module}:{name}"


def code_hash(obj: Any) -> str | None:
    """A hash of what a notebook-defined function or class does; None for importable ones."""
    if obj is None or getattr(obj, "__module__", None) != "__main__":
        return None
    try:
        text = inspect.getsource(obj)
    except (OSError, TypeError):  # a class defined in a notebook has no source file
        schema = getattr(obj, "model_json_schema", None)
        if callable(schema):
            text = json.dumps(schema(), sort_keys=True, default=str)
        elif hasattr(obj, "__code__"):
            text = _code_text(obj.__code__)
        else:
            return None
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _code_text(code: Any) -> str:
    """A code object's bytecode, names and constants (nested code too), without addresses."""
    parts = [code.co_code.hex(), repr(code.co_names)]
    for const in code.co_consts:
        parts.append(_code_text(const) if hasattr(const, "co_code") else repr(const))
    return "|".join(parts)


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@dataclass
class AppSpec:
    """A detached app's arguments, as the server needs them."""

    name: str
    factory_module: str
    factory_function: str
    factory: Any = None
    """The factory itself when it was given as a callable (shipped by cloudpickle)."""
    validator: Any = None
    settings: dict[str, Any] = field(default_factory=dict)
    """App settings (``num_gpus``...) as plain JSON values, resolved (absolute paths)."""
    worker_env: dict[str, str] = field(default_factory=dict)
    max_queue_size: int | None = None
    history_size: int = 1000
    computed: dict[str, Any] = field(default_factory=dict)
    """The fingerprint as the app that shipped this spec computed it (the server records
    that one: a function unpickled there has no source to hash)."""

    @classmethod
    def of_app(
        cls, given: dict[str, Any], factory: Any, module: str, function: str, env: Any
    ) -> AppSpec:
        """The spec of ``NotebookApp(**given)`` (its arguments by name, checked already)."""
        if given["max_queue_size"] is not None and given["max_queue_size"] < 1:
            raise ValueError(f"max_queue_size must be at least 1 (got {given['max_queue_size']})")
        return cls(
            name=given["name"] or f"{module}:{function}",
            factory_module=module,
            factory_function=function,
            factory=factory,
            validator=given["validator"],
            settings=cls.settings_of(env),
            worker_env=dict(given["worker_env"] or {}),
            max_queue_size=given["max_queue_size"],
            history_size=given["history_size"],
        )

    @property
    def label(self) -> str:
        return f"{self.factory_module}:{self.factory_function}"

    @classmethod
    def settings_of(cls, env: Any) -> dict[str, Any]:
        """The app settings of a resolved ``DeploymentEnv`` as plain values (None left out)."""
        out = {}
        for name in app_settings():
            value = getattr(env, name)
            if value is not None:
                out[name] = _plain(value)
        return out

    def fingerprint(self) -> dict[str, Any]:
        """What must be equal for a running server to serve this app (see the module doc)."""
        if self.computed:
            return dict(self.computed)
        return {
            "factory": self.label,
            "factory_code": code_hash(self.factory),
            "validator": object_label(self.validator),
            "validator_code": code_hash(self.validator),
            "settings": {k: v for k, v in self.settings.items() if k not in UNCOMPARED},
            "worker_env": dict(sorted(self.worker_env.items())),
            "max_queue_size": self.max_queue_size,
        }


def _show(value: Any) -> str:
    return "unset" if value is None else repr(value)


def describe_differences(there: dict[str, Any], here: dict[str, Any]) -> list[str]:
    """Each way a server's fingerprint (``there``) differs from this app's (``here``)."""
    out = []
    if there.get("factory") != here.get("factory"):
        out.append(f"factory: {there.get('factory')} there, {here.get('factory')} here")
    elif there.get("factory_code") != here.get("factory_code"):
        out.append(f"factory: {here.get('factory')}'s code changed")
    if there.get("validator") != here.get("validator"):
        out.append(
            f"validator: {_show(there.get('validator'))} there, {_show(here.get('validator'))} here"
        )
    elif there.get("validator_code") != here.get("validator_code"):
        out.append(f"validator: {here.get('validator')}'s code changed")
    ours, theirs = here.get("settings") or {}, there.get("settings") or {}
    for name in sorted(set(ours) | set(theirs)):
        if ours.get(name) != theirs.get(name) and name not in UNCOMPARED:
            label = env_var(name) if name in app_settings() else name
            out.append(f"{label}: {_show(theirs.get(name))} there, {_show(ours.get(name))} here")
    for key in ("worker_env", "max_queue_size"):
        if (there.get(key) or None) != (here.get(key) or None):
            out.append(f"{key}: {_show(there.get(key))} there, {_show(here.get(key))} here")
    return out


def write_spec(folder: Path, spec: AppSpec) -> Path:
    """Ship ``spec`` to a server about to start: a 0600 cloudpickle in ``folder`` (0700)."""
    import cloudpickle

    path = folder / f"spec-{os.getpid()}-{os.urandom(6).hex()}.pkl"
    if not spec.computed:
        spec.computed = spec.fingerprint()
    write_private(path, cloudpickle.dumps(spec))
    return path


def load_spec(path: Path) -> AppSpec:
    """Load (and delete) a spec :func:`write_spec` wrote; refuse a file others could have written."""
    import pickle

    problem = private_file_problem(path)
    if problem is not None:
        raise PermissionError(f"refusing to load the app spec: {problem}")
    try:
        with open(path, "rb") as f:
            spec = pickle.load(f)  # cloudpickle's output loads with pickle
    finally:
        path.unlink(missing_ok=True)
    if not isinstance(spec, AppSpec):
        raise TypeError(f"{path} does not hold an app spec")
    return spec
