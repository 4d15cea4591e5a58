"""The rooms stay small and the package has no import cycle (what the code's layout promises)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# where each installed package's files live (losses/ and datasets/ install inside pan_cli)
PACKAGES = {"pan_cli": ROOT / "pan_cli", "pan_cli.losses": ROOT / "losses", "pan_cli.datasets": ROOT / "datasets"}


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def load_time_imports(path: Path, known: set[str]) -> set[str]:
    """pan_cli modules imported when `path` is imported (not inside functions or TYPE_CHECKING)."""
    out = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in [node] if isinstance(node, (ast.Import, ast.ImportFrom)) else []:
            names = [a.name for a in sub.names] if isinstance(sub, ast.Import) else [sub.module or ""]
            if isinstance(sub, ast.ImportFrom):
                names += [f"{sub.module}.{a.name}" for a in sub.names]
            out |= {n for n in names if n in known}
    return out


def test_no_module_is_over_300_lines():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > 300}
    assert not long, long


def test_the_package_has_no_import_cycle():
    found = modules()
    _no_cycle({name: load_time_imports(path, set(found)) - {name} for name, path in found.items()})


def _no_cycle(graph: dict[str, set[str]]) -> None:
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            raise AssertionError("import cycle: " + " -> ".join(trail[trail.index(name):] + [name]))
        if name in done:
            return
        for imported in sorted(graph[name]):
            if not name.startswith(imported + "."):  # a package's __init__ importing its child is fine
                visit(imported, trail + [name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def every_import(path: Path, known: set[str]) -> set[str]:
    """pan_cli modules `path` imports anywhere: at load time, inside functions, for type checking."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        out |= {n for n in names if n in known}
    return out


def test_losses_and_datasets_are_leaves():
    """They import torch, numpy, PIL and each other, and from the rest of pan_cli only the
    shared errors and atomic file writing: what a reader of a loss or a dataset needs is there."""
    found = modules()
    allowed = {"pan_cli.errors", "pan_cli.files"}
    for name, path in found.items():
        if name.startswith(("pan_cli.losses", "pan_cli.datasets")):
            outside = {m for m in every_import(path, set(found)) - allowed
                       if not m.startswith(("pan_cli.losses", "pan_cli.datasets"))}
            assert not outside, (name, outside)


def test_no_import_cycle_even_through_imports_inside_functions():
    found = modules()
    graph = {name: every_import(path, set(found)) - {name} for name, path in found.items()}
    _no_cycle(graph)


def test_no_module_tests_a_task_objective_or_generator_name_outside_its_registry():
    """Behaviour is asked of the Task, the Objective or the Generator class, never dispatched on
    their names (tasks.py, losses/objectives.py and models/networks.py define them)."""
    from pan_cli.losses.objectives import OBJECTIVES
    from pan_cli.models.networks import GENERATORS
    from pan_cli.tasks import TASKS

    names = "|".join(re.escape(n) for n in (*TASKS, *OBJECTIVES, *GENERATORS))
    test = re.compile(rf"""(==|!=|\bin)\s*[\(\[{{]?\s*["']({names})["']|["']({names})["']\s*(==|!=)""")
    registries = {"pan_cli.tasks", "pan_cli.losses.objectives", "pan_cli.models.networks"}
    found = {name: [line.strip() for line in path.read_text().splitlines() if test.search(line)]
             for name, path in modules().items() if name not in registries}
    assert not {name: lines for name, lines in found.items() if lines}
