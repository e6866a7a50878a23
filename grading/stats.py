"""The statistics behind the comparison pages (DESIGN §7): plain functions over plain numbers.

No Django here: callers turn query rows into the mappings and tuples below. Every figure is
deterministic: each bootstrap draws from its own `numpy.random.default_rng(seed)` (default
`SEED`), so a figure never changes between page loads or with what else is on the page, and
it never depends on the order in which items, units or ratings arrive (values are sorted before
resampling).

Scores (`summarise`, `overall`)
-------------------------------
An item's mean averages every score its answers got: all samples, all reviewers. The score of a
(model, task type) is the mean over items of those item means, so an item scored six times
weighs as much as an item scored once. `median`, `q1`, `q3` (numpy's default linear
interpolation between order statistics, Hyndman & Fan type 7), `std` (sample standard
deviation, n − 1; None for a single item), `min` and `max` are taken over the item means too,
never over individual scores. Items given with no scores are left out (they have no mean);
`items` counts the rest, `scores` their scores. No item with a score at all, or a score that is
not a finite number, is a ValueError. `overall` is the unweighted mean over task types of their
means (the seed's "average"): every task type counts once, whatever its number of items.

The 95% confidence interval is Hesterberg's expanded percentile bootstrap over items
(`expanded_confidence`): `RESAMPLES` resamples of the item means with replacement, each of the
same size, the bounds being linearly interpolated percentiles of the resampled means — taken at
a level widened for the number of items (98.3% at 10 items, 96.9% at 20, 96.0% at 40), because
a plain percentile interval is too narrow on few values. `bootstrap_mean_ci` does the work; it
draws `rng.integers(0, n, (resamples, n))` exactly as `scipy.stats.bootstrap` does and gives
the same interval for the same seed and level (a test checks it), in about half of scipy's
time, which matters when a page summarises a few hundred cells. Special cases: one item gives
(v, v); items whose means are all equal give (v, v).

The method was chosen by measurement (`python tests/benchmarks/bench_stats.py` prints the
table): 1,000 simulated studies per cell, with 1–3 integer scores 0–10 per item from six
distributions (clipped normals at 2, 5 and 8, a 0/10 bimodal one, two beta-binomials). Plain
percentile, basic and BCa intervals all undercover (BCa, the best of them: 91–93% at 10 items,
91–96% at 20); the expanded percentile interval covers 93.0–96.7% at 10, 20 and 40 items for all
six distributions (seed 1; another seed put the skewed beta-binomial(6, 1) at 91.9% at 20
items). At 5 items every bootstrap interval is too narrow (82–93%); the pages warn about cells
under 5 items.

Differences (`paired_difference`, `holm`, `holm_adjust`)
-------------------------------------------------------
Two models are compared on the items both have scores for (`shared`). `diff` is the mean over
shared items of (item mean of A − item mean of B); its CI is the same expanded percentile
bootstrap, over shared items, of those paired differences. `p_value` is the two-sided Wilcoxon
signed-rank test of the paired differences (`scipy.stats.wilcoxon`, zero_method="wilcox": items
with a zero difference are dropped, as in Wilcoxon's original test). The exact null distribution
is used when there are at most 50 differences and no ties or zeros among them (scipy's "exact");
with ties or zeros and at most 16 non-zero differences, the exact distribution of the tied ranks
over all 2^n sign flips (`_signed_rank_exact`: what scipy's "auto" computes as a permutation
test, at about 1/400 of the cost — scipy took 0.2–0.7 s per call, seconds per page); beyond that
the normal approximation with the tie correction and the continuity correction, as R's
`wilcox.test` does. Fewer than 2 shared items: `p_value` is None (there is no test). All
differences zero: `p_value` is 1.0 rather than None — the data are exactly what "no difference"
predicts, and keeping the p-value lets it count in Holm's m, which keeps the correction
conservative. No shared item at all: `paired_difference` returns None.

`holm` is the Holm–Bonferroni step-down adjustment: sort the m p-values ascending, multiply the
k-th smallest (k from 1) by m − k + 1, take the running maximum so the adjusted values keep the
order of the raw ones, cap at 1. None stays None and does not count toward m. `holm_adjust`
applies it across the task types of one matchup and fills `p_holm`.

Agreement (`agreement`)
-----------------------
Ratings are (reviewer, unit, score) with a unit being one output (one generation); a reviewer
rates a unit at most once (a repeat is a ValueError). Krippendorff's alpha at the interval level
(squared differences) comes from the `krippendorff` package on the reviewers × units matrix, with
NaN where a reviewer did not rate a unit; only units with at least 2 scores can be paired, and
`units`, `scores` and `reviewers` count those units, their scores and the reviewers who gave
them. alpha = 1 − D_o / D_e: observed disagreement within units against the disagreement
expected from all pairable scores pooled. Its CI is a percentile bootstrap over units (`resamples`
resamples of the pairable units with replacement, alpha recomputed on each from per-unit sums,
resamples whose scores are all equal and so have no alpha are skipped). alpha and its CI are
None with fewer than 2 pairable units or when all pairable scores are equal (no variance).

Severity (`severity`)
---------------------
For each of a reviewer's scores on a unit someone else also rated: the score minus the mean of
the other reviewers' scores on that unit. `offset` is the mean of those differences (positive =
more lenient than the others, negative = more severe), None when no score of theirs could be
compared; `compared` counts those scores, `scores` all their scores, `mean` is their raw mean.

Speed (`speed`)
---------------
Figures come from succeeded generations only; failed and cancelled ones are counted in `failed`
and never enter a figure; queued and running ones are ignored. Each `Spread` (median and 90th
percentile, numpy's linear interpolation) skips missing values and says how many it used (`n`);
with none its figures are None. `mean_completion_tokens` averages the known token counts;
`cut_off` is the share of succeeded generations that stopped on `finish_reason == "length"`.
Both are None without a succeeded generation (or, for the tokens, without a known count).
A succeeded generation timed while its worker fell behind (`timing_quality == "degraded"`,
DESIGN §5) enters no timing figure (ttft, tokens/s, response time) and is counted in
`degraded`; its token count and finish reason still count. A succeeded generation with no
timing at all (an answer imported without times, DESIGN §4.4a) is counted in `untimed`: the
figures rest on the others, and say so; its token count still counts.

`histogram` counts integer scores 0–10.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar, cast

import krippendorff
import numpy as np
import numpy.typing as npt
from scipy import stats
from scipy.special import ndtr, ndtri

RESAMPLES = 2000
SEED = 20250301
CONFIDENCE = 0.95
AGREEMENT_RESAMPLES = 1000
# Agreement resamples are drawn in chunks so memory stays bounded on large campaigns.
AGREEMENT_CHUNK = 100

K = TypeVar("K", bound=Hashable)
R = TypeVar("R", bound=Hashable)
FloatArray = npt.NDArray[np.float64]
Method = Literal["percentile", "basic", "BCa"]


# Scores -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """A (model, task type) score, from its items' mean scores."""

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


