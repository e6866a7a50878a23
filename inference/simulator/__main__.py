"""``python -m inference.simulator``: run the simulator without Django."""

from __future__ import annotations

import argparse
import sys

from .profiles import load_profiles
from .running import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    """Serve until interrupted; exit status 2 for bad options, 1 if a port cannot be bound."""
    parser = argparse.ArgumentParser(
        prog="python -m inference.simulator",
        description="Serve simulated FastDeploy-style and vLLM-style model servers.",
    )
    add_arguments(parser)
    options = parser.parse_args(argv)
    if options.speed <= 0:
        parser.error("--speed must be > 0")
    try:
        profiles = load_profiles(options.profiles)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        run(
            host=options.host,
            fastdeploy_port=options.fastdeploy_port,
            vllm_port=options.vllm_port,
            profiles=profiles,
            speed=options.speed,
            out=lambda line: print(line, flush=True),
        )
    except OSError as exc:
        print(f"simulator: cannot listen: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
