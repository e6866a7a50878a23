"""Position bias, length bias and the Bradley-Terry ranking (DESIGN §7.1), on seeded synthetic
studies: injected effects are recovered within their intervals, none is reported where none was
injected, and each figure agrees with an independent recomputation."""

from __future__ import annotations

import math
import random
from collections.abc import Hashable, Sequence

import numpy as np
import pytest
from scipy import optimize
from scipy import stats as scipy_stats

from grading import bias, ranking

# --- Synthetic studies ---------------------------------------------------------------------------

MODELS = ("alpha", "beta", "gamma")


def side_by_side_study(
    seed: int,
    *,
    items: int = 120,
    reviewers: int = 3,
    first_bonus: float = 0.0,
    models: tuple[str, ...] = MODELS,
) -> list[tuple[int, str, str, int, int]]:
    """(item, model, reviewer, position, score) rows: each reviewer sees every item's answers in
    a random order; integer scores 0–10 from item quality, model, reviewer severity and noise,
    plus `first_bonus` for the answer shown first."""
    rng = np.random.default_rng(seed)
    quality = rng.normal(5, 1.5, items)
    model_effect = dict(zip(models, rng.normal(0, 0.5, len(models)), strict=True))
    severity = rng.normal(0, 0.7, reviewers)
    rows = []
    for item in range(items):
        for reviewer in range(reviewers):
            order = rng.permutation(len(models))
            for position, m in enumerate(order):
                model = models[m]
                latent = quality[item] + model_effect[model] + severity[reviewer]
                latent += rng.normal(0, 1.2) + (first_bonus if position == 0 else 0.0)
                score = int(np.clip(round(latent), 0, 10))
                rows.append((item, model, f"r{reviewer}", position, score))
    return rows


def naive_position_effect(rows: Sequence[tuple[int, str, str, int | None, int]]) -> float:
    """The DESIGN §7.1 definition, written out plainly."""
    first: dict[tuple[int, str], list[int]] = {}
    second: dict[tuple[int, str], list[int]] = {}
    for item, model, _, position, score in rows:
        if position == 0:
            first.setdefault((item, model), []).append(score)
        elif position == 1:
            second.setdefault((item, model), []).append(score)
    diffs = [
        sum(first[k]) / len(first[k]) - sum(second[k]) / len(second[k])
        for k in first
        if k in second
    ]
    return sum(diffs) / len(diffs)


def effect_of(rows: Sequence[tuple[int, str, str, int | None, int]]) -> bias.PositionBias:
    return bias.position_bias((item, model, pos, s) for item, model, _, pos, s in rows)


# --- Position bias -------------------------------------------------------------------------------


def test_injected_position_effect_is_recovered_within_its_interval() -> None:
    rows = side_by_side_study(1, first_bonus=0.8)
    result = effect_of(rows)
    assert result.effect == pytest.approx(naive_position_effect(rows))
    assert result.ci_low is not None and result.ci_high is not None
    assert result.ci_low < 0.8 < result.ci_high
    assert result.ci_low > 0
    assert result.p_value is not None and result.p_value < 0.01
    # Only (item, model) pairs some reviewer saw first and another second count.
    assert 0 < result.items <= 120
    assert result.scores < sum(1 for row in rows if row[3] in (0, 1))


def test_no_position_effect_is_reported_where_none_was_injected() -> None:
    result = effect_of(side_by_side_study(2))
    assert result.ci_low is not None and result.ci_high is not None
    assert result.ci_low < 0 < result.ci_high
    assert result.p_value is not None and result.p_value > 0.05


def test_position_p_value_is_the_signed_rank_test_of_the_item_means() -> None:
    rng = random.Random(3)
    rows = [
        (item, model, position, rng.gauss(0.3 if position == 0 else 0, 1))
        for item in range(30)
        for model in ("a", "b")
        for position in (0, 1)
    ]
    per_item: dict[int, list[float]] = {}
    for item, _, position, score in rows:
        per_item.setdefault(item, []).append(score if position == 0 else -score)
    item_means = [sum(v) / 2 for v in per_item.values()]
    result = bias.position_bias(rows)
    assert result.p_value == pytest.approx(scipy_stats.wilcoxon(item_means).pvalue)
    assert result.pairs == 60


