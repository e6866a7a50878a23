"""Run one generation: build its request, stream it, store the answer and its timings."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import Any

from django.conf import settings

from . import dispatch, record
from .client import EndpointConfig, ModelError, StreamResult, build_request, complete_with_retries
from .images import encode_for_request
from .leaks import find_leaks, terms_with_models
from .metrics import speed_metrics
from .models import (
    CampaignModel,
    Generation,
    GenerationStatus,
    ModelEndpoint,
    TaskItem,
    TimingQuality,
)

logger = logging.getLogger(__name__)


def endpoint_config(endpoint: ModelEndpoint) -> EndpointConfig:
    return EndpointConfig(
        base_url=endpoint.resolved_base_url(),
        api_key=endpoint.resolved_api_key(),
        model=endpoint.model,
        dialect=endpoint.dialect,
        reasoning=endpoint.reasoning,
        timeout_s=float(endpoint.timeout_s),
        read_timeout_s=float(min(endpoint.timeout_s, settings.MODEL_READ_TIMEOUT_S)),
    )


def image_parts(
    item: TaskItem, endpoint: ModelEndpoint
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The item's images as chat content parts for this endpoint (none unless it has vision),
    and the same recorded by hash, not base64."""
    parts: list[dict[str, Any]] = []
    recorded: list[dict[str, Any]] = []
    for image in item.ordered_images() if endpoint.vision else []:
        encoded = encode_for_request(
            image.payload, image.mime, image.width, image.height, endpoint.max_pixels
        )
        parts.append({"type": "image_url", "image_url": {"url": encoded.data_url}})
        recorded.append({"type": "image_url", "image": encoded.record()})
    return parts, recorded


