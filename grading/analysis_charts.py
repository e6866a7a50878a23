"""The bias and ranking page's charts: Plotly figures built from an `analyses.Selection`.

Like `grading.charts` (whose `Chart` they are): each carries its figure and the table of numbers
behind it, offered as CSV. The position and ranking charts' tables are `export_analysis` rows
(`analysis_export.position_row`, `ranking_row`), so the chart, the page and the export agree.
"""

from __future__ import annotations

import math
from typing import Any

from django.utils.translation import gettext as _

from . import analysis_export
from .analyses import POINTS_PER_CELL, Selection
from .charts import PALETTE, Chart, _layout, _round

POINTS_PER_MODEL = 600
"""At most this many points per model in the length chart (every k-th of those in view)."""


def position_effect(selection: Selection) -> Chart:
    measured = [r for r in selection.position if r.result.measured]
    rows = [analysis_export.position_row(r.campaign, r.reviewer, r.result) for r in measured]
    effects = [r.result.effect or 0.0 for r in measured]
    return Chart(
        "position",
        _("Position effect per campaign, with the 95% CI"),
        _(
            "Mean score when shown first minus when shown second, same model on the same item; "
            "whiskers: bootstrap CI over items. Red: p < 0.05 (Wilcoxon signed-rank over items)."
        ),
        {
            "data": [
                {
                    "type": "scatter",
                    "mode": "markers",
                    "name": _("effect"),
                    "y": [r.campaign for r in measured],
                    "x": [_round(e) for e in effects],
                    "error_x": {
                        "type": "data",
                        "array": [
                            _round((r.result.ci_high or 0) - e)
                            for r, e in zip(measured, effects, strict=True)
                        ],
                        "arrayminus": [
                            _round(e - (r.result.ci_low or 0))
                            for r, e in zip(measured, effects, strict=True)
                        ],
                        "visible": True,
                    },
                    "marker": {
                        "size": 12,
                        "color": ["#D55E00" if r.significant else PALETTE[0] for r in measured],
                    },
                    "hovertemplate": "%{y}: %{x:+.2f}<extra></extra>",
                }
            ],
            "layout": _layout(
                showlegend=False,
                height=max(240, 40 * len(measured) + 120),
                xaxis={
                    "title": {"text": _("first − second (score points)")},
                    "zeroline": True,
                    "rangemode": "tozero",  # 0, no effect, is always in sight
                },
                yaxis={"automargin": True, "autorange": "reversed"},
            ),
        },
        analysis_export.POSITION_COLUMNS,
        rows,
    )


def length_scatter(selection: Selection) -> Chart:
    by_model: dict[str, list[tuple[str, str, str, float, float]]] = {}
    for (campaign, code, model), (unit, drawn) in selection.points.items():
        by_model.setdefault(model, []).extend((campaign, code, unit, x, y) for x, y in drawn)
    traces = []
    rows: list[tuple[Any, ...]] = []
    for model in [m.slug for m in selection.base.models]:
        answers = sorted(by_model.get(model, []))
        if not answers:
            continue
        if len(answers) > POINTS_PER_MODEL:  # an even thinning, the same every time
            answers = answers[:: math.ceil(len(answers) / POINTS_PER_MODEL)]
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": model,
                "x": [a[3] for a in answers],
                "y": [_round(a[4]) for a in answers],
                "customdata": [[c, t, u] for c, t, u, _, _ in answers],
                "marker": {"size": 6, "opacity": 0.6},
                "hovertemplate": (
                    "%{fullData.name} · %{customdata[0]} · %{customdata[1]}<br>"
                    "%{x} %{customdata[2]}: %{y:.2f}<extra></extra>"
                ),
            }
        )
        rows.extend((c, t, model, u, x, y) for c, t, u, x, y in answers)
    return Chart(
        "length",
        _("Answer length against score, per model"),
        _(
            "Each point is one answer: its length (completion tokens where every answer of the "
            "task type has a count, else characters) and its mean score. Drawn: a fixed sample of "
            "at most %(cell)s answers per campaign, task type and model, thinned to at most "
            "%(model)s per model."
        )
        % {"cell": POINTS_PER_CELL, "model": POINTS_PER_MODEL},
        {
            "data": traces,
            "layout": _layout(
                xaxis={"title": {"text": _("answer length")}, "rangemode": "tozero"},
                yaxis={"title": {"text": _("mean score")}, "range": [-0.5, 10.5]},
            ),
        },
        ("campaign", "task_type", "model", "unit", "length", "mean_score"),
        rows,
    )


def ranking_forest(selection: Selection) -> Chart:
    rated = [r for r in selection.overall if r.rating is not None]
    ratings = [r.rating or 0.0 for r in rated]
    return Chart(
        "ranking",
        _("Bradley-Terry ratings, all task types, with the 95% CI"),
        _(
            "Rating on the Elo scale (mean 1000; 400 points are 10:1 odds); whiskers: bootstrap "
            "CI over items. Best first."
        ),
        {
            "data": [
                {
                    "type": "scatter",
                    "mode": "markers",
                    "name": _("rating"),
                    "y": [r.model for r in rated],
                    "x": [_round(v, 0) for v in ratings],
                    "error_x": {
                        "type": "data",
                        "array": [
                            _round((r.ci_high or 0) - v, 0)
                            for r, v in zip(rated, ratings, strict=True)
                        ],
                        "arrayminus": [
                            _round(v - (r.ci_low or 0), 0)
                            for r, v in zip(rated, ratings, strict=True)
                        ],
                        "visible": True,
                    },
                    "marker": {"size": 12},
                    "hovertemplate": "%{y}: %{x:.0f}<extra></extra>",
                }
            ],
            "layout": _layout(
                showlegend=False,
                height=max(240, 40 * len(rated) + 120),
                xaxis={"title": {"text": _("rating")}},
                yaxis={"automargin": True, "autorange": "reversed"},
            ),
        },
        analysis_export.RANKING_COLUMNS,
        [analysis_export.ranking_row("", r) for r in selection.overall],
    )


def charts(selection: Selection) -> list[Chart]:
    """Every chart of the bias and ranking page, in page order."""
    return [ranking_forest(selection), position_effect(selection), length_scatter(selection)]
