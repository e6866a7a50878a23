"""Load a study file (DESIGN §4.3): model endpoints and campaigns, versioned in JSON.

The file is validated whole before anything is written; every problem is reported with the
path of the key it concerns (`campaigns[1].models[0]: unknown endpoint "x"`). Loading the same
file twice changes nothing; a changed file updates what changed, except the sampling settings
of a campaign that already has generations, which are part of its record.

A campaign's judges (DESIGN §10: `"judges"`, `"judge_params"`) are not part of that record:
they score answers after the fact, so they change whenever the file does, answers or not. An
external endpoint (no base URL) cannot judge, since nothing ever calls it; a judge that is
also one of the campaign's models is allowed and reported, as it grades its own answers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction

from inference.models import (
    Campaign,
    CampaignModel,
    Dialect,
    ModelEndpoint,
    ReasoningStyle,
    Suite,
    TaskType,
    validate_slug,
)

from .models import GoldAnswer, IdentityLeakPolicy, Layout, Purpose, ReviewSettings

ENDPOINT_KEYS = {
    "slug": "required",
    "name": "required",
    "model": "required",
    "dialect": "required",
    "base_url": "required",
    "base_url_env": "optional",
    "api_key_env": "optional",
    "vision": "optional",
    "reasoning": "optional",
    "max_concurrency": "optional",
    "max_pixels": "optional",
    "timeout_s": "optional",
}
CAMPAIGN_KEYS = {
    "slug": "required",
    "name": "required",
    "matchup": "optional",
    "models": "required",
    "suite": "required",
    "task_types": "optional",
    "samples": "optional",
    "params": "optional",
    "overrides": "optional",
    "reviewers_per_output": "optional",
    "layout": "optional",
    "show_reasoning": "optional",
    "judge_guided_order": "optional",
    "identity_leaks": "optional",
    "gold_rate": "optional",
    "calibration": "optional",
    "disagreement_spread": "optional",
    "reviewers_max": "optional",
    "max_chars_per_s": "optional",
    "judges": "optional",
    "judge_params": "optional",
}
# A campaign's reviewer quality settings (DESIGN §11), stored on its ReviewSettings.
QUALITY_KEYS = (
    "gold_rate",
    "calibration",
    "disagreement_spread",
    "reviewers_max",
    "max_chars_per_s",
)
# Sampling settings a campaign may set; every model of the campaign gets the same ones.
PARAM_TYPES: dict[str, tuple[type, ...]] = {
    "temperature": (int, float),
    "top_p": (int, float),
    "top_k": (int,),
    "max_tokens": (int,),
    "seed": (int,),
    "presence_penalty": (int, float),
    "frequency_penalty": (int, float),
    "repetition_penalty": (int, float),
    "thinking": (bool,),
    "stop": (list,),
}


class StudyError(Exception):
    """A study file that cannot be loaded; `problems` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class StudyResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line per kind, e.g. `endpoints: created 6, updated 0, unchanged 0`."""
        lines = []
        for kind in ("endpoint", "campaign"):
            counts = [
                sum(label.startswith(f"{kind} ") for label in labels)
                for labels in (self.created, self.updated, self.unchanged)
            ]
            lines.append(
                f"{kind}s: created {counts[0]}, updated {counts[1]}, unchanged {counts[2]}"
            )
        return "; ".join(lines)


class _Checker:
    """Collects problems while reading the raw JSON into typed values."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def problem(self, where: str, reason: str) -> None:
        self.problems.append(f"{where}: {reason}")

    def keys(self, obj: Any, where: str, spec: dict[str, str]) -> bool:
        if not isinstance(obj, dict):
            self.problem(where, "must be an object")
            return False
        for key in obj:
            if key not in spec:
                self.problem(f"{where}.{key}", "unknown key")
        for key, need in spec.items():
            if need == "required" and key not in obj:
                self.problem(f"{where}.{key}", "missing")
        return True

    def entries(
        self, data: dict[str, Any], key: str, spec: dict[str, str]
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Each object of the list `data[key]` (absent: none) with where it stands
        (`key[index]`); a list that is not one, and entries that are not objects, are problems."""
        listed = data.get(key, [])
        if not isinstance(listed, list):
            self.problem(key, "must be a list")
            return
        for index, raw in enumerate(listed):
            where = f"{key}[{index}]"
            if self.keys(raw, where, spec):
                yield where, raw

    def text(self, obj: dict[str, Any], key: str, where: str, default: str = "") -> str:
        value = obj.get(key, default)
        if value is None:
            value = default
        if not isinstance(value, str):
            self.problem(f"{where}.{key}", f"must be a string, not {type(value).__name__}")
            return default
        return value.strip()

    def slug(self, obj: dict[str, Any], key: str, where: str) -> str:
        value = self.text(obj, key, where)
        if key in obj and isinstance(obj[key], str):
            try:
                validate_slug(value)
            except ValidationError:
                self.problem(f"{where}.{key}", f"{value!r} is not a valid slug")
        return value

    def boolean(self, obj: dict[str, Any], key: str, where: str, default: bool) -> bool:
        value = obj.get(key, default)
        if not isinstance(value, bool):
            self.problem(f"{where}.{key}", "must be true or false")
            return default
        return value

    def integer(
        self,
        obj: dict[str, Any],
        key: str,
        where: str,
        default: int | None,
        *,
        minimum: int = 1,
        maximum: int | None = None,
        nullable: bool = False,
    ) -> int | None:
        value = obj.get(key, default)
        if value is None and nullable:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            self.problem(f"{where}.{key}", "must be an integer")
            return default
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            self.problem(f"{where}.{key}", f"must be {bound}, not {value}")
            return default
        return value

    def choice(
        self, obj: dict[str, Any], key: str, where: str, choices: list[str], default: str
    ) -> str:
        value = obj.get(key, default)
        if value not in choices:
            self.problem(f"{where}.{key}", f"must be one of {', '.join(choices)}, not {value!r}")
            return default
        return str(value)

    def params(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.problem(where, "must be an object")
            return {}
        clean: dict[str, Any] = {}
        for key, item in value.items():
            types = PARAM_TYPES.get(key)
            if types is None:
                self.problem(
                    f"{where}.{key}", f"unknown sampling setting (known: {', '.join(PARAM_TYPES)})"
                )
            elif not isinstance(item, types) or (isinstance(item, bool) and bool not in types):
                self.problem(f"{where}.{key}", "has the wrong type")
            else:
                clean[key] = item
        return clean


def read_study_file(path: Path) -> Any:
    """Parse the JSON of a study file, turning every I/O and syntax error into a StudyError."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise StudyError([f"{path}: cannot read: {error.strerror or error}"]) from None
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise StudyError([f"{path}: not UTF-8 text"]) from None
    except json.JSONDecodeError as error:
        raise StudyError(
            [f"{path}:{error.lineno}:{error.colno}: invalid JSON: {error.msg}"]
        ) from None


def _validate(data: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    check = _Checker()
    if not check.keys(data, "study", {"endpoints": "optional", "campaigns": "optional"}):
        raise StudyError(check.problems)

    endpoints: list[dict[str, Any]] = []
    for where, raw in check.entries(data, "endpoints", ENDPOINT_KEYS):
        endpoint = {
            "slug": check.slug(raw, "slug", where),
            "name": check.text(raw, "name", where),
            "model": check.text(raw, "model", where),
            "dialect": check.choice(raw, "dialect", where, list(Dialect.values), Dialect.OPENAI),
            "base_url": check.text(raw, "base_url", where),
            "base_url_env": check.text(raw, "base_url_env", where),
            "api_key_env": check.text(raw, "api_key_env", where),
            "vision": check.boolean(raw, "vision", where, False),
            "reasoning": check.choice(
                raw, "reasoning", where, list(ReasoningStyle.values), ReasoningStyle.NONE
            ),
            "max_concurrency": check.integer(raw, "max_concurrency", where, 8),
            "max_pixels": check.integer(raw, "max_pixels", where, None, nullable=True),
            "timeout_s": check.integer(raw, "timeout_s", where, 600),
        }
        for key in ("name", "model"):
            if key in raw and not endpoint[key]:
                check.problem(f"{where}.{key}", "may not be empty")
        if "base_url" in raw:
            try:
                URLValidator(schemes=["http", "https"])(endpoint["base_url"])
            except ValidationError:
                check.problem(
                    f"{where}.base_url", f"{endpoint['base_url']!r} is not an http(s) URL"
                )
        endpoints.append(endpoint)

    slugs = [endpoint["slug"] for endpoint in endpoints]
    for slug in {s for s in slugs if slugs.count(s) > 1}:
        check.problem("endpoints", f"slug {slug!r} appears more than once")
    known_endpoints = set(slugs) | set(ModelEndpoint.objects.values_list("slug", flat=True))
    # An endpoint the file defines has a base URL; one it only names may be external.
    external = set(ModelEndpoint.objects.external().values_list("slug", flat=True)) - set(slugs)

    campaigns: list[dict[str, Any]] = []
    for where, raw in check.entries(data, "campaigns", CAMPAIGN_KEYS):
        campaign: dict[str, Any] = {
            "slug": check.slug(raw, "slug", where),
            "name": check.text(raw, "name", where),
            "matchup": check.text(raw, "matchup", where),
            "suite": check.slug(raw, "suite", where),
            "samples": check.integer(raw, "samples", where, 1, maximum=100),
            "params": check.params(raw.get("params", {}), f"{where}.params"),
            "reviewers_per_output": check.integer(
                raw, "reviewers_per_output", where, 2, maximum=20
            ),
            "layout": check.choice(raw, "layout", where, list(Layout.values), Layout.SIDE_BY_SIDE),
            "show_reasoning": check.boolean(raw, "show_reasoning", where, False),
            "judge_guided_order": check.boolean(raw, "judge_guided_order", where, False),
            "identity_leaks": check.choice(
                raw,
                "identity_leaks",
                where,
                list(IdentityLeakPolicy.values),
                IdentityLeakPolicy.MASK,
            ),
            **_quality(check, raw, where),
        }
        models = raw.get("models", [])
        if (
            not isinstance(models, list)
            or not models
            or not all(isinstance(m, str) for m in models)
        ):
            check.problem(f"{where}.models", "must be a non-empty list of endpoint slugs")
            models = []
        for position, slug in enumerate(models):
            if slug not in known_endpoints:
                check.problem(f"{where}.models[{position}]", f"unknown endpoint {slug!r}")
        if len(set(models)) != len(models):
            check.problem(f"{where}.models", "lists an endpoint more than once")
        campaign["models"] = models
        campaign["judges"] = _judges(check, raw, where, known_endpoints, external)
        campaign["judge_params"] = check.params(
            raw.get("judge_params", {}), f"{where}.judge_params"
        )

        overrides = raw.get("overrides", {})
        campaign["overrides"] = {}
        if not isinstance(overrides, dict):
            check.problem(f"{where}.overrides", "must be an object of endpoint slug to settings")
        else:
            for slug, params in overrides.items():
                if slug not in models:
                    check.problem(
                        f"{where}.overrides.{slug}", "is not one of the campaign's models"
                    )
                campaign["overrides"][slug] = check.params(params, f"{where}.overrides.{slug}")

        task_types: list[TaskType] = []
        raw_types = raw.get("task_types", [])
        if not isinstance(raw_types, list):
            check.problem(f"{where}.task_types", "must be a list of task type codes")
            raw_types = []
        for position, spelling in enumerate(raw_types):
            found = TaskType.objects.resolve(spelling) if isinstance(spelling, str) else None
            if found is None:
                check.problem(f"{where}.task_types[{position}]", f"unknown task type {spelling!r}")
            else:
                task_types.append(found)
        campaign["task_types"] = task_types
        if "name" in raw and not campaign["name"]:
            check.problem(f"{where}.name", "may not be empty")
        campaigns.append(campaign)

    campaign_slugs = [campaign["slug"] for campaign in campaigns]
    for slug in {s for s in campaign_slugs if campaign_slugs.count(s) > 1}:
        check.problem("campaigns", f"slug {slug!r} appears more than once")
    if check.problems:
        raise StudyError(check.problems)
    return endpoints, campaigns


def _quality(check: _Checker, raw: dict[str, Any], where: str) -> dict[str, Any]:
    """The campaign's reviewer quality settings (DESIGN §11); absent keys take the defaults."""
    gold_rate = raw.get("gold_rate", 0.1)
    if not isinstance(gold_rate, (int, float)) or isinstance(gold_rate, bool):
        check.problem(f"{where}.gold_rate", "must be a number between 0 and 1")
        gold_rate = 0.1
    elif not 0 <= gold_rate <= 1:
        check.problem(f"{where}.gold_rate", f"must be between 0 and 1, not {gold_rate}")
        gold_rate = 0.1
    values: dict[str, Any] = {
        "gold_rate": float(gold_rate),
        "calibration": check.boolean(raw, "calibration", where, False),
        "disagreement_spread": check.integer(
            raw, "disagreement_spread", where, None, maximum=10, nullable=True
        ),
        "reviewers_max": check.integer(
            raw, "reviewers_max", where, None, maximum=20, nullable=True
        ),
        "max_chars_per_s": check.integer(raw, "max_chars_per_s", where, 50, nullable=True),
    }
    per_output = raw.get("reviewers_per_output", 2)
    if (
        values["reviewers_max"] is not None
        and isinstance(per_output, int)
        and values["reviewers_max"] < per_output
    ):
        check.problem(
            f"{where}.reviewers_max",
            f"must be at least reviewers_per_output ({per_output}), not {values['reviewers_max']}",
        )
    return values


def _judges(
    check: _Checker, raw: dict[str, Any], where: str, known: set[str], external: set[str]
) -> list[str]:
    """The campaign's judge slugs: known endpoints that can be called, each once."""
    judges = raw.get("judges", [])
    if not isinstance(judges, list) or not all(isinstance(j, str) for j in judges):
        check.problem(f"{where}.judges", "must be a list of endpoint slugs")
        return []
    for position, slug in enumerate(judges):
        if slug not in known:
            check.problem(f"{where}.judges[{position}]", f"unknown endpoint {slug!r}")
        elif slug in external:
            check.problem(
                f"{where}.judges[{position}]",
                f"endpoint {slug!r} is external (no base URL, never called), so it cannot judge",
            )
    if len(set(judges)) != len(judges):
        check.problem(f"{where}.judges", "lists an endpoint more than once")
    return judges


def _apply(instance: Any, values: dict[str, Any]) -> bool:
    changed = False
    for key, value in values.items():
        if getattr(instance, key) != value:
            setattr(instance, key, value)
            changed = True
    return changed


def load_study(data: Any) -> StudyResult:
    """Validate a parsed study file and create or update its endpoints and campaigns."""
    endpoints, campaigns = _validate(data)
    result = StudyResult()
    with transaction.atomic():
        for values in endpoints:
            slug = values.pop("slug")
            endpoint = ModelEndpoint.objects.filter(slug=slug).first()
            label = f"endpoint {slug}"
            if endpoint is None:
                ModelEndpoint.objects.create(slug=slug, **values)
                result.created.append(label)
            elif _apply(endpoint, values):
                endpoint.save()
                result.updated.append(label)
            else:
                result.unchanged.append(label)

        for values in campaigns:
            _load_campaign(values, result)
    return result


def _load_campaign(values: dict[str, Any], result: StudyResult) -> None:
    slug = values["slug"]
    label = f"campaign {slug}"
    suite, _ = Suite.objects.get_or_create(name=values["suite"])
    campaign = Campaign.objects.filter(slug=slug).first()
    created = campaign is None
    frozen = campaign is not None and campaign.has_generations()
    if campaign is None:
        campaign = Campaign(slug=slug)

    fields: dict[str, Any] = {
        "name": values["name"],
        "matchup": values["matchup"],
        "judge_params": values["judge_params"],
    }
    if frozen:
        # The settings models ran under are part of the record; say so instead of changing them.
        current = _sampling_snapshot(campaign)
        if current != _sampling_wanted(values, suite):
            result.notes.append(
                f"{label}: already has generations; its models, items and sampling "
                "settings were kept as they were"
            )
    else:
        fields.update(
            {"suite_id": suite.pk, "samples": values["samples"], "params": values["params"]}
        )
    changed = _apply(campaign, fields) or created
    if changed:
        campaign.save()

    if not frozen:
        wanted_types = sorted(task_type.pk for task_type in values["task_types"])
        if sorted(campaign.task_types.values_list("pk", flat=True)) != wanted_types:
            campaign.task_types.set(wanted_types)
            changed = True
        changed |= _sync_members(campaign, values["models"], values["overrides"])
    changed |= _sync_judges(campaign, values["judges"], result, label, created=created)
    for judge in campaign.judges.filter(members__campaign=campaign).order_by("slug"):
        result.notes.append(
            f"{label}: judge {judge.slug} is also one of its models, so it scores its own "
            "answers (the results pages note it)"
        )

    review, _ = ReviewSettings.objects.get_or_create(campaign=campaign)
    if _apply(
        review,
        {
            "reviewers_per_output": values["reviewers_per_output"],
            "layout": values["layout"],
            "show_reasoning": values["show_reasoning"],
            "identity_leaks": values["identity_leaks"],
            "judge_guided_order": values["judge_guided_order"],
            **{key: values[key] for key in QUALITY_KEYS},
        },
    ):
        review.save()
        changed = True
    if (
        review.calibration
        and not GoldAnswer.objects.filter(
            generation__campaign=campaign, purpose=Purpose.CALIBRATION
        ).exists()
    ):
        result.notes.append(
            f"{label}: calibration is on but the campaign has no calibration answers, so new "
            "reviewers go straight to real work (mark some: manage.py import_gold)"
        )

    if created:
        result.created.append(label)
    elif changed:
        result.updated.append(label)
    else:
        result.unchanged.append(label)


def _sync_members(campaign: Campaign, slugs: list[str], overrides: dict[str, Any]) -> bool:
    endpoints = {e.slug: e for e in ModelEndpoint.objects.filter(slug__in=slugs)}
    existing = {m.endpoint.slug: m for m in campaign.members.select_related("endpoint")}
    changed = False
    for slug in set(existing) - set(slugs):
        existing[slug].delete()
        changed = True
    for position, slug in enumerate(slugs):
        override = overrides.get(slug, {})
        member = existing.get(slug)
        if member is None:
            CampaignModel.objects.create(
                campaign=campaign,
                endpoint=endpoints[slug],
                position=position,
                params_override=override,
            )
            changed = True
        elif _apply(member, {"position": position, "params_override": override}):
            member.save()
            changed = True
    return changed


def _sync_judges(
    campaign: Campaign, slugs: list[str], result: StudyResult, label: str, *, created: bool
) -> bool:
    """Make the campaign's judges these; say which were added and removed. Judgements already
    made by a removed judge are kept."""
    current = set(campaign.judges.values_list("slug", flat=True))
    wanted = set(slugs)
    if current == wanted:
        return False
    campaign.judges.set(ModelEndpoint.objects.filter(slug__in=wanted))
    if not created:
        changes = [
            f"{verb} {', '.join(sorted(group))}"
            for verb, group in (("added", wanted - current), ("removed", current - wanted))
            if group
        ]
        result.notes.append(f"{label}: judges {'; '.join(changes)}")
    return True


def _sampling_snapshot(campaign: Campaign) -> dict[str, Any]:
    members = campaign.members.select_related("endpoint")
    return {
        "suite": campaign.suite.name,
        "samples": campaign.samples,
        "params": campaign.params,
        "task_types": sorted(campaign.task_types.values_list("code", flat=True)),
        "models": [m.endpoint.slug for m in members],
        "overrides": {m.endpoint.slug: m.params_override for m in members if m.params_override},
    }


def _sampling_wanted(values: dict[str, Any], suite: Suite) -> dict[str, Any]:
    return {
        "suite": suite.name,
        "samples": values["samples"],
        "params": values["params"],
        "task_types": sorted(task_type.code for task_type in values["task_types"]),
        "models": values["models"],
        "overrides": {slug: p for slug, p in values["overrides"].items() if p},
    }


def study_entries(campaign: Campaign) -> dict[str, Any]:
    """The campaign as a study file of its own (DESIGN §4.3): its endpoints and its entry.

    The inverse of `load_study` for one campaign: loading the result into a database that has
    the suite recreates the endpoints and the campaign with the same settings. API keys are
    never written (the file names the variables they come from).
    """
    members = list(campaign.members.select_related("endpoint").order_by("position", "pk"))
    judges = list(campaign.judges.order_by("slug"))
    listed = [member.endpoint for member in members]
    listed += [judge for judge in judges if judge not in listed]
    endpoints = [
        {
            "slug": e.slug,
            "name": e.name,
            "model": e.model,
            "dialect": e.dialect,
            "base_url": e.base_url,
            "base_url_env": e.base_url_env,
            "api_key_env": e.api_key_env,
            "vision": e.vision,
            "reasoning": e.reasoning,
            "max_concurrency": e.max_concurrency,
            "max_pixels": e.max_pixels,
            "timeout_s": e.timeout_s,
        }
        for e in listed
    ]
    review = ReviewSettings.objects.filter(campaign=campaign).first() or ReviewSettings()
    entry = {
        "slug": campaign.slug,
        "name": campaign.name,
        "matchup": campaign.matchup,
        "models": [member.endpoint.slug for member in members],
        "suite": campaign.suite.name,
        "task_types": list(campaign.task_types.order_by("position").values_list("code", flat=True)),
        "samples": campaign.samples,
        "params": campaign.params,
        "overrides": {m.endpoint.slug: m.params_override for m in members if m.params_override},
        "reviewers_per_output": review.reviewers_per_output,
        "layout": review.layout,
        "show_reasoning": review.show_reasoning,
        "identity_leaks": review.identity_leaks,
        "judges": [judge.slug for judge in judges],
        "judge_params": campaign.judge_params,
        "judge_guided_order": review.judge_guided_order,
        **{key: getattr(review, key) for key in QUALITY_KEYS},
    }
    return {"endpoints": endpoints, "campaigns": [entry]}
