"""What we ask the models and who answers: task types, suites, model endpoints, campaigns."""

from __future__ import annotations

import os
import re
import secrets

from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

# Slugs appear in CSV exports and URLs of admin pages; the study's model slugs carry dots
# ("ernie-4.5-0.3b"), so this is wider than Django's SlugField.
validate_slug = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._-]*\Z",
    _("Use letters, digits, dots, hyphens and underscores, starting with a letter or digit."),
)


def new_public_id() -> str:
    """An opaque, unguessable identifier for URLs (never a sequential database id)."""
    return secrets.token_urlsafe(12)


class Modality(models.TextChoices):
    TEXT = "text", _("text")
    VISION = "vision", _("text + image")


class TaskTypeQuerySet(models.QuerySet["TaskType"]):
    def resolve(self, spelling: str) -> TaskType | None:
        """Find a task type by its code, an alias or its Chinese or English name."""
        wanted = spelling.strip()
        if not wanted:
            return None
        candidates = [wanted]
        # The seed's tables write "AR(类比推理)": accept either part of such a spelling.
        match = re.fullmatch(r"(.+?)\s*[(（](.+?)[)）]", wanted)
        if match:
            candidates += [match.group(1), match.group(2)]
        task_types = list(self.all())
        for candidate in candidates:
            folded = candidate.strip().casefold()
            for task_type in task_types:
                if folded in task_type.spellings():
                    return task_type
        return None


class TaskType(models.Model):
    """One of the study's task types (DESIGN §2), such as AR 类比推理 analogical reasoning."""

    code = models.CharField(max_length=16, unique=True)
    name_zh = models.CharField(max_length=64)
    name_en = models.CharField(max_length=128)
    modality = models.CharField(max_length=8, choices=Modality.choices, default=Modality.TEXT)
    description_zh = models.CharField(max_length=200, blank=True)
    description_en = models.CharField(max_length=200, blank=True)
    aliases = models.JSONField(default=list, blank=True)
    position = models.PositiveSmallIntegerField(default=0)

    objects = TaskTypeQuerySet.as_manager()

    class Meta:
        ordering = ["position", "code"]

    def __str__(self) -> str:
        return f"{self.code} {self.name_zh}"

    @property
    def is_vision(self) -> bool:
        return self.modality == Modality.VISION

    def spellings(self) -> set[str]:
        """Every accepted spelling, case-folded: code, aliases, Chinese and English names."""
        names = [self.code, self.name_zh, self.name_en, *self.aliases]
        return {name.strip().casefold() for name in names if name and name.strip()}


class Suite(models.Model):
    """A named set of task items, usually one imported fixture file."""

    name = models.CharField(max_length=100, unique=True, validators=[validate_slug])
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Dialect(models.TextChoices):
    FASTDEPLOY = "fastdeploy", "FastDeploy"
    VLLM = "vllm", "vLLM"
    OPENAI = "openai", "OpenAI"


class ReasoningStyle(models.TextChoices):
    NONE = "none", _("none")
    FIELD = "field", _("separate field (reasoning / reasoning_content)")
    THINK_TAGS = "think_tags", _("inline <think>…</think> in content")


class ModelEndpointQuerySet(models.QuerySet["ModelEndpoint"]):
    def external(self) -> ModelEndpointQuerySet:
        """Endpoints with no base URL: models whose answers were imported, never called."""
        return self.filter(base_url="", base_url_env="")


class ModelEndpoint(models.Model):
    """An OpenAI-compatible server and the model it serves.

    The base URL may be overridden by the environment variable named in `base_url_env`; the
    API key comes from the variable named in `api_key_env`, or from `api_key` when an admin
    typed one in (write-only: it is never rendered).
    """

    slug = models.CharField(max_length=100, unique=True, validators=[validate_slug])
    name = models.CharField(max_length=200)
    model = models.CharField(max_length=200, help_text=_("Model name sent in each request."))
    dialect = models.CharField(max_length=16, choices=Dialect.choices, default=Dialect.OPENAI)
    # Empty for an external endpoint: a model whose answers were imported from a file
    # (`import_generations`); nothing ever calls it.
    base_url = models.URLField(max_length=500, blank=True)
    base_url_env = models.CharField(max_length=100, blank=True)
    api_key_env = models.CharField(max_length=100, blank=True)
    api_key = models.CharField(max_length=500, blank=True)
    vision = models.BooleanField(default=False)
    reasoning = models.CharField(
        max_length=16, choices=ReasoningStyle.choices, default=ReasoningStyle.NONE
    )
    max_concurrency = models.PositiveIntegerField(default=8, validators=[MinValueValidator(1)])
    max_pixels = models.PositiveIntegerField(null=True, blank=True)
    timeout_s = models.PositiveIntegerField(default=600, validators=[MinValueValidator(1)])
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ModelEndpointQuerySet.as_manager()

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_external(self) -> bool:
        """A model we only hold imported answers of: no base URL, so it is never called."""
        return not self.base_url and not self.base_url_env

    def resolved_base_url(self) -> str:
        """The base URL to call: the environment override when set, else the stored one."""
        if self.base_url_env:
            override = os.environ.get(self.base_url_env, "").strip()
            if override:
                return override
        return self.base_url

    def resolved_api_key(self) -> str:
        """The API key to send: from the environment when configured, else the stored one."""
        if self.api_key_env:
            from_env = os.environ.get(self.api_key_env, "")
            if from_env:
                return from_env
        return self.api_key


