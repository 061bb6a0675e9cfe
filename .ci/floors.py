"""Print the lowest version pyproject.toml allows of each direct dependency, as pins.

Usage: ``python .ci/floors.py GROUP...`` where a GROUP is ``dependencies``, an extra
(``sample``), or ``EXTRA:NAME,NAME`` for some packages of an extra (``test:pytest``).
Each requirement's lowest allowed version is the lowest release the package index
offers that its specifier accepts (``pytest-timeout>=2.3`` is 2.3.1: there is no 2.3.0),
looked up with ``pip index versions``. Run it with the interpreter of the venv being
set up (it needs ``packaging``, which ``.ci/run`` installs there first).
"""

from __future__ import annotations

import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.version import InvalidVersion, Version

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def requirements(groups: list[str]) -> list[Requirement]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    found: list[Requirement] = []
    for group in groups:
        extra, _, names = group.partition(":")
        specs = (
            project["dependencies"]
            if extra == "dependencies"
            else project["optional-dependencies"][extra]
        )
        for spec in specs:
            req = Requirement(spec)
            if req.name.replace("_", "-") == project["name"].replace("_", "-"):
                continue  # the project's own extras, listed in their own groups
            if names and req.name not in names.split(","):
                continue
            found.append(req)
    return found


def releases(name: str) -> list[Version]:
    out = subprocess.run(
        [sys.executable, "-m", "pip", "index", "versions", name],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = re.search(r"Available versions: (.*)", out)
    if not line:
        raise SystemExit(f"no releases of {name} found: {out}")
    versions = []
    for text in line.group(1).split(","):
        try:
            versions.append(Version(text.strip()))
        except InvalidVersion:
            continue
    return versions


def main(groups: list[str]) -> None:
    reqs = requirements(groups)
    for req in reqs:
        if not [s for s in req.specifier if s.operator in (">=", "==", "~=")]:
            raise SystemExit(f"{req}: no lower bound in pyproject.toml; give it one")
    with ThreadPoolExecutor(8) as pool:  # one index look-up per package, side by side
        found = list(pool.map(lambda r: releases(r.name), reqs))
    for req, versions in zip(reqs, found, strict=True):
        allowed = sorted(v for v in req.specifier.filter(versions) if not v.is_prerelease)
        if not allowed:
            raise SystemExit(f"{req}: no release satisfies it")
        print(f"{req.name}=={allowed[0]}")


if __name__ == "__main__":
    main(sys.argv[1:])
