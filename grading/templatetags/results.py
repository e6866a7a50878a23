"""Number formats of the comparison pages."""

from __future__ import annotations

from numbers import Real

from django import template

register = template.Library()


def _number(value: object) -> float | None:
    """The value as a float, or None for anything that is not a number (a missing figure
    reaches a filter as None, or as "" when a template looks it up on a missing object)."""
    if isinstance(value, Real) and not isinstance(value, bool):
        return float(value)
    return None


@register.filter
def pvalue(value: object) -> str:
    """A p-value as researchers write it: three decimals, `<0.001` below that, `—` when none."""
    value = _number(value)
    if value is None:
        return "—"
    if value < 0.001:
        return "<0.001"
    return f"{value:.3f}"


@register.filter
def signed(value: object, digits: int = 1) -> str:
    """A difference with its sign (`+1.2`, `−0.4`, `0.0`); `—` when there is none."""
    value = _number(value)
    if value is None:
        return "—"
    text = f"{value:+.{digits}f}"
    if float(text) == 0:
        return f"{0:.{digits}f}"
    return text.replace("-", "−")


@register.filter
def one(value: object, digits: int = 1) -> str:
    """A figure to `digits` decimals (one, as the reference study's tables); `—` for none."""
    value = _number(value)
    if value is None:
        return "—"
    return f"{value:.{digits}f}"


@register.filter
def percent(value: object) -> str:
    """A share as a whole percentage; `—` for none."""
    value = _number(value)
    if value is None:
        return "—"
    return f"{value * 100:.0f}%"
