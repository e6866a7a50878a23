"""`grading.stats`: checked against hand computations and references independent of the code."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from fractions import Fraction

import krippendorff
import numpy as np
import pytest
from scipy import stats as scipy_stats

from grading import stats
from grading.stats import Difference, Severity, SpeedRow, Spread

NAN = math.nan
# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", and Wikipedia's article:
# 4 observers × 12 units with missing values; interval alpha = 0.849.
KRIPPENDORFF_EXAMPLE = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
    [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
]


def as_ratings(matrix: Sequence[Sequence[float]]) -> list[tuple[str, str, float]]:
    return [
        (f"observer{r}", f"unit{u}", value)
        for r, row in enumerate(matrix)
        for u, value in enumerate(row)
        if not math.isnan(value)
    ]


# Scores -----------------------------------------------------------------------------------------


def test_summarise_averages_item_means_and_describes_them_by_hand() -> None:
    # Item means 3, 5, 7, 10; the unscored item is left out.
    summary = stats.summarise({"a": [2, 4], "b": [5], "c": [6, 7, 8], "d": [10], "e": []})

    assert summary.items == 4
    assert summary.scores == 7
    assert summary.mean == 6.25  # not 5.857…, the mean of the seven scores
    assert summary.median == 6.0
    assert summary.q1 == 4.5  # 3 + 0.75 × (5 − 3)
    assert summary.q3 == 7.75  # 7 + 0.25 × (10 − 7)
    assert summary.std == pytest.approx(math.sqrt(26.75 / 3))
    assert (summary.min, summary.max) == (3.0, 10.0)
    assert 3.0 <= summary.ci_low < summary.mean < summary.ci_high <= 10.0


def test_summarise_interval_is_scipys_percentile_bootstrap_at_the_expanded_level() -> None:
    rng = np.random.default_rng(7)
    items = {f"q{n}": rng.integers(0, 11, rng.integers(1, 4)).tolist() for n in range(37)}
    means = np.sort([np.mean(scores) for scores in items.values()])

    summary = stats.summarise(items, seed=11, resamples=999)

    # Hesterberg's expansion for n = 37, computed here from its definition.
    n = 37
    t = scipy_stats.t.ppf(0.975, n - 1)
    level = 1 - 2 * scipy_stats.norm.cdf(-math.sqrt(n / (n - 1)) * t)
    assert 0.95 < level < 0.97
    reference = scipy_stats.bootstrap(
        (means,),
        np.mean,
        method="percentile",
        confidence_level=level,
        n_resamples=999,
        rng=np.random.default_rng(11),
    ).confidence_interval
    assert summary.ci_low == pytest.approx(reference.low, abs=1e-12)
    assert summary.ci_high == pytest.approx(reference.high, abs=1e-12)


@pytest.mark.parametrize("method", ["percentile", "basic", "BCa"])
def test_bootstrap_mean_ci_matches_scipy_for_one_and_many_samples(method: stats.Method) -> None:
    rng = np.random.default_rng(3)
    for shape in [(2,), (9,), (60,), (4, 15)]:
        values = rng.integers(0, 11, shape).astype(float)
        low, high = stats.bootstrap_mean_ci(values, method=method, seed=5, resamples=500)
        reference = scipy_stats.bootstrap(
            (values,), np.mean, axis=-1, method=method, n_resamples=500,
            rng=np.random.default_rng(5), vectorized=True,
        ).confidence_interval  # fmt: skip
        np.testing.assert_allclose(low, reference.low, rtol=0, atol=1e-12)
        np.testing.assert_allclose(high, reference.high, rtol=0, atol=1e-12)


def test_summarise_of_one_item_has_a_point_interval_and_no_std() -> None:
    summary = stats.summarise({"only": [4, 7]})

    assert (summary.mean, summary.ci_low, summary.ci_high) == (5.5, 5.5, 5.5)
    assert summary.std is None
    assert (summary.items, summary.scores) == (1, 2)


def test_summarise_of_equal_item_means_has_a_point_interval() -> None:
    summary = stats.summarise({"a": [6], "b": [5, 7], "c": [6, 6, 6]})

    assert (summary.ci_low, summary.ci_high, summary.std) == (6.0, 6.0, 0.0)


@pytest.mark.parametrize("items", [{}, {"a": [], "b": []}])
def test_summarise_rejects_input_without_a_score(items: dict[str, list[float]]) -> None:
    with pytest.raises(ValueError, match="no scored item"):
        stats.summarise(items)


def test_summarise_rejects_a_score_that_is_not_a_number() -> None:
    with pytest.raises(ValueError, match="finite"):
        stats.summarise({"a": [3.0, NAN]})


def test_summarise_is_fixed_by_its_seed_and_not_by_item_order() -> None:
    rng = np.random.default_rng(1)
    items = {n: rng.integers(0, 11, 2).tolist() for n in range(25)}
    backwards = dict(reversed(items.items()))

    assert stats.summarise(items) == stats.summarise(items)
    assert stats.summarise(items) == stats.summarise(backwards)
    other = stats.summarise(items, seed=stats.SEED + 1)
    assert (other.ci_low, other.ci_high) != (stats.summarise(items).ci_low,
                                             stats.summarise(items).ci_high)  # fmt: skip
    assert other.mean == stats.summarise(items).mean


def test_overall_counts_every_task_type_once() -> None:
    big = stats.summarise({n: [8] for n in range(100)})
    small = stats.summarise({"x": [2]})

    assert stats.overall({"translation": big, "poetry": small}) == 5.0
    with pytest.raises(ValueError):
        stats.overall({})


def exact_normal_score_mean(center: float, sd: float) -> float:
    """E[clip(round(N(center, sd)), 0, 10)], from the normal CDF."""

    def cdf(x: float) -> float:
        return 0.5 * (1 + math.erf((x - center) / (sd * math.sqrt(2))))

    return math.fsum(
        k * ((1.0 if k == 10 else cdf(k + 0.5)) - (0.0 if k == 0 else cdf(k - 0.5)))
        for k in range(11)
    )


@pytest.mark.parametrize("items", [10, 20, 40])
def test_summarise_interval_covers_the_true_mean_95_percent_of_the_time(items: int) -> None:
    # 2,000 simulated studies of n items × 2 scores: an item's quality ~ N(5, 2.5), each score
    # clip(round(quality + N(0, 1.5))). The true mean of the item means is that of one score.
    studies = 2000
    true_mean = exact_normal_score_mean(5, math.hypot(2.5, 1.5))
    rng = np.random.default_rng(20250301)
    quality = rng.normal(5, 2.5, (studies, items, 1))
    scores = np.clip(np.rint(quality + rng.normal(0, 1.5, (studies, items, 2))), 0, 10)

    covered = 0
    for study in scores:
        summary = stats.summarise(dict(enumerate(study.tolist())))
        covered += summary.ci_low <= true_mean <= summary.ci_high

    assert 0.93 <= covered / studies <= 0.97


# Differences ------------------------------------------------------------------------------------


def average_ranks(values: list[float]) -> list[float]:
    ordered = sorted(values)
    return [(ordered.index(v) + 1 + len(ordered) - ordered[::-1].index(v)) / 2 for v in values]


def exact_signed_rank_p(diffs: Sequence[float]) -> float:
    """Two-sided p of the signed-rank statistic by enumerating all 2^n signs (zeros dropped)."""
    nonzero = [d for d in diffs if d != 0]
    ranks = average_ranks([abs(d) for d in nonzero])
    observed = sum(r for r, d in zip(ranks, nonzero, strict=True) if d > 0)
    null = [
        sum(r for r, positive in zip(ranks, signs, strict=True) if positive)
        for signs in itertools.product([False, True], repeat=len(ranks))
    ]
    low = sum(w <= observed + 1e-9 for w in null) / len(null)
    high = sum(w >= observed - 1e-9 for w in null) / len(null)
    return min(1.0, 2 * min(low, high))


def test_paired_difference_is_the_mean_of_item_differences_over_shared_items() -> None:
    a = {"q1": [8, 6], "q2": [5], "q3": [9], "only-a": [0]}
    b = {"q1": [4], "q2": [5, 7], "q3": [3], "only-b": [10]}

    result = stats.paired_difference(a, b)

    assert result is not None
    assert result.shared == 3
    assert result.diff == pytest.approx((3 - 1 + 6) / 3)  # 7 − 4, 5 − 6, 9 − 3
    assert result.ci_low <= result.diff <= result.ci_high
    assert result.p_holm is None


def test_wilcoxon_p_value_without_ties_is_the_exact_enumeration() -> None:
    diffs = [1.5, -0.25, 3.0, 2.25, -1.0, 0.5, 4.0, 2.75, -3.5, 1.25]
    a = {n: [d] for n, d in enumerate(diffs)}
    b = {n: [0.0] for n in range(len(diffs))}

    result = stats.paired_difference(a, b)

    assert result is not None and result.p_value is not None
    assert result.p_value == pytest.approx(exact_signed_rank_p(diffs), abs=1e-12)
    # Ranks of |d|: the negatives hold 1, 3 and 9, so W− = 13 and W+ = 42 of 55. Under the
    # null, P(W+ ≥ 42) = P(W+ ≤ 13) = 82/1024: subsets of {1…10} summing to at most 13.
    assert result.p_value == pytest.approx(2 * 82 / 1024)


def test_wilcoxon_p_value_with_ties_and_zeros_is_the_exact_enumeration() -> None:
    diffs = [1, 1, -1, 2, 2, 2, 0, 3, -2, 0, 1, 3]
    a = {n: [5 + d] for n, d in enumerate(diffs)}
    b = {n: [5] for n in range(len(diffs))}

    result = stats.paired_difference(a, b)

    assert result is not None and result.p_value is not None
    assert result.p_value == pytest.approx(exact_signed_rank_p(diffs), abs=1e-12)


def test_wilcoxon_p_value_for_many_tied_items_is_the_corrected_normal_approximation() -> None:
    diffs = [(n % 5) - 1 for n in range(30)]  # −1, 0, 1, 2, 3 six times each
    a = {n: [5 + d] for n, d in enumerate(diffs)}
    b = {n: [5] for n in range(30)}
    nonzero = [d for d in diffs if d]
    n = len(nonzero)
    ranks = average_ranks([abs(d) for d in nonzero])
    w_plus = sum(r for r, d in zip(ranks, nonzero, strict=True) if d > 0)
    ties = sum(t**3 - t for t in (nonzero.count(v) + nonzero.count(-v) for v in (1, 2, 3)))
    sd = math.sqrt(n * (n + 1) * (2 * n + 1) / 24 - ties / 48)
    z = (w_plus - n * (n + 1) / 4 - 0.5) / sd
    expected = math.erfc(abs(z) / math.sqrt(2))

    result = stats.paired_difference(a, b)

    assert result is not None and result.p_value is not None
    assert result.p_value == pytest.approx(expected, rel=1e-9)


def test_paired_difference_of_identical_scores_reports_p_one() -> None:
    same = {n: [n % 11] for n in range(20)}

    result = stats.paired_difference(same, dict(same))

    assert result == Difference(shared=20, diff=0.0, ci_low=0.0, ci_high=0.0, p_value=1.0)


def test_paired_difference_of_one_shared_item_has_no_p_value() -> None:
    result = stats.paired_difference({"q": [9]}, {"q": [4], "r": [1]})

    assert result == Difference(shared=1, diff=5.0, ci_low=5.0, ci_high=5.0, p_value=None)


def test_paired_difference_without_shared_items_is_none() -> None:
    assert stats.paired_difference({"q": [9]}, {"r": [4]}) is None
    assert stats.paired_difference({"q": []}, {"q": [4]}) is None


def test_holm_matches_hand_values() -> None:
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.005])

    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_and_leaves_missing_values_out_of_m() -> None:
    assert stats.holm([0.5, 0.6]) == [1.0, 1.0]
    assert stats.holm([0.01, None, 0.04]) == pytest.approx([0.02, None, 0.04])
    assert stats.holm([None]) == [None]
    assert stats.holm([]) == []
    with pytest.raises(ValueError):
        stats.holm([1.5])


def test_holm_keeps_the_order_of_the_raw_p_values() -> None:
    raw = [0.002, 0.011, 0.012, 0.013, 0.3]

    adjusted = stats.holm(raw)

    assert adjusted == sorted(adjusted, key=lambda p: p or 0)
    assert adjusted == pytest.approx([0.01, 0.044, 0.044, 0.044, 0.3])


def test_holm_adjust_fills_p_holm_on_copies_across_task_types() -> None:
    diffs: dict[str, Difference | None] = {
        "translation": Difference(30, 0.5, 0.1, 0.9, p_value=0.01),
        "poetry": Difference(1, 2.0, 2.0, 2.0, p_value=None),
        "summary": None,
        "dialogue": Difference(30, 0.2, -0.1, 0.5, p_value=0.04),
    }

    adjusted = stats.holm_adjust(diffs)

    assert list(adjusted) == list(diffs)
    translation, dialogue = adjusted["translation"], adjusted["dialogue"]
    assert translation is not None and dialogue is not None
    assert translation.p_holm == pytest.approx(0.02)
    assert dialogue.p_holm == pytest.approx(0.04)
    assert adjusted["poetry"] == diffs["poetry"]
    assert adjusted["summary"] is None
    assert dataclasses.replace(translation, p_holm=None) == diffs["translation"]
    assert diffs["translation"] is not None and diffs["translation"].p_holm is None


# Agreement and severity -------------------------------------------------------------------------


def coincidence_alpha(matrix: Sequence[Sequence[float]]) -> float:
    """Interval alpha straight from the coincidence matrix (Krippendorff 2011, §C), in fractions."""
    coincidences: dict[tuple[float, float], Fraction] = {}
    for unit in zip(*matrix, strict=True):
        values = [v for v in unit if not math.isnan(v)]
        if len(values) < 2:
            continue
        for i, j in itertools.permutations(range(len(values)), 2):
            key = (values[i], values[j])
            coincidences[key] = coincidences.get(key, Fraction(0)) + Fraction(1, len(values) - 1)
    marginals: dict[float, Fraction] = {}
    for (c, _), o in coincidences.items():
        marginals[c] = marginals.get(c, Fraction(0)) + o
    n = sum(marginals.values())
    observed = sum(o * Fraction(c - k) ** 2 for (c, k), o in coincidences.items())
    expected = sum(
        marginals[c] * marginals[k] * Fraction(c - k) ** 2 for c in marginals for k in marginals
    )
    return float(1 - (n - 1) * observed / expected)


def test_agreement_reproduces_krippendorffs_worked_example() -> None:
    result = stats.agreement(as_ratings(KRIPPENDORFF_EXAMPLE))

    assert round(result.alpha or 0, 3) == 0.849
    assert result.alpha == pytest.approx(coincidence_alpha(KRIPPENDORFF_EXAMPLE), abs=1e-12)
    # Unit 12 has one value and cannot be paired.
    assert (result.units, result.scores, result.reviewers) == (11, 40, 4)
    assert result.alpha is not None and result.ci_low is not None and result.ci_high is not None
    assert result.ci_low <= result.alpha <= result.ci_high <= 1.0


def test_agreement_on_random_data_matches_the_coincidence_matrix() -> None:
    rng = np.random.default_rng(4)
    matrix = rng.integers(0, 11, (5, 30)).astype(float)
    matrix[rng.random(matrix.shape) < 0.5] = NAN

    result = stats.agreement(as_ratings(matrix.tolist()))

    assert result.alpha == pytest.approx(coincidence_alpha(matrix.tolist()), abs=1e-12)


def test_bootstrap_alphas_equal_krippendorff_on_the_resampled_units() -> None:
    # The CI recomputes alpha from per-unit sums; a resample repeats some units and drops others.
    rng = np.random.default_rng(8)
    matrix = rng.integers(0, 11, (4, 12)).astype(float)
    matrix[:, 0] = [3, 3, NAN, 3]  # units whose reviewers agree
    matrix[:, 1] = [NAN, 3, 3, NAN]
    matrix[:, 2] = [7, NAN, 7, 7]
    matrix[:, 3:][rng.random((4, 9)) < 0.3] = NAN
    matrix = matrix[:, np.sum(~np.isnan(matrix), axis=0) >= 2]
    units = matrix.shape[1]
    reviewer, unit = np.nonzero(~np.isnan(matrix))
    picks = np.vstack(
        [
            rng.integers(0, units, (6, units)),
            np.resize([0, 1], units),  # every score 3: no alpha
            np.resize([0, 2], units),  # every unit agrees, on 3 or 7: alpha 1
        ]
    )

    alphas = stats._resampled_alphas(stats._unit_sums(unit, matrix[reviewer, unit], units), picks)

    for row, alpha in zip(picks, alphas, strict=True):
        try:
            expected = krippendorff.alpha(matrix[:, row], level_of_measurement="interval")
        except ValueError:  # a single value in the whole resample
            expected = NAN
        assert alpha == pytest.approx(expected, abs=1e-12, nan_ok=True)
    assert math.isnan(alphas[-2])
    assert alphas[-1] == 1.0


def test_agreement_interval_skips_resamples_without_alpha() -> None:
    # Units a and b agree on 3; resamples of only those have no alpha and must be left out.
    ratings = [("ann", "a", 3), ("bob", "a", 3), ("ann", "b", 3), ("bob", "b", 3),
               ("ann", "c", 2), ("bob", "c", 8)]  # fmt: skip

    result = stats.agreement(ratings)

    assert result.ci_low is not None and result.ci_high is not None
    assert math.isfinite(result.ci_low) and result.ci_low <= result.ci_high <= 1.0


def test_agreement_is_none_with_fewer_than_two_pairable_units() -> None:
    result = stats.agreement([("ann", "u1", 3), ("bob", "u1", 7), ("ann", "u2", 5)])

    assert result == stats.Agreement(None, None, None, units=1, scores=2, reviewers=2)
    assert stats.agreement([]) == stats.Agreement(None, None, None, units=0, scores=0, reviewers=0)


def test_agreement_is_none_without_variance() -> None:
    ratings = [(who, unit, 6.0) for who in ("ann", "bob") for unit in ("u1", "u2", "u3")]

    result = stats.agreement(ratings)

    assert result == stats.Agreement(None, None, None, units=3, scores=6, reviewers=2)


def test_agreement_rejects_a_unit_rated_twice_by_one_reviewer() -> None:
    with pytest.raises(ValueError, match="more than once"):
        stats.agreement([("ann", "u1", 3), ("ann", "u1", 4), ("bob", "u1", 4)])


def test_agreement_is_fixed_by_its_seed_and_not_by_rating_order() -> None:
    ratings = as_ratings(KRIPPENDORFF_EXAMPLE)

    first = stats.agreement(ratings)

    assert stats.agreement(list(reversed(ratings))) == first
    other = stats.agreement(ratings, seed=stats.SEED + 1)
    assert other.alpha == first.alpha
    assert (other.ci_low, other.ci_high) != (first.ci_low, first.ci_high)


def test_severity_is_the_mean_offset_from_the_other_reviewers() -> None:
    ratings = [
        ("ann", "u1", 8), ("bob", "u1", 6), ("cat", "u1", 4),
        ("ann", "u2", 5), ("bob", "u2", 5),
        ("cat", "u3", 9),
        ("dan", "u4", 2),
    ]  # fmt: skip

    result = stats.severity(ratings)

    assert result == {
        "ann": Severity(offset=1.5, compared=2, scores=2, mean=6.5),  # 8 − 5, 5 − 5
        "bob": Severity(offset=0.0, compared=2, scores=2, mean=5.5),  # 6 − 6, 5 − 5
        "cat": Severity(offset=-3.0, compared=1, scores=2, mean=6.5),  # 4 − 7; u3 alone
        "dan": Severity(offset=None, compared=0, scores=1, mean=2.0),
    }


# Speed and histogram ----------------------------------------------------------------------------


def row(status: str = "succeeded", **fields: object) -> SpeedRow:
    values: dict[str, object] = {
        "ttft_ms": None, "decode_tps": None, "e2e_tps": None, "response_time_ms": None,
        "completion_tokens": None, "finish_reason": "stop",
    }  # fmt: skip
    values.update(fields)
    return SpeedRow(status=status, **values)  # type: ignore[arg-type]


def test_speed_uses_succeeded_generations_and_skips_missing_values() -> None:
    rows = [
        row(ttft_ms=100.0, decode_tps=50.0, completion_tokens=100),
        row(ttft_ms=200.0, decode_tps=40.0, finish_reason="length"),
        row(ttft_ms=None, decode_tps=60.0, completion_tokens=300),
        row(ttft_ms=400.0, completion_tokens=200, finish_reason="length"),
        row("failed", ttft_ms=9999.0, completion_tokens=9999, finish_reason="length"),
        row("cancelled", ttft_ms=9999.0),
        row("queued"),
        row("running", ttft_ms=1.0),
    ]

    result = stats.speed(rows)

    assert (result.succeeded, result.failed) == (4, 2)
    assert result.ttft_ms == Spread(median=200.0, p90=360.0, n=3)  # 200 + 0.8 × 200
    assert result.decode_tps == Spread(median=50.0, p90=58.0, n=3)
    assert result.e2e_tps == Spread(None, None, 0)
    assert result.mean_completion_tokens == 200.0
    assert result.cut_off == 0.5


def test_speed_without_succeeded_generations_has_no_figures() -> None:
    result = stats.speed([row("failed"), row("queued")])

    assert (result.succeeded, result.failed) == (0, 1)
    assert result.response_time_ms == Spread(None, None, 0)
    assert result.mean_completion_tokens is None
    assert result.cut_off is None


def test_histogram_counts_each_score_from_0_to_10() -> None:
    assert stats.histogram([0, 10, 10, 7, 3, 7, 7]) == [1, 0, 0, 1, 0, 0, 0, 3, 0, 0, 2]
    assert stats.histogram([]) == [0] * 11
    with pytest.raises(ValueError):
        stats.histogram([11])
    with pytest.raises(ValueError):
        stats.histogram([-1])
