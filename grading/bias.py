"""Position and length bias (DESIGN §7.1): plain functions over plain numbers.

No Django here (`grading.analysis_export` turns score rows into the tuples below). Every interval
is a deterministic bootstrap over ITEMS, the independent units of a study: each draws from its
own `numpy.random.default_rng(seed)` (default `stats.SEED`), on items sorted by their figures so
the result never depends on the order rows arrive in, and its bounds are percentiles at
Hesterberg's expanded level for the number of items (`stats.expanded_confidence`, the rule and
measurement behind every interval of `grading.stats`).

Position bias (`position_bias`, `position_balance`)
--------------------------------------------------
A score's position is where its answer was shown: 0 = first ("A"), 1 = second ("B"). Scores
without a known position (imported scores: the file may not say, and then the importer stores
0) never enter the analysis; the caller passes None for them. For each (item, model) scored at
both position 0 and position 1 (any samples, any reviewers of the group analysed), the
difference is (mean score when shown first − mean score when shown second); `effect` is the
mean of those differences over the (item, model) pairs, and `scores` counts the scores that
entered them. Positions 2 and later (a third answer side by side) are left out: the contract is
first against second. No pair seen at both positions: `effect` and everything else are None
("no data"), which is what a campaign of imported scores or of the one-answer layout gets.

The CI resamples items (all the (item, model) pairs of an item go together: they share the
prompt and, within one reviewer's assignment, the reviewer) and recomputes the mean of the
drawn pairs' differences. `p_value` is the two-sided Wilcoxon signed-rank test, computed as
`stats.paired_difference` computes it (exact for small samples, tie-corrected normal
approximation beyond), of the per-ITEM means of those differences: the pairs of one item are
not independent (with two models side by side, the score of one model at position 0 and of the
other at position 1 come from the same assignment), so the test is over the same units the
interval resamples. Measured (`tests/benchmarks/bench_bias_ranking.py`, studies of 80 items,
two models, four reviewers): p < 0.05 in 3.5% of 400 studies without a position effect; an
injected +0.8 found in all of 200 studies, the CI covering it in 95.5%. One item: p is None
(there is no test); every item's difference zero: p is 1.0, as in `stats.paired_difference`.

`position_balance` checks the randomised order: counts of model × position (positions with a
known value only) and Pearson's chi-square test of independence (`scipy.stats.chi2_contingency`,
with Yates' correction on a 2 × 2 table, as scipy does). Rows and columns with no count are
dropped first; fewer than 2 models or 2 positions left: no test (`p_value` None).

Length bias (`length_association`, `length_controlled`)
------------------------------------------------------
An answer's length is its completion tokens when the server or tokenizer said (DESIGN §5), else
its number of characters; a comparison uses one unit throughout, tokens only when every answer
in it has a count (`lengths`). A score imported without its answer's text and token count has
no length and stays out. `length_association` is Spearman's rank correlation, over a
model's answers in one task type, between the answer's length and its mean score (each answer
counts once however many reviewers scored it). Its 95% CI is analytic, not a bootstrap (a
bootstrap of rho cost 9 s per model and task type at 25,000 items, too slow for a page): Fisher's
z = atanh(rho) ± 1.96 · SE, back-transformed with tanh, with the Bonett–Wright standard error
for Spearman's rho, SE = sqrt((1 + rho² / 2) / (n − 3)) (Bonett & Wright 2000, Psychometrika
65:23–28), n being the number of answers. Answers of one item (several samples) are not
independent, so this n is optimistic when an item has several; measured
(`tests/benchmarks/bench_bias_ranking.py`, length association: 400 studies of 80 items × 2
samples whose lengths and scores share an item effect): the CI covers the true rho in 93.2% of
studies with n = answers (93.5% in another draw), and in 99.8% with n = items (too wide), so
answers it is; with one sample per item (the usual study) the two are the same. Fewer than 3
answers, or a constant length or score: rho is None; fewer than 4 answers: no CI.

`length_controlled` compares two models on their shared items: for each item, the paired score
difference (A's item mean score − B's, as `stats.paired_difference`) and the paired length
difference (A's mean answer length − B's). `difference` is the mean score difference;
`controlled_difference` is the intercept of the least-squares line of the score difference on
the length difference — the difference expected between two answers of equal length. Its CI is
the bootstrap over items of the refitted intercept (each resample a weighted least-squares fit
with the drawn counts as weights), not the textbook OLS interval: score differences are bounded
and discrete and their spread grows with the length gap, so the OLS interval's constant-variance
assumption does not hold, and the bootstrap is the rule every other interval follows. Fewer than
3 shared items or a constant length difference (no line to fit): the controlled difference and
its CI are None; resamples with a constant length difference are skipped.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt
from scipy import stats as scipy_stats

from . import stats

FloatArray = npt.NDArray[np.float64]
K = TypeVar("K", bound=Hashable)
RESAMPLES = 2000
FIRST, SECOND = 0, 1
Z_95 = float(scipy_stats.norm.ppf(0.975))


def _percentiles(boot: FloatArray, items: int) -> tuple[float, float]:
    """The expanded-percentile bounds of resampled figures over `items` items."""
    tail = (1 - stats.expanded_confidence(items)) / 2
    low, high = np.percentile(boot, [100 * tail, 100 * (1 - tail)])
    return float(low), float(high)


CHUNK = 100
"""Resamples drawn at a time, so memory stays bounded however many items there are."""


def resampled_sums(
    values: npt.ArrayLike, *, seed: int = stats.SEED, resamples: int = RESAMPLES
) -> FloatArray:
    """Column sums of `values` (one row per item) over bootstrap resamples of its rows.

    Each resample draws as many rows as there are, with replacement; shape (resamples,
    columns). Drawn `CHUNK` resamples at a time from `numpy.random.default_rng(seed)`.
    """
    table = np.asarray(values, dtype=np.float64)
    items = table.shape[0]
    rng = np.random.default_rng(seed)
    sums = []
    for start in range(0, resamples, CHUNK):
        size = min(CHUNK, resamples - start)
        picks = rng.integers(0, items, (size, items), dtype=np.int32)  # 3× faster than int64
        flat = (np.arange(size)[:, np.newaxis] * items + picks).ravel()
        counts = np.bincount(flat, minlength=size * items).reshape(size, items)
        sums.append(counts @ table)
    return np.concatenate(sums)


# Position bias ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PositionBias:
    """Mean score shown first minus shown second, for the same model on the same item."""

    effect: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    pairs: int
    """(item, model) pairs scored at both positions."""
    items: int
    scores: int
    """Scores that entered the effect."""

    @property
    def measured(self) -> bool:
        return self.effect is not None


NO_POSITION_DATA = PositionBias(None, None, None, None, 0, 0, 0)


def position_bias(
    rows: Iterable[tuple[Hashable, Hashable, int | None, float]],
    *,
    seed: int = stats.SEED,
    resamples: int = RESAMPLES,
) -> PositionBias:
    """The position effect of (item, model, position, score) rows; see the module docstring."""
    # (item, model) → [sum first, count first, sum second, count second]
    sums: dict[tuple[Hashable, Hashable], list[float]] = {}
    for item, model, position, score in rows:
        if position is None or position > SECOND:
            continue
        cell = sums.setdefault((item, model), [0.0, 0, 0.0, 0])
        cell[2 * position] += score
        cell[2 * position + 1] += 1
    # item → [sum of differences, number of pairs]
    per_item: dict[Hashable, list[float]] = {}
    scores = 0
    for (item, _), (first, n_first, second, n_second) in sums.items():
        if not (n_first and n_second):
            continue
        entry = per_item.setdefault(item, [0.0, 0])
        entry[0] += first / n_first - second / n_second
        entry[1] += 1
        scores += int(n_first + n_second)
    if not per_item:
        return NO_POSITION_DATA
    table = np.array(sorted(per_item.values()), dtype=np.float64)  # sorted: order-independent
    total, pairs = table[:, 0], table[:, 1]
    effect = float(total.sum() / pairs.sum())
    items = len(table)
    if items == 1:
        low = high = effect
    else:
        boot = resampled_sums(table, seed=seed, resamples=resamples)
        low, high = _percentiles(boot[:, 0] / boot[:, 1], items)
    item_means = total / pairs
    p_value: float | None
    if items < 2:
        p_value = None
    elif not np.any(item_means):
        p_value = 1.0
    else:
        p_value = stats._signed_rank_p(item_means)
    return PositionBias(effect, low, high, p_value, int(pairs.sum()), items, scores)


@dataclass(frozen=True)
class PositionBalance:
    """How often each model was shown at each position, and whether that looks random."""

    models: list[Hashable]
    positions: list[int]
    counts: list[list[int]]
    """counts[m][p]: scores of models[m] given at positions[p]."""
    chi2: float | None
    p_value: float | None


def position_balance(rows: Iterable[tuple[Hashable, int | None]]) -> PositionBalance:
    """Model × position counts of (model, position) rows and a chi-square test of independence."""
    counts: dict[tuple[Hashable, int], int] = {}
    for model, position in rows:
        if position is not None:
            counts[model, position] = counts.get((model, position), 0) + 1
    models = sorted({m for m, _ in counts}, key=str)
    positions = sorted({p for _, p in counts})
    table = [[counts.get((m, p), 0) for p in positions] for m in models]
    if len(models) < 2 or len(positions) < 2:
        return PositionBalance(models, positions, table, None, None)
    result = scipy_stats.chi2_contingency(np.array(table))
    return PositionBalance(models, positions, table, float(result.statistic), float(result.pvalue))


# Length bias ------------------------------------------------------------------------------------


def lengths(
    tokens: Sequence[int | None], characters: Sequence[int | None]
) -> tuple[list[int | None], str]:
    """Answer lengths in one unit: completion tokens if every answer has a count, else characters.

    Returns the lengths and their unit, "tokens" or "characters". A character count is None for
    an answer whose text we do not hold (a score imported without it); without a token count
    either, its length is None and it leaves the length analyses.
    """
    if len(tokens) != len(characters):
        raise ValueError("one token count and one character count per answer")
    if all(t is not None for t in tokens):
        return list(tokens), "tokens"
    return list(characters), "characters"


@dataclass(frozen=True)
class LengthAssociation:
    """Spearman's rho between answer length and mean score over one model's answers."""

    rho: float | None
    ci_low: float | None
    ci_high: float | None
    answers: int
    items: int


def _spearman(x: FloatArray, y: FloatArray) -> float | None:
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(scipy_stats.spearmanr(x, y).statistic)


def spearman_ci(rho: float, n: int) -> tuple[float | None, float | None]:
    """The 95% CI of Spearman's rho over `n` pairs (Fisher z, Bonett–Wright SE).

    None, None with fewer than 4 pairs (the standard error needs n − 3 > 0).
    """
    if n < 4:
        return None, None
    if abs(rho) >= 1:
        return rho, rho
    se = math.sqrt((1 + rho * rho / 2) / (n - 3))
    z = math.atanh(rho)
    return math.tanh(z - Z_95 * se), math.tanh(z + Z_95 * se)


def length_association(answers: Iterable[tuple[Hashable, float, float]]) -> LengthAssociation:
    """Spearman's rho of (item, length, mean score) answers, with its analytic CI."""
    flat: list[tuple[float, float]] = []
    items: set[Hashable] = set()
    for item, length, score in answers:
        flat.append((float(length), float(score)))
        items.add(item)
    table = np.array(flat, dtype=np.float64).reshape(-1, 2)
    rho = _spearman(table[:, 0], table[:, 1])
    if rho is None:
        return LengthAssociation(None, None, None, len(flat), len(items))
    low, high = spearman_ci(rho, len(flat))
    return LengthAssociation(rho, low, high, len(flat), len(items))


