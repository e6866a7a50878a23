"""The results pages and `export_scores --aggregate` against an independent recomputation.

For many seeded random studies (`tests.builders.random_study`), as an admin: every results page
answers 200, with and without filters, and every CSV behind it — the matchup tables
(`?csv=table`), each chart's numbers (`?csv=<chart id>`) and `export_scores --aggregate` —
equals what this module recomputes from the rows of `export_scores` (and `export_generations`
for the speed charts, which are over succeeded answers, scored or not), by the definitions of
DESIGN §7. Nothing here imports `grading.stats`, `grading.comparison` or `grading.charts`:
the figures are rebuilt with numpy and scipy from the documented rules.

Scope (DESIGN §7, "Scope of a figure"):

- A campaign's matchup table, on its own page and on the overview alike, comes from that
  campaign's scores only: its first model (lowest `CampaignModel.position`) against each other
  model, A − B over the items both have scores for in that campaign. A row exists for a task
  type when the campaign has a score of A or of B in it; Holm's correction runs over the rows
  of one table that have a p-value.
- An item's mean is the mean of every score of that model's answers to it in that campaign
  (all samples, all reviewers); a cell's mean is the mean over items of item means.
- On a campaign page the charts use that campaign's scores only. On the overview they pool
  each model over the campaigns in view (those with at least one score, or those chosen with
  `?campaign=`), the unit being (campaign, item): an item answered in two campaigns counts twice.
- `task_type` (repeatable) and `modality` select task types; `reviewer` keeps that reviewer's
  scores only (speed figures are about answers, not scores, and do not change with it).
- `export_scores --aggregate` has one row per campaign × task type × model, campaign-scoped.

CSV cells carry three decimals; the test widens them (`inference.csv_writing.FLOAT_DECIMALS`) so
every figure compares to 1e-9, bootstrap intervals included: they are recomputed with
`scipy.stats.bootstrap` as `grading.stats`'s docstring documents them (Hesterberg's expanded
percentile level, `RESAMPLES` resamples from `numpy.random.default_rng(SEED)` over the sorted
values). Wilcoxon p-values follow the same docstring: scipy's exact test without ties or zeros,
the exact distribution over all sign flips (`scipy.stats.permutation_test`) with ties or zeros
and at most 16 non-zero differences, else scipy's normal approximation with the tie and
continuity corrections.

Each study checks the unfiltered overview and every campaign page, then `FILTERED_PAGES` random
filters; each page's HTML, its `?csv=table` and a sample of its chart CSVs (see
`CHARTS_PER_PAGE`), and one htmx request. `GRADEBENCH_RECOMPUTE_STUDIES` sets the number of
studies (default `DEFAULT_STUDIES`: about 45 s of CPU on SQLite); `GRADEBENCH_RECOMPUTE_SEED=N`
runs the one study of seed N, as the failure message suggests; `GRADEBENCH_RECOMPUTE_EVERY_CSV=1`
compares every chart CSV of every page. `tests/benchmarks/bench_recompute_soak.py` runs 2,000.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import logging
import math
import os
import random
import statistics
import traceback
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from io import StringIO
from typing import Any
from urllib.parse import urlencode

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.management import call_command
from django.db import transaction
from django.test import Client
from scipy import stats

from inference import csv_writing
from inference.models import TaskType
from tests.builders import FEATURES, Study, StudyCampaign, random_study
from tests.conftest import logged_in

DEFAULT_STUDIES = 150
MIN_STUDIES_FOR_COVERAGE = 100
"""From this many studies on, every messy case of `random_study` must have been drawn, every
rule of the Wilcoxon test used and every CSV compared on some rows."""
SEED = 20250301
"""`grading.stats.SEED`: every bootstrap draws from `numpy.random.default_rng(SEED)`."""
RESAMPLES = 2000
"""`grading.stats.RESAMPLES`."""
CONFIDENCE = 0.95
EXACT_MAX_TIED = 16
"""With ties or zeros, the exact sign-flip distribution up to this many non-zero differences."""
TOLERANCE = 1e-9
CSV_DECIMALS = 12
CHARTS = ("bars", "heatmap", "box", "radar", "histogram", "ttft", "tps", "scatter")
CHARTS_PER_PAGE = 1
OVERVIEW_CHARTS = 3
"""Chart CSVs compared per page (`OVERVIEW_CHARTS` on the unfiltered overview), with the table:
a request costs about 10 ms of CPU, and more studies find more than more CSVs per study.
`GRADEBENCH_RECOMPUTE_EVERY_CSV=1` compares every chart CSV of every page (the soak does)."""
FILTERED_PAGES = 2
"""Random filters tried per study, on the overview or a campaign page."""
# Per CSV: the columns that identify a row, and those compared (grading/charts.py, DESIGN §4.2).
COLUMNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "table": (
        ("campaign", "model_a", "model_b", "task_type"),
        (
            "matchup",
            "items_a",
            "items_b",
            "mean_a",
            "mean_b",
            "ci_low_a",
            "ci_high_a",
            "ci_low_b",
            "ci_high_b",
            "shared_items",
            "difference",
            "difference_ci_low",
            "difference_ci_high",
            "p_wilcoxon",
            "p_holm",
        ),
    ),
    "bars": (("task_type", "model"), ("items", "scores", "mean", "ci_low", "ci_high")),
    "heatmap": (("task_type", "model"), ("mean",)),
    "radar": (("task_type", "model"), ("mean",)),
    "box": (("model",), ("items", "min", "q1", "median", "q3", "max", "mean")),
    "histogram": (("model", "score"), ("count",)),
    "ttft": (("model",), ("generations", "ttft_ms_median", "ttft_ms_p90")),
    "tps": (
        ("model",),
        ("generations", "decode_tps_median", "decode_tps_p90", "e2e_tps_median", "e2e_tps_p90"),
    ),
    "scatter": (("model",), ("mean_score", "decode_tps_median")),
    "aggregate": (
        ("campaign", "task_type", "model"),
        ("items", "scores", "mean", "ci_low", "ci_high", "median", "std", "min", "max"),
    ),
}
COMPARED: Counter[str] = Counter()
"""Rows compared per CSV, so the test can check that it compared something of each."""

Row = dict[str, Any]
Expected = dict[tuple[str, ...], Row]


# --- What the exports say ------------------------------------------------------------------


@dataclass(frozen=True)
class Given:
    """One row of `export_scores`."""

    campaign: str
    task_type: str
    item: str
    model: str
    reviewer: str
    score: int


@dataclass(frozen=True)
class Answer:
    """One row of `export_generations`, what the speed charts read of it."""

    campaign: str
    task_type: str
    model: str
    status: str
    ttft_ms: float | None
    decode_tps: float | None
    e2e_tps: float | None


def command_text(name: str, *args: str) -> str:
    """What a management command writes to stdout."""
    out = StringIO()
    call_command(name, *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def command_csv(name: str, *args: str) -> list[dict[str, str]]:
    return list(csv.DictReader(StringIO(command_text(name, *args), newline="")))


def number(cell: str) -> float | None:
    return float(cell) if cell else None


def exported_scores() -> list[Given]:
    return [
        Given(
            r["campaign"], r["task_type"], r["item_id"], r["model"], r["reviewer"], int(r["score"])
        )
        for r in command_csv("export_scores")
    ]


def exported_answers() -> list[Answer]:
    return [
        Answer(
            r["campaign"],
            r["task_type"],
            r["model"],
            r["status"],
            number(r["ttft_ms"]),
            number(r["decode_tps"]),
            number(r["e2e_tps"]),
        )
        for r in command_csv("export_generations")
    ]


# --- DESIGN §7, recomputed ---------------------------------------------------------------------


def expanded_level(n: int) -> float:
    """Hesterberg's expanded percentile level for a 95% interval of n values."""
    t = stats.t.ppf(1 - (1 - CONFIDENCE) / 2, n - 1)
    return float(1 - 2 * stats.norm.cdf(-math.sqrt(n / (n - 1)) * t))