def test_position_effect_does_not_depend_on_row_order() -> None:
    rows = side_by_side_study(4, items=40, first_bonus=0.5)
    shuffled = rows[:]
    random.Random(5).shuffle(shuffled)
    assert effect_of(rows) == effect_of(shuffled)


def test_positions_past_the_second_are_left_out() -> None:
    rows = [(1, "a", 0, 8.0), (1, "a", 1, 6.0), (1, "a", 2, 0.0), (2, "b", 2, 3.0)]
    result = bias.position_bias(rows)
    assert (result.effect, result.ci_low, result.ci_high) == (2.0, 2.0, 2.0)
    assert result.p_value is None  # one item: no test
    assert result.scores == 2


def test_imported_scores_without_positions_give_no_data() -> None:
    rows = [(item, model, None, 5.0) for item in range(10) for model in MODELS]
    assert bias.position_bias(rows) == bias.NO_POSITION_DATA
    assert not bias.position_bias(rows).measured
    balance = bias.position_balance((model, None) for _, model, _, _ in rows)
    assert balance.p_value is None and balance.counts == []


def test_one_answer_layout_always_at_the_first_position_gives_no_data() -> None:
    rows = [(item, model, 0, float(item % 11)) for item in range(10) for model in MODELS]
    assert bias.position_bias(rows) == bias.NO_POSITION_DATA


def test_position_effect_is_one_when_every_difference_is_zero() -> None:
    rows = [(i, "a", p, 5.0) for i in range(5) for p in (0, 1)]
    result = bias.position_bias(rows)
    assert result.effect == 0 and result.p_value == 1.0


def test_balance_of_a_randomised_order_passes_and_a_fixed_one_fails() -> None:
    random_order = side_by_side_study(6, items=200)
    balanced = bias.position_balance((model, pos) for _, model, _, pos, _ in random_order)
    assert balanced.models == sorted(MODELS)
    assert balanced.positions == [0, 1, 2]
    assert sum(map(sum, balanced.counts)) == len(random_order)
    assert balanced.p_value is not None and balanced.p_value > 0.01
    fixed = [(model, MODELS.index(model)) for _, model, _, _, _ in random_order]
    skewed = bias.position_balance(fixed)
    assert skewed.p_value is not None and skewed.p_value < 1e-6
    table = np.array(skewed.counts)
    assert skewed.chi2 == pytest.approx(scipy_stats.chi2_contingency(table).statistic)
    assert bias.position_balance([("a", 0), ("a", 1)]).p_value is None


# --- Length bias ---------------------------------------------------------------------------------


def length_study(
    seed: int, *, per_token: float, items: int = 80
) -> dict[str, dict[int, list[tuple[float, float]]]]:
    """model → item → [(length, score)] for two samples per item: "long" writes about 200 tokens
    more than "short" at the same quality; each token is worth `per_token` score points."""
    rng = np.random.default_rng(seed)
    data: dict[str, dict[int, list[tuple[float, float]]]] = {"long": {}, "short": {}}
    for item in range(items):
        quality = rng.normal(5, 1)
        for model, mean_length in (("long", 500), ("short", 300)):
            for _ in range(2):
                length = max(20.0, rng.normal(mean_length, 120))
                score = quality + per_token * (length - 400) + rng.normal(0, 1)
                data[model].setdefault(item, []).append((length, float(np.clip(score, 0, 10))))
    return data


def profile(answers: dict[int, list[tuple[float, float]]]) -> dict[int, tuple[float, float]]:
    return {
        item: (float(np.mean([s for _, s in pairs])), float(np.mean([n for n, _ in pairs])))
        for item, pairs in answers.items()
    }


def test_controlled_difference_is_the_least_squares_intercept() -> None:
    data = length_study(7, per_token=0.004)
    a, b = profile(data["long"]), profile(data["short"])
    result = bias.length_controlled(a, b)
    assert result is not None
    x = [a[k][1] - b[k][1] for k in sorted(a)]
    y = [a[k][0] - b[k][0] for k in sorted(a)]
    line = scipy_stats.linregress(x, y)
    assert result.controlled_difference == pytest.approx(line.intercept, abs=1e-9)
    assert result.slope == pytest.approx(line.slope, abs=1e-12)
    assert result.difference == pytest.approx(np.mean(y))
    assert result.items == 80


