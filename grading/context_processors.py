from __future__ import annotations

from django.http import HttpRequest

from .roles import is_admin, is_reviewer


def roles(request: HttpRequest) -> dict[str, bool]:
    """Expose the viewer's roles to templates, for navigation only (views check permissions)."""
    user = getattr(request, "user", None)
    if user is None:
        return {"is_admin": False, "is_reviewer": False}
    return {"is_admin": is_admin(user), "is_reviewer": is_reviewer(user)}