class CampaignStatus(models.TextChoices):
    DRAFT = "draft", _("draft")
    RUNNING = "running", _("running")
    FINISHED = "finished", _("finished")
    CANCELLED = "cancelled", _("cancelled")


class CampaignQuerySet(models.QuerySet["Campaign"]):
    def launched(self) -> CampaignQuerySet:
        """Campaigns that were launched and not cancelled: running or finished."""
        return self.filter(status__in=[CampaignStatus.RUNNING, CampaignStatus.FINISHED])

    def with_run_counts(self) -> CampaignQuerySet:
        """Annotate each campaign with its generations: `total`, `done` (finished), `failed`
        `simulated` and `imported`, in the one query that lists them."""
        return self.annotate(
            total=models.Count("generations"),
            done=models.Count(
                "generations", filter=models.Q(generations__status__in=FINISHED_STATUSES)
            ),
            failed=models.Count(
                "generations", filter=models.Q(generations__status=GenerationStatus.FAILED)
            ),
            simulated=models.Count("generations", filter=models.Q(generations__simulated=True)),
            imported=models.Count(
                "generations", filter=models.Q(generations__source=GenerationSource.IMPORTED)
            ),
        )


class Campaign(models.Model):
    """Which models answer which items of a suite, how many times, with which settings."""

    public_id = models.CharField(max_length=32, unique=True, default=new_public_id, editable=False)
    slug = models.CharField(max_length=100, unique=True, validators=[validate_slug])
    name = models.CharField(max_length=200)
    matchup = models.CharField(max_length=100, blank=True)
    suite = models.ForeignKey(Suite, on_delete=models.PROTECT, related_name="campaigns")
    task_types = models.ManyToManyField(
        TaskType,
        blank=True,
        related_name="campaigns",
        help_text=_("Leave empty for every task type of the suite."),
    )
    endpoints = models.ManyToManyField(
        ModelEndpoint, through="CampaignModel", related_name="campaigns"
    )
    samples = models.PositiveSmallIntegerField(default=1, validators=[MinValueValidator(1)])
    params = models.JSONField(
        default=dict,
        blank=True,
        help_text=_("Sampling settings for every model: temperature, top_p, max_tokens, ..."),
    )
    status = models.CharField(
        max_length=16, choices=CampaignStatus.choices, default=CampaignStatus.DRAFT
    )
    judges = models.ManyToManyField(
        ModelEndpoint,
        blank=True,
        related_name="judged_campaigns",
        help_text=_("Endpoints that score this campaign's answers next to people (DESIGN §10)."),
    )
    judge_params = models.JSONField(
        default=dict,
        blank=True,
        help_text=_("Sampling settings for the judges (temperature, max_tokens, ...)."),
    )
    vision_items_to_text_models = models.BooleanField(
        default=False,
        help_text=_("Also send items with images to text-only models (without their images)."),
    )
    launched_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = CampaignQuerySet.as_manager()

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.name

    def has_generations(self) -> bool:
        """Whether the campaign has been launched (its sampling settings are then frozen)."""
        generations = getattr(self, "generations", None)
        return generations is not None and generations.exists()


