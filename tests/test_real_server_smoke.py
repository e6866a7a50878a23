"""Smoke test: the OpenAI client against a real llama-cpp-python server (`make test-real`).

It pins what that server really sends (shared/models/README.md), so that the inference client is
written against observed behaviour rather than the specification:

- streaming: a first chunk with only `delta.role`, then one token per chunk (`delta.content`),
  then a chunk with an empty delta and `finish_reason` ("length" at max_tokens, "stop" at a stop
  sequence), then `[DONE]`;
- `stream_options.include_usage` is ignored: no chunk carries usage, so the client must count
  streamed tokens itself (or take usage from a non-streaming call);
- non-streaming responses carry usage.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletionChunk

if TYPE_CHECKING:  # imported by pytest_plugins below, after pytest's assertion rewriting hook
    from tests.real_server import LlamaServer

pytest_plugins = ["tests.real_server"]  # the session-scoped `llama_server` fixture
pytestmark = pytest.mark.real_server

MAX_TOKENS = 24


@pytest.fixture
def client(llama_server: LlamaServer) -> Iterator[OpenAI]:
    with OpenAI(base_url=llama_server.base_url, api_key="unused", max_retries=0) as api:
        yield api


def test_streaming_chat_completion(client: OpenAI, llama_server: LlamaServer) -> None:
    stream = client.chat.completions.create(
        model=llama_server.model,
        messages=[{"role": "user", "content": "Once upon a time"}],
        max_tokens=MAX_TOKENS,
        temperature=0,  # greedy: the same text every run, and no end-of-text within MAX_TOKENS
        stream=True,
        stream_options={"include_usage": True},
        timeout=60,
    )
    chunks: list[ChatCompletionChunk] = list(stream)

    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert "".join(pieces).strip(), "no text arrived"
    # One token per chunk: max_tokens content chunks, each a short piece of text.
    assert len(pieces) == MAX_TOKENS
    assert chunks[0].choices[0].delta.role == "assistant"
    assert not chunks[0].choices[0].delta.content
    finish_reasons = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finish_reasons[-1] == "length"
    assert set(finish_reasons[:-1]) == {None}
    # Observed: llama-cpp-python ignores include_usage when streaming (no usage chunk at all).
    # If this starts failing, the server began sending usage: update the client and the README.
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert usage_chunks == [], f"the server now sends usage when streaming: {usage_chunks}"
    assert all(c.choices for c in chunks), "a chunk with `choices: []` (a usage chunk?) arrived"


def test_non_streaming_chat_completion(client: OpenAI, llama_server: LlamaServer) -> None:
    completion = client.chat.completions.create(
        model=llama_server.model,
        messages=[{"role": "user", "content": "Once upon a time"}],
        max_tokens=MAX_TOKENS,
        temperature=0,  # greedy: the same text every run, and no end-of-text within MAX_TOKENS
        timeout=60,
    )

    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "length"
    usage = completion.usage
    assert usage is not None
    assert usage.completion_tokens == MAX_TOKENS
    assert usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
