"""An OpenAI-compatible model simulator for the demo and the tests (DESIGN §8).

It speaks the FastDeploy 2.x and vLLM streaming dialects with scripted timing and faults, and
shares no code with the app's client. ``python -m inference.simulator`` or
``manage.py simulate_models`` runs it; tests use ``SimulatorThread``.

One process serves two HTTP servers (aiohttp): a FastDeploy-style one for the ERNIE profiles and
a vLLM-style one for the others. Both stream Server-Sent Events on a real socket with the timing
their profile claims, so the simulator is also a timing reference for the app's client:

* the first text-bearing chunk leaves at request arrival + TTFT, right after the role-only chunk
  (real servers emit the role chunk on the first engine output);
* token k (1-based, reasoning included) is ready at arrival + TTFT + (k-1)/rate; a chunk leaves
  when its last token is ready, on absolute deadlines of the loop clock so errors never add up;
* the first text chunk carries one token (as vLLM's stream interval does), later ones up to
  ``tokens_per_chunk``, so (completion_tokens-1)/(t_last-t_first) is exactly the scripted rate.

Faults and timing are scripted per request by a directive in the last user message,
``[[sim: fault=500x3, ttft_ms=100, tps=200, tokens=40]]``, or per model through
``POST /_sim/faults``. Every request is logged for tests at ``GET /_sim/requests``, and when each
chunk of a stream was due and really written at ``GET /_sim/streams`` (see ``model_server``).

A request goes through the modules in this order: ``model_server`` (the HTTP side) has
``request_parsing`` read it and take out its ``directives``, records it in ``state``, has ``plan``
decide what to generate and when, and writes it in the dialect's ``wire`` format; ``running``
starts the servers. ``profiles`` describes the models and ``text`` writes their answers;
``judging`` writes a judge's reply instead when the request asks for a judgement (a JSON score
derived from the judged text by a documented rule, or a malformed reply on request).
Nothing here imports Django.
"""

from .directives import Directives
from .profiles import DEFAULT_PROFILES, ModelProfile, load_profiles, merge_profiles
from .running import SimulatorThread, run, start_servers
from .state import SimulatorState

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