class CampaignModel(models.Model):
    """A model taking part in a campaign; `params_override` is shown as a fairness note."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="members")
    endpoint = models.ForeignKey(ModelEndpoint, on_delete=models.PROTECT, related_name="members")
    position = models.PositiveSmallIntegerField(default=0)
    params_override = models.JSONField(default=dict, blank=True)
    # The server's version, probed once per endpoint and run (DESIGN §12).
    server_version = models.CharField(max_length=200, blank=True)
    server_probed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["campaign", "position"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "endpoint"], name="unique_campaign_model")
        ]

    def __str__(self) -> str:
        return f"{self.campaign.slug}: {self.endpoint.slug}"

    def effective_params(self) -> dict[str, object]:
        return {**self.campaign.params, **self.params_override}


class TaskImage(models.Model):
    """An image, stored once per content hash (of the original bytes).

    Bytes live in the database so that every worker, on any machine, can read them.
    """

    public_id = models.CharField(max_length=32, unique=True, default=new_public_id, editable=False)
    sha256 = models.CharField(max_length=64, unique=True)
    format = models.CharField(max_length=8)
    mime = models.CharField(max_length=32, help_text=_("Type of the bytes sent to models."))
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    original = models.BinaryField()
    normalised = models.BinaryField(
        null=True,
        blank=True,
        help_text=_("Upright first frame, when it differs from the original."),
    )
    thumbnail = models.BinaryField()
    size_bytes = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.format} {self.width}×{self.height} {self.sha256[:12]}"

    @property
    def payload(self) -> bytes:
        """The bytes a model receives."""
        return bytes(self.normalised) if self.normalised is not None else bytes(self.original)


class TaskItemQuerySet(models.QuerySet["TaskItem"]):
    def with_images(self) -> TaskItemQuerySet:
        return self.prefetch_related(
            models.Prefetch(
                "item_images",
                queryset=TaskItemImage.objects.select_related("image")
                .defer("image__original", "image__normalised", "image__thumbnail")
                .order_by("position"),
            )
        )


class TaskItem(models.Model):
    """One prompt of a suite, identified within it by the fixture's `id`."""

    public_id = models.CharField(max_length=32, unique=True, default=new_public_id, editable=False)
    suite = models.ForeignKey(Suite, on_delete=models.CASCADE, related_name="items")
    external_id = models.CharField(max_length=200)
    task_type = models.ForeignKey(TaskType, on_delete=models.PROTECT, related_name="items")
    prompt = models.TextField()
    system = models.TextField(blank=True)
    reference = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True)
    images = models.ManyToManyField(TaskImage, through="TaskItemImage", related_name="items")
    # Hash of everything imported for this item (images by hash), to report "unchanged".
    content_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TaskItemQuerySet.as_manager()

    class Meta:
        ordering = ["suite", "task_type__position", "external_id"]
        constraints = [
            models.UniqueConstraint(fields=["suite", "external_id"], name="unique_item_per_suite")
        ]
        indexes = [models.Index(fields=["suite", "task_type"])]

    def __str__(self) -> str:
        return f"{self.suite.name}/{self.external_id}"

    def ordered_images(self) -> list[TaskImage]:
        return [link.image for link in self.item_images.all()]


class TaskItemImage(models.Model):
    item = models.ForeignKey(TaskItem, on_delete=models.CASCADE, related_name="item_images")
    image = models.ForeignKey(TaskImage, on_delete=models.PROTECT, related_name="item_links")
    position = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["item", "position"]
        constraints = [
            models.UniqueConstraint(fields=["item", "position"], name="unique_image_position")
        ]

    def __str__(self) -> str:
        return f"{self.item} #{self.position}"


class GenerationStatus(models.TextChoices):
    QUEUED = "queued", _("queued")
    RUNNING = "running", _("running")
    SUCCEEDED = "succeeded", _("succeeded")
    FAILED = "failed", _("failed")
    CANCELLED = "cancelled", _("cancelled")


class GenerationSource(models.TextChoices):
    """Where an answer came from: one of our workers, or a file (an answer made elsewhere)."""

    GENERATED = "generated", _("generated")
    IMPORTED = "imported", _("imported")


class TimingQuality(models.TextChoices):
    """Whether the worker could keep up while it timed a stream (DESIGN §5)."""

    OK = "ok", _("ok")
    DEGRADED = "degraded", _("degraded")


class UsageSource(models.TextChoices):
    SERVER = "server", _("server")
    ESTIMATED = "estimated", _("estimated")


FINISHED_STATUSES = (
    GenerationStatus.SUCCEEDED,
    GenerationStatus.FAILED,
    GenerationStatus.CANCELLED,
)
"""A generation in one of these is done: it changes again only if an admin retries it."""
IN_FLIGHT_STATUSES = (GenerationStatus.QUEUED, GenerationStatus.RUNNING)
"""A generation in one of these is waiting for a worker or being answered."""
RETRYABLE_STATUSES = (GenerationStatus.FAILED, GenerationStatus.CANCELLED)
"""A generation in one of these can be queued again ("retry failed")."""


