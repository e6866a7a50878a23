"""Static files that come from installed packages rather than from `static/`.

plotly.js is served from the copy inside the plotly Python package (pinned in
requirements), so the charts work offline and the file is never copied by hand.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import plotly
from django.contrib.staticfiles.finders import BaseFinder
from django.core.files.storage import FileSystemStorage

PLOTLY_JS = "vendor/plotly.min.js"


class _PrefixedStorage(FileSystemStorage):
    prefix = "vendor"


class PlotlyFinder(BaseFinder):
    """Finds `vendor/plotly.min.js` in the installed plotly package (runserver, collectstatic)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.storage = _PrefixedStorage(location=Path(plotly.__file__).parent / "package_data")

    def find(self, path: str, find_all: bool = False, **kwargs: Any) -> Any:
        matched = self.storage.path("plotly.min.js") if path == PLOTLY_JS else None
        if kwargs.get("all", find_all):
            return [matched] if matched else []
        return matched

    def list(self, ignore_patterns: Any) -> Iterator[tuple[str, FileSystemStorage]]:
        yield "plotly.min.js", self.storage