def test_injected_length_preference_is_controlled_away() -> None:
    data = length_study(8, per_token=0.004)
    result = bias.length_controlled(profile(data["long"]), profile(data["short"]))
    assert result is not None and result.ci_low is not None and result.ci_high is not None
    # The raw difference is the length preference (200 tokens × 0.004 = 0.8)…
    assert result.difference == pytest.approx(0.8, abs=0.3)
    # …and at equal length there is none.
    assert result.ci_low < 0 < result.ci_high
    assert result.slope == pytest.approx(0.004, abs=0.0015)


def test_injected_length_preference_shows_in_each_models_association() -> None:
    data = length_study(8, per_token=0.01)
    for model in ("long", "short"):
        answers = [(i, n, s) for i, pairs in data[model].items() for n, s in pairs]
        association = bias.length_association(answers)
        assert association.ci_low is not None and association.ci_low > 0
        assert association.answers == 160 and association.items == 80


def test_no_length_effect_is_reported_where_none_was_injected() -> None:
    data = length_study(9, per_token=0.0)
    result = bias.length_controlled(profile(data["long"]), profile(data["short"]))
    assert result is not None and result.ci_low is not None and result.ci_high is not None
    assert result.ci_low < 0 < result.ci_high
    answers = [(i, n, s) for i, pairs in data["long"].items() for n, s in pairs]
    association = bias.length_association(answers)
    assert association.ci_low is not None and association.ci_high is not None
    assert association.ci_low < 0 < association.ci_high
    assert association.rho == pytest.approx(
        scipy_stats.spearmanr([n for _, n, _ in answers], [s for _, _, s in answers]).statistic
    )


def test_length_comparison_edge_cases() -> None:
    assert bias.length_controlled({1: (5.0, 100.0)}, {2: (4.0, 90.0)}) is None
    few = bias.length_controlled({1: (5.0, 100.0), 2: (6, 10)}, {1: (4.0, 90.0), 2: (5, 0)})
    assert few is not None and few.difference == 1.0 and few.controlled_difference is None
    same_gap = {k: (5.0 + k, 100.0 + k) for k in range(5)}
    other = {k: (4.0, 90.0 + k) for k in range(5)}
    constant = bias.length_controlled(same_gap, other)
    assert constant is not None and constant.controlled_difference is None
    assert bias.length_association([(1, 10, 5), (2, 10, 6), (3, 10, 7)]).rho is None
    assert bias.lengths([10, None], [40, 50]) == ([40, 50], "characters")
    assert bias.lengths([10, 12], [40, None]) == ([10, 12], "tokens")


# --- Ranking -------------------------------------------------------------------------------------

TRUE_STRENGTHS = {"alpha": 0.6, "beta": 0.0, "gamma": -0.2, "delta": -0.4}


def bt_study(
    seed: int, strengths: dict[str, float], *, items: int = 200, reviewers: int = 2
) -> list[tuple[Hashable, Hashable, str, float]]:
    """(item, occasion, model, score) rows: on each occasion a reviewer scores two models, the
    winner drawn with the Bradley-Terry probability, winner 7 and loser 4."""
    rng = np.random.default_rng(seed)
    names = list(strengths)
    rows: list[tuple[Hashable, Hashable, str, float]] = []
    for item in range(items):
        for reviewer in range(reviewers):
            i, j = rng.choice(len(names), 2, replace=False)
            a, b = names[i], names[j]
            a_wins = rng.random() < 1 / (1 + math.exp(strengths[b] - strengths[a]))
            rows += [
                (item, reviewer, a, 7 if a_wins else 4),
                (item, reviewer, b, 4 if a_wins else 7),
            ]
    return rows


