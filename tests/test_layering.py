"""`grading` depends on `inference`, never the reverse (DESIGN §3)."""

from __future__ import annotations

import ast

from tests.conftest import REPO


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
