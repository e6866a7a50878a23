"""Benchmark (simulation): what the judge-guided review order buys, against the plain order.

No database: the order is `grading.judge_order.unit_margin` / `ranks` (the functions the queue
uses) over simulated judge scores; the matchup test is `grading.stats.paired_difference` (the
one the results pages use).

Each simulated study: `--items` items, two models, side-by-side units, one reviewer per unit.
An item has a difficulty ~ N(5, 2); model A's true quality on it is difficulty + N(effect, 1.5),
model B's is the difficulty (so A is better on average by `--effect`, with items where B wins).
A person scores true quality + N(0, 1), a judge true quality + N(0, `--judge-noise`), both
rounded and clipped to 0–10; a judge reply is unparseable with probability 5%. People score the
units in the plain order (the queue's random shuffle key) or in the judge-guided order.

Printed per order, as medians (and quartiles) over `--studies` studies:
- human scores to separate: the number of units people must score before the human matchup
  test says A > B (Wilcoxon p < 0.05 with a positive difference) and keeps saying it at every
  later check (checks every 5 units);
- judge errors found: the share of the items where the judge's verdict (which answer is better,
  or a tie) disagrees with the truth and people have scored, after 25% and 50% of the units;
- verdicts right: with people's verdict where they scored and the judge's elsewhere, the share
  of items whose verdict matches the truth, after 25% and 50% of the units.

    python tests/benchmarks/bench_judge_order.py [--studies 300] [--items 200] [--effect 0.5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks.harness import setup_django

CHECK_EVERY = 5


def _clip(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 10)


def _separated_at(order: list[int], human: np.ndarray, stats: object) -> int | None:
    """Units scored before the human test separates A from B for good (None: never)."""
    paired_difference = stats.paired_difference  # type: ignore[attr-defined]
    separated_since: int | None = None
    for k in range(CHECK_EVERY, len(order) + 1, CHECK_EVERY):
        done = order[:k]
        a = {item: [human[item, 0]] for item in done}
        b = {item: [human[item, 1]] for item in done}
        difference = paired_difference(a, b, resamples=200)
        good = (
            difference is not None
            and difference.p_value is not None
            and difference.p_value < 0.05
            and difference.diff > 0
        )
        if good and separated_since is None:
            separated_since = k
        elif not good:
            separated_since = None
    return separated_since


def study(rng: np.random.Generator, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    from grading import judge_order, stats

    n = args.items
    difficulty = rng.normal(5, 2, n)
    truth = np.stack([difficulty + rng.normal(args.effect, 1.5, n), difficulty], axis=1)
    human = _clip(truth + rng.normal(0, 1, truth.shape))
    judge = _clip(truth + rng.normal(0, args.judge_noise, truth.shape))
    unparseable = rng.random(truth.shape) < 0.05
    true_verdict = np.sign(truth[:, 0] - truth[:, 1])
    judge_verdict = np.sign(judge[:, 0] - judge[:, 1])
    human_verdict = np.sign(human[:, 0] - human[:, 1])
    judge_wrong = (judge_verdict != true_verdict) | unparseable.any(axis=1)

    keys = {item: int(rng.integers(2**31)) for item in range(n)}
    margins = {
        item: judge_order.unit_margin(
            [None if unparseable[item, m] else float(judge[item, m]) for m in range(2)]
        )
        for item in range(n)
    }
    ranked = judge_order.ranks(margins, keys)
    orders = {
        "plain": sorted(range(n), key=keys.__getitem__),
        "judge-guided": sorted(range(n), key=ranked.__getitem__),
    }
    results: dict[str, dict[str, float]] = {}
    for name, order in orders.items():
        row: dict[str, float] = {}
        separated = _separated_at(order, human, stats)
        row["separate"] = float(separated) if separated is not None else float("nan")
        for share in (25, 50):
            done = np.zeros(n, dtype=bool)
            done[order[: n * share // 100]] = True
            wrong = judge_wrong.sum()
            row[f"found{share}"] = (judge_wrong & done).sum() / wrong if wrong else 1.0
            verdict = np.where(done, human_verdict, judge_verdict)
            verdict = np.where(~done & unparseable.any(axis=1), 0, verdict)
            row[f"right{share}"] = float((verdict == true_verdict).mean())
        results[name] = row
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=300)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--effect", type=float, default=0.5)
    parser.add_argument("--judge-noise", type=float, default=1.2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    setup_django()
    rng = np.random.default_rng(args.seed)
    runs = [study(rng, args) for _ in range(args.studies)]
    print(
        f"{args.studies} simulated studies, {args.items} items, 2 models, A better by "
        f"{args.effect} on average, human noise 1.0, judge noise {args.judge_noise}, "
        "5% unparseable judge replies"
    )
    header = (
        f"{'order':<14}{'human scores to separate':>28}{'never':>7}"
        f"{'judge errors found 25% / 50%':>31}{'verdicts right 25% / 50%':>27}"
    )
    print(header)
    for name in ("plain", "judge-guided"):
        separate = np.array([run[name]["separate"] for run in runs])
        known = separate[~np.isnan(separate)]
        q1, median, q3 = np.percentile(known, [25, 50, 75]) if known.size else (np.nan,) * 3
        found = [np.mean([run[name][f"found{s}"] for run in runs]) for s in (25, 50)]
        right = [np.mean([run[name][f"right{s}"] for run in runs]) for s in (25, 50)]
        print(
            f"{name:<14}{f'{median:.0f} (IQR {q1:.0f}–{q3:.0f})':>28}"
            f"{int(np.isnan(separate).sum()):>7}"
            f"{f'{found[0]:.0%} / {found[1]:.0%}':>31}{f'{right[0]:.1%} / {right[1]:.1%}':>27}"
        )


if __name__ == "__main__":
    main()
