"""Number formats of the comparison pages."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def pvalue(value: float | None) -> str:
    """A p-value as researchers write it: three decimals, `<0.001` below that, `—` when none."""
    if value is None:
        return "—"
    if value < 0.001:
        return "<0.001"
    return f"{value:.3f}"


@register.filter
def signed(value: float | None, digits: int = 1) -> str:
    """A difference with its sign (`+1.2`, `−0.4`, `0.0`); `—` when there is none."""
    if value is None:
        return "—"
    text = f"{value:+.{digits}f}"
    if float(text) == 0:
        return f"{0:.{digits}f}"
    return text.replace("-", "−")


@register.filter
def one(value: float | None, digits: int = 1) -> str:
    """A figure to `digits` decimals (one, as the reference study's tables); `—` for none."""
    if value is None:
        return "—"
    return f"{value:.{digits}f}"


@register.filter
def percent(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value * 100:.0f}%"
