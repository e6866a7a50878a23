"""Ranking models by Bradley-Terry over pairwise outcomes (DESIGN §7.1): plain functions.

No Django here (`grading.analysis_export` turns score rows into the tuples below).

Pairwise outcomes (`outcomes`)
------------------------------
A pair is two scores ONE reviewer gave two different models' answers on one occasion: the same
item, the same sample, the same campaign — what the reviewer saw side by side (or, in the
one-answer layout, scored one after the other). The higher score wins; equal scores are a tie,
counted as half a win for each. Scores of different reviewers are never paired: reviewers differ
in severity, and a pair within one reviewer cancels it. Every pair belongs to its item (its
cluster): `Outcomes.wins[c, i, j]` is model i's wins over model j in cluster c.

Fit (`bradley_terry`)
---------------------
P(i beats j) = 1 / (1 + exp(s_j − s_i)); the strengths s maximise the likelihood of the wins,
ties as half a win and half a loss (Chatbot Arena's `compute_bt` does the same). Fitted by
Newton's method on the exact gradient and Hessian (a handful of models, so the Hessian is small),
to a step below 1e-12, with the strengths kept summing to zero. A rating is
1000 + 400 / ln(10) · s: the Elo scale, where 400 points are 10:1 odds, and the mean rating over
the models of a fit is 1000.

Regularised: before fitting, every two models of the fit get `prior_ties` (default 1) virtual
tied games. Without it, a model that wins every one of its pairs has no finite maximum (its
strength runs to infinity), and two groups of models that never met have no common scale. With
it, such a model gets a large but finite rating (ten wins and nothing else put it 529 points
above its opponent: odds of 10.5 to 0.5), groups that never met are pulled to the same mean, and
on real studies the prior hardly matters: among four models it moves a rating by about 5 points
at 200 pairs, 1 point at 800 and 0.2 at 4,000.
`prior_ties=0` is the plain maximum-likelihood fit (the tests compare it with an independent
fit); it raises ValueError when the fit does not converge.

Models with no pair at all (one model, or models that share no item scored by one reviewer) are
outside the fit: their rating, CI and ranks are None and `pairs` is 0.

Intervals (`ranking`)
---------------------
The CI resamples ITEMS (clusters), not pairs: the pairs of one item share the prompt and
usually the reviewer, so they are correlated, and a per-pair bootstrap (Arena's, which treats
battles as independent) is too narrow. Measured (`tests/benchmarks/bench_bias_ranking.py`,
200 studies of 80 items, four models side by side, three reviewers per item, a per-item model
effect of sd 0.8): the item bootstrap covers the true rating 94.2% of the time, the per-pair
bootstrap 80.1% with intervals a third narrower. `resamples` resamples of
the items with replacement from `numpy.random.default_rng(seed)` (items sorted by their wins so
the draw never depends on the order rows came in), each refitted (with the same prior), the
bounds being percentiles of the resampled ratings at Hesterberg's expanded level for the number
of items (`stats.expanded_confidence`), as every other interval.

Ranks, as Arena shows them: `rank_low` is the best place a model can take within the CIs,
1 + the number of models whose CI lies wholly above its own; `rank_high` the worst,
the number of models in the fit minus those whose CI lies wholly below its own.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from . import stats
from .bias import resampled_sums

FloatArray = npt.NDArray[np.float64]
SCALE = 400 / math.log(10)
MEAN_RATING = 1000.0
RESAMPLES = 1000
PRIOR_TIES = 1.0
MAX_ITERATIONS = 100
TOLERANCE = 1e-12


@dataclass(frozen=True)
class Outcomes:
    """Pairwise outcomes per item (cluster)."""

    models: list[str]
    wins: FloatArray
    """wins[c, i, j]: model i's wins over model j on cluster c, a tie counting half to each."""

    @property
    def totals(self) -> FloatArray:
        """Wins of each model over each other, over all clusters."""
        return np.asarray(self.wins.sum(axis=0), dtype=np.float64)

    @property
    def pairs(self) -> npt.NDArray[np.int64]:
        """Pairs each model took part in."""
        totals = self.totals
        return np.rint(totals.sum(axis=1) + totals.sum(axis=0)).astype(np.int64)


