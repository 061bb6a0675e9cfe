"""The package's shape, kept by tests: layers import one way, no cycles, light workers.

Every ``import`` of the package is read with ``ast`` (module level and inside
functions; only ``if TYPE_CHECKING:`` blocks are exempt) and resolved to the
module it names. A failure names the file and line to fix.

The layers, bottom up (a layer may import any layer below it, never one above)::

    _core        exceptions, settings, validation, outputs, history, presentation...
    _worker      the spawned worker process: loop, keeper, progress (on _core only)
    _engine      queue and fault policy, futures, the backend seam (on _core only)
    _backends    process machinery, local and Ray backends (local and ray never meet)
    _app         composition: NotebookApp, GradioApp
    _remote      beside it: the client of a server (connect(), detached apps)
    _notebook    displays, widgets, the notebook-aware launch
    _page        the Gradio page (it installs the notebook's launch)
    _server      beside it: a server's API, event stream and runtime record
    _cli         the command line, at the very top

``_core/rich.py`` is the one sanctioned hop up: lazily, for rich display, into the
notebook layer. ``samples`` is user code: it may use the public package, the core
and the worker's ``report_progress``. Model adapters run in the worker like user
code and follow the same rule: ``_models`` (the diffusers adapter's internals) and
its public front ``diffusers.py`` may use the public package, the core and the
worker, never the engine, the backends or anything above. ``_doctor.py`` (the GPU
self-check) sits at the top beside the CLI that runs it.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "cosmos_gradio_nb"
ROOT = "cosmos_gradio_nb"

# layer -> rank; a module may import modules of a lower or equal rank (equal: its own layer).
LAYERS = {
    "_core": 0,
    "_worker": 1,
    "_engine": 1,
    "_backends": 2,
    "_app": 3,
    "_remote": 3,
    "_notebook": 4,
    "_page": 5,
    "_server": 5,
    "_cli": 6,
    "_doctor": 6,
    "__main__": 6,
}
# Same rank, yet apart: the worker and the engine never import each other.
APART = {frozenset({"_worker", "_engine"})}
RICH_HOP = f"{ROOT}._core.rich"
SAMPLES_MAY_USE = {ROOT, "_core", "_worker", "samples", "diffusers"}
# User-code-like layers: what each may import (ROOT: the public package itself).
USER_CODE_MAY_USE = {
    "samples": SAMPLES_MAY_USE,
    "_models": {ROOT, "_core", "_worker", "_models"},
    "diffusers": {ROOT, "_core", "_worker", "_models", "diffusers"},
}


@dataclass(frozen=True)
class Edge:
    source: str  # importing module
    target: str  # imported module
    path: Path
    line: int
    lazy: bool  # inside a function


def _module_name(path: Path, pkg: Path = PKG) -> str:
    rel = path.relative_to(pkg.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _known_modules(pkg: Path = PKG) -> set[str]:
    return {_module_name(p, pkg) for p in pkg.rglob("*.py")}


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                for child in node.body:
                    for sub in ast.walk(child):
                        if hasattr(sub, "lineno"):
                            lines.add(sub.lineno)
    return lines


def _function_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(node):
                if hasattr(sub, "lineno") and sub is not node:
                    lines.add(sub.lineno)
    return lines


def edges(pkg: Path = PKG) -> list[Edge]:
    """Every import of ours in the package at ``pkg``, resolved to the module it names."""
    known = _known_modules(pkg)
    out: list[Edge] = []
    for path in sorted(pkg.rglob("*.py")):
        name = _module_name(path, pkg)
        package = name if _is_package(path) else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(), str(path))
        skip = _type_checking_lines(tree)
        lazy = _function_lines(tree)
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                targets = [mod]
                # ``from pkg import submodule`` names a module too
                targets += [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in known]
            else:
                continue
            if node.lineno in skip:
                continue
            for target in targets:
                if target == ROOT or target.startswith(ROOT + "."):
                    rel = path.relative_to(pkg.parent)
                    out.append(Edge(name, target, rel, node.lineno, node.lineno in lazy))
    return out


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None  # None: the package root


def layer_violations(all_edges: list[Edge]) -> list[str]:
    problems = []
    for e in all_edges:
        src, dst = _layer(e.source), _layer(e.target)
        where = f"{e.path}:{e.line}"
        if e.source == RICH_HOP and dst == "_notebook" and e.lazy:
            continue  # the sanctioned hop
        if src is None or src == dst:
            continue  # the package root is the public facade; a layer may import itself
        if src in USER_CODE_MAY_USE:
            if (dst or ROOT) not in USER_CODE_MAY_USE[src]:
                problems.append(
                    f"{where}: {e.source} ({'the sample model' if src == 'samples' else src}, "
                    f"user code run in the worker) imports {e.target}: it may use only "
                    f"{', '.join(sorted(USER_CODE_MAY_USE[src]))}"
                )
            continue
        if dst is None:
            if LAYERS.get(src) != LAYERS["_cli"]:  # the top (cli, doctor) may use the facade
                problems.append(
                    f"{where}: {e.source} imports the package root {ROOT}; "
                    "import the module that defines the name instead"
                )
            continue
        if src not in LAYERS or dst not in LAYERS:
            problems.append(f"{where}: {e.source} -> {e.target}: a module outside every layer")
            continue
        if LAYERS[dst] > LAYERS[src]:
            problems.append(
                f"{where}: {e.source} (layer {src}) imports {e.target} "
                f"(layer {dst}, above it): imports flow page/notebook -> app -> "
                "backends -> engine -> core"
            )
        elif frozenset({src, dst}) in APART:
            problems.append(
                f"{where}: {e.source} imports {e.target}: the worker and the "
                "engine are beside each other, each on the core only"
            )
    local = {e for e in all_edges if ".local" in e.source and "._backends.ray" in e.target}
    ray = {e for e in all_edges if "._backends.ray" in e.source and e.target.endswith(".local")}
    for e in local | ray:
        problems.append(
            f"{e.path}:{e.line}: {e.source} imports "
            f"{e.target}: the local and Ray backends never import each other"
        )
    return problems


def cycles(all_edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components of more than one module."""
    graph: dict[str, set[str]] = {}
    known = {e.source for e in all_edges}
    for e in all_edges:
        if e.source == RICH_HOP and _layer(e.target) == "_notebook":
            continue  # the lazy display hop: never taken at import time
        if e.target in known and e.target != e.source:
            graph.setdefault(e.source, set()).add(e.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _cycle_lines(component: list[str], all_edges: list[Edge]) -> str:
    members = set(component)
    return "\n".join(
        f"  {e.path}:{e.line}: {e.source} -> {e.target}"
        for e in all_edges
        if e.source in members and e.target in members
    )


def test_imports_flow_one_way() -> None:
    problems = layer_violations(edges())
    assert not problems, "imports against the layers:\n" + "\n".join(problems)


def test_no_import_cycle() -> None:
    all_edges = edges()
    found = cycles(all_edges)
    assert not found, "import cycles:\n" + "\n\n".join(_cycle_lines(c, all_edges) for c in found)


def _copy_with(tmp_path: Path, files: dict[str, str]) -> Path:
    """A copy of the package under ``tmp_path`` with ``files`` (relative path -> text) added."""
    import shutil

    copy = tmp_path / ROOT
    shutil.copytree(PKG, copy, ignore=shutil.ignore_patterns("__pycache__"))
    for rel, text in files.items():
        (copy / rel).write_text(text)
    return copy


def test_the_rules_catch_a_bad_import(tmp_path: Path) -> None:
    """The checks above fail on a deliberately bad import, naming its file and line."""
    copy = _copy_with(
        tmp_path,
        {
            "_core/zz_upward.py": "def f():\n    from .._page import page\n    return page\n",
            "_engine/zz_cycle_a.py": "from . import zz_cycle_b\n",
            "_engine/zz_cycle_b.py": "from . import zz_cycle_a\n",
            "_backends/zz_local_to_ray.py": "from .ray import agent\n",
            "_engine/zz_worker.py": "from .._worker import keeper\n",
            "_models/zz_engine.py": "from .._engine import pool\n",
        },
    )
    all_edges = edges(copy)
    problems = "\n".join(layer_violations(all_edges))
    assert "cosmos_gradio_nb/_core/zz_upward.py:2" in problems and "above it" in problems
    assert "cosmos_gradio_nb/_engine/zz_worker.py:1" in problems and "beside" in problems
    assert "cosmos_gradio_nb/_models/zz_engine.py:1" in problems and "user code" in problems
    found = cycles(all_edges)
    assert [c for c in found if "cosmos_gradio_nb._engine.zz_cycle_a" in c], found
    assert not layer_violations(edges())  # and the real package passes


def test_subpackage_inits_are_empty() -> None:
    """Importing the worker's or the Ray agent's module must not import a whole layer."""
    for init in PKG.glob("_*/**/__init__.py"):
        assert init.read_text().strip() == "", f"{init.relative_to(PKG.parent)} is not empty"


HEAVY = ("gradio", "ipywidgets", "pydantic_settings", "IPython", "torch", "diffusers")


def _loaded_after(code: str, pkg: Path = PKG) -> list[str]:
    probe = textwrap.dedent(code) + textwrap.dedent(f"""
        import sys
        print([m for m in {(*HEAVY, "ray")!r} if m in sys.modules])
    """)
    env = {**os.environ, "PYTHONPATH": str(pkg.parent)}
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env=env,
        cwd=pkg.parent,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return list(eval(done.stdout.strip().splitlines()[-1]))


WORKER_PROBE = """
        import sys
        sys.argv = ["cosmos_gradio_nb._worker", "--help"]
        try:
            import cosmos_gradio_nb._worker.__main__  # runs main(): --help exits after parsing
        except SystemExit:
            pass
        import cosmos_gradio_nb._worker.loop, cosmos_gradio_nb._worker.keeper
        import cosmos_gradio_nb._worker.progress as progress
        progress.install_tqdm_hook()
"""


def test_the_worker_entry_point_stays_light(tmp_path: Path) -> None:
    loaded = _loaded_after(WORKER_PROBE)
    assert loaded == [], f"the worker process imports {loaded}"
    # and the probe sees a heavy import when there is one
    copy = _copy_with(tmp_path, {"_worker/zz_heavy.py": "import pydantic_settings\n"})
    (copy / "_worker" / "loop.py").write_text(
        (copy / "_worker" / "loop.py").read_text() + "\nfrom . import zz_heavy  # noqa\n"
    )
    assert "pydantic_settings" in _loaded_after(WORKER_PROBE, copy)


def test_the_diffusers_front_stays_light() -> None:
    """The validator and the factory are made without torch or diffusers: workers load them."""
    loaded = _loaded_after(
        """
        import cosmos_gradio_nb.diffusers as d
        d.pipeline_factory("org/model", torch_dtype="bf16")
        """
    )
    assert loaded == [], f"cosmos_gradio_nb.diffusers imports {loaded}"


def test_the_ray_agent_stays_light() -> None:
    loaded = _loaded_after("import cosmos_gradio_nb._backends.ray.agent")
    assert loaded == [], f"the Ray rank agent module imports {loaded} on every node"
