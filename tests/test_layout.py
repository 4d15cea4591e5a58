"""The rooms stay small and the package has no import cycle (what the code's layout promises)."""

from __future__ import annotations

import ast
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
    graph = {name: load_time_imports(path, set(found)) - {name} for name, path in found.items()}
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
