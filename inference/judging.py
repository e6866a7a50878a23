"""Run one judgement: send the judge its prompt, stream the reply, read a score from it.

A judgement arrives queued with its messages already written (`request["messages"]`: the
judge prompt as a system message and the text to judge as the user message). Running it:

* the user message gets the item's images when the judge has vision (`endpoint.vision`),
  encoded as a generation's are; the stored request records them by hash;
* sampling comes from the campaign's `judge_params`, temperature 0 unless they say otherwise;
* the reply is asked for as structured output (`judge_reply.RESPONSE_FORMAT`) where the
  server takes it: OpenAI and vLLM servers do; FastDeploy refuses any guided request with
  HTTP 400 unless it was started with `--guided-decoding-backend`, so it is not sent one by
  default. `judge_params["structured_output"]` (true or false) decides for every judge of the
  campaign. A server that refuses the request because of its `response_format` (FastDeploy
  without a guided-decoding backend, llama-cpp-python's server, which knows only
  `json_object`) is asked again without one, and this worker process asks that endpoint
  without one from then on. The judge prompt states the reply format in words either way;
* the reply's content (reasoning kept apart) is read by `judge_reply.read_reply`: a score makes
  the judgement `parsed`, anything else `unparseable` with the reason and the raw text kept. A
  server that answers with nothing at all (after the retries) is `unparseable` too ("empty
  reply"); a server that cannot be reached, or keeps failing, makes it `failed` with the error.

Timings, token counts and the reproducibility record are stored as for a generation.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings

from . import dispatch, record
from .client import EndpointConfig, ModelError, StreamResult, build_request, complete_with_retries
from .generate import endpoint_config, image_parts, stream_fields
from .judge_reply import RESPONSE_FORMAT, read_reply
from .models import Campaign, Dialect, Judgement, JudgementStatus, ModelEndpoint, TaskItem

logger = logging.getLogger(__name__)

JUDGE_DEFAULTS: dict[str, Any] = {"temperature": 0}
STRUCTURED_OUTPUT = "structured_output"
"""The `judge_params` key that turns structured output on or off for every judge."""
_FIELDS = frozenset(field.name for field in Judgement._meta.concrete_fields)
_REFUSAL_WORDS = ("response_format", "json_schema", "guided")
_refused: set[tuple[int, str]] = set()
"""(endpoint id, base URL) of the servers that refused structured output in this process."""


class JudgeRequestError(Exception):
    """The judgement's stored messages cannot make a request."""


def judge_params(campaign: Campaign) -> dict[str, Any]:
    return {**JUDGE_DEFAULTS, **(campaign.judge_params or {})}


def wants_structured_output(endpoint: ModelEndpoint, params: dict[str, Any]) -> bool:
    chosen = params.get(STRUCTURED_OUTPUT)
    if isinstance(chosen, bool):
        return chosen
    return endpoint.dialect != Dialect.FASTDEPLOY


def refuses_structured_output(error: ModelError) -> bool:
    """Whether a server turned the request down because of its `response_format`."""
    message = error.message.lower()
    return error.http_status in (400, 422, 500) and any(w in message for w in _REFUSAL_WORDS)


def _text_of(content: Any) -> str:
    """A message's text: the string itself, or its text parts joined (images left out)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [part.get("text") for part in content if isinstance(part, dict)]
        return "\n".join(text for text in texts if isinstance(text, str))
    return ""


def judge_messages(
    judgement: Judgement, endpoint: ModelEndpoint
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The messages to send, and the same with images recorded by hash.

    Read from the stored request as text only (a request stored by an earlier run records its
    images by hash: they are encoded again from the item).
    """
    stored = (judgement.request or {}).get("messages")
    if not isinstance(stored, list) or not stored:
        raise JudgeRequestError("the judgement has no messages to send")
    messages = [
        {"role": str(message.get("role")), "content": _text_of(message.get("content"))}
        for message in stored
        if isinstance(message, dict)
    ]
    if not messages or messages[-1]["role"] != "user" or not messages[-1]["content"].strip():
        raise JudgeRequestError("the judgement's last message is not a user message with text")
    if not endpoint.vision:
        return messages, list(messages)
    item = TaskItem.objects.with_images().get(pk=judgement.generation.item_id)
    images, recorded_images = image_parts(item, endpoint)
    if not images:
        return messages, list(messages)
    text = {"type": "text", "text": messages[-1]["content"]}
    last = {"role": "user", "content": [text, *images]}
    recorded_last = {"role": "user", "content": [text, *recorded_images]}
    return [*messages[:-1], last], [*messages[:-1], recorded_last]


def _stream_fields(result: StreamResult) -> dict[str, Any]:
    """A generation's stream fields that a judgement has too."""
    return {key: value for key, value in stream_fields(result).items() if key in _FIELDS}