class GenerationQuerySet(models.QuerySet["Generation"]):
    def finished(self) -> GenerationQuerySet:
        """Generations that are done: succeeded, failed or cancelled."""
        return self.filter(status__in=FINISHED_STATUSES)

    def in_flight(self) -> GenerationQuerySet:
        """Generations still waiting for a worker or being answered."""
        return self.filter(status__in=IN_FLIGHT_STATUSES)

    def retryable(self) -> GenerationQuerySet:
        """Failed and cancelled generations: what "retry failed" queues again."""
        return self.filter(status__in=RETRYABLE_STATUSES)

    def succeeded(self) -> GenerationQuerySet:
        """Generations with an answer."""
        return self.filter(status=GenerationStatus.SUCCEEDED)

    def generated(self) -> GenerationQuerySet:
        """Answers our workers asked a model for (not imported from a file)."""
        return self.filter(source=GenerationSource.GENERATED)

    def reviewable(self) -> GenerationQuerySet:
        """Answers people can review: succeeded, with real text.

        Generated answers and those `import_generations` brought in qualify; the placeholders
        `import_scores` creates for answers scored elsewhere (no text) never do.
        """
        return self.filter(status=GenerationStatus.SUCCEEDED, placeholder=False)


class Generation(models.Model):
    """One answer: campaign × item × model × sample, created once when the campaign launches.

    Timing fields follow DESIGN §5; `timings` keeps the raw offsets (seconds after t0, from
    `time.perf_counter()` in the worker) so every figure can be recomputed.
    """

    public_id = models.CharField(max_length=32, unique=True, default=new_public_id, editable=False)
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="generations")
    item = models.ForeignKey(TaskItem, on_delete=models.PROTECT, related_name="generations")
    endpoint = models.ForeignKey(
        ModelEndpoint, on_delete=models.PROTECT, related_name="generations"
    )
    sample = models.PositiveSmallIntegerField(default=0)

    status = models.CharField(
        max_length=16, choices=GenerationStatus.choices, default=GenerationStatus.QUEUED
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    # Dispatch bookkeeping: who holds the row, until when, and when it was last enqueued.
    claim_token = models.CharField(max_length=32, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)

    request = models.JSONField(
        default=dict, blank=True, help_text=_("Exact request; images as hashes.")
    )
    content = models.TextField(blank=True)
    reasoning = models.TextField(blank=True)
    finish_reason = models.CharField(max_length=32, blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    simulated = models.BooleanField(default=False)
    source = models.CharField(
        max_length=16,
        choices=GenerationSource.choices,
        default=GenerationSource.GENERATED,
        help_text=_("Imported answers came from a file and are never sent to a model."),
    )
    identity_leaks = models.JSONField(
        default=list, blank=True, help_text=_("Model or vendor names found in the answer.")
    )
    placeholder = models.BooleanField(
        default=False,
        help_text=_(
            "A stand-in for an answer scored elsewhere (import_scores): no text, never reviewed."
        ),
    )

    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    total_tokens = models.PositiveIntegerField(null=True, blank=True)
    reasoning_tokens = models.PositiveIntegerField(null=True, blank=True)
    usage_source = models.CharField(max_length=16, choices=UsageSource.choices, blank=True)

    ttft_ms = models.FloatField(null=True, blank=True)
    ttfa_ms = models.FloatField(null=True, blank=True)
    response_time_ms = models.FloatField(null=True, blank=True)
    decode_tps = models.FloatField(null=True, blank=True)
    e2e_tps = models.FloatField(null=True, blank=True)
    tpot_ms = models.FloatField(null=True, blank=True)
    timings = models.JSONField(default=dict, blank=True)
    timing_quality = models.CharField(
        max_length=16,
        choices=TimingQuality.choices,
        blank=True,
        help_text=_(
            "degraded: the worker fell behind while streaming, so its timings are not trusted."
        ),
    )
    scheduling_lag_ms = models.FloatField(
        null=True, blank=True, help_text=_("Worst scheduling lag seen while streaming.")
    )

    # Reproducibility record (DESIGN §12); the request as sent is `request` above.
    served_model = models.CharField(
        max_length=200, blank=True, help_text=_("Model name the server reported.")
    )
    system_fingerprint = models.CharField(max_length=200, blank=True)
    server_version = models.CharField(max_length=200, blank=True)
    gradebench_version = models.CharField(max_length=40, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = GenerationQuerySet.as_manager()

    class Meta:
        ordering = ["campaign", "item", "endpoint", "sample"]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "item", "endpoint", "sample"], name="unique_generation"
            )
        ]
        indexes = [
            models.Index(fields=["endpoint", "status"]),
            models.Index(fields=["campaign", "status"]),
        ]

    def __str__(self) -> str:
        return f"{self.campaign.slug}/{self.item.external_id}/{self.endpoint.slug}#{self.sample}"