@functools.cache
def bootstrap_ci(values: tuple[float, ...]) -> tuple[float, float]:
    """Expanded percentile bootstrap CI of the mean of these (sorted) values."""
    if len(values) == 1 or min(values) == max(values):
        return values[0], values[0]
    result = stats.bootstrap(
        (np.array(values),),
        np.mean,
        method="percentile",
        confidence_level=expanded_level(len(values)),
        n_resamples=RESAMPLES,
        rng=np.random.default_rng(SEED),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


WILCOXON_RULES: Counter[str] = Counter()
"""How often each rule of `wilcoxon_p` was used, so the test can check the studies reach all."""


@functools.cache
def wilcoxon_p(diffs: tuple[float, ...]) -> float:
    """Two-sided Wilcoxon signed-rank p of paired differences, zeros dropped."""
    d = np.array(diffs)
    nonzero = d[d != 0]
    untied = np.unique(np.abs(nonzero)).size == nonzero.size
    if nonzero.size == d.size <= 50 and untied:
        WILCOXON_RULES["exact"] += 1
        return float(stats.wilcoxon(d, zero_method="wilcox", method="exact").pvalue)
    if nonzero.size > EXACT_MAX_TIED:
        WILCOXON_RULES["normal approximation"] += 1
        test = stats.wilcoxon(d, zero_method="wilcox", correction=True, method="approx")
        return float(test.pvalue)
    WILCOXON_RULES["sign flips"] += 1
    if nonzero.size == 1:
        return 1.0  # the two sign flips are equally extreme
    # Exact over all 2^n sign flips of the (tied, averaged) ranks of |d|.
    ranks = stats.rankdata(np.abs(nonzero))

    def positive_rank_sum(x: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.sum(np.where(x > 0, ranks, 0.0), axis=axis)

    test = stats.permutation_test(
        (nonzero,),
        positive_rank_sum,
        permutation_type="samples",
        vectorized=True,
        n_resamples=np.inf,
        alternative="two-sided",
    )
    return float(test.pvalue)


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm–Bonferroni adjusted p-values; None is not a test and does not count in m."""
    present = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for k, (p, i) in enumerate(present):
        running = max(running, min(1.0, (len(present) - k) * p))
        adjusted[i] = running
    return adjusted


@dataclass(frozen=True)
class Summary:
    items: int
    scores: int
    mean: float
    ci_low: float
    ci_high: float
    median: float
    std: float | None
    min: float
    max: float
    q1: float
    q3: float


def item_means(item_scores: Mapping[Any, Sequence[int]]) -> dict[Any, float]:
    return {item: statistics.fmean(values) for item, values in item_scores.items()}


def summarise(item_scores: Mapping[Any, Sequence[int]]) -> Summary:
    """A cell: the mean over items of item means, its CI, and the spread of the item means."""
    means = sorted(item_means(item_scores).values())
    low, high = bootstrap_ci(tuple(means))
    q1, q3 = np.percentile(means, [25, 75])
    return Summary(
        items=len(means),
        scores=sum(len(v) for v in item_scores.values()),
        mean=statistics.fmean(means),
        ci_low=low,
        ci_high=high,
        median=statistics.median(means),
        std=statistics.stdev(means) if len(means) > 1 else None,
        min=means[0],
        max=means[-1],
        q1=float(q1),
        q3=float(q3),
    )


@dataclass(frozen=True)
class Difference:
    shared: int
    diff: float
    ci_low: float
    ci_high: float
    p_value: float | None


def difference(a: Mapping[Any, Sequence[int]], b: Mapping[Any, Sequence[int]]) -> Difference | None:
    """A − B over the items both have scores for; None without a shared item."""
    means_a, means_b = item_means(a), item_means(b)
    diffs = sorted(means_a[item] - means_b[item] for item in means_a.keys() & means_b.keys())
    if not diffs:
        return None
    low, high = bootstrap_ci(tuple(diffs))
    p_value: float | None
    if len(diffs) < 2:
        p_value = None
    elif not any(diffs):
        p_value = 1.0
    else:
        p_value = wilcoxon_p(tuple(diffs))
    return Difference(len(diffs), statistics.fmean(diffs), low, high, p_value)


def spread(values: Sequence[float]) -> tuple[int, float | None, float | None]:
    """How many, median and 90th percentile (linear interpolation)."""
    if not values:
        return 0, None, None
    median, p90 = np.percentile(values, [50, 90])
    return len(values), float(median), float(p90)


# --- One page ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """A results page with its filters, and the campaigns whose data it shows."""

    label: str
    path: str
    query: tuple[tuple[str, str], ...]
    campaigns: tuple[StudyCampaign, ...]
    task_types: frozenset[str] = frozenset()
    modality: str = ""
    reviewer: str = ""

    def url(self, *extra: tuple[str, str]) -> str:
        query = urlencode([*self.query, *extra])
        return f"{self.path}?{query}" if query else self.path

    def __str__(self) -> str:
        return f"{self.label} {self.url()}"

    def selects(self, code: str, modality_of: Mapping[str, str]) -> bool:
        return (not self.task_types or code in self.task_types) and (
            not self.modality or modality_of[code] == self.modality
        )


def expected_csvs(
    page: Page, scores: Sequence[Given], answers: Sequence[Answer], modality_of: Mapping[str, str]
) -> dict[str, Expected]:
    """Every CSV of `page`, recomputed from the export rows."""
    slugs = {c.slug for c in page.campaigns}
    chosen = [
        s
        for s in scores
        if s.campaign in slugs
        and page.selects(s.task_type, modality_of)
        and (not page.reviewer or s.reviewer == page.reviewer)
    ]
    # Per (campaign, task type, model): item -> scores; pooled per (task type, model) over the
    # campaigns of the page, keyed by (campaign, item).
    own: dict[tuple[str, str, str], dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    pooled: dict[tuple[str, str], dict[tuple[str, str], list[int]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for s in chosen:
        own[s.campaign, s.task_type, s.model][s.item].append(s.score)
        pooled[s.task_type, s.model][s.campaign, s.item].append(s.score)
    cells = {key: summarise(items) for key, items in pooled.items()}

    result: dict[str, Expected] = {"table": {}}
    for campaign in page.campaigns:
        if len(campaign.models) < 2:
            continue
        a = campaign.models[0]
        codes = sorted({s.task_type for s in chosen if s.campaign == campaign.slug})
        for b in campaign.models[1:]:
            rows: dict[str, Row] = {}
            for code in codes:
                scores_a = own.get((campaign.slug, code, a))
                scores_b = own.get((campaign.slug, code, b))
                if not scores_a and not scores_b:
                    continue
                sa = summarise(scores_a) if scores_a else None
                sb = summarise(scores_b) if scores_b else None
                d = difference(scores_a, scores_b) if scores_a and scores_b else None
                rows[code] = {
                    "matchup": campaign.matchup,
                    **side(sa, "a"),
                    **side(sb, "b"),
                    "shared_items": d.shared if d else None,
                    "difference": d.diff if d else None,
                    "difference_ci_low": d.ci_low if d else None,
                    "difference_ci_high": d.ci_high if d else None,
                    "p_wilcoxon": d.p_value if d else None,
                }
            adjusted = holm([row["p_wilcoxon"] for row in rows.values()])
            for (code, row), p_holm in zip(rows.items(), adjusted, strict=True):
                row["p_holm"] = p_holm
                result["table"][campaign.slug, a, b, code] = row

    result["bars"] = {
        (code, model): {
            "items": s.items,
            "scores": s.scores,
            "mean": s.mean,
            "ci_low": s.ci_low,
            "ci_high": s.ci_high,
        }
        for (code, model), s in cells.items()
    }
    result["heatmap"] = {key: {"mean": s.mean} for key, s in cells.items()}
    result["radar"] = dict(result["heatmap"])

    models = {model for _, model in pooled}
    result["box"], result["histogram"] = {}, {}
    over_types: dict[str, float] = {}
    for model in models:
        units = [
            mean
            for (_, m), items in pooled.items()
            if m == model
            for mean in item_means(items).values()
        ]
        low, q1, median, q3, high = np.percentile(units, [0, 25, 50, 75, 100])
        result["box"][model,] = {
            "items": len(units), "min": low, "q1": q1, "median": median, "q3": q3,
            "max": high, "mean": statistics.fmean(units),
        }  # fmt: skip
        counts = Counter(s.score for s in chosen if s.model == model)
        for value in range(11):
            result["histogram"][model, str(value)] = {"count": counts[value]}
        over_types[model] = statistics.fmean(s.mean for (_, m), s in cells.items() if m == model)

    succeeded = [
        g
        for g in answers
        if g.campaign in slugs
        and g.status == "succeeded"
        and page.selects(g.task_type, modality_of)
    ]
    result["ttft"], result["tps"], result["scatter"] = {}, {}, {}
    for model in sorted({g.model for g in succeeded}):
        mine = [g for g in succeeded if g.model == model]
        ttft = spread([g.ttft_ms for g in mine if g.ttft_ms is not None])
        decode = spread([g.decode_tps for g in mine if g.decode_tps is not None])
        e2e = spread([g.e2e_tps for g in mine if g.e2e_tps is not None])
        if ttft[0]:
            result["ttft"][model,] = {
                "generations": ttft[0],
                "ttft_ms_median": ttft[1],
                "ttft_ms_p90": ttft[2],
            }
        if decode[0] or e2e[0]:
            result["tps"][model,] = {
                "generations": decode[0], "decode_tps_median": decode[1],
                "decode_tps_p90": decode[2], "e2e_tps_median": e2e[1], "e2e_tps_p90": e2e[2],
            }  # fmt: skip
        if model in over_types and decode[1] is not None:
            result["scatter"][model,] = {
                "mean_score": over_types[model],
                "decode_tps_median": decode[1],
            }
    return result


def side(summary: Summary | None, model: str) -> Row:
    """One model's columns of a matchup table row (`items_a`, `mean_a`, …)."""
    names = ("items", "mean", "ci_low", "ci_high")
    if summary is None:
        return {f"{name}_{model}": None for name in names}
    return {f"{name}_{model}": getattr(summary, name) for name in names}


def expected_aggregate(scores: Sequence[Given]) -> Expected:
    """`export_scores --aggregate`: one row per campaign × task type × model."""
    cells: dict[tuple[str, str, str], dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for given in scores:
        cells[given.campaign, given.task_type, given.model][given.item].append(given.score)
    expected: Expected = {}
    for key, items in cells.items():
        s = summarise(items)
        expected[key] = {
            "items": s.items, "scores": s.scores, "mean": s.mean, "ci_low": s.ci_low,
            "ci_high": s.ci_high, "median": s.median, "std": s.std, "min": s.min, "max": s.max,
        }  # fmt: skip
    return expected


# --- Comparing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One disagreement, named so it can be found again."""

    seed: int
    page: str
    csv: str
    row: str
    column: str
    detail: str

    @property
    def kind(self) -> str:
        """What went wrong, without the particulars: to count studies by it."""
        where = self.page.split(" ", 1)[0]
        if self.column:
            what = f"column {self.column}"
        elif self.detail.startswith(("raised", "answered")):
            what = self.detail.split(":", 1)[0]
        else:
            what = " ".join(self.detail.split()[:2])
        return f"{where} {self.csv or 'page'}: {what}"

    def __str__(self) -> str:
        csv_name = f", CSV {self.csv}" if self.csv else ""
        row = f", row {self.row}" if self.row else ""
        column = f", column {self.column}" if self.column else ""
        return f"seed {self.seed}, page {self.page}{csv_name}{row}{column}: {self.detail}"


def same(expected: Any, cell: str) -> bool:
    if expected is None:
        return cell == ""
    if isinstance(expected, str):
        return cell == expected
    if cell == "":
        return False
    try:
        got = float(cell)
    except ValueError:
        return False
    if isinstance(expected, int | np.integer):
        return got == expected
    return abs(got - float(expected)) <= TOLERANCE


def compare(seed: int, page: str, name: str, text: str, expected: Expected) -> Iterator[Problem]:
    """Problems of one CSV against its recomputation: missing, extra or differing rows."""
    keys, values = COLUMNS[name]
    reader = csv.DictReader(StringIO(text, newline=""))
    header = reader.fieldnames or []
    if missing := [column for column in (*keys, *values) if column not in header]:
        yield Problem(seed, page, name, "", "", f"header {header} lacks {missing}")
        return
    got: dict[tuple[str, ...], dict[str, str]] = {}
    for row in reader:
        key = tuple(row[column] for column in keys)
        if key in got:
            yield Problem(seed, page, name, describe(keys, key), "", "row appears twice")
        got[key] = row
    for key in sorted(expected.keys() - got.keys()):
        yield Problem(seed, page, name, describe(keys, key), "", "row missing")
    for key in sorted(got.keys() - expected.keys()):
        yield Problem(seed, page, name, describe(keys, key), "", f"unexpected row {got[key]}")
    for key in sorted(expected.keys() & got.keys()):
        COMPARED[name] += 1
        assert expected[key].keys() == set(values), f"recomputed {name} lacks a column"
        for column, value in expected[key].items():
            if not same(value, got[key][column]):
                yield Problem(
                    seed,
                    page,
                    name,
                    describe(keys, key),
                    column,
                    f"expected {value!r}, got {got[key][column]!r}",
                )


def describe(columns: Sequence[str], key: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"{c}={v}" for c, v in zip(columns, key, strict=True)) + ")"


def fetch(client: Client, url: str, **headers: str) -> tuple[str | None, str]:
    """The body of a page or CSV, or None and why it failed."""
    try:
        response = client.get(url, headers=headers)
    except Exception as error:  # a view that raised: the test client re-raises it
        frame = traceback.extract_tb(error.__traceback__)[-1]
        where = f"{os.path.relpath(frame.filename)}:{frame.lineno}"
        return None, f"raised {type(error).__name__}: {error} (at {where})"
    if response.status_code != 200:
        return None, f"answered {response.status_code}"
    if response.streaming:
        return b"".join(response.streaming_content).decode(), ""  # type: ignore[attr-defined,arg-type]
    return response.content.decode(), ""


# --- Which pages -----------------------------------------------------------------------------


def pages_to_check(
    rng: random.Random, study: Study, scores: Sequence[Given], codes: Sequence[str]
) -> list[Page]:
    """The overview and every campaign page unfiltered, then a few random filters on them."""
    scored = {s.campaign for s in scores}
    in_view = tuple(c for c in study.campaigns if c.slug in scored)
    overview = Page("overview", "/results/", (), in_view)
    pages = [overview]
    for c in study.campaigns:
        pages.append(Page(f"campaign {c.slug}", f"/results/{c.public_id}/", (), (c,)))

    used = sorted({s.task_type for s in scores}) or list(codes[:1])
    for _ in range(FILTERED_PAGES):
        base = rng.choice(pages[: 1 + len(study.campaigns)])
        choice = rng.randrange(7 if base is overview else 6)
        query: list[tuple[str, str]] = []
        fields: dict[str, Any] = {}
        if choice == 0:
            code = rng.choice(used)
            query, fields = [("task_type", code)], {"task_types": frozenset([code])}
        elif choice == 1:
            # Several task types, one of them perhaps in no campaign of the study.
            several = rng.sample(used, min(2, len(used))) + rng.sample(list(codes), 1)
            query = [("task_type", code) for code in several]
            fields = {"task_types": frozenset(several)}
        elif choice == 2:
            modality = rng.choice(["text", "text", "vision"])
            query, fields = [("modality", modality)], {"modality": modality}
        elif choice == 3:
            name = rng.choice(study.reviewers)
            query, fields = [("reviewer", name)], {"reviewer": name}
        elif choice == 4:
            name = study.idle_reviewer
            query, fields = [("reviewer", name)], {"reviewer": name}
        elif choice == 5:
            code, name = rng.choice(used), rng.choice(study.reviewers)
            query = [("task_type", code), ("reviewer", name), ("sort", "-diff")]
            fields = {"task_types": frozenset([code]), "reviewer": name}
        else:
            # The overview narrowed to some campaigns, two sharing a model when there are.
            pairs = [
                (a, b)
                for i, a in enumerate(study.campaigns)
                for b in study.campaigns[i + 1 :]
                if set(a.models) & set(b.models)
            ]
            chosen = list(rng.choice(pairs)) if pairs else [rng.choice(study.campaigns)]
            query = [("campaign", c.public_id) for c in chosen]
            kept = tuple(c for c in in_view if c in chosen)
            pages.append(Page("overview", "/results/", tuple(query), kept))
            continue
        pages.append(dataclasses.replace(base, query=tuple(query), **fields))
    return pages


def check_study(
    client: Client, seed: int, study: Study, modality_of: Mapping[str, str]
) -> list[Problem]:
    """Every page of one study answers 200 and every CSV equals its recomputation."""
    scores, answers = exported_scores(), exported_answers()
    problems = list(
        compare(
            seed,
            "manage.py export_scores --aggregate",
            "aggregate",
            command_text("export_scores", "--aggregate"),
            expected_aggregate(scores),
        )
    )
    rng = random.Random(f"pages {seed}")
    pages = pages_to_check(rng, study, scores, list(modality_of))
    for index, page in enumerate(pages):
        html, failure = fetch(client, page.url())
        if html is None:
            problems.append(Problem(seed, str(page), "", "", "", failure))
        expected = expected_csvs(page, scores, answers, modality_of)
        sampled = rng.sample(CHARTS, OVERVIEW_CHARTS if index == 0 else CHARTS_PER_PAGE)
        if every_csv():
            sampled = list(CHARTS)
        for name in ("table", *sampled):
            text, failure = fetch(client, page.url(("csv", name)))
            if text is None:
                problems.append(Problem(seed, str(page), name, "", "", failure))
                continue
            problems.extend(compare(seed, str(page), name, text, expected[name]))
    # The filtered part of a page, as htmx asks for it.
    page = rng.choice(pages)
    _, failure = fetch(client, page.url(), HX_Request="true", HX_Target="results")
    if failure:
        problems.append(Problem(seed, f"{page} (htmx)", "", "", "", failure))
    return problems


# --- The test ------------------------------------------------------------------------------


def every_csv() -> bool:
    return os.environ.get("GRADEBENCH_RECOMPUTE_EVERY_CSV", "") not in ("", "0")


def seeds() -> list[int]:
    if one := os.environ.get("GRADEBENCH_RECOMPUTE_SEED"):
        return [int(one)]
    return list(range(int(os.environ.get("GRADEBENCH_RECOMPUTE_STUDIES", DEFAULT_STUDIES))))


def report(problems: Mapping[int, list[Problem]], studies: int) -> str:
    kinds: Counter[str] = Counter()
    example: dict[str, int] = {}
    for seed, found in problems.items():
        for kind in {p.kind for p in found}:
            kinds[kind] += 1
            example.setdefault(kind, seed)
    first = min(problems)
    lines = [
        f"{len(problems)} of {studies} random studies disagree with the recomputation "
        f"(reproduce one: GRADEBENCH_RECOMPUTE_SEED={first}).",
        "What disagrees (studies, an example seed):",
        *(f"  {kind}: {n} (seed {example[kind]})" for kind, n in kinds.most_common()),
        f"First problems of seed {first}:",
        *(f"  {p}" for p in problems[first][:15]),
    ]
    return "\n".join(lines)


@pytest.mark.django_db
def test_results_pages_and_csvs_equal_a_recomputation_from_the_exports(
    admin: User, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(csv_writing, "FLOAT_DECIMALS", CSV_DECIMALS)
    # A page that raises is reported with where it raised; its logged traceback, once per
    # request and study, would bury the report.
    caplog.set_level(logging.CRITICAL, logger="django.request")
    client = logged_in(admin)
    modality_of = dict(TaskType.objects.order_by("position").values_list("code", "modality"))
    problems: dict[int, list[Problem]] = {}
    features: Counter[str] = Counter()
    COMPARED.clear()
    WILCOXON_RULES.clear()
    chosen = seeds()
    for seed in chosen:
        cache.clear()
        with transaction.atomic():
            study = random_study(random.Random(seed))
            found = check_study(client, seed, study, modality_of)
            transaction.set_rollback(True)
        features.update(study.features)
        if found:
            problems[seed] = found
    cache.clear()
    if problems:
        pytest.fail(report(problems, len(chosen)), pytrace=False)
    # Not vacuous: every CSV had rows to compare, and enough studies reach every messy case and
    # every rule of the Wilcoxon test.
    if len(chosen) >= MIN_STUDIES_FOR_COVERAGE:
        assert not [name for name in COLUMNS if not COMPARED[name]], f"compared: {COMPARED}"
        assert not [f for f in FEATURES if not features[f]], f"cases drawn: {features}"
        assert len(WILCOXON_RULES) == 3, f"Wilcoxon rules used: {WILCOXON_RULES}"
