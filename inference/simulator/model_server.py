"""The HTTP side: one aiohttp application per dialect (``ModelServer``).

It serves ``/health``, ``/v1/models`` and ``/v1/chat/completions`` as the real server of its
dialect does, streaming Server-Sent Events on the schedule of a ``Plan`` and injecting the
request's fault, plus the ``/_sim/`` routes tests use to read the request log and script faults.

Every stream also records when each text chunk was due and when its write actually returned,
so a benchmark can tell the client's lateness from the simulator's own. ``GET
/_sim/streams?since=N`` lists the records of recent streams (the newest 2,048 are kept) whose
``id`` is greater than N, oldest first. A record holds ``request`` (the request log's ``id``),
``chat_id`` (the ``id`` of every chunk of the response), ``request_id`` (the body's
``request_id`` or the ``X-Request-Id`` header, if any), ``model``, ``server``, ``outcome``,
``arrival_monotonic`` (``time.monotonic()`` when the bytes that completed the request reached
the machine, by the kernel's receive stamp where it has one, else when the loop read them: the
origin of TTFT),
``tokens`` (text tokens written) and, in seconds after arrival, ``first_scheduled_s`` /
``first_write_s`` and ``last_scheduled_s`` / ``last_write_s`` of the first and last text chunks,
plus ``chunks``: ``[tokens, scheduled_s, written_s]`` per text chunk. A write has returned once
the bytes are in the socket's buffer (aiohttp waits for the buffer to drain only when it is
full), so ``written_s − scheduled_s`` is the simulator's own lateness.
"""

from __future__ import annotations

import array
import asyncio
import dataclasses
import hashlib
import json
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

from ..version import gradebench_version
from .directives import DEFAULT_FAULT_AFTER, HTTP_FAULT_RE, DirectiveError, Directives
from .plan import Plan, build_plan
from .profiles import Dialect, ModelProfile
from .request_parsing import (
    ApiError,
    ChatRequest,
    bad_request,
    estimate_prompt_tokens,
    parse_chat_request,
)
from .state import SimulatorState
from .wire import Wire, dumps

SIMULATOR_VERSION = f"gradebench-simulator {gradebench_version()}"

LOGGED_PARAMS = (
    "temperature",
    "top_p",
    "top_k",
    "max_tokens",
    "max_completion_tokens",
    "seed",
    "n",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "stream_options",
    "chat_template_kwargs",
    "metadata",
    "enable_thinking",
    "max_streaming_response_tokens",
    "response_format",
    "request_id",
    "user",
)


GUIDED_REFUSAL = (
    "guided_backend is None, use --guided-decoding-backend to specify the backend at server "
    "startup."
)
GUIDED_KEYS = ("guided_json", "guided_regex", "guided_choice", "guided_grammar", "structural_tag")


def _asks_for_guided_output(body: Mapping[str, Any]) -> bool:
    """Whether a request asks for guided (structured) output, as FastDeploy tells it."""
    response_format = body.get("response_format")
    if isinstance(response_format, Mapping) and response_format.get("type") in (
        "json_object",
        "json_schema",
    ):
        return True
    return any(body.get(key) is not None for key in GUIDED_KEYS)


async def _sleep_until(loop: asyncio.AbstractEventLoop, deadline: float) -> None:
    delay = deadline - loop.time()
    if delay > 0:
        await asyncio.sleep(delay)