class JudgementStatus(models.TextChoices):
    """A judgement waits, runs, then ends with a score read (`parsed`) or without one."""

    QUEUED = "queued", _("queued")
    RUNNING = "running", _("running")
    PARSED = "parsed", _("parsed")
    UNPARSEABLE = "unparseable", _("unparseable")
    FAILED = "failed", _("failed")
    CANCELLED = "cancelled", _("cancelled")


JUDGEMENT_FINISHED_STATUSES = (
    JudgementStatus.PARSED,
    JudgementStatus.UNPARSEABLE,
    JudgementStatus.FAILED,
    JudgementStatus.CANCELLED,
)
JUDGEMENT_IN_FLIGHT_STATUSES = (JudgementStatus.QUEUED, JudgementStatus.RUNNING)
JUDGEMENT_RETRYABLE_STATUSES = (JudgementStatus.FAILED, JudgementStatus.CANCELLED)


class JudgementQuerySet(models.QuerySet["Judgement"]):
    def finished(self) -> JudgementQuerySet:
        return self.filter(status__in=JUDGEMENT_FINISHED_STATUSES)

    def in_flight(self) -> JudgementQuerySet:
        return self.filter(status__in=JUDGEMENT_IN_FLIGHT_STATUSES)

    def retryable(self) -> JudgementQuerySet:
        return self.filter(status__in=JUDGEMENT_RETRYABLE_STATUSES)

    def parsed(self) -> JudgementQuerySet:
        """Judgements with a score."""
        return self.filter(status=JudgementStatus.PARSED, score__isnull=False)


class Judgement(models.Model):
    """One judge's reading of one answer under one judge-prompt version (DESIGN §10).

    Dispatched like a generation (per-endpoint caps, leases, retries): the dispatch fields and
    the timing, usage and record fields mean what they mean on `Generation`. `request` holds the
    messages as sent, images as hashes; `raw_output` the judge's whole reply. A reply no score
    can be read from is `unparseable`, never a default score. A new prompt version makes new
    judgements; old ones are kept.
    """

    public_id = models.CharField(max_length=32, unique=True, default=new_public_id, editable=False)
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="judgements")
    generation = models.ForeignKey(Generation, on_delete=models.CASCADE, related_name="judgements")
    judge = models.ForeignKey(ModelEndpoint, on_delete=models.PROTECT, related_name="judgements")
    prompt_version = models.CharField(max_length=40)

    status = models.CharField(
        max_length=16, choices=JudgementStatus.choices, default=JudgementStatus.QUEUED
    )
    score = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(10)]
    )
    rationale = models.TextField(blank=True)
    raw_output = models.TextField(blank=True)
    reasoning = models.TextField(blank=True)
    problem = models.CharField(
        max_length=500, blank=True, help_text=_("Why no score could be read from the reply.")
    )

    attempts = models.PositiveSmallIntegerField(default=0)
    claim_token = models.CharField(max_length=32, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)

    request = models.JSONField(
        default=dict, blank=True, help_text=_("Exact request; images as hashes.")
    )
    finish_reason = models.CharField(max_length=32, blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    simulated = models.BooleanField(default=False)

    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    total_tokens = models.PositiveIntegerField(null=True, blank=True)
    usage_source = models.CharField(max_length=16, choices=UsageSource.choices, blank=True)
    ttft_ms = models.FloatField(null=True, blank=True)
    response_time_ms = models.FloatField(null=True, blank=True)
    decode_tps = models.FloatField(null=True, blank=True)
    timings = models.JSONField(default=dict, blank=True)
    timing_quality = models.CharField(max_length=16, choices=TimingQuality.choices, blank=True)
    scheduling_lag_ms = models.FloatField(null=True, blank=True)

    served_model = models.CharField(max_length=200, blank=True)
    system_fingerprint = models.CharField(max_length=200, blank=True)
    server_version = models.CharField(max_length=200, blank=True)
    gradebench_version = models.CharField(max_length=40, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = JudgementQuerySet.as_manager()

    class Meta:
        ordering = ["campaign", "generation", "judge", "prompt_version"]
        constraints = [
            models.UniqueConstraint(
                fields=["generation", "judge", "prompt_version"], name="unique_judgement"
            )
        ]
        indexes = [
            models.Index(fields=["judge", "status"]),
            models.Index(fields=["campaign", "status"]),
            # The newest finish of a campaign's judgements stamps its judge results.
            models.Index(fields=["campaign", "finished_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.generation} judged by {self.judge.slug} ({self.prompt_version})"
