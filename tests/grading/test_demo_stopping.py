"""The order in which `manage.py demo` stops its processes, with real child processes standing
in for them: the worker first, and only once it is gone the simulator and the web server."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from grading.management.commands.demo import stop_processes

CHILD = """
import signal, sys, time
from pathlib import Path

stopped, linger_s, obey = Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3] == "obey"

def on_term(*_):
    if not obey:
        return
    stopped.write_text(f"{time.time()} ")
    time.sleep(linger_s)  # a worker handing its work back
    stopped.write_text(stopped.read_text() + f"{time.time()}")
    sys.exit(0)

signal.signal(signal.SIGTERM, on_term)
Path(sys.argv[1] + ".ready").touch()
while True:
    time.sleep(0.05)
"""


def start(
    tmp_path: Path, name: str, linger_s: float = 0.0, obey: bool = True
) -> subprocess.Popen[bytes]:
    marker = tmp_path / name
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(marker), str(linger_s), "obey" if obey else "ignore"],
        start_new_session=True,
    )
    deadline = time.monotonic() + 20
    while not (tmp_path / f"{name}.ready").exists():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    return process


def stop_times(tmp_path: Path, name: str) -> list[float]:
    return [float(t) for t in (tmp_path / name).read_text().split()]


def test_the_worker_stops_first_and_the_simulator_and_web_server_only_after_it(
    tmp_path: Path,
) -> None:
    processes = {
        "simulator": start(tmp_path, "simulator"),
        "worker": start(tmp_path, "worker", linger_s=1.0),
        "web": start(tmp_path, "web"),
    }
    stop_processes(processes, worker_stop_s=10, others_stop_s=10)
    assert all(process.poll() is not None for process in processes.values())
    _, worker_done = stop_times(tmp_path, "worker")
    for name in ("simulator", "web"):
        asked, _ = stop_times(tmp_path, name)
        assert asked >= worker_done, name


def test_a_worker_that_does_not_stop_is_killed_after_its_grace_and_the_rest_still_stop(
    tmp_path: Path,
) -> None:
    processes = {
        "worker": start(tmp_path, "worker", obey=False),
        "simulator": start(tmp_path, "simulator"),
    }
    began = time.monotonic()
    stop_processes(processes, worker_stop_s=1, others_stop_s=10)
    assert time.monotonic() - began < 8
    assert processes["worker"].returncode == -9  # SIGKILL
    assert processes["simulator"].returncode == 0
    assert not (tmp_path / "worker").exists()
