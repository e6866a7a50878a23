"""The judges' statistics as plain functions, against the `krippendorff` package and scipy on
matrices built another way, over many seeded random cases."""

from __future__ import annotations

import random
from collections.abc import Hashable

import krippendorff
import numpy as np
import pytest
from scipy import stats as scipy_stats

from grading.judge_stats import NO_VARIANCE, TOO_FEW, agreement_with_humans, offset_ci

CASES = range(60)


def random_ratings(
    rng: random.Random,
) -> tuple[list[tuple[str, int, float]], dict[int, float], dict[int, int]]:
    """Reviewers r0…, answers 0…, items of 1–3 answers; some answers only judged, some only
    scored by people, uneven reviewers."""
    people = [f"r{n}" for n in range(rng.randint(1, 5))]
    answers = rng.randint(1, 25)
    item_of = {a: a // rng.randint(1, 3) for a in range(answers)}
    spread = rng.choice([0.3, 1.5, 4.0])
    human, judge = [], {}
    for a in range(answers):
        level = rng.uniform(0, 10)
        for who in rng.sample(people, rng.randint(0, len(people))):
            human.append((who, a, float(round(min(10, max(0, rng.gauss(level, 1)))))))
        if rng.random() < 0.85:
            judge[a] = float(round(min(10, max(0, rng.gauss(level, spread)))))
    return human, judge, item_of


@pytest.mark.parametrize("seed", CASES)
def test_agreement_matches_the_packages_on_a_matrix_built_apart(seed: int) -> None:
    rng = random.Random(seed)
    human, judge, item_of = random_ratings(rng)
    found = agreement_with_humans(human, judge, item_of)

    # Raters as rows (the judge last), answers as columns, NaN where a rater gave nothing.
    raters = sorted({who for who, _, _ in human})
    answers = sorted({a for _, a, _ in human} | set(judge))
    matrix = np.full((len(raters) + 1, len(answers)), np.nan)
    for who, a, value in human:
        matrix[raters.index(who), answers.index(a)] = value
    for a, value in judge.items():
        matrix[-1, answers.index(a)] = value
    pairable = np.sum(~np.isnan(matrix), axis=0) >= 2
    values = matrix[:, pairable][~np.isnan(matrix[:, pairable])]
    if pairable.sum() < 2:
        assert found.alpha is None and found.reason == TOO_FEW
    elif np.ptp(values) == 0:
        assert found.alpha is None and found.reason == NO_VARIANCE
    else:
        expected = krippendorff.alpha(matrix[:, pairable], level_of_measurement="interval")
        assert found.alpha == pytest.approx(expected, abs=1e-9)
        assert found.reason == ""
    assert found.units == int(pairable.sum())

    scored = {a for _, a, _ in human}
    means = {a: float(np.nanmean(matrix[:-1, answers.index(a)])) for a in judge if a in scored}
    both = sorted(means)
    assert found.answers == len(both)
    if both:
        offsets = [judge[a] - means[a] for a in both]
        assert found.offset == pytest.approx(float(np.mean(offsets)))
        low, offset, high = found.offset_ci_low, found.offset, found.offset_ci_high
        assert low is not None and offset is not None and high is not None
        assert low - 1e-9 <= offset <= high + 1e-9
    else:
        assert found.offset is None and found.offset_ci_low is None
    h, j = [means[a] for a in both], [judge[a] for a in both]
    if len(both) >= 2 and np.ptp(h) > 0 and np.ptp(j) > 0:
        assert found.spearman == pytest.approx(scipy_stats.spearmanr(h, j).statistic)
    else:
        assert found.spearman is None


def test_a_reviewer_cannot_be_mistaken_for_the_judge() -> None:
    human = [("<judge>", 1, 2.0), ("judge", 1, 3.0), ("<judge>", 2, 8.0), ("judge", 2, 9.0)]
    found = agreement_with_humans(human, {1: 2.0, 2: 9.0}, {1: 1, 2: 2})
    assert found.units == 2 and found.alpha is not None


def test_offset_ci_resamples_items_in_any_order() -> None:
    offsets: dict[Hashable, list[float]] = {n: [float(n % 4 - 1), float(n % 3)] for n in range(12)}
    forward = offset_ci(offsets)
    backward = offset_ci(dict(reversed(list(offsets.items()))))
    assert forward == backward
    low, high = forward[1], forward[2]
    assert low < forward[0] < high
    assert offset_ci({"only": [2.0, 3.0]}) == (2.5, 2.5, 2.5)
    with pytest.raises(ValueError):
        offset_ci({})