def _record(judgement: Judgement, config: EndpointConfig, result: Any) -> dict[str, str]:
    version = record.server_version_for(
        judgement.campaign_id, judgement.judge_id, config.base_url, config.api_key
    )
    return record.generation_record(result, version)


def _answered_nothing(partial: StreamResult | None) -> bool:
    """The server took the request and finished its reply without a single character."""
    return (
        partial is not None
        and partial.http_status == 200
        and bool(partial.finish_reason)
        and not partial.received_text
    )


def run_judgement(judgement_id: int) -> str:
    """Claim and run one judgement, then keep its slot busy with the judge's next ones.

    Returns what happened to the first (for logs and tests). A task runs at most
    DISPATCH_CHAIN_MAX judgements (or for DISPATCH_CHAIN_MAX_S seconds) before it hands the
    remaining work back to the queue.
    """
    judgement = dispatch.claim_judgement(judgement_id)
    if judgement is None:
        return "skipped"
    return dispatch.run_chain(
        judgement, judgement.judge_id, lambda row, hand_over: _run_claimed(row, hand_over=hand_over)
    )


def _run_claimed(judgement: Judgement, *, hand_over: bool) -> tuple[str, Judgement | None]:
    """Run a claimed judgement; return its outcome and the next one handed over, if any."""
    endpoint = ModelEndpoint.objects.get(pk=judgement.judge_id)
    lost = dispatch.lease_keeper.hold(judgement)
    heartbeat, back_off = dispatch.lease_callbacks(lost)

    config = endpoint_config(endpoint)

    def ask(request: dict[str, Any], recorded: list[dict[str, Any]]) -> tuple[StreamResult, int]:
        stored_request = {**request, "messages": recorded, "base_url": config.base_url}
        Judgement.objects.filter(pk=judgement.pk).update(request=stored_request)
        return complete_with_retries(
            config,
            request,
            max_attempts=settings.MODEL_MAX_ATTEMPTS,
            backoff_base_s=settings.MODEL_RETRY_BASE_S,
            backoff_cap_s=settings.MODEL_RETRY_CAP_S,
            heartbeat=heartbeat,
            sleep=back_off,
        )

    try:
        messages, recorded = judge_messages(judgement, endpoint)
        params = judge_params(judgement.campaign)
        request = build_request(config, messages, params)
        server = (endpoint.pk, config.base_url)
        structured = wants_structured_output(endpoint, params) and server not in _refused
        try:
            result, attempts = ask(
                {**request, "response_format": RESPONSE_FORMAT} if structured else request,
                recorded,
            )
        except ModelError as error:
            if not (structured and refuses_structured_output(error)):
                raise
            _refused.add(server)
            logger.warning(
                "judge refused structured output; asking without it",
                extra={"endpoint": endpoint.slug, "error": error.message},
            )
            try:
                result, attempts = ask(request, recorded)
            except ModelError as again:
                again.attempts += error.attempts
                raise again from None
            attempts += error.attempts
        reply = read_reply(result.content, result.finish_reason)
        status = JudgementStatus.PARSED if reply.parsed else JudgementStatus.UNPARSEABLE
        successor = dispatch.finish(
            judgement,
            hand_over=hand_over,
            status=status,
            score=reply.score,
            rationale=reply.rationale,
            problem=reply.problem,
            raw_output=result.content,
            attempts=judgement.attempts + attempts,
            error="",
            **{**_stream_fields(result), **_record(judgement, config, result)},
        )
        return str(status), successor
    except ModelError as error:
        fields: dict[str, Any] = {}
        partial = error.partial
        if partial is not None and (partial.received_text or _answered_nothing(partial)):
            fields = {**_stream_fields(partial), "raw_output": partial.content}
        fields.update(_record(judgement, config, partial))
        if _answered_nothing(partial):
            fields.update(status=JudgementStatus.UNPARSEABLE, problem="empty reply", error="")
        else:
            fields.update(status=JudgementStatus.FAILED, problem="", error=error.message)
        successor = dispatch.finish(
            judgement,
            hand_over=hand_over,
            **{
                **fields,
                "score": None,
                "attempts": judgement.attempts + error.attempts,
                "http_status": error.http_status,
            },
        )
        return str(fields["status"]), successor
    except dispatch.Cancelled:
        return "cancelled", None
    except JudgeRequestError as error:
        dispatch.finish(judgement, status=JudgementStatus.FAILED, score=None, error=str(error))
        return "failed", None
    except Exception as error:
        logger.exception("judgement crashed", extra={"judgement": judgement.public_id})
        dispatch.finish(
            judgement,
            status=JudgementStatus.FAILED,
            score=None,
            error=f"internal error: {type(error).__name__}: {error}",
        )
        return "failed", None
    finally:
        dispatch.lease_keeper.release(judgement)
