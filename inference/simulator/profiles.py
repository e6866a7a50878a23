"""Model profiles for the simulator: who serves a model, how it reasons, and how fast it is.

The default speeds are the seed study's measured averages (tokens per second per model). Times to
first token are not in the seed; the defaults grow with model size and with the number of images,
which is what prefill does on real servers.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, get_args

Dialect = Literal["fastdeploy", "vllm"]
ReasoningStyle = Literal["none", "think_tags", "field"]
ReasoningField = Literal["reasoning_content", "reasoning"]


@dataclasses.dataclass(frozen=True)
class ModelProfile:
    """How one simulated model behaves.

    ``reasoning`` is ``none`` (plain answers), ``think_tags`` (reasoning inline in ``content``
    ending in ``</think>``, as vLLM serves DeepSeek-R1 distills without a reasoning parser) or
    ``field`` (reasoning in a separate delta field named by ``reasoning_field``).
    ``thinking_switch`` makes the request's ``enable_thinking`` (``chat_template_kwargs``, then the
    top level, then ``metadata``) decide whether the model reasons; ``thinking_default`` applies
    when the request says nothing. Lengths are in simulator tokens (see ``text.split_units``).
    """

    name: str
    dialect: Dialect
    reasoning: ReasoningStyle = "none"
    reasoning_field: ReasoningField = "reasoning_content"
    think_open_tag: bool = False
    thinking_switch: bool = False
    thinking_default: bool = True
    vision: bool = False
    max_images: int | None = None
    ttft_ms: float = 100.0
    ttft_per_image_ms: float = 0.0
    tokens_per_s: float = 50.0
    tokens_per_chunk: int = 1
    answer_tokens: tuple[int, int] = (150, 500)
    reasoning_tokens: tuple[int, int] = (0, 0)
    image_tokens: int = 256
    max_model_len: int = 32768

    def __post_init__(self) -> None:
        problems = []
        if not self.name or not isinstance(self.name, str):
            problems.append("name must be a non-empty string")
        if self.dialect not in get_args(Dialect):
            problems.append(f"dialect must be one of {get_args(Dialect)}")
        if self.reasoning not in get_args(ReasoningStyle):
            problems.append(f"reasoning must be one of {get_args(ReasoningStyle)}")
        if self.reasoning_field not in get_args(ReasoningField):
            problems.append(f"reasoning_field must be one of {get_args(ReasoningField)}")
        if self.ttft_ms < 0 or self.ttft_per_image_ms < 0:
            problems.append("ttft_ms and ttft_per_image_ms must be >= 0")
        if self.tokens_per_s <= 0:
            problems.append("tokens_per_s must be > 0")
        if self.tokens_per_chunk < 1:
            problems.append("tokens_per_chunk must be >= 1")
        for field in ("answer_tokens", "reasoning_tokens"):
            low, high = getattr(self, field)
            if not 0 <= low <= high:
                problems.append(f"{field} must be a range [low, high] with 0 <= low <= high")
        if self.answer_tokens[0] < 1:
            problems.append("answer_tokens must start at 1 or more")
        if self.max_images is not None and self.max_images < 0:
            problems.append("max_images must be >= 0 or null")
        if problems:
            raise ValueError(f"profile {self.name!r}: " + "; ".join(problems))

    @property
    def reasons(self) -> bool:
        """Whether this model can produce reasoning at all."""
        return self.reasoning != "none"

    def as_dict(self) -> dict[str, Any]:
        """The profile as JSON-ready data (the same keys a ``--profiles`` file uses)."""
        data = dataclasses.asdict(self)
        data["answer_tokens"] = list(self.answer_tokens)
        data["reasoning_tokens"] = list(self.reasoning_tokens)
        return data


_R1_DISTILL_1_5B = ModelProfile(
    name="deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B",
    dialect="vllm",
    reasoning="think_tags",
    ttft_ms=80,
    tokens_per_s=194,
    tokens_per_chunk=2,
    answer_tokens=(150, 500),
    reasoning_tokens=(250, 900),
)

DEFAULT_PROFILES: tuple[ModelProfile, ...] = (
    ModelProfile(
        name="baidu/ERNIE-4.5-0.3B-Paddle",
        dialect="fastdeploy",
        ttft_ms=60,
        tokens_per_s=112,
        answer_tokens=(200, 700),
    ),
    _R1_DISTILL_1_5B,
    ModelProfile(
        name="baidu/ERNIE-4.5-21B-A3B-Paddle",
        dialect="fastdeploy",
        ttft_ms=180,
        tokens_per_s=60,
        answer_tokens=(300, 900),
    ),
    ModelProfile(
        name="deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
        dialect="vllm",
        reasoning="think_tags",
        ttft_ms=320,
        tokens_per_s=44,
        tokens_per_chunk=3,
        answer_tokens=(250, 700),
        reasoning_tokens=(300, 1200),
    ),
    ModelProfile(
        name="baidu/ERNIE-4.5-VL-28B-A3B-Paddle",
        dialect="fastdeploy",
        reasoning="field",
        reasoning_field="reasoning_content",
        thinking_switch=True,
        # The ERNIE-VL processor turns thinking on unless the request turns it off.
        thinking_default=True,
        vision=True,
        ttft_ms=350,
        ttft_per_image_ms=120,
        tokens_per_s=27,
        answer_tokens=(200, 600),
        reasoning_tokens=(150, 600),
        image_tokens=1024,
    ),
    ModelProfile(
        name="Qwen/Qwen2.5-VL-32B-Instruct",
        dialect="vllm",
        vision=True,
        ttft_ms=300,
        ttft_per_image_ms=100,
        tokens_per_s=54,
        tokens_per_chunk=2,
        answer_tokens=(150, 500),
        image_tokens=1024,
    ),
    # The same distill behind vLLM started with `--reasoning-parser deepseek_r1`: newer vLLM
    # sends the reasoning in `delta.reasoning`, older vLLM in `delta.reasoning_content`.
    dataclasses.replace(
        _R1_DISTILL_1_5B,
        name=f"{_R1_DISTILL_1_5B.name}-reasoning-parser",
        reasoning="field",
        reasoning_field="reasoning",
    ),
    dataclasses.replace(
        _R1_DISTILL_1_5B,
        name=f"{_R1_DISTILL_1_5B.name}-reasoning-parser-old",
        reasoning="field",
        reasoning_field="reasoning_content",
    ),
)

_FIELDS = {field.name for field in dataclasses.fields(ModelProfile)}
_RANGE_FIELDS = ("answer_tokens", "reasoning_tokens")


def _coerce(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    unknown = sorted(set(values) - _FIELDS)
    if unknown:
        raise ValueError(f"{where}: unknown profile keys {', '.join(unknown)}")
    coerced = dict(values)
    for field in _RANGE_FIELDS:
        if field in coerced:
            value = coerced[field]
            if not (isinstance(value, list | tuple) and len(value) == 2):
                raise ValueError(f"{where}: {field} must be [low, high]")
            coerced[field] = (int(value[0]), int(value[1]))
    return coerced


def merge_profiles(
    overrides: Iterable[Mapping[str, Any]],
    base: Iterable[ModelProfile] = DEFAULT_PROFILES,
) -> dict[str, ModelProfile]:
    """Apply override objects to ``base``: a known ``name`` is updated field by field, a new one
    is added (and then needs at least ``dialect``)."""
    profiles = {profile.name: profile for profile in base}
    for index, override in enumerate(overrides):
        where = f"profile #{index + 1}"
        if not isinstance(override, Mapping) or not isinstance(override.get("name"), str):
            raise ValueError(f"{where}: each profile needs a string 'name'")
        values = _coerce(override, f"{where} ({override['name']})")
        existing = profiles.get(values["name"])
        try:
            if existing is not None:
                profiles[existing.name] = dataclasses.replace(existing, **values)
            else:
                profiles[values["name"]] = ModelProfile(**values)
        except TypeError as exc:  # a missing required field such as dialect
            raise ValueError(f"{where}: {exc}") from exc
    return profiles


def load_profiles(
    path: str | Path | None = None,
    base: Iterable[ModelProfile] = DEFAULT_PROFILES,
) -> dict[str, ModelProfile]:
    """Profiles by model name: ``base`` overridden by the JSON file at ``path`` if given.

    The file holds a list of profile objects, ``{"profiles": [...]}``, or an object mapping model
    names to profile fields. Raises ``ValueError`` for anything malformed, naming the profile.
    """
    if path is None:
        return {profile.name: profile for profile in base}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read profiles from {path}: {exc}") from exc
    if isinstance(data, Mapping) and "profiles" in data:
        data = data["profiles"]
    if isinstance(data, Mapping):
        if not all(isinstance(values, Mapping) for values in data.values()):
            raise ValueError(f"{path}: each model name must map to an object of profile fields")
        data = [{"name": name, **values} for name, values in data.items()]
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of profiles or an object of them")
    return merge_profiles(data, base)