def bootstrap_mean_ci(
    values: npt.ArrayLike,
    *,
    method: Method = "BCa",
    confidence: float = CONFIDENCE,
    seed: int = SEED,
    resamples: int = RESAMPLES,
) -> tuple[FloatArray, FloatArray]:
    """Bootstrap confidence interval of the mean along the last axis of `values`.

    The same interval as `scipy.stats.bootstrap((values,), np.mean, axis=-1, method=method,
    n_resamples=resamples, rng=np.random.default_rng(seed))`, computed directly. Leading axes
    are independent samples sharing one set of resampling indices (the benchmark uses that to
    simulate many studies at once). Constant samples, and samples of one value, give (v, v).
    Returns (low, high) arrays of the leading shape.
    """
    x = np.asarray(values, dtype=np.float64)
    n = x.shape[-1]
    if n == 0:
        raise ValueError("cannot bootstrap an empty sample")
    theta = np.mean(x, axis=-1)
    if n == 1:
        return theta.copy(), theta.copy()
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, n, (resamples, n))
    # np.take rather than x[..., indices]: the same values, in half the time.
    boot = np.sum(np.take(x, indices, axis=-1), axis=-1) / n  # leading shape + (resamples,)
    tail = (1 - confidence) / 2
    low_level = np.full(theta.shape, tail)
    high_level = np.full(theta.shape, 1 - tail)
    if method == "BCa":
        bca_low, bca_high = _bca_levels(x, theta, boot, tail)
        defined = np.isfinite(bca_low) & np.isfinite(bca_high)
        low_level = np.where(defined, bca_low, low_level)
        high_level = np.where(defined, bca_high, high_level)
    elif method not in ("percentile", "basic"):
        raise ValueError(f"unknown bootstrap method {method!r}")
    boot.sort(axis=-1)
    low = _sorted_quantile(boot, low_level)
    high = _sorted_quantile(boot, high_level)
    if method == "basic":
        low, high = 2 * theta - high, 2 * theta - low
    constant = np.min(x, axis=-1) == np.max(x, axis=-1)
    return np.where(constant, theta, low), np.where(constant, theta, high)