def outcomes(
    scores: Iterable[tuple[Hashable, Hashable, str, float]], models: Sequence[str] = ()
) -> Outcomes:
    """Pairwise outcomes from (item, occasion, model, score) rows.

    An occasion is one reviewer's look at one item (reviewer, campaign, sample): two models'
    scores on the same item and occasion make a pair. `models` fixes the models and their
    order (every model in view, scored or not); models found in the rows are added, sorted.
    A model scored twice on one item and occasion is a ValueError.
    """
    by_occasion: dict[tuple[Hashable, Hashable], dict[str, float]] = {}
    for item, occasion, model, score in scores:
        seen = by_occasion.setdefault((item, occasion), {})
        if model in seen:
            raise ValueError(f"model {model!r} scored twice on item {item!r}, {occasion!r}")
        seen[model] = float(score)
    names = list(dict.fromkeys(models))
    found = {model for seen in by_occasion.values() for model in seen}
    names += sorted(found - set(names))
    index = {name: i for i, name in enumerate(names)}
    k = len(names)
    per_item: dict[Hashable, FloatArray] = {}
    for (item, _), seen in by_occasion.items():
        if len(seen) < 2:
            continue
        wins = per_item.get(item)
        if wins is None:
            wins = per_item[item] = np.zeros((k, k))
        entries = [(index[m], s) for m, s in seen.items()]
        for n, (i, si) in enumerate(entries):
            for j, sj in entries[n + 1 :]:
                if si > sj:
                    wins[i, j] += 1
                elif sj > si:
                    wins[j, i] += 1
                else:
                    wins[i, j] += 0.5
                    wins[j, i] += 0.5
    # Clusters in a canonical order, so resampling does not depend on the order rows came in.
    clusters = sorted(per_item.values(), key=lambda w: tuple(w.ravel()))
    wins_array = np.stack(clusters) if clusters else np.zeros((0, k, k))
    return Outcomes(names, wins_array)


def _newton(wins: FloatArray, start: FloatArray) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """Maximum-likelihood strengths for each (k, k) win matrix of a (..., k, k) stack.

    Newton's method on −log L + (Σs)² / 2, whose minimum is the sum-zero maximum of L (the
    penalty only removes the one direction L does not depend on). Returns the strengths and,
    for each fit, whether it converged.
    """
    k = wins.shape[-1]
    games = wins + np.swapaxes(wins, -1, -2)
    s = np.broadcast_to(start, wins.shape[:-1]).copy()
    ones = np.ones((k, k))
    for _ in range(MAX_ITERATIONS):
        p = 1 / (1 + np.exp(s[..., np.newaxis, :] - s[..., :, np.newaxis]))  # p[i, j] = P(i > j)
        gradient = (wins - games * p).sum(axis=-1) - s.sum(axis=-1, keepdims=True)
        weight = games * p * (1 - p)
        hessian = -weight
        diagonal = weight.sum(axis=-1)
        # The tiny ridge only keeps a fit that runs away (p → 1) solvable; it changes no optimum.
        hessian = hessian + diagonal[..., np.newaxis] * np.eye(k) + ones + 1e-10 * np.eye(k)
        step = np.linalg.solve(hessian, gradient[..., np.newaxis])[..., 0]
        # Damped so that no strength moves by more than 2 at once (far from the optimum the
        # quadratic model overshoots); near it the full Newton step is taken.
        largest = np.max(np.abs(step), axis=-1, keepdims=True)
        step = step * np.minimum(1.0, 2.0 / np.maximum(largest, 1e-300))
        s = s + step
        if np.all(largest < TOLERANCE) or not np.all(np.isfinite(s)):
            break
    converged = np.all(np.isfinite(s), axis=-1) & (largest[..., 0] < 1e-8)
    return s - s.mean(axis=-1, keepdims=True), converged


