"""Benchmark (simulation): how the bias and ranking analyses behave, and what they cost.

No database: the figures are `grading.bias` and `grading.ranking` (the functions
`export_analysis` calls) over simulated studies. Printed:

- position, null: over `--studies` studies with no position effect (two models side by side,
  `--items` items, four reviewers each seeing every item in a random order; integer scores from
  item quality, model, reviewer severity and noise), the share where the Wilcoxon test says
  p < 0.05 and the share whose CI excludes 0 (both should be about 5%);
- position, +0.8 for the first answer: mean effect, coverage of 0.8 by the CI, power;
- Bradley-Terry coverage: studies of `--items` items, four models side by side, three reviewers
  per item; each model has an effect per item shared by every reviewer of it (so an item's
  outcomes are correlated, as real items are). The truth is the fit on one study of 100,000
  items. Coverage of the truth and mean CI width, for the item-cluster bootstrap the
  product uses and for a naive bootstrap that resamples pairs (each occasion its own cluster);
  target 93–97% for the first;
- length association: coverage of the true Spearman rho by the analytic CI (Fisher z with the
  Bonett–Wright standard error over items) in studies of `--items` items with two samples
  each, whose lengths and scores share an item effect (so samples of one item are correlated);
  the truth is rho on one study of 50,000 items. Target 93–97%;
- time of each analysis at `--scores` scores of six models (all six side by side per reviewer).

    python tests/benchmarks/bench_bias_ranking.py [--studies 400] [--items 80] [--scores 300000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks.harness import setup_django


def position_study(rng: np.random.Generator, items: int, bonus: float) -> list[tuple]:
    quality = rng.normal(5, 1.5, items)
    model_effect = rng.normal(0, 0.5, 2)
    severity = rng.normal(0, 0.7, 4)
    rows = []
    for item in range(items):
        for reviewer in range(4):
            order = rng.permutation(2)
            for position, model in enumerate(order):
                latent = quality[item] + model_effect[model] + severity[reviewer]
                latent += rng.normal(0, 1.2) + (bonus if position == 0 else 0.0)
                rows.append((item, model, position, float(np.clip(np.rint(latent), 0, 10))))
    return rows


def position_figures(bias: object, studies: int, items: int, bonus: float) -> str:
    position_bias = bias.position_bias  # type: ignore[attr-defined]
    rng = np.random.default_rng(7)
    significant = excludes = covers = 0
    effects = []
    for n in range(studies):
        result = position_bias(position_study(rng, items, bonus), seed=n, resamples=500)
        effects.append(result.effect)
        significant += result.p_value is not None and result.p_value < 0.05
        excludes += not (result.ci_low <= 0 <= result.ci_high)
        covers += result.ci_low <= bonus <= result.ci_high
    return (
        f"position, effect {bonus:+.1f}: mean estimate {np.mean(effects):+.3f}, "
        f"p < 0.05 in {significant / studies:.1%}, CI excludes 0 in {excludes / studies:.1%}, "
        f"CI covers {bonus:+.1f} in {covers / studies:.1%} ({studies} studies of {items} items)"
    )


STRENGTHS = np.array([0.5, 0.2, 0.0, -0.7])
ITEM_SD = 0.8
REVIEWERS = 3


def bt_study(rng: np.random.Generator, items: int) -> tuple[list[tuple], list[tuple]]:
    """Rows for the item-cluster bootstrap, and the same pairs with one cluster per pair.

    Each of `REVIEWERS` reviewers scores all four models side by side on each item: score =
    5 + 1.5 × (strength + the model's effect on the item + logistic noise), rounded and clipped
    to 0–10 (so ties happen). The item effect is shared by every reviewer of the item.
    """
    effects = STRENGTHS + rng.normal(0, ITEM_SD, (items, STRENGTHS.size))
    noise = rng.logistic(0, 1, (items, REVIEWERS, STRENGTHS.size))
    scores = np.clip(np.rint(5 + 1.5 * (effects[:, np.newaxis, :] + noise)), 0, 10)
    clustered, per_pair = [], []
    for item in range(items):
        for reviewer in range(REVIEWERS):
            row = scores[item, reviewer]
            for model in range(STRENGTHS.size):
                clustered.append((item, reviewer, f"m{model}", row[model]))
            for i in range(STRENGTHS.size):
                for j in range(i + 1, STRENGTHS.size):
                    pair = (item, reviewer, i, j)
                    per_pair += [(pair, 0, f"m{i}", row[i]), (pair, 0, f"m{j}", row[j])]
    return clustered, per_pair


def bt_truth(ranking: object) -> np.ndarray:
    outcomes = ranking.outcomes  # type: ignore[attr-defined]
    rows, _ = bt_study(np.random.default_rng(99), 100_000)
    data = outcomes(rows, [f"m{i}" for i in range(STRENGTHS.size)])
    return ranking.ratings(ranking.bradley_terry(data.totals))  # type: ignore[attr-defined]


def bt_figures(ranking: object, studies: int, items: int) -> list[str]:
    outcomes, fit = ranking.outcomes, ranking.ranking  # type: ignore[attr-defined]
    models = [f"m{i}" for i in range(STRENGTHS.size)]
    truth = dict(zip(models, bt_truth(ranking), strict=True))
    rng = np.random.default_rng(11)
    covered = {"items": 0, "pairs": 0}
    width = {"items": 0.0, "pairs": 0.0}
    for n in range(studies):
        clustered, per_pair = bt_study(rng, items)
        for name, rows in (("items", clustered), ("pairs", per_pair)):
            for r in fit(outcomes(rows, models), seed=n, resamples=400):
                covered[name] += r.ci_low <= truth[r.model] <= r.ci_high
                width[name] += r.ci_high - r.ci_low
    total = studies * len(models)
    return [
        f"Bradley-Terry, bootstrap over {name}: coverage {covered[name] / total:.1%}, "
        f"mean CI width {width[name] / total:.1f} rating points "
        f"({studies} studies of {items} items, item effect sd {ITEM_SD})"
        for name in ("items", "pairs")
    ]


def association_study(rng: np.random.Generator, items: int) -> list[tuple[int, float, float]]:
    """(item, length, score) of two answers per item: a longer answer scores a little higher,
    and an item's answers share its length scale and its difficulty."""
    scale = rng.normal(5.5, 0.5, items)
    quality = rng.normal(0, 1.0, items)
    rows = []
    for item in range(items):
        for _ in range(2):
            length = float(np.exp(scale[item] + rng.normal(0, 0.4)))
            latent = 5 + quality[item] + 0.004 * length + rng.normal(0, 1.5)
            rows.append((item, length, float(np.clip(np.rint(latent), 0, 10))))
    return rows


def association_figures(bias: object, studies: int, items: int) -> str:
    length_association = bias.length_association  # type: ignore[attr-defined]
    rng = np.random.default_rng(11)
    truth = length_association(association_study(rng, 50_000)).rho
    covers = 0
    widths = []
    for _ in range(studies):
        result = length_association(association_study(rng, items))
        covers += result.ci_low <= truth <= result.ci_high
        widths.append(result.ci_high - result.ci_low)
    return (
        f"length association: true rho {truth:.3f}; analytic CI covers it in "
        f"{100 * covers / studies:.1f}% of {studies} studies of {items} items × 2 samples "
        f"(mean width {np.mean(widths):.3f})"
    )


def timings(bias: object, ranking: object, scores: int) -> list[str]:
    rng = np.random.default_rng(5)
    models = [f"model-{m}" for m in range(6)]
    reviewers = 2
    items = scores // (len(models) * reviewers)
    quality = rng.normal(5, 1.5, items)
    lengths = rng.integers(50, 1500, (items, len(models)))
    positions, scored = [], []
    for item in range(items):
        for reviewer in range(reviewers):
            order = rng.permutation(len(models))
            values = np.clip(np.rint(quality[item] + rng.normal(0, 1.5, len(models))), 0, 10)
            for position, m in enumerate(order):
                positions.append((item, models[m], int(position), float(values[m])))
                scored.append((item, reviewer, models[m], float(values[m])))
    lines = [f"time at {len(scored):,} scores, {len(models)} models, {items:,} items:"]

    def timed(label: str, work: object) -> None:
        start = time.perf_counter()
        work()  # type: ignore[operator]
        lines.append(f"  {label}: {time.perf_counter() - start:.2f} s")

    timed("position bias (one campaign)", lambda: bias.position_bias(positions))  # type: ignore[attr-defined]
    timed(
        "position balance",
        lambda: bias.position_balance((m, p) for _, m, p, _ in positions),  # type: ignore[attr-defined]
    )

    def per_model_profile(m: int) -> dict[int, tuple[float, float]]:
        means: dict[int, list[float]] = {}
        for item, model, _, value in positions:
            if model == models[m]:
                means.setdefault(item, []).append(value)
        return {i: (sum(v) / len(v), float(lengths[i, m])) for i, v in means.items()}

    profiles = [per_model_profile(m) for m in range(len(models))]

    def length_all() -> None:
        for a in range(len(models)):
            for b in range(a + 1, len(models)):
                bias.length_controlled(profiles[a], profiles[b])  # type: ignore[attr-defined]

    timed("length-controlled differences (15 matchups)", length_all)
    answers = [(i, float(lengths[i, 0]), float(quality[i])) for i in range(items)]
    timed(
        "length association (one model, analytic CI)",
        lambda: bias.length_association(answers),  # type: ignore[attr-defined]
    )
    timed(
        "ranking (pairs and fit, 1000 resamples)",
        lambda: ranking.ranking(ranking.outcomes(scored)),  # type: ignore[attr-defined]
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=400)
    parser.add_argument("--items", type=int, default=80)
    parser.add_argument("--scores", type=int, default=300_000)
    args = parser.parse_args()
    setup_django()
    from grading import bias, ranking

    print(position_figures(bias, args.studies, args.items, 0.0))
    print(position_figures(bias, args.studies // 2, args.items, 0.8))
    print(association_figures(bias, args.studies, args.items))
    for line in bt_figures(ranking, args.studies // 2, args.items):
        print(line)
    for line in timings(bias, ranking, args.scores):
        print(line)


if __name__ == "__main__":
    main()