def _bca_levels(
    x: FloatArray, theta: FloatArray, boot: FloatArray, tail: float
) -> tuple[FloatArray, FloatArray]:
    """The BCa percentile levels (Efron & Tibshirani eq. 14.10, 14.15), as scipy computes them."""
    n = x.shape[-1]
    observed = theta[..., np.newaxis]
    # Share of resampled means below the observed one, ties counting half.
    below = np.count_nonzero(boot < observed, axis=-1)
    at_or_below = np.count_nonzero(boot <= observed, axis=-1)
    share = (below + at_or_below) / (2 * boot.shape[-1])
    with np.errstate(divide="ignore", invalid="ignore"):
        z0 = ndtri(share)
        leave_one_out = (np.sum(x, axis=-1, keepdims=True) - x) / (n - 1)
        u = (n - 1) * (np.mean(leave_one_out, axis=-1, keepdims=True) - leave_one_out)
        acceleration = np.sum(u**3, axis=-1) / n**3 / (np.sum(u**2, axis=-1) / n**2) ** 1.5 / 6
        z_low = float(ndtri(tail))
        z_high = -z_low
        low = ndtr(z0 + (z0 + z_low) / (1 - acceleration * (z0 + z_low)))
        high = ndtr(z0 + (z0 + z_high) / (1 - acceleration * (z0 + z_high)))
    return np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)


def _sorted_quantile(sorted_values: FloatArray, levels: FloatArray) -> FloatArray:
    """Linear-interpolation quantile (numpy's default) of each row at its own level."""
    last = sorted_values.shape[-1] - 1
    position = np.asarray(levels, dtype=np.float64)[..., np.newaxis] * last
    below = np.clip(np.floor(position), 0, last).astype(np.intp)
    above = np.minimum(below + 1, last)
    fraction = position - below
    lower = np.take_along_axis(sorted_values, below, axis=-1)
    upper = np.take_along_axis(sorted_values, above, axis=-1)
    return np.asarray((lower + (upper - lower) * fraction)[..., 0], dtype=np.float64)


def _item_means(item_scores: Mapping[K, Sequence[float]]) -> dict[K, float]:
    """Each scored item's mean score; items without scores are left out."""
    means: dict[K, float] = {}
    for item, scores in item_scores.items():
        if not len(scores):
            continue
        mean = math.fsum(scores) / len(scores)
        if not math.isfinite(mean):
            raise ValueError(f"item {item!r} has a score that is not a finite number")
        means[item] = mean
    return means


def expanded_confidence(n: int, confidence: float = CONFIDENCE) -> float:
    """The percentile level that widens a bootstrap interval of n values for its small size.

    Hesterberg's expanded percentile interval (The American Statistician 69(4), 2015, §4.3):
    a percentile interval is too narrow by about sqrt((n − 1) / n) and by using normal rather
    than t quantiles, so its tail level is taken as Φ(−sqrt(n / (n − 1)) · t(1 − α/2, n − 1)).
    For a 95% interval that is 98.3% at n = 10, 96.9% at 20 and 96.0% at 40.
    """
    if n < 2:
        return confidence
    t = stats.t.ppf(1 - (1 - confidence) / 2, n - 1)
    return float(1 - 2 * stats.norm.cdf(-math.sqrt(n / (n - 1)) * t))


def _interval(values: FloatArray, seed: int, resamples: int) -> tuple[float, float]:
    low, high = bootstrap_mean_ci(
        values,
        method="percentile",
        confidence=expanded_confidence(values.size),
        seed=seed,
        resamples=resamples,
    )
    return float(low), float(high)