def build_messages(
    item: TaskItem, endpoint: ModelEndpoint
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The chat messages to send, and the same with each image recorded by hash, not base64."""
    messages: list[dict[str, Any]] = []
    if item.system:
        messages.append({"role": "system", "content": item.system})
    images, recorded_images = image_parts(item, endpoint)
    if not images:
        messages.append({"role": "user", "content": item.prompt})
        return messages, list(messages)
    text = {"type": "text", "text": item.prompt}
    messages.append({"role": "user", "content": [text, *images]})
    return messages, [*messages[:-1], {"role": "user", "content": [text, *recorded_images]}]


def campaign_members(generation: Generation) -> list[CampaignModel]:
    """The models of the generation's campaign with their endpoints, in one query: what
    `request_params`, `leak_terms` and the generation's own endpoint are read from."""
    return list(
        CampaignModel.objects.filter(campaign_id=generation.campaign_id)
        .select_related("campaign", "endpoint")
        .order_by("endpoint__slug")
    )


def request_params(
    generation: Generation, members: list[CampaignModel] | None = None
) -> dict[str, Any]:
    members = campaign_members(generation) if members is None else members
    member = next((m for m in members if m.endpoint_id == generation.endpoint_id), None)
    params = dict(member.effective_params() if member else generation.campaign.params)
    # Samples of one item differ only through the seed, when the campaign sets one.
    if params.get("seed") is not None:
        params["seed"] = int(params["seed"]) + generation.sample
    return params


def leak_terms(generation: Generation, members: list[CampaignModel] | None = None) -> list[str]:
    """The identity terms an answer of this campaign is checked for, its own models' included."""
    members = campaign_members(generation) if members is None else members
    return terms_with_models((member.endpoint.name, member.endpoint.model) for member in members)


def stream_fields(result: StreamResult) -> dict[str, Any]:
    """What a finished stream tells about itself: reasoning, finish reason, HTTP status,
    timings, token counts and speeds (DESIGN §5), and whether its worker kept up."""
    counts = result.token_counts()
    timings = asdict(result.timings)
    timings.update(
        {"chunks": result.chunks, "text_chunks": result.text_chunks, "max_gap_s": result.max_gap_s}
    )
    return {
        "reasoning": result.reasoning,
        "finish_reason": result.finish_reason,
        "http_status": result.http_status,
        "simulated": result.simulated,
        "timings": timings,
        **counts,
        **speed_metrics(result.timings, counts["completion_tokens"]),
        **timing_quality(result.scheduling_lag_ms),
    }


def _outcome(result: StreamResult, terms: list[str] | None = None) -> dict[str, Any]:
    return {
        "identity_leaks": find_leaks(f"{result.content}\n{result.reasoning}", terms),
        "content": result.content,
        **stream_fields(result),
    }


def _record(
    generation: Generation,
    config: EndpointConfig,
    result: Any,
    members: list[CampaignModel] | None = None,
) -> dict[str, str]:
    """The reproducibility record (DESIGN §12), the server probed once per run."""
    member = next((m for m in members or [] if m.endpoint_id == generation.endpoint_id), None)
    version = record.server_version_for(
        generation.campaign_id, generation.endpoint_id, config.base_url, config.api_key, member
    )
    return record.generation_record(result, version)


def timing_quality(lag_ms: float | None) -> dict[str, Any]:
    """`timing_quality` and `scheduling_lag_ms` of a generation whose worker lagged `lag_ms`."""
    if lag_ms is None:
        return {"timing_quality": "", "scheduling_lag_ms": None}
    degraded = lag_ms > settings.TIMING_LAG_THRESHOLD_MS
    quality = TimingQuality.DEGRADED if degraded else TimingQuality.OK
    return {"timing_quality": quality, "scheduling_lag_ms": lag_ms}


def run_generation(generation_id: int) -> str:
    """Claim and run one generation, then keep its slot busy with the endpoint's next ones.

    Returns what happened to the first generation (for logs and tests). A task runs at most
    DISPATCH_CHAIN_MAX generations (or for DISPATCH_CHAIN_MAX_S seconds) before it hands the
    remaining work back to the queue.
    """
    generation = dispatch.claim(generation_id)
    if generation is None:
        return "skipped"
    known = _ChainMembers()
    return dispatch.run_chain(
        generation,
        generation.endpoint_id,
        lambda row, hand_over: _run_claimed(row, hand_over=hand_over, known=known),
    )


class _ChainMembers:
    """The campaign's models as a chain last read them, read again when the next generation
    belongs to another campaign or after `MEMBERS_MAX_AGE_S`: an endpoint edited meanwhile (its
    URL, key, timeout) is used from then on, and a chain does not read the same rows for each
    of its generations."""

    MEMBERS_MAX_AGE_S = 5.0

    def __init__(self) -> None:
        self.campaign_id: int | None = None
        self.read_at = 0.0
        self.members: list[CampaignModel] = []

    def of(self, generation: Generation) -> list[CampaignModel]:
        now = time.monotonic()
        if generation.campaign_id != self.campaign_id or now - self.read_at > (
            self.MEMBERS_MAX_AGE_S
        ):
            self.members = campaign_members(generation)
            self.campaign_id, self.read_at = generation.campaign_id, now
        return self.members


def _run_claimed(
    generation: Generation, *, hand_over: bool, known: _ChainMembers | None = None
) -> tuple[str, Generation | None]:
    """Run a claimed generation; return its outcome and the next one handed over, if any."""
    members = known.of(generation) if known is not None else campaign_members(generation)
    endpoint = next(
        (m.endpoint for m in members if m.endpoint_id == generation.endpoint_id), None
    ) or ModelEndpoint.objects.get(pk=generation.endpoint_id)
    lost = dispatch.lease_keeper.hold(generation)
    heartbeat, back_off = dispatch.lease_callbacks(lost)

    try:
        # Only a model that sees images is sent them (`image_parts`).
        items = TaskItem.objects.with_images() if endpoint.vision else TaskItem.objects.all()
        item = items.get(pk=generation.item_id)
        config = endpoint_config(endpoint)
        messages, recorded = build_messages(item, endpoint)
        request = build_request(config, messages, request_params(generation, members))
        stored_request = {**request, "messages": recorded, "base_url": config.base_url}
        Generation.objects.filter(pk=generation.pk).update(request=stored_request)
        result, attempts = complete_with_retries(
            config,
            request,
            max_attempts=settings.MODEL_MAX_ATTEMPTS,
            backoff_base_s=settings.MODEL_RETRY_BASE_S,
            backoff_cap_s=settings.MODEL_RETRY_CAP_S,
            heartbeat=heartbeat,
            sleep=back_off,
        )
        successor = dispatch.finish(
            generation,
            hand_over=hand_over,
            status=GenerationStatus.SUCCEEDED,
            attempts=generation.attempts + attempts,
            error="",
            **{
                **_outcome(result, leak_terms(generation, members)),
                **_record(generation, config, result, members),
            },
        )
        return "succeeded", successor
    except ModelError as error:
        fields: dict[str, Any] = {}
        if error.partial is not None and error.partial.received_text:
            fields = _outcome(error.partial, leak_terms(generation, members))
        fields.update(_record(generation, config, error.partial, members))
        successor = dispatch.finish(
            generation,
            hand_over=hand_over,
            **{
                **fields,
                "status": GenerationStatus.FAILED,
                "attempts": generation.attempts + error.attempts,
                "error": error.message,
                "http_status": error.http_status,
            },
        )
        return "failed", successor
    except dispatch.Cancelled:
        return "cancelled", None
    except Exception as error:
        logger.exception("generation crashed", extra={"generation": generation.public_id})
        dispatch.finish(
            generation,
            status=GenerationStatus.FAILED,
            error=f"internal error: {type(error).__name__}: {error}",
        )
        return "failed", None
    finally:
        dispatch.lease_keeper.release(generation)
