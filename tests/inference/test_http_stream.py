"""The streaming HTTP path (`inference.http_stream`) against small real servers: TLS for https
base URLs, a keep-alive connection the server dropped while idle, a stream abandoned by its
heartbeat, a body framed by its length."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from inference import http_stream, stream_loop
from inference.client import EndpointConfig, ModelError, build_request, stream_chat

ANSWER = (
    b'data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":"stop"}]}\n\n'
    b'data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[],'
    b'"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}\n\n'
    b"data: [DONE]\n\n"
)


class AnswerServer:
    """Answers every chat request with `ANSWER` (Content-Length framed, keep-alive), over TLS
    when given a certificate; counts the connections it accepted."""

    def __init__(self, tls: ssl.SSLContext | None = None, idle_close_s: float | None = None):
        self.connections = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                owner.connections += 1
                super().setup()
                if idle_close_s is not None:
                    self.connection.settimeout(idle_close_s)  # drops a connection left idle

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Content-Length", str(len(ANSWER)))
                self.end_headers()
                self.wfile.write(ANSWER)
                self.wfile.flush()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def config(self, scheme: str = "http", key: str = "") -> EndpointConfig:
        url = f"{scheme}://localhost:{self.server.server_port}/v1"
        return EndpointConfig(url, key, "m", "vllm", "none", 30, 5)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def ask(config: EndpointConfig, heartbeat: Any = None) -> Any:
    request = build_request(config, [{"role": "user", "content": "hi"}], {})
    return stream_chat(config, request, heartbeat=heartbeat)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost (made with the openssl command)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    command = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost"
    command += " -addext subjectAltName=DNS:localhost"
    subprocess.run(
        [*command.split(), "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[AnswerServer]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    server = AnswerServer(tls=context)
    yield server
    server.close()


def test_an_https_base_url_streams_over_tls_and_checks_the_certificate(
    tls_server: AnswerServer, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The system's trust store does not know this certificate: refused, and said why.
    monkeypatch.setattr(http_stream, "_tls", None)
    with pytest.raises(ModelError) as caught:
        ask(tls_server.config("https", key="untrusted"))
    assert "connection failed" in caught.value.message
    assert "CERTIFICATE_VERIFY_FAILED" in caught.value.message

    trusting = ssl.create_default_context(cafile=str(certificate[0]))
    monkeypatch.setattr(http_stream, "_tls", trusting)
    config = tls_server.config("https", key="trusted")
    for _ in range(2):
        result = ask(config)
        assert result.content == "Hello" and result.finish_reason == "stop"
        assert result.token_counts()["usage_source"] == "server"
    assert tls_server.connections == 1  # one kept alive for both (the refused one had none)


def test_a_keep_alive_connection_the_server_dropped_while_idle_is_not_reused() -> None:
    server = AnswerServer(idle_close_s=0.2)
    try:
        config = server.config(key="idle-drop")
        assert ask(config).content == "Hello"
        time.sleep(0.6)  # the server closed the idle connection meanwhile
        assert ask(config).content == "Hello"  # on a new connection, not an error
        assert server.connections == 2
        assert ask(config).content == "Hello"  # and that one is kept alive
        assert server.connections == 2
    finally:
        server.close()


class Abandon(Exception):
    pass


def test_a_stream_abandoned_by_its_heartbeat_closes_its_connection() -> None:
    server = AnswerServer()
    try:
        config = server.config(key="abandon")

        def give_up() -> None:
            raise Abandon

        with pytest.raises(Abandon):
            ask(config, heartbeat=give_up)

        async def idle_connections() -> int:
            return len(http_stream.pool_for(config.base_url, config.api_key).idle)

        assert stream_loop.run(idle_connections()) == 0  # closed, never handed out again
        assert ask(config).content == "Hello"
        assert server.connections == 2
        assert stream_loop.run(idle_connections()) == 1
    finally:
        server.close()


def test_a_server_that_accepts_and_says_nothing_times_out() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
        config = EndpointConfig(url, "", "m", "vllm", "none", 30, 0.3)
        started = time.monotonic()
        with pytest.raises(ModelError) as caught:
            ask(config)
        assert "timed out (no data for 0 s)" in caught.value.message
        assert caught.value.retryable and 0.3 <= time.monotonic() - started < 3
    finally:
        listener.close()
        for connection in accepted:
            connection.close()


def test_a_cancelled_stream_closes_its_connection() -> None:
    """A waiting thread that is interrupted cancels its stream (`stream_loop.run`): the server
    must see the connection closed, not a client still reading."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            connection.settimeout(5)
            seen.append(connection.recv(1))  # b"" once the client has closed it

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
        config = EndpointConfig(url, "", "m", "vllm", "none", 30, 30)
        request = build_request(config, [{"role": "user", "content": "hi"}], {})
        from inference.client import stream_chat_async

        future = asyncio.run_coroutine_threadsafe(
            stream_chat_async(config, request), stream_loop.get_loop()
        )
        time.sleep(0.3)  # headers in, waiting for the first chunk
        future.cancel()
        thread.join(5)
        assert seen == [b""]
    finally:
        listener.close()