def summarise(
    item_scores: Mapping[K, Sequence[float]], *, seed: int = SEED, resamples: int = RESAMPLES
) -> Summary:
    """Mean over items of each item's mean score, with a bootstrap CI over items.

    See the module docstring for every figure. Raises ValueError without a scored item.
    """
    means = np.sort(np.fromiter(_item_means(item_scores).values(), dtype=np.float64))
    if not means.size:
        raise ValueError("no scored item to summarise")
    low, high = _interval(means, seed, resamples)
    q1, median, q3 = np.percentile(means, [25, 50, 75])
    return Summary(
        items=int(means.size),
        scores=sum(len(scores) for scores in item_scores.values()),
        mean=float(np.mean(means)),
        ci_low=low,
        ci_high=high,
        median=float(median),
        std=float(np.std(means, ddof=1)) if means.size > 1 else None,
        min=float(means[0]),
        max=float(means[-1]),
        q1=float(q1),
        q3=float(q3),
    )


def overall(per_type: Mapping[str, Summary]) -> float:
    """Mean over task types of their means, each task type counting once."""
    if not per_type:
        raise ValueError("no task type to average")
    return math.fsum(summary.mean for summary in per_type.values()) / len(per_type)


# Differences ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """Model A minus model B on the items both were scored on."""

    shared: int
    diff: float
    ci_low: float
    ci_high: float
    p_value: float | None
    p_holm: float | None = None


def paired_difference(
    a: Mapping[K, Sequence[float]],
    b: Mapping[K, Sequence[float]],
    *,
    seed: int = SEED,
    resamples: int = RESAMPLES,
) -> Difference | None:
    """A − B over shared items: mean paired difference, bootstrap CI, Wilcoxon signed-rank p-value.

    None when no item was scored for both. See the module docstring for the special cases.
    """
    means_a, means_b = _item_means(a), _item_means(b)
    diffs = np.sort(
        np.fromiter((means_a[k] - means_b[k] for k in means_a if k in means_b), dtype=np.float64)
    )
    if not diffs.size:
        return None
    low, high = _interval(diffs, seed, resamples)
    p_value: float | None
    if diffs.size < 2:
        p_value = None
    elif not np.any(diffs):
        p_value = 1.0
    else:
        p_value = _signed_rank_p(diffs)
    return Difference(
        shared=int(diffs.size),
        diff=float(np.mean(diffs)),
        ci_low=low,
        ci_high=high,
        p_value=p_value,
    )


EXACT_MAX_TIED = 16


def _signed_rank_p(diffs: FloatArray) -> float:
    """Two-sided Wilcoxon signed-rank p of paired differences (see the module docstring)."""
    nonzero = diffs[diffs != 0]
    untied = np.unique(np.abs(nonzero)).size == nonzero.size
    if nonzero.size == diffs.size <= 50 and untied:
        method = "exact"
    elif nonzero.size <= EXACT_MAX_TIED:
        return _signed_rank_exact(nonzero)
    else:
        method = "approx"
    test = stats.wilcoxon(diffs, zero_method="wilcox", correction=True, method=method)
    return float(test.pvalue)


def _signed_rank_exact(nonzero: FloatArray) -> float:
    """Exact two-sided p of W+ over all 2^n sign flips of the (average, tied) ranks."""
    ranks = stats.rankdata(np.abs(nonzero))
    observed = ranks[nonzero > 0].sum()
    flips = (np.arange(2**nonzero.size)[:, None] >> np.arange(nonzero.size)) & 1
    null = flips @ ranks
    centre = ranks.sum() / 2
    # Ranks are multiples of 1/2, so a tolerance far below that compares them exactly.
    return float(np.mean(np.abs(null - centre) >= abs(observed - centre) - 1e-9))


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm–Bonferroni adjusted p-values in the input order; None stays None, outside m."""
    present = [(p, i) for i, p in enumerate(p_values) if p is not None]
    for p, _ in present:
        if not 0 <= p <= 1:
            raise ValueError(f"p-value {p!r} is not in [0, 1]")
    m = len(present)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(present)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def holm_adjust(diffs: Mapping[str, Difference | None]) -> dict[str, Difference | None]:
    """Copies of `diffs` (one matchup across task types) with `p_holm` filled."""
    keys = list(diffs)
    adjusted = holm([d.p_value if d is not None else None for d in diffs.values()])
    return {
        key: dataclasses.replace(d, p_holm=p) if d is not None else None
        for key, d, p in zip(keys, diffs.values(), adjusted, strict=True)
    }


# Agreement and severity -------------------------------------------------------------------------


@dataclass(frozen=True)
class Agreement:
    """Krippendorff's alpha (interval) with a bootstrap CI over units."""

    alpha: float | None
    ci_low: float | None
    ci_high: float | None
    units: int
    scores: int
    reviewers: int