@dataclass(frozen=True)
class LengthControlled:
    """A − B on shared items, raw and at equal answer length."""

    difference: float
    controlled_difference: float | None
    ci_low: float | None
    ci_high: float | None
    slope: float | None
    """Score difference per unit of length difference."""
    items: int


def _lines(sums: FloatArray, centre: float) -> tuple[FloatArray, FloatArray]:
    """Intercepts and slopes of least-squares lines from rows of sums (n, Σx, Σy, Σx², Σxy) of
    lengths centred on `centre` (for accuracy when lengths are large); NaN where x is constant.
    """
    w, sx, sy, sxx, sxy = sums.T
    spread = w * sxx - sx * sx
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(spread > 1e-9 * w * sxx, (w * sxy - sx * sy) / spread, np.nan)
        intercept = (sy - slope * sx) / w - slope * centre
    return intercept, slope


def length_controlled(
    a: Mapping[K, tuple[float, float]],
    b: Mapping[K, tuple[float, float]],
    *,
    seed: int = stats.SEED,
    resamples: int = RESAMPLES,
) -> LengthControlled | None:
    """A − B at equal length from item → (mean score, mean length) of each model.

    None when the models share no item. See the module docstring.
    """
    shared = sorted(
        (a[k][0] - b[k][0], a[k][1] - b[k][1]) for k in a.keys() & b.keys()
    )  # sorted: order-independent resamples
    if not shared:
        return None
    pairs = np.array(shared, dtype=np.float64)
    if not np.all(np.isfinite(pairs)):
        raise ValueError("a score or length is not a finite number")
    y, x = pairs[:, 0], pairs[:, 1]
    difference = float(math.fsum(y) / y.size)
    if y.size < 3 or np.ptp(x) == 0:
        return LengthControlled(difference, None, None, None, None, int(y.size))
    centre = float(np.mean(x))
    xc = x - centre
    terms = np.column_stack([np.ones_like(x), xc, y, xc * xc, xc * y])
    intercept, slope = _lines(terms.sum(axis=0, keepdims=True), centre)
    boot, _ = _lines(resampled_sums(terms, seed=seed, resamples=resamples), centre)
    boot = boot[np.isfinite(boot)]
    low, high = _percentiles(boot, y.size) if boot.size else (None, None)
    return LengthControlled(
        difference, float(intercept[0]), low, high, float(slope[0]), int(y.size)
    )
