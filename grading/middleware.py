"""Requests no view should see.

PostgreSQL refuses a NUL character in a text value, so a URL or a query parameter carrying one
(`/items/x%00y/`, `/results/?reviewer=a%00b`) raised `DataError` — a server error — in every
view that looks the value up: each opaque id in a path, each filter of the results and items
pages (found by `tests/grading/test_results_edge_cases.py` on PostgreSQL; SQLite accepts NUL,
which hid it). No id, slug, code or name of ours can hold a NUL, so such a request is refused
with a 400 before it reaches a view, on every database alike. Form fields already refuse NUL
(Django's `ProhibitNullCharactersValidator`); request bodies are left to them.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBadRequest
from django.http.response import HttpResponseBase

NUL = "\x00"


def has_nul(request: HttpRequest) -> bool:
    """Does the request's path or query string carry a NUL character, once decoded?"""
    if NUL in request.path:
        return True
    return any(
        NUL in key or any(NUL in value for value in values) for key, values in request.GET.lists()
    )


def refuse_nul_characters(
    get_response: Callable[[HttpRequest], HttpResponseBase],
) -> Callable[[HttpRequest], HttpResponseBase]:
    """Answer 400 to a request whose path or query string carries a NUL character."""

    def middleware(request: HttpRequest) -> HttpResponseBase:
        if has_nul(request):
            return HttpResponseBadRequest(
                "A NUL character is not allowed in a URL.", content_type="text/plain"
            )
        return get_response(request)

    return middleware
