"""Benchmark: how honest the score CIs of `grading.stats` are, and how long the figures take.

No database: the statistics are plain functions over numbers.

(a) Coverage. For each size (5, 10, 20, 40 items per cell) and each of six score distributions,
1,000 simulated studies (`--studies`); each item gets 1–3 integer scores 0–10 (uniformly). The
distributions give every item a latent quality and draw its scores around it:

  normal 2 (floor)     quality ~ N(2, 1.2), score = clip(round(quality + N(0, 1)), 0, 10)
  normal 5 (wide)      quality ~ N(5, 2.5), noise N(0, 1.5)
  normal 8 (ceiling)   quality ~ N(8, 1), noise N(0, 1)
  bimodal 0/10         30% of items good (quality 9.5), the rest bad (0.5), noise N(0, 1)
  beta-binomial(2,3)   p ~ Beta(2, 3) per item, score ~ Binomial(10, p)
  beta-binomial(6,1)   p ~ Beta(6, 1): most items near the top, a long tail below

The true mean of a study is that of one score (every score of an item has the same marginal, so
the mean of item means estimates it whatever the number of scores), computed exactly: from the
normal CDF for the clipped normals and the mixture, 10·a/(a+b) for the beta-binomials. A cell
reports the share of studies whose 95% interval covers it, for the three bootstrap methods of
`scipy.stats.bootstrap` as `grading.stats.bootstrap_mean_ci` computes them (each study's item
means sorted, as `summarise` does, so the BCa column is exactly `summarise`'s interval; the script
checks that on a few studies) and, as a reference that is not a bootstrap, Student's t interval.
With 1,000 studies a coverage has a standard error of about 0.7 points.

(b) Time of the statistics alone (no grouping, no database) for a realistic study: 6 models ×
21 task types × 400 items × 2 samples, each answer scored by 3 of 12 reviewers: 302,400 scores
and 100,800 answers (units). Scores come from model quality + item difficulty + reviewer severity
+ noise, rounded and clipped to 0–10. Times: `summarise` per model × task type (126 cells),
`paired_difference` for 3 matchups per task type (63) with `holm_adjust` per matchup,
`agreement` per task type (21, 4,800 units each), `severity` over all ratings, `histogram` per
cell, `speed` per model; then one `summarise` of 100 items, against `scipy.stats.bootstrap`.
The machine's load average is printed with the times, because they are wall-clock times.

    python tests/benchmarks/bench_stats.py [--studies 1000] [--seed 1]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as scipy_stats
from scipy.special import ndtr

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from grading import stats  # noqa: E402

SIZES = (5, 10, 20, 40)
METHODS: tuple[stats.Method, ...] = ("percentile", "basic", "BCa")
STUDY_CHUNK = 100  # studies bootstrapped at once; bounds memory at 40 items × 2,000 resamples
MODELS, TASK_TYPES, ITEMS, SAMPLES, REVIEWERS, PER_ANSWER = 6, 21, 400, 2, 12, 3
MATCHUPS = ((0, 1), (2, 3), (4, 5))


# (a) Coverage -----------------------------------------------------------------------------------


def clipped_normal_probs(center: float, sd: float) -> np.ndarray:
    """P(clip(round(N(center, sd)), 0, 10) = k) for k = 0…10."""
    k = np.arange(11)
    upper = ndtr((k + 0.5 - center) / sd)
    lower = ndtr((k - 0.5 - center) / sd)
    upper[-1], lower[0] = 1.0, 0.0
    return np.asarray(upper - lower)


class Distribution:
    def __init__(self, name: str, kind: str, *params: float) -> None:
        self.name, self.kind, self.params = name, kind, params

    def true_mean(self) -> float:
        k = np.arange(11)
        if self.kind == "normal":
            center, quality_sd, noise_sd = self.params
            return float(k @ clipped_normal_probs(center, math.hypot(quality_sd, noise_sd)))
        if self.kind == "bimodal":
            (good,) = self.params
            good_probs, bad_probs = clipped_normal_probs(9.5, 1), clipped_normal_probs(0.5, 1)
            return float(k @ (good * good_probs + (1 - good) * bad_probs))
        a, b = self.params
        return 10 * a / (a + b)

    def item_means(self, studies: int, items: int, rng: np.random.Generator) -> np.ndarray:
        """(studies, items) item means, each item with 1–3 scores."""
        counts = rng.integers(1, 4, (studies, items))
        shape = (studies, items, 3)
        if self.kind == "normal":
            center, quality_sd, noise_sd = self.params
            quality = rng.normal(center, quality_sd, (studies, items, 1))
            scores = np.clip(np.rint(quality + rng.normal(0, noise_sd, shape)), 0, 10)
        elif self.kind == "bimodal":
            (good,) = self.params
            quality = np.where(rng.random((studies, items, 1)) < good, 9.5, 0.5)
            scores = np.clip(np.rint(quality + rng.normal(0, 1, shape)), 0, 10)
        else:
            a, b = self.params
            p = rng.beta(a, b, (studies, items, 1))
            scores = rng.binomial(10, np.broadcast_to(p, shape)).astype(float)
        used = np.arange(3) < counts[..., np.newaxis]
        return np.asarray(np.sum(scores * used, axis=-1) / counts)


DISTRIBUTIONS = (
    Distribution("normal 2 (floor)", "normal", 2, 1.2, 1.0),
    Distribution("normal 5 (wide)", "normal", 5, 2.5, 1.5),
    Distribution("normal 8 (ceiling)", "normal", 8, 1.0, 1.0),
    Distribution("bimodal 0/10", "bimodal", 0.3),
    Distribution("beta-binomial(2,3)", "betabinomial", 2, 3),
    Distribution("beta-binomial(6,1)", "betabinomial", 6, 1),
)


def coverage(means: np.ndarray, truth: float) -> dict[str, float]:
    """Share of studies (rows) whose interval covers `truth`, per method."""
    means = np.sort(means, axis=-1)
    result: dict[str, float] = {}
    for method in METHODS:
        covered = 0
        for start in range(0, len(means), STUDY_CHUNK):
            low, high = stats.bootstrap_mean_ci(means[start : start + STUDY_CHUNK], method=method)
            covered += int(np.count_nonzero((low <= truth) & (truth <= high)))
        result[method] = covered / len(means)
    n = means.shape[-1]
    covered = 0
    for start in range(0, len(means), STUDY_CHUNK):
        low, high = stats.bootstrap_mean_ci(
            means[start : start + STUDY_CHUNK],
            method="percentile",
            confidence=stats.expanded_confidence(n),
        )
        covered += int(np.count_nonzero((low <= truth) & (truth <= high)))
    result["expanded"] = covered / len(means)
    centre = means.mean(axis=-1)
    half = scipy_stats.t.ppf(0.975, n - 1) * means.std(axis=-1, ddof=1) / math.sqrt(n)
    result["t"] = float(np.mean((centre - half <= truth) & (truth <= centre + half)))
    return result


def check_batched_equals_summarise(means: np.ndarray) -> None:
    """The expanded column is `summarise`'s own interval: compare on a few studies."""
    low, high = stats.bootstrap_mean_ci(
        np.sort(means[:20], axis=-1),
        method="percentile",
        confidence=stats.expanded_confidence(means.shape[-1]),
    )
    for study, lo, hi in zip(means[:20], low, high, strict=True):
        summary = stats.summarise({n: [m] for n, m in enumerate(study)})
        if not (math.isclose(summary.ci_low, lo) and math.isclose(summary.ci_high, hi)):
            sys.exit("batched expanded interval differs from summarise's")


