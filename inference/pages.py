"""Whole page or htmx fragment: one rule for every view.

A page's template marks the parts htmx swaps with `{% partialdef NAME %}`, and the element that
part renders carries `id="NAME"`. An htmx request whose target (`HX-Target`, the id of the
element being swapped) is one of the parts the view names gets that part alone; everything
else gets the whole page — a plain request, a boosted one, and above all a history restore
(the Back button after htmx pushed a URL, when htmx's own history cache misses): answering that
with a fragment left a page with no top bar. Every response says `Vary: HX-Request`, so a
browser or proxy cache never hands the fragment of a URL to a request for its page.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import patch_vary_headers
from django_htmx.http import HttpResponseClientRedirect, push_url

__all__ = ["HttpResponseClientRedirect", "fragment_wanted", "push_url", "render_page"]


def fragment_wanted(request: HttpRequest, fragments: Collection[str]) -> str | None:
    """The part of the page this request asks for, or None for the whole page."""
    htmx = getattr(request, "htmx", None)
    if not htmx or htmx.history_restore_request or htmx.boosted:
        return None
    target = htmx.target
    return target if target in fragments else None


def render_page(
    request: HttpRequest,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    fragments: Collection[str] = (),
    status: int = 200,
) -> HttpResponse:
    """Render `template` whole, or the fragment an htmx request targets (see module doc)."""
    part = fragment_wanted(request, fragments)
    name = f"{template}#{part}" if part else template
    response = render(request, name, context, status=status)
    patch_vary_headers(response, ("HX-Request",))
    return response
