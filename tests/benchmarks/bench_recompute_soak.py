"""Soak: the results pages against their independent recomputation, on many more random studies.

Runs `tests/grading/test_results_recompute.py` (see its docstring) through pytest in a child
process with `GRADEBENCH_RECOMPUTE_STUDIES` raised from the test suite's default to `--studies`
(2,000) and `GRADEBENCH_RECOMPUTE_EVERY_CSV=1`, so that every page compares every chart CSV
rather than the table and one sampled chart. Prints the number of studies, the wall-clock and
CPU time of the run, the load average (the times are wall-clock, on a shared machine) and the
test's outcome; on a disagreement, pytest's report names the seeds, pages, CSVs, rows and
columns, and the script exits with pytest's status. The database is the one the test suite
would use (SQLite, or `DATABASE_URL`).

    python tests/benchmarks/bench_recompute_soak.py [--studies 2000] [--sampled-csvs]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TEST = "tests/grading/test_results_recompute.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=2000, help="random studies (2000)")
    parser.add_argument(
        "--sampled-csvs",
        action="store_true",
        help="compare the table and one sampled chart per page, as `make test` does",
    )
    args = parser.parse_args()

    env = dict(os.environ, GRADEBENCH_RECOMPUTE_STUDIES=str(args.studies))
    env.pop("GRADEBENCH_RECOMPUTE_SEED", None)
    if not args.sampled_csvs:
        env["GRADEBENCH_RECOMPUTE_EVERY_CSV"] = "1"
    command = [sys.executable, "-m", "pytest", TEST, "-q", "-p", "no:cacheprovider"]
    print(f"{args.studies} random studies, {'sampled' if args.sampled_csvs else 'every'} CSV")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, env=env, check=False, text=True)
    elapsed = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"studies:   {args.studies}")
    print(f"run time:  {elapsed:.1f} s wall, {usage.ru_utime + usage.ru_stime:.1f} s CPU")
    print(f"per study: {elapsed / args.studies * 1000:.0f} ms wall")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"outcome:   {'passed' if result.returncode == 0 else 'FAILED'}")
    sys.exit(result.returncode)


if __name__ == "__main__":
    main()
