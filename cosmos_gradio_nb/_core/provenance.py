"""What is being served: the model, since when, and from which git checkout.

The page's header says it, so a screenshot or a bug report tells which code
made a video. Git is asked once, when the page is built, with a short timeout;
no git, or a folder outside a repository, simply leaves that part out.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["GitInfo", "git_info"]


@dataclass(frozen=True)
class GitInfo:
    """The repository a folder is in: its top folder, origin URL, branch and commit."""

    root: Path
    branch: str
    commit: str
    remote: str = ""

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
    commit = _git(here, "rev-parse", "--short=12", "HEAD") or "(no commit yet)"
    branch = _git(here, "rev-parse", "--abbrev-ref", "HEAD") or "?"
    if branch == "HEAD":
        branch = "(detached)"
    remote = _git(here, "config", "--get", "remote.origin.url") or ""
    if "@" in remote and "://" in remote:  # never show credentials embedded in a URL
        scheme, rest = remote.split("://", 1)
        remote = f"{scheme}://{rest.split('@', 1)[-1]}"
    return GitInfo(root=Path(root), branch=branch, commit=commit, remote=remote)