def _with_prior(wins: FloatArray, prior_ties: float) -> FloatArray:
    k = wins.shape[-1]
    return wins + (prior_ties / 2) * (1 - np.eye(k))


def bradley_terry(wins: FloatArray, *, prior_ties: float = PRIOR_TIES) -> FloatArray:
    """Strengths (natural log-odds, summing to zero) from a (k, k) matrix of wins.

    See the module docstring for the prior. Raises ValueError if the fit does not converge.
    """
    wins = np.asarray(wins, dtype=np.float64)
    if wins.ndim != 2 or wins.shape[0] != wins.shape[1]:
        raise ValueError("wins must be a square matrix")
    if wins.shape[0] < 2:
        return np.zeros(wins.shape[0])
    strengths, converged = _newton(_with_prior(wins, prior_ties), np.zeros(wins.shape[0]))
    if not converged:
        raise ValueError(
            "the Bradley-Terry fit does not converge: a model wins or loses every pair, "
            "or models never met; fit with prior_ties > 0"
        )
    return strengths


def ratings(strengths: FloatArray) -> FloatArray:
    """Ratings on the Elo scale, averaging 1000."""
    centred = strengths - np.mean(strengths, axis=-1, keepdims=True)
    return np.asarray(MEAN_RATING + SCALE * centred, dtype=np.float64)


@dataclass(frozen=True)
class Rating:
    """A model's Bradley-Terry rating in one fit; None outside the fit (no pair)."""

    model: str
    rating: float | None
    ci_low: float | None
    ci_high: float | None
    rank_low: int | None
    """Best place within the CIs (1 = first)."""
    rank_high: int | None
    """Worst place within the CIs."""
    pairs: int


def rank_ranges(low: Sequence[float], high: Sequence[float]) -> list[tuple[int, int]]:
    """(best, worst) place of each model given its CI, as Arena computes rank ranges."""
    lo, hi = np.asarray(low), np.asarray(high)
    best = 1 + np.sum(lo[np.newaxis, :] > hi[:, np.newaxis], axis=1)
    worst = lo.size - np.sum(hi[np.newaxis, :] < lo[:, np.newaxis], axis=1)
    return [(int(b), int(w)) for b, w in zip(best, worst, strict=True)]


def ranking(
    data: Outcomes,
    *,
    prior_ties: float = PRIOR_TIES,
    seed: int = stats.SEED,
    resamples: int = RESAMPLES,
) -> list[Rating]:
    """Each model's rating with a bootstrap CI over items and its rank range, best first.

    Models outside the fit come last, in their given order.
    """
    pairs = data.pairs
    inside = np.flatnonzero(pairs > 0)
    outside = [
        Rating(data.models[i], None, None, None, None, None, 0) for i in np.flatnonzero(pairs == 0)
    ]
    if not inside.size:  # a pair has two models: there are none or at least two inside
        return outside
    wins = data.wins[:, inside[:, np.newaxis], inside[np.newaxis, :]]
    strengths = bradley_terry(wins.sum(axis=0), prior_ties=prior_ties)
    point = ratings(strengths)
    items = wins.shape[0]
    k = inside.size
    resampled = resampled_sums(wins.reshape(items, k * k), seed=seed, resamples=resamples)
    resampled = resampled.reshape(resamples, k, k)
    boot, converged = _newton(_with_prior(resampled, prior_ties), strengths)
    boot_ratings = ratings(boot[converged])  # without the prior, a resample may have no fit
    if not boot_ratings.size:
        raise ValueError("no bootstrap resample has a Bradley-Terry fit; fit with prior_ties > 0")
    tail = (1 - stats.expanded_confidence(items)) / 2
    low, high = np.percentile(boot_ratings, [100 * tail, 100 * (1 - tail)], axis=0)
    ranks = rank_ranges(low, high)
    rated = [
        Rating(
            data.models[m],
            float(point[n]),
            float(low[n]),
            float(high[n]),
            ranks[n][0],
            ranks[n][1],
            int(pairs[m]),
        )
        for n, m in enumerate(inside)
    ]
    rated.sort(key=lambda r: -(r.rating or 0.0))
    return rated + outside