def independent_fit(
    rows: list[tuple[Hashable, Hashable, str, float]], names: list[str]
) -> np.ndarray:
    """Maximum likelihood of the logistic model, written apart from grading.ranking: one row
    per pair, a tie as half a win each way, scipy's BFGS with the first strength fixed at 0."""
    index = {n: i for i, n in enumerate(names)}
    occasions: dict[tuple[Hashable, Hashable], list[tuple[str, float]]] = {}
    for item, occasion, model, score in rows:
        occasions.setdefault((item, occasion), []).append((model, score))
    games = []  # (winner, loser, weight)
    for scored in occasions.values():
        for n, (ma, sa) in enumerate(scored):
            for mb, sb in scored[n + 1 :]:
                if sa == sb:
                    games += [(index[ma], index[mb], 0.5), (index[mb], index[ma], 0.5)]
                elif sa > sb:
                    games.append((index[ma], index[mb], 1.0))
                else:
                    games.append((index[mb], index[ma], 1.0))
    winner, loser, weight = (np.array(c) for c in zip(*games, strict=True))

    def loss(free: np.ndarray) -> tuple[float, np.ndarray]:
        s = np.concatenate([[0.0], free])
        margin = s[winner] - s[loser]
        value = np.sum(weight * np.logaddexp(0, -margin))
        g = -weight / (1 + np.exp(margin))
        grad = np.bincount(winner, g, len(names)) - np.bincount(loser, g, len(names))
        return float(value), grad[1:]

    fit = optimize.minimize(loss, np.zeros(len(names) - 1), jac=True, method="BFGS",
                            options={"gtol": 1e-11})  # fmt: skip
    s = np.concatenate([[0.0], fit.x])
    return s - s.mean()


def test_unregularised_fit_agrees_with_an_independent_fit() -> None:
    rows = bt_study(10, TRUE_STRENGTHS)
    # A few ties and an occasion with three models, so half-wins and more than a pair count.
    rows += [(999, 0, "alpha", 5), (999, 0, "beta", 5), (999, 0, "gamma", 9)]
    data = ranking.outcomes(rows)
    ours = ranking.bradley_terry(data.totals, prior_ties=0)
    theirs = independent_fit(rows, data.models)
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_known_strengths_are_recovered_within_their_intervals() -> None:
    rows = bt_study(11, TRUE_STRENGTHS, items=400)
    result = ranking.ranking(ranking.outcomes(rows), resamples=400)
    true = dict(
        zip(TRUE_STRENGTHS, ranking.ratings(np.array(list(TRUE_STRENGTHS.values()))), strict=True)
    )
    assert [r.model for r in result] == ["alpha", "beta", "gamma", "delta"]
    assert math.fsum(r.rating or 0 for r in result) / 4 == pytest.approx(1000)
    for r in result:
        assert r.ci_low is not None and r.ci_high is not None
        assert r.ci_low < true[r.model] < r.ci_high, r
    assert result[0].rank_low == result[0].rank_high == 1
    assert sum(r.pairs for r in result) == 2 * 400 * 2


def test_equal_strengths_give_overlapping_intervals_and_every_rank() -> None:
    rows = bt_study(12, dict.fromkeys(("a", "b", "c"), 0.0), items=150)
    result = ranking.ranking(ranking.outcomes(rows), resamples=300)
    for r in result:
        assert r.ci_low is not None and r.ci_high is not None
        assert r.ci_low < 1000 < r.ci_high
        assert (r.rank_low, r.rank_high) == (1, 3)


def test_bootstrap_resamples_items_and_is_reproducible() -> None:
    rows = bt_study(13, TRUE_STRENGTHS, items=60)
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    assert ranking.ranking(ranking.outcomes(rows), resamples=200) == ranking.ranking(
        ranking.outcomes(shuffled), resamples=200
    )
    assert ranking.outcomes(rows).wins.shape == (60, 4, 4)


def test_pairs_come_from_one_reviewer_only() -> None:
    rows = [(1, "r1", "a", 9), (1, "r2", "b", 2), (2, "r1", "a", 3), (2, "r1", "b", 3)]
    data = ranking.outcomes(rows)
    assert data.models == ["a", "b"]
    np.testing.assert_array_equal(data.totals, [[0, 0.5], [0.5, 0]])
    assert list(data.pairs) == [1, 1]
    with pytest.raises(ValueError, match="scored twice"):
        ranking.outcomes([(1, "r1", "a", 9), (1, "r1", "a", 2)])