class ModelServer:
    """The aiohttp application of one dialect, serving its profiles."""

    def __init__(
        self,
        dialect: Dialect,
        profiles: Mapping[str, ModelProfile],
        state: SimulatorState,
        speed: float = 1.0,
    ) -> None:
        self.dialect = dialect
        self.profiles = {name: p for name, p in profiles.items() if p.dialect == dialect}
        # Scripted faults may target a model of either server: both share one state.
        self.all_models = frozenset(profiles)
        self.state = state
        self.speed = speed

    def app(self) -> web.Application:
        """A fresh ``web.Application`` with every route."""
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_get("/health", self.health)
        app.router.add_get("/v1/models", self.models)
        if self.dialect == "vllm":  # FastDeploy serves no version route; neither do we for it
            app.router.add_get("/version", self.version)
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        app.router.add_get("/_sim/requests", self.list_requests)
        app.router.add_delete("/_sim/requests", self.clear_requests)
        app.router.add_get("/_sim/faults", self.list_faults)
        app.router.add_post("/_sim/faults", self.script_faults)
        app.router.add_get("/_sim/profiles", self.list_profiles)
        app.router.add_get("/_sim/streams", self.list_streams)
        app.on_response_prepare.append(_add_simulator_header)
        return app

    async def health(self, request: web.Request) -> web.Response:
        """``GET /health``: 200 with an empty body, as both servers answer when healthy."""
        return web.Response(status=200)

    async def version(self, request: web.Request) -> web.Response:
        """``GET /version`` as vLLM answers it: ``{"version": ...}``, here the simulator's."""
        return web.json_response({"version": SIMULATOR_VERSION})

    async def models(self, request: web.Request) -> web.Response:
        """``GET /v1/models`` in the OpenAI list shape."""
        owner = "FastDeploy" if self.dialect == "fastdeploy" else "vllm"
        created = int(time.time())
        data = [
            {
                "id": name,
                "object": "model",
                "created": created,
                "owned_by": owner,
                "root": name,
                "parent": None,
                "max_model_len": profile.max_model_len,
            }
            for name, profile in self.profiles.items()
        ]
        return web.json_response({"object": "list", "data": data})

    async def list_requests(self, request: web.Request) -> web.Response:
        """``GET /_sim/requests[?model=&server=]``: the request log, oldest first."""
        entries = self.state.requests(request.query.get("model"), request.query.get("server"))
        return web.json_response({"object": "list", "data": entries}, dumps=dumps)

    async def clear_requests(self, request: web.Request) -> web.Response:
        """``DELETE /_sim/requests``: clear the log, fault counters and scripted faults."""
        return web.json_response({"cleared": self.state.reset()})

    async def list_faults(self, request: web.Request) -> web.Response:
        """``GET /_sim/faults``: scripted faults still pending, per model."""
        return web.json_response({"pending": self.state.scripted()})

    async def script_faults(self, request: web.Request) -> web.Response:
        """``POST /_sim/faults {"model": ..., "faults": ["500", null, "drop"]}``."""
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error_response(bad_request(self.dialect, "Body must be JSON."))
        if not isinstance(body, Mapping) or not isinstance(body.get("faults"), list):
            return _error_response(bad_request(self.dialect, "Expected {model, faults: [...]}."))
        model = body.get("model")
        if model not in self.all_models:
            return _error_response(_model_not_found(self.dialect, str(model), self.all_models))
        try:
            items = [Directives.from_script(item) for item in body["faults"]]
        except DirectiveError as exc:
            return _error_response(bad_request(self.dialect, f"Invalid scripted fault: {exc}"))
        pending = self.state.script(str(model), items)
        return web.json_response({"model": model, "pending": pending})

    async def list_profiles(self, request: web.Request) -> web.Response:
        """``GET /_sim/profiles``: the profiles this server serves."""
        return web.json_response({"data": [p.as_dict() for p in self.profiles.values()]})

    async def list_streams(self, request: web.Request) -> web.Response:
        """``GET /_sim/streams[?since=N]``: write times of recent streams (module docstring)."""
        try:
            since = int(request.query.get("since", "0"))
        except ValueError:
            return _error_response(bad_request(self.dialect, "since must be an integer."))
        return web.json_response({"object": "list", "data": self.state.streams(since)})

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/chat/completions``, streaming or not."""
        raw = await request.read()
        loop = asyncio.get_running_loop()
        handled = loop.time()
        # When the read that completed the request arrived (`running._StampedHandler`: the
        # kernel's receive stamp where it has one, else when the loop read it), not when this
        # handler got the loop; a server started otherwise has only the latter.
        arrival = min(getattr(request.protocol, "read_at", None) or handled, handled)
        now = time.time()
        entry = self.state.record(
            {
                "server": self.dialect,
                "received_at": now,
                # Wall-clock time of the arrival: the origin of the scripted timing.
                "arrived_at": now - (handled - arrival),
                "model": None,
                "status": None,
                "has_authorization": "Authorization" in request.headers,
                # How long the request waited for its handler after its last byte arrived, and
                # the part of that spent before this loop read it (0 without kernel stamps).
                "handler_wait_ms": round((handled - arrival) * 1000, 3),
                "read_wait_ms": round(getattr(request.protocol, "read_wait", 0.0) * 1000, 3),
            }
        )
        try:
            return await self._chat(request, raw, arrival, entry)
        except ApiError as error:
            self.state.update(entry, status=error.status, error=error.message)
            return _error_response(error)

    async def _chat(
        self, request: web.Request, raw: bytes, arrival: float, entry: dict[str, Any]
    ) -> web.StreamResponse:
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise bad_request(self.dialect, f"Invalid JSON body: {exc}") from exc
        if isinstance(body, dict):
            model = body.get("model")
            self.state.update(entry, model=model)
            # Like the real servers, an unknown model is refused before the body is examined.
            if isinstance(model, str) and model and model not in self.profiles:
                raise _model_not_found(self.dialect, model, set(self.profiles))
        parsed = parse_chat_request(body, self.dialect)
        self.state.update(
            entry,
            stream=parsed.stream,
            params={key: body[key] for key in LOGGED_PARAMS if key in body},
            enable_thinking=parsed.thinking,
            enable_thinking_source=parsed.thinking_source,
            messages=len(body["messages"]),
            roles=[m.get("role") for m in body["messages"]],
            prompt=parsed.prompt_text,
            images=[image.as_dict() for image in parsed.images],
            n_images=len(parsed.images),
            directives=parsed.directives.as_dict(),
        )
        profile = self.profiles[parsed.model]
        if self.dialect == "fastdeploy" and _asks_for_guided_output(body):
            # As FastDeploy started without --guided-decoding-backend (its default) answers.
            raise bad_request(self.dialect, GUIDED_REFUSAL)
        if parsed.images and not profile.vision:
            raise bad_request(self.dialect, self._no_vision_message(profile, len(parsed.images)))
        if profile.max_images is not None and len(parsed.images) > profile.max_images:
            raise bad_request(
                self.dialect,
                f"Too many image items in prompt, got {len(parsed.images)} "
                f"but limit is {profile.max_images}",
            )
        prompt_tokens = estimate_prompt_tokens(parsed, profile)
        if (
            self.dialect == "vllm"
            and prompt_tokens + (parsed.max_tokens or 0) > profile.max_model_len
        ):
            raise bad_request(
                self.dialect,
                f"This model's maximum context length is {profile.max_model_len} tokens. "
                f"However, you requested {prompt_tokens + (parsed.max_tokens or 0)} tokens "
                f"({prompt_tokens} in the messages, {parsed.max_tokens or 0} in the completion). "
                "Please reduce the length of the messages or completion.",
            )

        directives = self._active_directives(parsed)
        fault = directives.fault
        self.state.update(entry, fault=fault, prompt_tokens=prompt_tokens)
        if fault is not None and HTTP_FAULT_RE.match(fault):
            raise self._http_fault(int(fault), parsed.model)

        parsed = dataclasses.replace(parsed, directives=directives)
        plan = build_plan(profile, parsed, self.speed, fault)
        self.state.update(
            entry,
            completion_tokens=plan.completion_tokens,
            reasoning_tokens=plan.reasoning_tokens,
            finish_reason=plan.finish_reason,
            thinking=plan.thinking,
            scheduled_ttft_ms=round(plan.ttft_s * 1000, 3),
            scheduled_tokens_per_s=plan.tokens_per_s,
            tokens_per_chunk=plan.tokens_per_chunk,
        )
        wire = Wire(profile, f"chatcmpl-{uuid.uuid4().hex}", prompt_tokens)
        handler = self._stream if parsed.stream else self._complete
        try:
            return await handler(request, parsed, plan, wire, directives, arrival, entry)
        except (ConnectionResetError, asyncio.CancelledError):
            self.state.update(entry, outcome="client_disconnected")
            raise

    def _active_directives(self, parsed: ChatRequest) -> Directives:
        """The prompt's directives, overridden by a scripted fault, with counted faults
        switched off once they have fired ``times`` times."""
        directives = parsed.directives
        scripted = self.state.next_scripted(parsed.model)
        if scripted is not None:
            directives = directives.overridden_by(scripted)
        if directives.fault is not None and directives.times is not None:
            key = hashlib.sha256(
                (parsed.model + "\0" + json.dumps(parsed.body["messages"], sort_keys=True)).encode()
            ).hexdigest()
            if self.state.seen_before(key) >= directives.times:
                directives = dataclasses.replace(directives, fault=None, times=None)
        return directives

    def _no_vision_message(self, profile: ModelProfile, count: int) -> str:
        if self.dialect == "vllm":
            return f"{profile.name} is not a multimodal model"
        return (
            f"Model {profile.name} does not support multimodal input; "
            f"the request contains {count} image(s)."
        )

    def _http_fault(self, status: int, model: str) -> ApiError:
        if status == 404:
            return _model_not_found(self.dialect, model, set(self.profiles))
        if status == 429:
            return ApiError(
                429,
                "Too many requests, current max concurrency is 512",
                "RateLimitError" if self.dialect == "vllm" else "rate_limit_error",
                headers={"Retry-After": "1"},
            )
        if status >= 500:
            error_type = "InternalServerError" if self.dialect == "vllm" else "internal_error"
            return ApiError(status, "Internal server error (simulated fault)", error_type)
        return bad_request(self.dialect, f"Request rejected (simulated {status})")

    async def _stream(
        self,
        request: web.Request,
        parsed: ChatRequest,
        plan: Plan,
        wire: Wire,
        directives: Directives,
        arrival: float,
        entry: dict[str, Any],
    ) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        fault = directives.fault
        response = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
            },
        )
        await response.prepare(request)

        async def send(data: dict[str, Any] | str, trailing: str = "") -> None:
            payload = data if isinstance(data, str) else dumps(data)
            await response.write(f"data: {payload}{trailing}\n\n".encode())

        # FastDeploy writes its role chunk with a space before the blank line.
        role_trailing = " " if self.dialect == "fastdeploy" else ""
        start = arrival
        role_sent = False
        if fault == "stall":
            await send(wire.role_chunk(), role_trailing)
            role_sent = True
            await asyncio.sleep(directives.stall_s)
            start = arrival + directives.stall_s

        record = self._stream_record(request, parsed, wire, arrival, entry)
        # Flat (tokens, scheduled_s, written_s) triples: compact, as the ring holds thousands.
        writes = array.array("d")
        try:
            chunks = plan.chunks()
            total = plan.completion_tokens
            # A mid-stream fault always lands inside the stream, even for a short answer.
            after = directives.after if directives.after is not None else DEFAULT_FAULT_AFTER
            after = min(after, total - 1)
            drop_after = max(1, directives.after) if directives.after is not None else 1
            emitted = 0
            malformed_sent = False
            for number, units in enumerate(chunks):
                is_last = number == len(chunks) - 1
                due = plan.deadline(start, emitted + len(units))
                await _sleep_until(loop, due)
                if not role_sent:
                    await send(wire.role_chunk(), role_trailing)
                    role_sent = True
                if fault == "error_event" and (emitted >= after or is_last):
                    await send(wire.error_event(directives.shape))
                    await send("[DONE]")
                    self.state.update(
                        entry, status=200, emitted_tokens=emitted, outcome="error_event"
                    )
                    await response.write_eof()
                    return response
                chunk = wire.text_chunk(
                    units, plan.finish_reason if is_last else None, loop.time() - arrival
                )
                emitted += len(units)
                if parsed.continuous_usage:
                    chunk["usage"] = wire.usage(emitted, min(emitted, plan.reasoning_tokens))
                await send(chunk)
                # When the write returned, beside when it was due (module docstring).
                writes.extend((len(units), due - arrival, loop.time() - arrival))
                if fault == "drop" and emitted >= drop_after:
                    self.state.update(entry, status=200, emitted_tokens=emitted, outcome="dropped")
                    _abort(request)
                    return response
                if fault == "malformed" and emitted >= after and not malformed_sent:
                    # A JSON object cut short, as a proxy splitting a line would leave it.
                    await send('{"id":"' + wire.request_id + '","choices":[{"delta":{"content":"')
                    malformed_sent = True

            if parsed.include_usage and fault != "no_usage":
                await send(wire.usage_chunk(total, plan.reasoning_tokens))
            await send("[DONE]")
            self.state.update(entry, status=200, emitted_tokens=emitted, outcome="completed")
            await response.write_eof()
            return response
        finally:
            record["outcome"] = entry.get("outcome") or "interrupted"
            if writes:
                record["tokens"] = int(sum(writes[0::3]))
                record["first_scheduled_s"], record["first_write_s"] = writes[1], writes[2]
                record["last_scheduled_s"], record["last_write_s"] = writes[-2], writes[-1]
            record["chunks"] = writes
            self.state.record_stream(record)

    def _stream_record(
        self,
        request: web.Request,
        parsed: ChatRequest,
        wire: Wire,
        arrival: float,
        entry: dict[str, Any],
    ) -> dict[str, Any]:
        """The record of a stream's write times, without them yet."""
        request_id = parsed.body.get("request_id") or request.headers.get("X-Request-Id")
        return {
            "request": entry["id"],
            "chat_id": wire.request_id,
            "request_id": request_id if isinstance(request_id, str) else None,
            "model": parsed.model,
            "server": self.dialect,
            "outcome": None,
            "arrival_monotonic": arrival,
            "tokens": 0,
            "first_scheduled_s": None,
            "first_write_s": None,
            "last_scheduled_s": None,
            "last_write_s": None,
        }

    async def _complete(
        self,
        request: web.Request,
        parsed: ChatRequest,
        plan: Plan,
        wire: Wire,
        directives: Directives,
        arrival: float,
        entry: dict[str, Any],
    ) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        fault = directives.fault
        start = arrival + (directives.stall_s if fault == "stall" else 0.0)
        if fault == "drop":
            await _sleep_until(loop, plan.deadline(start, 1))
            self.state.update(entry, outcome="dropped")
            _abort(request)
            return web.Response(status=500)
        await _sleep_until(loop, plan.deadline(start, plan.completion_tokens))
        if fault == "error_event":
            raise ApiError(500, wire.error_event(None)["error"]["message"], "InternalServerError")
        if fault == "malformed":
            self.state.update(entry, status=200, outcome="malformed")
            return web.Response(
                status=200,
                text='{"id":"' + wire.request_id + '","choices":[{"message":',
                content_type="application/json",
            )
        body = wire.completion(plan, include_usage=fault != "no_usage")
        self.state.update(
            entry, status=200, emitted_tokens=plan.completion_tokens, outcome="completed"
        )
        return web.json_response(body, dumps=dumps)


def _abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


def _model_not_found(dialect: Dialect, model: str, known: Iterable[str]) -> ApiError:
    if dialect == "vllm":
        return ApiError(404, f"The model `{model}` does not exist.", "NotFoundError", "model")
    names = ", ".join(sorted(known))
    return ApiError(
        404,
        f"Unsupported model: [{model}], support [{names}] or default",
        "invalid_request_error",
        "model",
    )


def _error_response(error: ApiError) -> web.Response:
    return web.json_response(error.body(), status=error.status, headers=error.headers)


async def _add_simulator_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["X-Simulator"] = "gradebench"
