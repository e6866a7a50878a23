"""An OpenAI-compatible model simulator for the demo and the tests (DESIGN §8).

It speaks the FastDeploy 2.x and vLLM streaming dialects with scripted timing and faults, and
shares no code with the app's client. ``python -m inference.simulator`` or
``manage.py simulate_models`` runs it; tests use ``SimulatorThread``.
"""

from .profiles import DEFAULT_PROFILES, ModelProfile, load_profiles, merge_profiles
from .server import Directives, SimulatorState, SimulatorThread, run, start_servers

__all__ = [
    "DEFAULT_PROFILES",
    "Directives",
    "ModelProfile",
    "SimulatorState",
    "SimulatorThread",
    "load_profiles",
    "merge_profiles",
    "run",
    "start_servers",
]
