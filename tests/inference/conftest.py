"""The model simulator, running on ephemeral ports for the whole session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from inference.simulator import SimulatorThread


@pytest.fixture(scope="session")
def simulator_server() -> Iterator[SimulatorThread]:
    """Both simulated servers with the default profiles, started once per session."""
    with SimulatorThread() as simulator:
        yield simulator


@pytest.fixture
def simulator(simulator_server: SimulatorThread) -> SimulatorThread:
    """The session's simulator with an empty request log, fault counters and fault scripts."""
    simulator_server.reset()
    return simulator_server