def run_coverage(studies: int, seed: int) -> None:
    print(
        f"(a) coverage of the 95% CI of a cell's mean: {studies:,} studies per row, "
        "1–3 scores per item; * = within 93–97%"
    )
    header = f"{'items':>5}  {'distribution':<20} {'true mean':>9}"
    columns = [*METHODS, "expanded (used)", "t (not bootstrap)"]
    print(header + "".join(f" {c:>17}" for c in columns))
    totals: dict[str, list[float]] = defaultdict(list)
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    for items in SIZES:
        for dist in DISTRIBUTIONS:
            truth = dist.true_mean()
            means = dist.item_means(studies, items, rng)
            if items == 20 and dist is DISTRIBUTIONS[1]:
                check_batched_equals_summarise(means)
            shares = coverage(means, truth)
            cells = ""
            for column, key in zip(columns, [*METHODS, "expanded", "t"], strict=True):
                mark = "*" if 0.93 <= shares[key] <= 0.97 else " "
                cells += f" {100 * shares[key]:>15.1f}%{mark}"
                totals[f"{items}:{column}"].append(shares[key])
            print(f"{items:>5}  {dist.name:<20} {truth:>9.3f}{cells}")
    print("mean |coverage − 95%| in points, by size:")
    for items in SIZES:
        gaps = [
            f"{c} {statistics.fmean(abs(100 * s - 95) for s in totals[f'{items}:{c}']):.1f}"
            for c in columns
        ]
        print(f"  {items:>2} items: " + ", ".join(gaps))
    print(f"coverage took {time.perf_counter() - start:.1f} s")


