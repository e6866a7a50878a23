"""Benchmark (simulation): what extra reviews on disagreement buy, for the same number of scores.

No database: the rule is the queue's (`grading.assignment`: once a unit has k reviews, if the
scores of one of its answers spread by at least `--spread`, it is offered to `--kmax` reviewers
in all), the matchup difference and its CI are `grading.stats.paired_difference` (the one the
results pages use).

Each simulated study: `--items` items, two models, side-by-side units (a review scores both
answers). An item has a difficulty ~ N(5, 2); model A's true quality is difficulty +
N(`--effect`, 1.5), model B's the difficulty. `--reviewers` reviewers, each with a severity
~ N(0, 0.7) and one of three kinds: careful (70%: noise sd 1), noisy (20%: sd 2.5) and careless
(10%: half of their scores uniform 0–10, the others sd 1.5). Scores are rounded and clipped to
0–10; every review is by a different reviewer, drawn at random.

Three policies, on the same study (same items, same reviewers):
- k only: every unit reviewed `--k` times (fewer scores than the two below);
- extra at random: the k reviews, then as many extra reviews as the rule below asked for in that
  study, given to units drawn at random (each up to `--kmax` reviews): the same number of scores;
- extra on disagreement: the rule.

Printed over `--studies` seeded studies: the scores used, the median (and quartiles) of the 95% CI
width of A − B, its ratio between the two policies with the same number of scores, the RMSE of
the estimated difference against the true mean difference of the items, and how often the test
separates A from B (p < 0.05, A ahead).

    python tests/benchmarks/bench_extra_reviews.py [--studies 400] [--items 60] [--k 2]
        [--kmax 4] [--spread 4] [--effect 0.5] [--reviewers 20] [--seed 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks.harness import setup_django


@dataclass(frozen=True)
class Outcome:
    scores: int
    width: float
    error: float
    separated: bool


class Study:
    """One simulated study: items' true qualities and a pool of reviewers."""

    def __init__(self, rng: np.random.Generator, args: argparse.Namespace) -> None:
        self.rng = rng
        self.args = args
        n = args.items
        difficulty = rng.normal(5, 2, n)
        self.truth = np.stack([difficulty + rng.normal(args.effect, 1.5, n), difficulty], axis=1)
        self.true_diff = float(np.mean(self.truth[:, 0] - self.truth[:, 1]))
        self.severity = rng.normal(0, 0.7, args.reviewers)
        kind = rng.random(args.reviewers)
        self.noise = np.where(kind < 0.7, 1.0, np.where(kind < 0.9, 2.5, 1.5))
        self.careless = kind >= 0.9
        # Every unit's reviewers, in the order they come (at most kmax of them), and each
        # review's scores of A and B, drawn once: all policies read the same draws.
        self.order = np.stack([rng.permutation(args.reviewers)[: args.kmax] for _ in range(n)])
        raw = (
            self.truth[:, None, :]
            + self.severity[self.order][:, :, None]
            + rng.normal(0, 1, (n, args.kmax, 2)) * self.noise[self.order][:, :, None]
        )
        random_scores = rng.integers(0, 11, raw.shape)
        careless_now = self.careless[self.order][:, :, None] & (rng.random(raw.shape) < 0.5)
        self.scores = np.where(careless_now, random_scores, np.clip(np.rint(raw), 0, 10))

    def disagree(self) -> np.ndarray:
        """The units whose first k reviews spread by at least `--spread` on one answer."""
        first = self.scores[:, : self.args.k, :]
        spread = first.max(axis=1) - first.min(axis=1)
        return (spread >= self.args.spread).any(axis=1)

    def outcome(self, reviews: np.ndarray, stats: object) -> Outcome:
        paired_difference = stats.paired_difference  # type: ignore[attr-defined]
        a = {i: list(self.scores[i, : reviews[i], 0]) for i in range(len(reviews))}
        b = {i: list(self.scores[i, : reviews[i], 1]) for i in range(len(reviews))}
        d = paired_difference(a, b, resamples=1000)
        return Outcome(
            scores=int(reviews.sum()) * 2,
            width=d.ci_high - d.ci_low,
            error=d.diff - self.true_diff,
            separated=d.p_value is not None and d.p_value < 0.05 and d.diff > 0,
        )


def run(args: argparse.Namespace) -> dict[str, list[Outcome]]:
    from grading import stats

    results: dict[str, list[Outcome]] = {"k only": [], "extra at random": [], "on disagreement": []}
    for n in range(args.studies):
        rng = np.random.default_rng([args.seed, n])
        study = Study(rng, args)
        k, extra_each = args.k, args.kmax - args.k
        base = np.full(args.items, k)
        targeted = base + np.where(study.disagree(), extra_each, 0)
        asked = int((targeted - base).sum())
        # The same number of extra reviews, on units drawn at random (each up to kmax).
        spare = np.repeat(np.arange(args.items), extra_each)
        chosen = rng.choice(spare, size=asked, replace=False) if asked else np.array([], int)
        scattered = base + np.bincount(chosen, minlength=args.items)
        results["k only"].append(study.outcome(base, stats))
        results["extra at random"].append(study.outcome(scattered, stats))
        results["on disagreement"].append(study.outcome(targeted, stats))
    return results


def quartiles(values: list[float]) -> str:
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return f"{median:5.3f} [{q1:5.3f}, {q3:5.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--studies", type=int, default=400)
    parser.add_argument("--items", type=int, default=60)
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument("--kmax", type=int, default=4)
    parser.add_argument("--spread", type=int, default=4)
    parser.add_argument("--effect", type=float, default=0.5)
    parser.add_argument("--reviewers", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    setup_django()
    start = time.perf_counter()
    results = run(args)
    print(
        f"extra reviews on disagreement: {args.studies} studies of {args.items} items, 2 models "
        f"(A ahead by {args.effect} on average), {args.reviewers} reviewers (70% careful, 20% "
        f"noisy, 10% careless); k = {args.k}, up to {args.kmax} when an answer's first scores "
        f"spread by >= {args.spread}; seed {args.seed}"
    )
    print(
        f"  {'policy':18} {'scores (median)':>15}  {'CI width of A-B: median [q1, q3]':34} "
        f"{'RMSE of A-B':>11}  {'A>B found':>9}"
    )
    for name, outcomes in results.items():
        scores = statistics.median(o.scores for o in outcomes)
        widths = [o.width for o in outcomes]
        rmse = float(np.sqrt(np.mean([o.error**2 for o in outcomes])))
        found = np.mean([o.separated for o in outcomes])
        print(f"  {name:18} {scores:15.0f}  {quartiles(widths):34} {rmse:11.3f}  {found:9.1%}")
    random_w = np.array([o.width for o in results["extra at random"]])
    target_w = np.array([o.width for o in results["on disagreement"]])
    same = all(
        a.scores == b.scores
        for a, b in zip(results["extra at random"], results["on disagreement"], strict=True)
    )
    extra = statistics.median(
        (b.scores - a.scores) / a.scores
        for a, b in zip(results["k only"], results["on disagreement"], strict=True)
    )
    print(
        f"  same number of scores in both extra policies, every study: {same}; extra reviews "
        f"added a median {extra:.0%} scores to k only"
    )
    print(
        f"  CI width, on disagreement / at random: median {np.median(target_w):.3f} / "
        f"{np.median(random_w):.3f} = {np.median(target_w) / np.median(random_w):.3f}; "
        f"per study, median ratio {np.median(target_w / random_w):.3f}, narrower in "
        f"{np.mean(target_w < random_w):.0%} of studies"
    )
    print(f"  ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
