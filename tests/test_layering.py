"""How modules depend on each other: `grading` on `inference`, never the reverse (DESIGN §3),
and no module imports a module that imports it back."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

APPS = ("grading", "inference")


def imported_modules(path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_inference_never_imports_grading() -> None:
    offenders = []
    files = sorted((REPO / "inference").rglob("*.py"))
    assert len(files) > 5
    for path in files:
        for module in imported_modules(path):
            if module == "grading" or module.startswith("grading."):
                offenders.append(f"{path.relative_to(REPO)} imports {module}")
    assert offenders == []


# --- Import cycles ---------------------------------------------------------------------------


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path, packages: tuple[str, ...] = APPS) -> dict[str, set[str]]:
    """Each module of `packages` (migrations aside) → the modules of `packages` it imports,
    anywhere in the file (inside functions too), relative imports resolved.

    `from package import name` counts as importing `package.name` when that is a module.
    """
    paths = {
        module_name(root, path): path
        for package in packages
        for path in sorted((root / package).rglob("*.py"))
        if "migrations" not in path.parts
    }
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        # What a relative import starts from: the package itself, or the module's package.
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here[: len(here) - (node.level - 1)]
                    source = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    source = node.module or ""
                for alias in node.names:
                    submodule = f"{source}.{alias.name}"
                    targets.add(submodule if submodule in paths else source)
        graph[name] = {target for target in targets if target in paths and target != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One import path round each cycle (each group of modules importing one another), such as
    `["a", "b", "a"]`; empty when there is none."""
    found: list[list[str]] = []
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        # Depth-first, keeping the path from `start` to the module being looked at.
        path: list[str] = []
        on_path: set[str] = set()
        stack: list[tuple[str, list[str]]] = [(start, sorted(graph[start]))]
        path.append(start)
        on_path.add(start)
        while stack:
            module, pending = stack[-1]
            if not pending:
                stack.pop()
                path.pop()
                on_path.discard(module)
                done.add(module)
                continue
            target = pending.pop(0)
            if target in on_path:
                found.append([*path[path.index(target) :], target])
            elif target not in done:
                stack.append((target, sorted(graph[target])))
                path.append(target)
                on_path.add(target)
    return found


def test_no_module_imports_a_module_that_imports_it_back() -> None:
    graph = import_graph(REPO)
    assert len(graph) > 50
    assert {"grading.exports", "inference.dispatch"} <= graph.keys()
    assert [" → ".join(cycle) for cycle in cycles(graph)] == []


def test_a_cycle_through_an_import_inside_a_function_is_found(tmp_path: Path) -> None:
    package = tmp_path / "grading"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "tasks.py").write_text("from . import exports\n")
    (package / "exports.py").write_text("def enqueue():\n    from .sub.queue import send\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "queue.py").write_text("from ..tasks import run\n\ndef send(): ...\n")
    (package / "alone.py").write_text("import grading.exports\n")

    graph = import_graph(tmp_path, ("grading",))

    assert graph["grading.exports"] == {"grading.sub.queue"}
    assert graph["grading.alone"] == {"grading.exports"}
    assert cycles(graph) == [
        ["grading.exports", "grading.sub.queue", "grading.tasks", "grading.exports"]
    ]


def test_tasks_sent_by_name_are_registered_under_that_name() -> None:
    # These modules enqueue by task name so as not to import the task modules that import them.
    from grading import exports, freshness, worker_ping
    from grading import tasks as grading_tasks
    from inference import dispatch
    from inference import tasks as inference_tasks

    assert inference_tasks.run_generation.name == dispatch.RUN_GENERATION
    assert inference_tasks.run_judgement.name == dispatch.RUN_JUDGEMENT
    assert grading_tasks.write_export.name == exports.WRITE_EXPORT
    assert grading_tasks.rebuild_results.name == freshness.REBUILD_RESULTS
    assert grading_tasks.ping.name == worker_ping.PING
    assert grading_tasks.PING_KEY is worker_ping.PING_KEY