# (b) Time ---------------------------------------------------------------------------------------


def synthetic_study(seed: int) -> dict[str, Any]:
    """Ratings of 6 models × 21 task types × 400 items × 2 samples × 3 of 12 reviewers."""
    rng = np.random.default_rng(seed)
    model_quality = rng.normal(5.5, 1.0, MODELS)
    difficulty = rng.normal(0, 1.5, (TASK_TYPES, ITEMS))
    harshness = rng.normal(0, 0.7, REVIEWERS)
    shape = (MODELS, TASK_TYPES, ITEMS, SAMPLES)
    answer_quality = (
        model_quality[:, None, None, None]
        + difficulty[None, :, :, None]
        + rng.normal(0, 1.0, shape)
    )
    reviewers = np.argsort(rng.random((*shape, REVIEWERS)), axis=-1)[..., :PER_ANSWER]
    noise = rng.normal(0, 1.2, (*shape, PER_ANSWER))
    scores = np.clip(np.rint(answer_quality[..., None] + harshness[reviewers] + noise), 0, 10)

    cells: dict[tuple[int, int], dict[int, list[float]]] = {}
    ratings: dict[int, list[tuple[str, tuple[int, int, int, int], float]]] = defaultdict(list)
    for m in range(MODELS):
        for t in range(TASK_TYPES):
            block, who = scores[m, t].tolist(), reviewers[m, t].tolist()
            cells[m, t] = {i: [s for sample in block[i] for s in sample] for i in range(ITEMS)}
            for i in range(ITEMS):
                for s in range(SAMPLES):
                    for r, score in zip(who[i][s], block[i][s], strict=True):
                        ratings[t].append((f"reviewer{r:02d}", (t, m, i, s), score))
    generations = MODELS * TASK_TYPES * ITEMS * SAMPLES
    status = rng.choice(["succeeded", "failed", "cancelled"], generations, p=[0.97, 0.02, 0.01])
    speed_rows: dict[int, list[stats.SpeedRow]] = defaultdict(list)
    for n in range(generations):
        speed_rows[n % MODELS].append(
            stats.SpeedRow(
                status=str(status[n]),
                ttft_ms=float(100 + n % 311),
                decode_tps=40.0 + n % 17,
                e2e_tps=35.0 + n % 13,
                response_time_ms=float(1500 + n % 977),
                completion_tokens=200 + n % 400 if n % 50 else None,
                finish_reason="length" if n % 23 == 0 else "stop",
            )
        )
    return {"cells": cells, "ratings": ratings, "speed_rows": speed_rows, "scores": scores.size}


