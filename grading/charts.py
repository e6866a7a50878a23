"""The comparison pages' charts: Plotly figures built from a `comparison.Selection`.

Each `Chart` carries its figure (plain data and layout, drawn by the plotly.js that ships inside
the plotly package, see `grading.staticfiles`) and the table of numbers behind it, which the
pages offer as CSV. Figures hold only numbers and labels computed here; nothing from model output.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from django.utils.translation import get_language
from django.utils.translation import gettext as _

from inference.models import Campaign

from .comparison import ModelSummary, Selection, TaskTypeInfo
from .judge_stats import CACHE_TIMEOUT_S, Current, JudgeReport, Point

SCORE_RANGE = [0, 10]
# Colour-blind-safe (Okabe–Ito), in model order.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    note: str
    figure: dict[str, Any]
    header: tuple[str, ...]
    rows: list[tuple[Any, ...]]

    @property
    def script_id(self) -> str:
        return f"figure-{self.id}"

    @property
    def empty(self) -> bool:
        """Nothing to draw (no timings for imported scores, say): the page says so instead."""
        return not self.rows


def _type_label(t: TaskTypeInfo) -> str:
    name = t.name_zh if (get_language() or "").startswith("zh") else t.name_en
    return f"{t.code} {name}"


def _layout(**extra: Any) -> dict[str, Any]:
    return {
        "margin": {"l": 60, "r": 20, "t": 30, "b": 80},
        "legend": {"orientation": "h", "y": -0.2},
        "font": {"family": "system-ui, 'Noto Sans CJK SC', sans-serif", "size": 12},
        "colorway": list(PALETTE),
        **extra,
    }


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def grouped_bars(selection: Selection) -> Chart:
    labels = [_type_label(t) for t in selection.task_types]
    traces = []
    rows = []
    for model in selection.models:
        means, up, down = [], [], []
        for t in selection.task_types:
            cell = selection.cells.get((t.code, model.slug))
            s = cell.summary if cell else None
            means.append(_round(s.mean) if s else None)
            up.append(_round(s.ci_high - s.mean) if s else None)
            down.append(_round(s.mean - s.ci_low) if s else None)
            if s:
                rows.append((t.code, model.slug, s.items, s.scores, s.mean, s.ci_low, s.ci_high))
        traces.append(
            {
                "type": "bar",
                "name": model.slug,
                "x": labels,
                "y": means,
                "error_y": {"type": "data", "array": up, "arrayminus": down, "visible": True},
                "customdata": [[t.code, model.slug] for t in selection.task_types],
                "hovertemplate": "%{x}<br>%{fullData.name}: %{y:.2f}<extra></extra>",
            }
        )
    return Chart(
        "bars",
        _("Mean score per task type, with the 95% CI"),
        _("Mean over items of each item's mean score; whiskers: bootstrap 95% CI over items."),
        {
            "data": traces,
            "layout": _layout(
                barmode="group",
                yaxis={"range": SCORE_RANGE, "title": {"text": _("score (0–10)")}},
            ),
        },
        ("task_type", "model", "items", "scores", "mean", "ci_low", "ci_high"),
        rows,
    )


def heatmap(selection: Selection) -> Chart:
    labels = [_type_label(t) for t in selection.task_types]
    models = [m.slug for m in selection.models]
    z: list[list[float | None]] = []
    rows = []
    for t in selection.task_types:
        line: list[float | None] = []
        for slug in models:
            cell = selection.cells.get((t.code, slug))
            line.append(_round(cell.summary.mean) if cell else None)
            if cell:
                rows.append((t.code, slug, cell.summary.mean))
        z.append(line)
    return Chart(
        "heatmap",
        _("Task type × model"),
        _("Mean score; empty where a model answered no item of the type."),
        {
            "data": [
                {
                    "type": "heatmap",
                    "x": models,
                    "y": labels,
                    "z": z,
                    "zmin": 0,
                    "zmax": 10,
                    "colorscale": "Viridis",
                    "texttemplate": "%{z:.1f}",
                    "customdata": [
                        [[t.code, slug] for slug in models] for t in selection.task_types
                    ],
                    "hovertemplate": "%{y}<br>%{x}: %{z:.2f}<extra></extra>",
                }
            ],
            "layout": _layout(
                height=max(320, 26 * len(labels) + 120),
                yaxis={"autorange": "reversed", "automargin": True},
            ),
        },
        ("task_type", "model", "mean"),
        rows,
    )


def box_plots(summaries: Sequence[ModelSummary]) -> Chart:
    traces = []
    rows = []
    for s in summaries:
        if s.quartiles is None:
            continue
        low, q1, median, q3, high = s.quartiles
        traces.append(
            {
                "type": "box",
                "name": s.model.slug,
                "x": [s.model.slug],
                "lowerfence": [low],
                "q1": [q1],
                "median": [median],
                "q3": [q3],
                "upperfence": [high],
                "mean": [s.over_items],
                "boxpoints": False,
            }
        )
        rows.append((s.model.slug, s.items, low, q1, median, q3, high, s.over_items))
    return Chart(
        "box",
        _("Distribution of item scores per model"),
        _("Each item's mean score; box: quartiles, whiskers: min and max, dashed: mean."),
        {
            "data": traces,
            "layout": _layout(showlegend=False, yaxis={"range": [-0.5, 10.5]}),
        },
        ("model", "items", "min", "q1", "median", "q3", "max", "mean"),
        rows,
    )


def radar(selection: Selection) -> Chart:
    codes = [t.code for t in selection.task_types]
    traces = []
    rows = []
    for model in selection.models:
        values = []
        for code in codes:
            cell = selection.cells.get((code, model.slug))
            values.append(_round(cell.summary.mean) if cell else None)
            if cell:
                rows.append((code, model.slug, cell.summary.mean))
        traces.append(
            {
                "type": "scatterpolar",
                "name": model.slug,
                "r": [*values, values[0]] if values else [],
                "theta": [*codes, codes[0]] if codes else [],
                "fill": "toself",
                "opacity": 0.6,
                "connectgaps": True,
            }
        )
    return Chart(
        "radar",
        _("Profile over task types"),
        _("Mean score per task type."),
        {"data": traces, "layout": _layout(polar={"radialaxis": {"range": SCORE_RANGE}})},
        ("task_type", "model", "mean"),
        rows,
    )


def histograms(summaries: Sequence[ModelSummary]) -> Chart:
    scores = list(range(11))
    traces = []
    rows: list[tuple[Any, ...]] = []
    for s in summaries:
        total = sum(s.histogram)
        if not total:
            continue
        traces.append(
            {
                "type": "bar",
                "name": s.model.slug,
                "x": scores,
                "y": s.histogram,
                "hovertemplate": "%{fullData.name}: %{y} × %{x}<extra></extra>",
            }
        )
        rows.extend((s.model.slug, score, n) for score, n in zip(scores, s.histogram, strict=True))
    return Chart(
        "histogram",
        _("Scores given, 0–10"),
        _("How many scores of each value every model received."),
        {
            "data": traces,
            "layout": _layout(
                barmode="group",
                xaxis={"dtick": 1, "title": {"text": _("score")}},
                yaxis={"title": {"text": _("scores")}},
            ),
        },
        ("model", "score", "count"),
        rows,
    )


def _bars(name: str, models: list[str], values: list[float | None]) -> dict[str, Any]:
    return {"type": "bar", "name": name, "x": models, "y": [_round(v, 1) for v in values]}


def speed_bars(summaries: Sequence[ModelSummary]) -> list[Chart]:
    timed = [s for s in summaries if s.speed.ttft_ms.n]
    models = [s.model.slug for s in timed]
    ttft = Chart(
        "ttft",
        _("Time to first token"),
        _("Median and 90th percentile over succeeded generations, in milliseconds."),
        {
            "data": [
                _bars(_("median"), models, [s.speed.ttft_ms.median for s in timed]),
                _bars(_("p90"), models, [s.speed.ttft_ms.p90 for s in timed]),
            ],
            "layout": _layout(barmode="group", yaxis={"title": {"text": "ms"}}),
        },
        ("model", "generations", "ttft_ms_median", "ttft_ms_p90"),
        [
            (s.model.slug, s.speed.ttft_ms.n, s.speed.ttft_ms.median, s.speed.ttft_ms.p90)
            for s in timed
        ],
    )
    timed = [s for s in summaries if s.speed.decode_tps.n or s.speed.e2e_tps.n]
    models = [s.model.slug for s in timed]
    tps = Chart(
        "tps",
        _("Decode speed (tokens/s)"),
        _(
            "decode_tps = (completion tokens − 1) / (last token − first token): the server's "
            "generation speed, without the wait for the first token. e2e_tps = completion "
            "tokens / response time, the reference study's figure. Medians."
        ),
        {
            "data": [
                _bars("decode_tps", models, [s.speed.decode_tps.median for s in timed]),
                _bars("e2e_tps", models, [s.speed.e2e_tps.median for s in timed]),
            ],
            "layout": _layout(barmode="group", yaxis={"title": {"text": _("tokens/s")}}),
        },
        (
            "model",
            "generations",
            "decode_tps_median",
            "decode_tps_p90",
            "e2e_tps_median",
            "e2e_tps_p90",
        ),
        [
            (
                s.model.slug,
                s.speed.decode_tps.n,
                s.speed.decode_tps.median,
                s.speed.decode_tps.p90,
                s.speed.e2e_tps.median,
                s.speed.e2e_tps.p90,
            )
            for s in timed
        ],
    )
    return [ttft, tps]


def quality_speed(summaries: Sequence[ModelSummary]) -> Chart:
    points = [
        s for s in summaries if s.over_types is not None and s.speed.decode_tps.median is not None
    ]
    return Chart(
        "scatter",
        _("Quality versus speed"),
        _("Mean score over task types against median decode tokens/s; up and right is better."),
        {
            "data": [
                {
                    "type": "scatter",
                    "mode": "markers+text",
                    "name": s.model.slug,
                    "x": [_round(s.speed.decode_tps.median, 1)],
                    "y": [_round(s.over_types)],
                    "text": [s.model.slug],
                    "textposition": "top center",
                    "marker": {"size": 14},
                }
                for s in points
            ],
            "layout": _layout(
                showlegend=False,
                xaxis={"title": {"text": _("decode tokens/s (median)")}, "rangemode": "tozero"},
                yaxis={"title": {"text": _("mean score")}, "range": SCORE_RANGE},
            ),
        },
        ("model", "mean_score", "decode_tps_median"),
        [(s.model.slug, s.over_types, s.speed.decode_tps.median) for s in points],
    )


def charts(selection: Selection) -> list[Chart]:
    """Every chart of a comparison page, in page order."""
    summaries = selection.model_summaries
    return [
        grouped_bars(selection),
        heatmap(selection),
        box_plots(summaries),
        radar(selection),
        histograms(summaries),
        *speed_bars(summaries),
        quality_speed(summaries),
    ]


def judge_charts(campaign: Campaign, prompt_version: str, current: Current) -> list[Chart]:
    """`judge_scatter` of each judge of these judge results, built once per build and language
    (a chart of 100,000 answers takes 50 ms to assemble; the page is read far more often than
    its figures are rebuilt)."""
    build = repr((campaign.public_id, prompt_version, current.as_of.isoformat(), get_language()))
    key = "judge-charts:" + hashlib.sha256(build.encode()).hexdigest()[:32]
    made: list[Chart] | None = cache.get(key)
    if made is None:
        made = [judge_scatter(report) for report in current.results.reports]
        cache.set(key, made, CACHE_TIMEOUT_S)
    return made


def judge_scatter(report: JudgeReport) -> Chart:
    """The judge's score against the people's mean, per answer, one colour per task type.

    Answers of one task type with the same human mean and judge score are one bubble, sized by
    their number, so the figure stays small however many answers were judged.
    """
    by_type: dict[str, list[Point]] = {}
    for point in report.points:
        by_type.setdefault(point.task_type, []).append(point)
    traces: list[dict[str, Any]] = [
        {
            "type": "scatter",
            "mode": "lines",
            "name": _("judge = people"),
            "x": SCORE_RANGE,
            "y": SCORE_RANGE,
            "line": {"dash": "dot", "color": "#999999"},
            "hoverinfo": "skip",
        }
    ]
    for code, points in by_type.items():
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": code,
                "x": [_round(p.human_mean) for p in points],
                "y": [p.judge_score for p in points],
                "customdata": [p.answers for p in points],
                "marker": {
                    "size": [min(40, 6 + 3 * p.answers**0.5) for p in points],
                    "opacity": 0.7,
                },
                "hovertemplate": (
                    "%{fullData.name}<br>"
                    + _("people")
                    + ": %{x:.2f}<br>"
                    + _("judge")
                    + ": %{y}<br>%{customdata} "
                    + _("answers")
                    + "<extra></extra>"
                ),
            }
        )
    return Chart(
        f"judge-{report.judge.slug}",
        _("Judge score against the people's mean, per answer"),
        _(
            "Each bubble: answers of one task type with that human mean score and that judge "
            "score, sized by their number. On the dotted line the judge agrees with the people; "
            "above it the judge is more lenient."
        ),
        {
            "data": traces,
            "layout": _layout(
                xaxis={"range": [-0.5, 10.5], "title": {"text": _("people's mean score")}},
                yaxis={"range": [-0.5, 10.5], "title": {"text": _("judge score")}},
            ),
        },
        ("task_type", "human_mean", "judge_score", "answers"),
        [(p.task_type, p.human_mean, p.judge_score, p.answers) for p in report.points],
    )