@dataclass(frozen=True)
class _Ratings:
    reviewers: list[Hashable]  # reviewer of index i
    reviewer: npt.NDArray[np.intp]  # per rating
    unit: npt.NDArray[np.intp]  # per rating, 0..units-1
    value: FloatArray  # per rating
    units: int


def _ratings(ratings: Iterable[tuple[Hashable, Hashable, float]]) -> _Ratings:
    reviewer_index: dict[Hashable, int] = {}
    unit_index: dict[Hashable, int] = {}
    reviewer: list[int] = []
    unit: list[int] = []
    value: list[float] = []
    for who, what, score in ratings:
        reviewer.append(reviewer_index.setdefault(who, len(reviewer_index)))
        unit.append(unit_index.setdefault(what, len(unit_index)))
        value.append(score)
    values = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError("a score is not a finite number")
    r = np.asarray(reviewer, dtype=np.intp)
    u = np.asarray(unit, dtype=np.intp)
    if np.unique(u * max(len(reviewer_index), 1) + r).size != u.size:
        raise ValueError("a reviewer rated the same unit more than once")
    return _Ratings(list(reviewer_index), r, u, values, len(unit_index))


def _unit_sums(unit: npt.NDArray[np.intp], value: FloatArray, units: int) -> FloatArray:
    """Per unit (columns): count, sum, sum of squares, within-unit disagreement, min, max (rows).

    Scores are centred on their median first: that changes no difference, and keeps
    n·Σv² − (Σv)² in `_resampled_alphas` clear of cancellation.
    """
    value = value - np.median(value)
    count = np.bincount(unit, minlength=units).astype(np.float64)
    total = np.bincount(unit, weights=value, minlength=units).astype(np.float64)
    squares = np.bincount(unit, weights=value**2, minlength=units).astype(np.float64)
    low = np.full(units, np.inf)
    high = np.full(units, -np.inf)
    np.minimum.at(low, unit, value)
    np.maximum.at(high, unit, value)
    # Σ_{i≠j}(v_i − v_j)² / (m − 1) = 2m·Σ(v_i − mean)² / (m − 1), from deviations for
    # accuracy, and exactly 0 when the unit's scores agree.
    deviation = value - (total / np.maximum(count, 1))[unit]
    spread = np.bincount(unit, weights=deviation**2, minlength=units)
    with np.errstate(divide="ignore", invalid="ignore"):
        within = np.where((count > 1) & (low != high), 2 * count * spread / (count - 1), 0.0)
    return np.stack([count, total, squares, within, low, high]).astype(np.float64)


def _resampled_alphas(sums: FloatArray, picks: npt.NDArray[np.intp]) -> FloatArray:
    """Interval alpha of each resample (a row of unit indices into `sums`); NaN if undefined.

    Summed over the picked units: n pairable scores, their sum Σv and sum of squares Σv², and
    D = Σ_u Σ_{i≠j}(v_i − v_j)² / (m_u − 1). The sum of squared differences over all ordered
    pairs of pooled scores is 2(n·Σv² − (Σv)²), so alpha = 1 − (n − 1)·D / (2(n·Σv² − (Σv)²)).
    """
    count, total, squares, within = (np.sum(row[picks], axis=-1) for row in sums[:4])
    with np.errstate(divide="ignore", invalid="ignore"):
        alphas = 1 - (count - 1) * within / (2 * (count * squares - total**2))
    # Only a resample of units whose reviewers agree can lack variance; check those exactly.
    agreeing = np.flatnonzero(within == 0)
    low, high = sums[4][picks[agreeing]], sums[5][picks[agreeing]]
    alphas[agreeing[np.min(low, axis=-1) == np.max(high, axis=-1)]] = np.nan
    return np.asarray(alphas, dtype=np.float64)