def run_timing(seed: int) -> None:
    start = time.perf_counter()
    data = synthetic_study(seed)
    cells, ratings, speed_rows = data["cells"], data["ratings"], data["speed_rows"]
    everyone = [r for given in ratings.values() for r in given]
    units = MODELS * TASK_TYPES * ITEMS * SAMPLES
    print(
        f"\n(b) time of the statistics: {data['scores']:,} scores, {units:,} answers, "
        f"{MODELS} models × {TASK_TYPES} task types × {ITEMS} items × {SAMPLES} samples, "
        f"{PER_ANSWER} of {REVIEWERS} reviewers per answer (data built in "
        f"{time.perf_counter() - start:.1f} s, not counted)"
    )
    print(f"  load average before: {load()}")

    def summaries() -> None:
        for items in cells.values():
            stats.summarise(items)

    def differences() -> None:
        for a, b in MATCHUPS:
            per_type = {
                str(t): stats.paired_difference(cells[a, t], cells[b, t]) for t in range(TASK_TYPES)
            }
            stats.holm_adjust(per_type)

    def agreements() -> None:
        for given in ratings.values():
            stats.agreement(given)

    def histograms() -> None:
        for items in cells.values():
            stats.histogram(int(s) for scores in items.values() for s in scores)

    def speeds() -> None:
        for rows in speed_rows.values():
            stats.speed(rows)

    operations: list[tuple[str, int, Callable[[], object]]] = [
        ("summarise per model × task type", len(cells), summaries),
        ("paired_difference + holm_adjust", len(MATCHUPS) * TASK_TYPES, differences),
        ("agreement per task type", TASK_TYPES, agreements),
        ("severity over all ratings", 1, lambda: stats.severity(everyone)),
        ("histogram per model × task type", len(cells), histograms),
        ("speed per model", MODELS, speeds),
    ]
    total = 0.0
    for label, calls, work in operations:
        started = time.perf_counter()
        work()
        seconds = time.perf_counter() - started
        total += seconds
        each = seconds / calls * 1000
        print(f"  {label:<34} {calls:>4} calls {seconds * 1000:>8.1f} ms  ({each:.2f} ms each)")
    print(f"  {'total':<45} {total * 1000:>8.1f} ms")
    print(f"  load average after: {load()}")

    rng = np.random.default_rng(seed)
    hundred = {n: rng.integers(0, 11, rng.integers(1, 4)).tolist() for n in range(100)}
    means = np.sort([np.mean(s) for s in hundred.values()])

    def scipy_bca() -> object:
        return scipy_stats.bootstrap(
            (means,),
            np.mean,
            method="BCa",
            n_resamples=stats.RESAMPLES,
            rng=np.random.default_rng(stats.SEED),
            vectorized=True,
        )

    wall, cpu = repeat(lambda: stats.summarise(hundred))
    scipy_wall, scipy_cpu = repeat(scipy_bca)
    verdict = "meets" if wall < 5 else "misses"
    print(
        f"  summarise of 100 items: median {wall:.2f} ms wall, {cpu:.2f} ms CPU ({verdict} the "
        f"5 ms budget); scipy.stats.bootstrap BCa alone on the same item means: "
        f"{scipy_wall:.2f} ms wall, {scipy_cpu:.2f} ms CPU"
    )


def load() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def repeat(work: Callable[[], object], runs: int = 200) -> tuple[float, float]:
    """Median wall and CPU time of one call, in ms."""
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        work()
        walls.append((time.perf_counter() - wall) * 1000)
        cpus.append((time.process_time() - cpu) * 1000)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--studies", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    run_coverage(args.studies, args.seed)
    run_timing(args.seed)


if __name__ == "__main__":
    main()