def test_one_model_or_no_shared_item_has_no_rating() -> None:
    alone = ranking.ranking(ranking.outcomes([(1, "r", "a", 5), (2, "r", "a", 6)]))
    assert alone == [ranking.Rating("a", None, None, None, None, None, 0)]
    apart = ranking.ranking(ranking.outcomes([(1, "r", "a", 5), (2, "r", "b", 6)], ["b", "a"]))
    assert [r.model for r in apart] == ["b", "a"]
    assert all(r.rating is None and r.pairs == 0 for r in apart)
    assert ranking.ranking(ranking.outcomes([], ["a", "b"])) == [
        ranking.Rating(m, None, None, None, None, None, 0) for m in ("a", "b")
    ]


def test_models_in_view_without_pairs_follow_the_fit() -> None:
    rows = bt_study(14, {"a": 0.5, "b": 0.0}, items=30)
    result = ranking.ranking(ranking.outcomes(rows, ["c", "a", "b"]), resamples=100)
    assert [r.model for r in result][-1] == "c" and result[-1].rating is None
    assert result[0].rating is not None and result[1].rating is not None
    assert (result[0].rating + result[1].rating) / 2 == pytest.approx(1000)


def test_all_ties_rate_every_model_the_same() -> None:
    rows = [(item, r, m, 6) for item in range(20) for r in range(2) for m in ("a", "b", "c")]
    result = ranking.ranking(ranking.outcomes(rows), resamples=100)
    for r in result:
        assert r.rating == pytest.approx(1000) and r.ci_low == pytest.approx(1000)
        assert r.ci_high == pytest.approx(1000) and (r.rank_low, r.rank_high) == (1, 3)


def test_one_reviewer_is_enough() -> None:
    rows = bt_study(15, {"a": 1.0, "b": 0.0, "c": -1.0}, items=200, reviewers=1)
    result = ranking.ranking(ranking.outcomes(rows), resamples=200)
    assert [r.model for r in result] == ["a", "b", "c"]


def test_a_model_that_wins_every_pair_keeps_a_finite_rating() -> None:
    rows = bt_study(16, {"a": 0.0, "b": -0.3}, items=40)
    rows += [(100 + n, 0, "c", 10) for n in range(10)] + [(100 + n, 0, "a", 1) for n in range(10)]
    data = ranking.outcomes(rows)
    result = ranking.ranking(data, resamples=200)
    assert result[0].model == "c"
    assert all(r.rating is not None and math.isfinite(r.rating) for r in result)
    assert result[0].ci_low is not None and result[0].ci_low > 1000
    # Two models: ten wins and the prior's tie are odds of 10.5 to 0.5.
    two = ranking.ratings(ranking.bradley_terry(np.array([[0.0, 10], [0, 0]])))
    assert two[0] - two[1] == pytest.approx(400 * math.log10(21))
    with pytest.raises(ValueError, match="does not converge"):
        ranking.bradley_terry(data.totals, prior_ties=0)


def test_rank_ranges_follow_interval_overlaps() -> None:
    ranges = ranking.rank_ranges([1100, 1050, 900], [1200, 1150, 1000])
    assert ranges == [(1, 2), (1, 2), (3, 3)]


def test_spearman_ci_is_fisher_z_with_the_bonett_wright_error() -> None:
    rho, n = 0.3, 50
    se = ((1 + rho**2 / 2) / (n - 3)) ** 0.5
    z = 0.5 * np.log((1 + rho) / (1 - rho))
    expected = [np.tanh(z - 1.959963984540054 * se), np.tanh(z + 1.959963984540054 * se)]
    assert bias.spearman_ci(rho, n) == pytest.approx(expected)
    assert bias.spearman_ci(0.5, 3) == (None, None)
    answers = [(i // 2, float(i), float(i % 5)) for i in range(20)]  # two samples per item
    result = bias.length_association(answers)
    assert (result.answers, result.items) == (20, 10) and result.rho is not None
    assert (result.ci_low, result.ci_high) == pytest.approx(bias.spearman_ci(result.rho, 20))