def agreement(
    ratings: Iterable[tuple[Hashable, Hashable, float]],
    *,
    seed: int = SEED,
    resamples: int = AGREEMENT_RESAMPLES,
) -> Agreement:
    """Krippendorff's alpha (interval) over (reviewer, unit, score) ratings, with a CI.

    See the module docstring for what counts and when alpha is None.
    """
    data = _ratings(ratings)
    per_unit = np.bincount(data.unit, minlength=data.units)
    paired_units = np.flatnonzero(per_unit >= 2)
    keep = per_unit[data.unit] >= 2
    reviewer, unit, value = data.reviewer[keep], data.unit[keep], data.value[keep]
    units, scores = int(paired_units.size), int(value.size)
    reviewers = int(np.unique(reviewer).size)
    if units < 2 or np.min(value) == np.max(value):
        return Agreement(None, None, None, units, scores, reviewers)

    column = np.searchsorted(paired_units, unit)
    matrix = np.full((len(data.reviewers), units), np.nan)
    matrix[reviewer, column] = value
    alpha = float(krippendorff.alpha(reliability_data=matrix, level_of_measurement="interval"))

    sums = _unit_sums(column, value, units)
    # Units sorted by their sums, so the resamples do not depend on the order ratings came in.
    sums = sums[:, np.lexsort(sums[::-1])]
    rng = np.random.default_rng(seed)
    boot = []
    for start in range(0, resamples, AGREEMENT_CHUNK):
        picks = rng.integers(0, units, (min(AGREEMENT_CHUNK, resamples - start), units))
        boot.append(_resampled_alphas(sums, picks))
    alphas = np.concatenate(boot)
    alphas = alphas[np.isfinite(alphas)]
    if not alphas.size:
        return Agreement(alpha, None, None, units, scores, reviewers)
    tail = (1 - CONFIDENCE) / 2
    low, high = np.percentile(alphas, [100 * tail, 100 * (1 - tail)])
    return Agreement(alpha, float(low), float(high), units, scores, reviewers)


@dataclass(frozen=True)
class Severity:
    """How a reviewer scores against the other reviewers of the same units."""

    offset: float | None
    compared: int
    scores: int
    mean: float


def severity(ratings: Iterable[tuple[R, Hashable, float]]) -> dict[R, Severity]:
    """Each reviewer's mean offset from the other reviewers on the same units."""
    data = _ratings(ratings)
    count, total = (
        np.bincount(data.unit, minlength=data.units),
        np.bincount(data.unit, weights=data.value, minlength=data.units),
    )
    others = count[data.unit] - 1
    has_others = others > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        offset = np.where(has_others, data.value - (total[data.unit] - data.value) / others, 0.0)
    people = len(data.reviewers)
    compared = np.bincount(data.reviewer, weights=has_others, minlength=people)
    offsets = np.bincount(data.reviewer, weights=offset, minlength=people)
    scores = np.bincount(data.reviewer, minlength=people)
    sums = np.bincount(data.reviewer, weights=data.value, minlength=people)
    result: dict[R, Severity] = {}
    for i, who in enumerate(data.reviewers):
        result[cast(R, who)] = Severity(
            offset=float(offsets[i] / compared[i]) if compared[i] else None,
            compared=int(compared[i]),
            scores=int(scores[i]),
            mean=float(sums[i] / scores[i]),
        )
    return result


# Speed and histogram ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Spread:
    """Median and 90th percentile of the known values; `n` says how many there were."""

    median: float | None
    p90: float | None
    n: int


@dataclass(frozen=True)
class Speed:
    """A model's speed over its succeeded generations.

    Timing figures (ttft, tokens/s, response time) leave out the `degraded` ones, timed while
    their worker fell behind (DESIGN §5); token counts and the cut-off share keep them.
    """

    succeeded: int
    failed: int
    ttft_ms: Spread
    decode_tps: Spread
    e2e_tps: Spread
    response_time_ms: Spread
    mean_completion_tokens: float | None
    cut_off: float | None
    degraded: int = 0
    """Succeeded generations left out of the timing figures: timed while the worker lagged."""
    untimed: int = 0
    """Succeeded generations with no timing at all (imported without times)."""


@dataclass(frozen=True)
class SpeedRow:
    """What `speed` needs of one generation."""

    status: str
    ttft_ms: float | None
    decode_tps: float | None
    e2e_tps: float | None
    response_time_ms: float | None
    completion_tokens: int | None
    finish_reason: str
    timing_quality: str = ""


