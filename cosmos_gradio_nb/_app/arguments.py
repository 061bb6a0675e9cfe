"""The apps' constructor arguments: their documentation and a clear word for a wrong one.

``help(NotebookApp)`` must list what ``NotebookApp(...)`` takes on the public class
itself: :func:`parameters_doc` writes the section once for both apps, every setting's
line from :class:`DeploymentEnv` (so a new setting is documented where it is
declared). :func:`check_arguments` runs before the constructor and turns Python's
"``_BaseApp.__init__()`` got an unexpected keyword argument" into a message naming
the public class and the keyword probably meant.
"""

from __future__ import annotations

import difflib
import inspect
import textwrap
from collections.abc import Callable
from typing import Any

from .._core.settings import DeploymentEnv, app_settings, env_var

__all__ = ["check_arguments", "constructor_signature", "parameters_doc"]

_BEFORE = """\
validator:
    A callable ``dict -> dict`` that raises on bad parameters, or a pydantic model
    class; it runs in this process before anything is queued.
factory_module, factory_function:
    Where the workers find the model factory (the seed's way): ``create_worker`` of
    ``my_pkg.my_model``.
factory:
    Instead: the factory itself (``create_worker``, defined anywhere, even in a
    notebook), or ``"package.module:function"``.
name:
    A NotebookApp replaces a live app of the same name (default: the factory).
env:
    A :class:`DeploymentEnv` to start from (default: read the environment).
"""

_AFTER = """\
max_queue_size:
    Refuse new requests with QueueFullError past this many waiting (default: no limit).
worker_env:
    Extra environment variables for the workers.
echo_logs:
    Also copy worker output to this process's stderr (the server does).
history_size:
    How many of this app's futures ``history`` keeps.
detach:
    ``NotebookApp`` only: run the app in a server process of its own that outlives
    the kernel (``RUNTIME_DIR`` records it); re-running the cell after a kernel
    restart reconnects to it, with the model still loaded.
replace:
    With ``detach=True``: stop a running server of this name whose model or
    settings differ, and start this one (without it, that is an error).
"""


def _setting_doc(name: str) -> str:
    info = DeploymentEnv.model_fields[name]
    default = info.default
    shown = "unset" if default is None or default == [] else f"``{default}``"
    text = f"{info.description} Default: ``{env_var(name)}`` from the environment, else {shown}."
    return f"{name}:\n" + textwrap.fill(
        text, width=84, initial_indent="    ", subsequent_indent="    "
    )


def parameters_doc() -> str:
    """The "Parameters" section of both apps' docstrings (indented as a class docstring)."""
    settings = "\n".join(_setting_doc(name) for name in app_settings())
    body = f"{_BEFORE}{settings}\n{_AFTER}"
    return "\n    Parameters\n    ----------\n" + textwrap.indent(body, "    ")


def constructor_signature(init: Callable[..., Any]) -> inspect.Signature:
    """``init``'s signature without ``self``: what ``inspect.signature(App)`` shows."""
    sig = inspect.signature(init)
    return sig.replace(parameters=list(sig.parameters.values())[1:])


def check_arguments(cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Raise TypeError naming ``cls`` (not a private base) if its constructor refuses these.

    An unknown keyword gets the nearest known one: ``NotebookApp(num_gpu=1)`` ->
    ``NotebookApp() got an unexpected keyword argument 'num_gpu'; did you mean 'num_gpus'?``
    """
    sig = constructor_signature(cls.__init__)  # type: ignore[misc]
    try:
        sig.bind(*args, **kwargs)
    except TypeError as exc:
        message = f"{cls.__name__}() {exc}"
        known = [n for n, p in sig.parameters.items() if p.kind is not p.VAR_KEYWORD]
        unknown = [k for k in kwargs if k not in sig.parameters]
        for key in unknown[:1]:
            close = difflib.get_close_matches(key, known, n=1)
            message = f"{cls.__name__}() got an unexpected keyword argument {key!r}; " + (
                f"did you mean {close[0]!r}?" if close else f"it takes: {', '.join(known)}"
            )
        raise TypeError(message) from None
