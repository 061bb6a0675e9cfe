"""Parameter validation in the caller's process, before anything is queued.

The seed's advice holds: users edit JSON by hand, so most bad requests should
be caught here, with a message that names the key, rather than after a round
trip through a GPU worker.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from .exceptions import ValidationError
from .public import public

__all__ = ["Validator", "check_asset_path", "make_validator", "pydantic_model_of"]

Validator = Callable[[dict[str, Any]], dict[str, Any]]


def pydantic_model_of(validator: Any) -> Any | None:
    """The pydantic model class behind ``validator``, or None.

    Accepts the class itself or an object with a ``model`` attribute holding one.
    """
    try:
        import pydantic
    except ImportError:  # pragma: no cover - pydantic is a dependency
        return None
    for candidate in (validator, getattr(validator, "model", None)):
        if isinstance(candidate, type) and issubclass(candidate, pydantic.BaseModel):
            return candidate
    return None


MAX_PROBLEMS = 20
"""A validation message lists at most this many problems, then says how many more."""


def _shown_value(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def problem_lines(errors: list[dict[str, Any]]) -> tuple[list[str], str | None]:
    """pydantic's ``errors()`` as ``key: what is wrong (got value)`` lines, and the first key.

    One line per problem, each naming its key, so a message never has a key alone
    on a line; ``(got ...)`` is left out when the message already quotes the value.
    """
    lines: list[str] = []
    first_key: str | None = None
    for err in errors:
        key = ".".join(str(p) for p in err.get("loc", ()))
        first_key = first_key or key or None
        msg = str(err.get("msg", "invalid")).replace("\n", " ").strip()
        line = f"{key or '(root)'}: {msg}"
        if "input" in err and "(got " not in msg and err.get("type") != "missing":
            line += f" (got {_shown_value(err['input'])})"
        lines.append(line)
    return lines, first_key


def from_pydantic(exc: Any) -> ValidationError:
    """Our ValidationError for a pydantic one: one line per problem (at most 20), ``key`` set."""
    try:
        errors = exc.errors(include_url=False)
    except Exception:  # an error that cannot list its problems: its text, bounded
        return ValidationError(str(exc)[:2000])
    # Only the shown problems are formatted: a request with 100,000 unknown keys must
    # not cost 100,000 lines (nor a 14 MB message).
    lines, key = problem_lines(errors[:MAX_PROBLEMS])
    more = len(errors) - len(lines)
    if more > 0:
        lines.append(f"... and {more} more problem{'s' * (more != 1)}")
    return ValidationError("\n".join(lines) or str(exc)[:2000], key=key)


MAX_MESSAGE = 4000  # characters of a validator's own message that are kept


def _bounded(text: str) -> str:
    """``text``, cut to MAX_MESSAGE characters (a validator may echo a whole request)."""
    if len(text) <= MAX_MESSAGE:
        return text
    return text[:MAX_MESSAGE] + f" ... ({len(text) - MAX_MESSAGE} more characters)"


def _is_pydantic_error(exc: BaseException) -> bool:
    try:
        import pydantic
    except ImportError:  # pragma: no cover - pydantic is a dependency
        return False
    return isinstance(exc, pydantic.ValidationError)


def make_validator(validator: Any | None) -> Validator:
    """Wrap a callable or a pydantic model class into ``dict -> dict`` raising ValidationError.

    Parameters
    ----------
    validator:
        None (params pass through), a callable ``dict -> dict`` that raises on bad
        input, or a pydantic ``BaseModel`` subclass (validated, then dumped in JSON mode).
    """
    model = pydantic_model_of(validator)
    if model is not None:
        import pydantic

        def validate_model(params: dict[str, Any]) -> dict[str, Any]:
            try:
                return dict(model.model_validate(params).model_dump(mode="json"))
            except pydantic.ValidationError as exc:
                raise from_pydantic(exc) from None

        return validate_model

    if validator is None:
        return lambda params: params
    if not callable(validator):
        raise TypeError(
            f"validator must be a callable or a pydantic model class, got {type(validator).__name__}"
        )
    fn: Callable[[dict[str, Any]], Any] = validator

    def validate_callable(params: dict[str, Any]) -> dict[str, Any]:
        try:
            out = fn(params)
        except ValidationError:
            raise
        except Exception as exc:
            # A plain function may raise pydantic's ValidationError (the seed's sample does):
            # the same message as a pydantic class gives. Anything else keeps its own text.
            if _is_pydantic_error(exc):
                raise from_pydantic(exc) from None
            raise ValidationError(_bounded(str(exc)) or type(exc).__name__) from exc
        if out is None:  # a validator that checks in place and returns nothing
            out = params
        if not isinstance(out, dict):
            raise ValidationError(
                f"the validator returned {type(out).__name__}, expected a dict of parameters"
            )
        return out

    return validate_callable


def check_json(params: Any) -> None:
    """Raise ValidationError naming the first key whose value JSON cannot encode."""
    if not isinstance(params, dict):
        raise ValidationError(
            f"parameters must be a JSON object (dict), got {type(params).__name__}"
        )
    bad = find_unserializable(params)
    if bad is not None:
        path, value = bad
        raise ValidationError(
            f"parameter {path!r} is not JSON-serializable ({type(value).__name__}: {value!r:.80}); "
            "use numbers, strings, booleans, lists and dicts",
            key=path,
        )


def find_unserializable(value: Any, path: str = "") -> tuple[str, Any] | None:
    """``(dotted key, value)`` of the first value strict JSON cannot encode, or None."""
    if value is None or isinstance(value, (str, bool, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else (path or "(root)", value)
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = find_unserializable(item, f"{path}[{i}]")
            if found:
                return found
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return (f"{path}.{key!r}" if path else repr(key), key)
            found = find_unserializable(item, f"{path}.{key}" if path else key)
            if found:
                return found
        return None
    return (path or "(root)", value)


def dumps(params: dict[str, Any]) -> str:
    """Strict JSON (no NaN), the form stored in status.json."""
    return json.dumps(params, allow_nan=False)


# The folders of the app whose validate() is running: an app made with
# uploads_dir=X must accept files in X whatever UPLOADS_DIR says.
_app_dirs: ContextVar[tuple[Path, ...] | None] = ContextVar("cosmos_app_dirs", default=None)


@contextmanager
def app_asset_dirs(dirs: Iterable[Path]) -> Iterator[None]:
    """Within this block, :func:`check_asset_path` allows ``dirs`` (an app's folders)."""
    token = _app_dirs.set(tuple(dirs))
    try:
        yield
    finally:
        _app_dirs.reset(token)


def allowed_asset_dirs(extra: Iterable[str | Path] = ()) -> list[Path]:
    """UPLOADS_DIR, OUTPUT_DIR, the folders of ``ASSET_DIRS``, and ``extra``.

    Inside an app's ``validate`` the app's own folders (its uploads, outputs and
    asset folders) stand for those of the environment.
    """
    dirs: list[str | Path]
    current = _app_dirs.get()
    if current is not None:
        dirs = list(current)
    else:
        from .settings import DeploymentEnv

        env = DeploymentEnv()
        dirs = [env.uploads_dir, env.output_dir, *env.asset_dirs]
    dirs += list(extra)
    return [Path(d).expanduser().resolve() for d in dirs]


@public
def check_asset_path(path: str | Path, allowed_dirs: Iterable[str | Path] | None = None) -> Path:
    """Resolve an asset path from request parameters and refuse one outside the allowed folders.

    Use it in validators so a request cannot make the model read (and echo back)
    an arbitrary file of the server's. Relative paths are taken from the
    working directory, symbolic links are followed.

    Parameters
    ----------
    path:
        The path as the user wrote it.
    allowed_dirs:
        Folders the path may lie in; default :func:`allowed_asset_dirs` (UPLOADS_DIR,
        OUTPUT_DIR, ``ASSET_DIRS``).

    Returns
    -------
    Path
        The resolved absolute path, which exists.

    Raises
    ------
    ValueError
        The path lies outside every allowed folder, or does not exist.
    """
    dirs = (
        allowed_asset_dirs()
        if allowed_dirs is None
        else [Path(d).expanduser().resolve() for d in allowed_dirs]
    )
    resolved = Path(path).expanduser().resolve()
    if not any(resolved == d or resolved.is_relative_to(d) for d in dirs):
        listed = ", ".join(str(d) for d in dirs)
        raise ValueError(
            f"asset path {str(path)!r} is outside the allowed folders ({listed}); "
            "upload the file first or add its folder to ASSET_DIRS"
        )
    if not resolved.is_file():
        raise ValueError(f"asset path {str(path)!r} does not exist (resolved to {resolved})")
    return resolved
