"""What is being served: the model, since when, from which git checkout, on what software.

The page's header says it, and every request's ``status.json`` carries it under
``provenance`` (the app computes :func:`provenance` once and the engine adds it to
each record), so a screenshot, a bug report or a video's folder tells which code
made it. Git is asked with a short timeout; no git, or a folder outside a
repository, simply leaves that part out.

torch is never imported here: importing it costs seconds and hundreds of MB in an
app process that may not need it (the models run in the workers). When the app
has imported it already, its own figures are read; otherwise the installed
version comes from the package metadata and the CUDA version it was built for
from its ``torch/version.py``, read as text. Both describe the torch the app's
interpreter would import; workers on Ray nodes may have another (their log says).
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import platform
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["GitInfo", "git_info", "provenance", "torch_versions"]


@dataclass(frozen=True)
class GitInfo:
    """The repository a folder is in: top folder, origin URL, branch, commit, local changes."""

    root: Path
    branch: str
    commit: str
    remote: str = ""
    full_commit: str = ""
    dirty: bool | None = None
    """True when tracked files differ from the commit (untracked files do not count:
    outputs and notebooks saved inside a checkout would make every run dirty); None
    when git could not say."""

    @property
    def name(self) -> str:
        """The repository's name: the origin URL's last part, else the top folder's name."""
        if self.remote:
            tail = self.remote.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
            return tail.removesuffix(".git") or self.root.name
        return self.root.name


def _git(folder: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(folder), *args],
            capture_output=True,
            text=True,
            timeout=3,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):  # no git, or it hung
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_info(folder: str | Path | None = None) -> GitInfo | None:
    """The git checkout ``folder`` (default: the working directory) is in, or None."""
    here = Path(folder or Path.cwd())
    root = _git(here, "rev-parse", "--show-toplevel")
    if not root:
        return None
    full = _git(here, "rev-parse", "HEAD") or ""
    commit = full[:12] if full else "(no commit yet)"
    branch = _git(here, "rev-parse", "--abbrev-ref", "HEAD") or "?"
    if branch == "HEAD":
        branch = "(detached)"
    remote = _git(here, "config", "--get", "remote.origin.url") or ""
    if "@" in remote and "://" in remote:  # never show credentials embedded in a URL
        scheme, rest = remote.split("://", 1)
        remote = f"{scheme}://{rest.split('@', 1)[-1]}"
    changes = _git(here, "status", "--porcelain", "--untracked-files=no")
    dirty = None if changes is None else bool(changes)
    return GitInfo(
        root=Path(root),
        branch=branch,
        commit=commit,
        remote=remote,
        full_commit=full,
        dirty=dirty,
    )


def _literal_assignments(path: Path) -> dict[str, Any]:
    """``name = <literal>`` (annotated or not) at the top of a Python file, without running it."""
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError, ValueError):
        return {}
    out: dict[str, Any] = {}
    for node in tree.body:
        target, value = None, None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        if isinstance(target, ast.Name) and value is not None:
            try:
                out[target.id] = ast.literal_eval(value)
            except ValueError:
                continue
    return out


def torch_versions() -> tuple[str | None, str | None]:
    """``(torch version, CUDA version torch was built for)``, without importing torch.

    ``(None, None)`` when torch is not installed; CUDA is None for a CPU build.
    """
    torch = sys.modules.get("torch")
    if torch is not None and getattr(torch, "version", None) is not None:
        return str(torch.__version__), getattr(torch.version, "cuda", None)
    try:
        spec = importlib.util.find_spec("torch")  # finds the package, does not import it
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return None, None
    for location in spec.submodule_search_locations:
        found = _literal_assignments(Path(location) / "version.py")
        if "__version__" in found:
            cuda = found.get("cuda")
            return str(found["__version__"]), str(cuda) if cuda else None
    try:
        return importlib.metadata.version("torch"), None
    except importlib.metadata.PackageNotFoundError:
        return None, None


def _qualified(obj: Any) -> str | None:
    """``module:qualname`` of a class or function (a validator), else its type's; None for None."""
    if obj is None:
        return None
    target = obj if hasattr(obj, "__qualname__") else type(obj)
    module = getattr(target, "__module__", None) or "?"
    return f"{module}:{getattr(target, '__qualname__', type(obj).__name__)}"


def _package_version() -> str:
    try:
        return importlib.metadata.version("cosmos_gradio_nb")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0+unknown"


def provenance(
    factory: str, validator: Any = None, *, folder: str | Path | None = None
) -> dict[str, Any]:
    """What made a request: this package, the model factory and validator, the code, the host.

    Parameters
    ----------
    factory:
        The factory's label (``package.module:function``).
    validator:
        The app's validator (a pydantic model class or a callable), or None.
    folder:
        Where to look for a git checkout (default: the working directory).

    Returns
    -------
    dict
        Plain JSON: ``package``, ``version``, ``factory``, ``validator``, ``git`` (``None``
        outside a repository, else ``repository``, ``root``, ``branch``, ``commit``,
        ``remote``, ``dirty``), ``host``, ``python``, ``torch`` and ``cuda`` (None when
        not installed, or a CPU build). The app computes it once; it costs three to
        five ``git`` calls.
    """
    git = git_info(folder)
    torch_version, cuda = torch_versions()
    return {
        "package": "cosmos_gradio_nb",
        "version": _package_version(),
        "factory": factory,
        "validator": _qualified(validator),
        "git": None
        if git is None
        else {
            "repository": git.name,
            "root": str(git.root),
            "branch": git.branch,
            "commit": git.full_commit or git.commit,
            "remote": git.remote,
            "dirty": git.dirty,
        },
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "torch": torch_version,
        "cuda": cuda,
    }
