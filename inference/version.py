"""gradebench's own version, as recorded with every generation (DESIGN §12).

`pyproject.toml` is the one place the version is written. A source checkout (how gradebench runs:
`make demo`, a worker started from the repository) reads it from there, so the record never shows
the stale metadata of an older install; an installed copy without the file reads its package
metadata. Nothing here imports Django: the model simulator uses it too.
"""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import metadata
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
DISTRIBUTION = "gradebench"


@cache
def gradebench_version() -> str:
    """gradebench's version ("0.1.0"), or "" when neither source names one."""
    try:
        with PYPROJECT.open("rb") as handle:
            project = tomllib.load(handle).get("project", {})
        if project.get("name") == DISTRIBUTION and isinstance(project.get("version"), str):
            return str(project["version"])
    except (OSError, tomllib.TOMLDecodeError):
        pass
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return ""
