"""A real OpenAI-compatible server (llama-cpp-python) with a real tiny model, for `make test-real`.

Test modules marked `real_server` load this module as a plugin to get the session-scoped
`llama_server` fixture (one server for the whole session, whichever modules ask for it):

    if TYPE_CHECKING:  # a plain import here would keep pytest from rewriting its asserts
        from tests.real_server import LlamaServer

    pytest_plugins = ["tests.real_server"]
    pytestmark = pytest.mark.real_server

(Importing the fixture function itself, `from tests.real_server import llama_server`, also works
for pytest but ruff flags every test parameter of that name as F811, a redefinition.)

`make test-real` builds `.venv-real/` (llama-cpp-python[server]) once and sets
LLAMA_SERVER_PYTHON to its interpreter. The model is `../shared/models/stories260K.gguf` relative
to the repository root unless LLAMA_MODEL_PATH names another file (see shared/models/README.md).
Without either, the tests skip with the reason.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_PATH = REPO.parent / "shared" / "models" / "stories260K.gguf"
MODEL_ALIAS = "stories260K"
STARTUP_TIMEOUT = 120.0
STOP_TIMEOUT = 20.0


@dataclass(frozen=True)
class LlamaServer:
    """A running `python -m llama_cpp.server` child process."""

    base_url: str  # e.g. http://127.0.0.1:PORT/v1
    model: str  # the model alias the server answers to
    log: Path  # the server's stdout and stderr
    process: subprocess.Popen[bytes]

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log, lines)


def log_tail(log: Path, lines: int = 40) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError as exc:
        return f"(cannot read {log}: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def model_path() -> Path:
    return Path(os.environ.get("LLAMA_MODEL_PATH") or DEFAULT_MODEL_PATH)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def list_models(port: int) -> list[str] | None:
    """The model ids from GET /v1/models, or None while the server does not answer."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/v1/models")
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            return None
        return [str(entry["id"]) for entry in json.loads(body)["data"]]
    except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError):
        return None
    finally:
        connection.close()


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate the server's whole process group, killing it if it does not stop in time."""
    if process.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=STOP_TIMEOUT)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """llama-cpp-python's OpenAI-compatible server with stories260K, started once per session."""
    python = os.environ.get("LLAMA_SERVER_PYTHON")
    if not python:
        pytest.skip("LLAMA_SERVER_PYTHON is not set (run `make test-real`)")
    model = model_path()
    if not model.is_file():
        pytest.skip(f"model file {model} is missing (set LLAMA_MODEL_PATH)")
    if not Path(python).is_file():
        pytest.fail(f"LLAMA_SERVER_PYTHON={python} does not exist (remove .venv-real, rerun)")

    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    command = [
        python,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--model_alias",
        MODEL_ALIAS,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "2048",
        "--interrupt_requests",
        "False",
    ]
    with log.open("wb") as handle:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped as a whole
        )
    server = LlamaServer(f"http://127.0.0.1:{port}/v1", MODEL_ALIAS, log, process)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while (models := list_models(port)) is None:
            if process.poll() is not None:
                pytest.fail(
                    f"llama server exited with {process.returncode} before answering "
                    f"(log {log}):\n{server.log_tail()}"
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"llama server did not answer GET /v1/models within {STARTUP_TIMEOUT:.0f} s "
                    f"(log {log}):\n{server.log_tail()}"
                )
            time.sleep(0.25)
        assert MODEL_ALIAS in models, f"/v1/models lists {models}, not {MODEL_ALIAS}"
        yield server
    finally:
        stop(process)