def _spread(known: FloatArray) -> Spread:
    if not known.size:
        return Spread(None, None, 0)
    median, p90 = np.percentile(known, [50, 90])
    return Spread(float(median), float(p90), int(known.size))


@dataclass(frozen=True)
class SpeedSample:
    """What `speed` reads of some generations, as arrays of the succeeded ones' known values.

    Samples pool by concatenation (`pooled_speed`), which is how a cached comparison page keeps
    one per task type and model and combines the ones a filter shows, without a row object per
    generation (slow to unpickle at 100,000 generations).
    """

    succeeded: int
    failed: int
    ttft_ms: FloatArray
    decode_tps: FloatArray
    e2e_tps: FloatArray
    response_time_ms: FloatArray
    completion_tokens: npt.NDArray[np.int64]
    cut_off: int
    """Succeeded generations with finish_reason "length"."""
    degraded: int = 0
    """Succeeded generations whose timings are left out (timing_quality "degraded")."""
    untimed: int = 0
    """Succeeded generations with no timing at all."""


def _known(values: Iterable[float | None]) -> FloatArray:
    return np.fromiter((v for v in values if v is not None), dtype=np.float64)


def speed_sample(rows: Iterable[SpeedRow]) -> SpeedSample:
    """The arrays `pooled_speed` needs of these generations."""
    succeeded: list[SpeedRow] = []
    failed = 0
    for row in rows:
        if row.status == "succeeded":
            succeeded.append(row)
        elif row.status in ("failed", "cancelled"):
            failed += 1
    timed = [r for r in succeeded if r.timing_quality != "degraded"]
    return SpeedSample(
        succeeded=len(succeeded),
        failed=failed,
        ttft_ms=_known(r.ttft_ms for r in timed),
        decode_tps=_known(r.decode_tps for r in timed),
        e2e_tps=_known(r.e2e_tps for r in timed),
        response_time_ms=_known(r.response_time_ms for r in timed),
        completion_tokens=np.fromiter(
            (r.completion_tokens for r in succeeded if r.completion_tokens is not None),
            dtype=np.int64,
        ),
        cut_off=sum(r.finish_reason == "length" for r in succeeded),
        degraded=len(succeeded) - len(timed),
        untimed=sum(
            r.ttft_ms is None
            and r.decode_tps is None
            and r.e2e_tps is None
            and r.response_time_ms is None
            for r in timed
        ),
    )


def pooled_speed(samples: Sequence[SpeedSample]) -> Speed:
    """`speed` of the generations of all these samples together."""

    def pooled(column: str) -> FloatArray:
        arrays = [getattr(s, column) for s in samples]
        return np.concatenate(arrays) if arrays else np.empty(0)

    succeeded = sum(s.succeeded for s in samples)
    tokens = [s.completion_tokens for s in samples]
    known_tokens = sum(t.size for t in tokens)
    return Speed(
        succeeded=succeeded,
        failed=sum(s.failed for s in samples),
        ttft_ms=_spread(pooled("ttft_ms")),
        decode_tps=_spread(pooled("decode_tps")),
        e2e_tps=_spread(pooled("e2e_tps")),
        response_time_ms=_spread(pooled("response_time_ms")),
        # Integer sums, so the mean is exactly sum / count whatever the pooling order.
        mean_completion_tokens=(
            sum(int(t.sum()) for t in tokens) / known_tokens if known_tokens else None
        ),
        cut_off=sum(s.cut_off for s in samples) / succeeded if succeeded else None,
        degraded=sum(s.degraded for s in samples),
        # getattr: samples cached before `untimed` existed have none.
        untimed=sum(getattr(s, "untimed", 0) for s in samples),
    )


def speed(rows: Iterable[SpeedRow]) -> Speed:
    """Median and p90 timings, mean completion tokens and the cut-off share; see the module."""
    return pooled_speed([speed_sample(rows)])


def histogram(scores: Iterable[int]) -> list[int]:
    """How many scores were 0, 1, …, 10 (11 counts)."""
    values = np.fromiter(scores, dtype=np.int64)
    if values.size and (values.min() < 0 or values.max() > 10):
        raise ValueError("scores must be integers from 0 to 10")
    return [int(c) for c in np.bincount(values, minlength=11)]
