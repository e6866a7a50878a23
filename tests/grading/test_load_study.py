"""`manage.py load_study`: the reference study loads idempotently; bad files load nothing."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from grading.models import ReviewSettings
from inference.models import Campaign, CampaignModel, ModelEndpoint
from tests.conftest import REPO

pytestmark = pytest.mark.django_db
STUDY = REPO / "fixtures" / "study.json"


def load(path: Path) -> str:
    out = StringIO()
    call_command("load_study", str(path), stdout=out, stderr=StringIO())
    return out.getvalue()


def write(tmp_path: Path, data: object, name: str = "study.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def reference() -> dict:
    return json.loads(STUDY.read_text(encoding="utf-8"))


def database_snapshot() -> list[object]:
    return [
        sorted(ModelEndpoint.objects.values_list("slug", "base_url", "max_concurrency")),
        sorted(Campaign.objects.values_list("slug", "name", "samples")),
        CampaignModel.objects.count(),
        ReviewSettings.objects.count(),
    ]


def test_reference_study_loads_six_endpoints_and_three_campaigns() -> None:
    out = load(STUDY)
    assert "endpoints: created 6, updated 0, unchanged 0" in out
    assert "campaigns: created 3, updated 0, unchanged 0" in out
    assert ModelEndpoint.objects.count() == 6
    assert sorted(Campaign.objects.values_list("matchup", flat=True)) == [
        "medium",
        "small",
        "vision",
    ]
    vision = Campaign.objects.get(slug="vision")
    assert [m.endpoint.slug for m in vision.members.all()] == [
        "ernie-4.5-vl-28b-a3b",
        "qwen2.5-vl-32b",
    ]
    assert sorted(vision.task_types.values_list("code", flat=True)) == ["MG", "VFP", "VQA"]
    assert vision.review.reviewers_per_output == 2
    small = Campaign.objects.get(slug="small")
    assert small.task_types.count() == 18
    assert small.params["max_tokens"] == 2048


def test_reference_endpoints_carry_their_dialects() -> None:
    load(STUDY)
    expected = {
        "deepseek-r1-distill-qwen-1.5b": ("vllm", "think_tags", False, "http://127.0.0.1:8000/v1"),
        "ernie-4.5-vl-28b-a3b": ("fastdeploy", "field", True, "http://127.0.0.1:8180/v1"),
    }
    for slug, (dialect, reasoning, vision, base_url) in expected.items():
        endpoint = ModelEndpoint.objects.get(slug=slug)
        assert (endpoint.dialect, endpoint.reasoning, endpoint.vision, endpoint.base_url) == (
            dialect,
            reasoning,
            vision,
            base_url,
        ), slug
    assert ModelEndpoint.objects.get(slug="qwen2.5-vl-32b").max_pixels == 589824


def test_loading_twice_changes_nothing() -> None:
    load(STUDY)
    before = database_snapshot()
    updated = list(ModelEndpoint.objects.values_list("updated_at", flat=True))
    out = load(STUDY)
    assert "endpoints: created 0, updated 0, unchanged 6" in out
    assert "campaigns: created 0, updated 0, unchanged 3" in out
    assert database_snapshot() == before
    assert list(ModelEndpoint.objects.values_list("updated_at", flat=True)) == updated


def test_a_changed_file_updates_what_changed(tmp_path: Path) -> None:
    load(STUDY)
    data = reference()
    data["endpoints"][0]["max_concurrency"] = 4
    data["campaigns"][0]["params"]["temperature"] = 0.2
    data["campaigns"][0]["reviewers_per_output"] = 3
    out = load(write(tmp_path, data))
    assert "endpoints: created 0, updated 1, unchanged 5" in out
    assert "campaigns: created 0, updated 1, unchanged 2" in out
    assert ModelEndpoint.objects.get(slug="ernie-4.5-0.3b").max_concurrency == 4
    small = Campaign.objects.get(slug="small")
    assert small.params["temperature"] == 0.2
    assert small.review.reviewers_per_output == 3


def test_base_url_env_overrides_the_file(monkeypatch) -> None:
    load(STUDY)
    endpoint = ModelEndpoint.objects.get(slug="ernie-4.5-0.3b")
    assert endpoint.resolved_base_url() == "http://127.0.0.1:8180/v1"
    monkeypatch.setenv("FASTDEPLOY_URL", "http://gpu-7:8180/v1")
    assert endpoint.resolved_base_url() == "http://gpu-7:8180/v1"
    monkeypatch.setenv("FASTDEPLOY_API_KEY", "k-123")
    assert endpoint.resolved_api_key() == "k-123"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d["endpoints"][0].update(api_key="sk-secret"),
            "endpoints[0].api_key: unknown key",
        ),
        (lambda d: d.update(extra=[]), "study.extra: unknown key"),
        (lambda d: d["endpoints"][1].pop("model"), "endpoints[1].model: missing"),
        (lambda d: d["endpoints"][0].update(dialect="tgi"), "endpoints[0].dialect: must be one of"),
        (
            lambda d: d["endpoints"][0].update(max_concurrency=0),
            "endpoints[0].max_concurrency: must be >= 1",
        ),
        (
            lambda d: d["endpoints"][0].update(vision="yes"),
            "endpoints[0].vision: must be true or false",
        ),
        (lambda d: d["endpoints"][0].update(base_url="localhost:8180"), "endpoints[0].base_url:"),
        (
            lambda d: d["endpoints"].append(dict(d["endpoints"][0])),
            "slug 'ernie-4.5-0.3b' appears more than once",
        ),
        (
            lambda d: d["campaigns"][0]["models"].append("gpt-9"),
            "campaigns[0].models[2]: unknown endpoint 'gpt-9'",
        ),
        (
            lambda d: d["campaigns"][1].update(task_types=["AR", "ZZ"]),
            "campaigns[1].task_types[1]: unknown task type 'ZZ'",
        ),
        (
            lambda d: d["campaigns"][2]["params"].update(temprature=1),
            "campaigns[2].params.temprature: unknown sampling setting",
        ),
        (lambda d: d["campaigns"][0].update(layout="grid"), "campaigns[0].layout: must be one of"),
        (
            lambda d: d["campaigns"][0].update(samples="2"),
            "campaigns[0].samples: must be an integer",
        ),
        (
            lambda d: d["campaigns"][0].update(models=[]),
            "campaigns[0].models: must be a non-empty list",
        ),
    ],
)
def test_bad_study_is_rejected_whole_naming_key_and_problem(
    tmp_path: Path, mutate, message: str
) -> None:
    data = reference()
    mutate(data)
    err = StringIO()
    with pytest.raises(CommandError, match="nothing was loaded"):
        call_command("load_study", str(write(tmp_path, data)), stdout=StringIO(), stderr=err)
    assert message in err.getvalue()
    assert ModelEndpoint.objects.count() == 0
    assert Campaign.objects.count() == 0


def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "endpoints": [\n    {"slug": "a",}\n  ]\n}\n', encoding="utf-8")
    err = StringIO()
    with pytest.raises(CommandError):
        call_command("load_study", str(path), stdout=StringIO(), stderr=err)
    assert f"{path}:3:" in err.getvalue() and "invalid JSON" in err.getvalue()


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    err = StringIO()
    with pytest.raises(CommandError):
        call_command("load_study", str(tmp_path / "nope.json"), stdout=StringIO(), stderr=err)
    assert "cannot read" in err.getvalue()


def test_an_update_that_fails_leaves_the_previous_state(tmp_path: Path) -> None:
    load(STUDY)
    before = database_snapshot()
    data = reference()
    data["endpoints"][0]["max_concurrency"] = 2
    data["campaigns"][0]["models"] = ["unknown-model"]
    with pytest.raises(CommandError):
        call_command("load_study", str(write(tmp_path, data)), stdout=StringIO(), stderr=StringIO())
    assert database_snapshot() == before


def test_a_launched_campaign_keeps_its_sampling_settings_and_says_so(tmp_path: Path) -> None:
    from inference.models import Generation, Suite, TaskItem, TaskType

    load(STUDY)
    small = Campaign.objects.get(slug="small")
    item = TaskItem.objects.create(
        suite=Suite.objects.get(name="sample"),
        external_id="x",
        content_hash="h",
        task_type=TaskType.objects.get(code="AR"),
        prompt="p",
    )
    Generation.objects.create(campaign=small, item=item, endpoint=small.endpoints.all()[0])
    data = reference()
    data["campaigns"][0]["params"]["temperature"] = 0.1
    data["campaigns"][0]["name"] = "Small models, renamed"
    out = load(write(tmp_path, data))
    assert "campaign small: already has generations" in out
    small.refresh_from_db()
    assert small.params["temperature"] == 0.7
    assert small.name == "Small models, renamed"


# --- Judges (DESIGN §10) ---------------------------------------------------------------------


def judges_of(slug: str) -> list[str]:
    return sorted(Campaign.objects.get(slug=slug).judges.values_list("slug", flat=True))


def test_reference_study_gives_the_small_matchup_a_judge_that_is_not_one_of_its_models() -> None:
    out = load(STUDY)
    small = Campaign.objects.get(slug="small")
    assert judges_of("small") == ["ernie-4.5-21b-a3b"]
    assert small.judge_params == {"temperature": 0, "max_tokens": 512}
    assert judges_of("medium") == judges_of("vision") == []
    assert "scores its own answers" not in out


def test_judges_load_once_and_a_changed_list_updates_only_that_campaign(tmp_path: Path) -> None:
    load(STUDY)
    assert "campaigns: created 0, updated 0, unchanged 3" in load(STUDY)
    data = reference()
    data["campaigns"][0]["judges"] = ["deepseek-r1-distill-qwen-32b", "qwen2.5-vl-32b"]
    data["campaigns"][1]["judges"] = ["ernie-4.5-vl-28b-a3b"]
    data["campaigns"][1]["judge_params"] = {"temperature": 0.0}
    out = load(write(tmp_path, data))
    assert "campaigns: created 0, updated 2, unchanged 1" in out
    assert "campaign small: judges added deepseek-r1-distill-qwen-32b, qwen2.5-vl-32b; " in out
    assert "removed ernie-4.5-21b-a3b" in out
    assert "campaign medium: judges added ernie-4.5-vl-28b-a3b" in out
    assert judges_of("small") == ["deepseek-r1-distill-qwen-32b", "qwen2.5-vl-32b"]
    assert Campaign.objects.get(slug="medium").judge_params == {"temperature": 0.0}
    # The same list in another order is the same list.
    data["campaigns"][0]["judges"].reverse()
    assert "campaigns: created 0, updated 0, unchanged 3" in load(write(tmp_path, data))
    data["campaigns"][1]["judge_params"] = {"temperature": 0.3}
    assert "campaigns: created 0, updated 1, unchanged 2" in load(write(tmp_path, data))
    del data["campaigns"][0]["judges"]
    out = load(write(tmp_path, data))
    assert "campaign small: judges removed deepseek-r1-distill-qwen-32b, qwen2.5-vl-32b" in out
    assert judges_of("small") == []


def test_judges_change_even_when_the_campaign_already_has_answers(tmp_path: Path) -> None:
    from tests import builders

    load(STUDY)
    small = Campaign.objects.get(slug="small")
    item = builders.item(small.suite, "ar-1", "AR")
    builders.generation(small, item, small.endpoints.all()[0])
    data = reference()
    data["campaigns"][0]["judges"] = ["deepseek-r1-distill-qwen-32b"]
    out = load(write(tmp_path, data))
    assert "campaign small: already has generations" not in out
    assert judges_of("small") == ["deepseek-r1-distill-qwen-32b"]


def test_a_model_judging_its_own_campaign_is_loaded_and_reported(tmp_path: Path) -> None:
    from grading.judging import self_judges

    data = reference()
    data["campaigns"][0]["judges"] = ["ernie-4.5-21b-a3b", "ernie-4.5-0.3b"]
    out = load(write(tmp_path, data))
    assert (
        "campaign small: judge ernie-4.5-0.3b is also one of its models, so it scores its own "
        "answers" in out
    )
    small = Campaign.objects.get(slug="small")
    assert [e.slug for e in self_judges(small)] == ["ernie-4.5-0.3b"]
    assert self_judges(Campaign.objects.get(slug="medium")) == []
    # Said again on every load: it is a standing fact, not a change.
    assert "judge ernie-4.5-0.3b is also one of its models" in load(write(tmp_path, data))


@pytest.mark.parametrize(
    ("judges", "message"),
    [
        (["gpt-9"], "campaigns[0].judges[0]: unknown endpoint 'gpt-9'"),
        (["ernie-4.5-21b-a3b", "ernie-4.5-21b-a3b"], "campaigns[0].judges: lists an endpoint more"),
        ("ernie-4.5-21b-a3b", "campaigns[0].judges: must be a list of endpoint slugs"),
        ([7], "campaigns[0].judges: must be a list of endpoint slugs"),
        (["imported-model"], "campaigns[0].judges[0]: endpoint 'imported-model' is external"),
    ],
)
def test_bad_judges_load_nothing(tmp_path: Path, judges: object, message: str) -> None:
    ModelEndpoint.objects.create(slug="imported-model", name="Imported", model="x/imported")
    data = reference()
    data["campaigns"][0]["judges"] = judges
    err = StringIO()
    with pytest.raises(CommandError, match="nothing was loaded"):
        call_command("load_study", str(write(tmp_path, data)), stdout=StringIO(), stderr=err)
    assert message in err.getvalue()
    assert Campaign.objects.count() == 0
    assert ModelEndpoint.objects.count() == 1


def test_bad_judge_params_load_nothing(tmp_path: Path) -> None:
    data = reference()
    data["campaigns"][0]["judge_params"] = {"temperature": "low", "beam": 2}
    err = StringIO()
    with pytest.raises(CommandError):
        call_command("load_study", str(write(tmp_path, data)), stdout=StringIO(), stderr=err)
    assert "campaigns[0].judge_params.temperature: has the wrong type" in err.getvalue()
    assert "campaigns[0].judge_params.beam: unknown sampling setting" in err.getvalue()
    assert Campaign.objects.count() == 0


def test_an_external_model_defined_in_the_file_with_a_base_url_may_judge(tmp_path: Path) -> None:
    """The file's definition wins over the database's: with a base URL it can be called."""
    ModelEndpoint.objects.create(slug="imported-model", name="Imported", model="x/imported")
    data = reference()
    data["endpoints"].append(
        {**data["endpoints"][0], "slug": "imported-model", "name": "Imported", "model": "x/i"}
    )
    data["campaigns"][0]["judges"] = ["imported-model"]
    load(write(tmp_path, data))
    assert judges_of("small") == ["imported-model"]


def test_the_judge_guided_order_is_a_campaign_setting_of_the_file(tmp_path: Path) -> None:
    load(STUDY)
    assert not ReviewSettings.objects.get(campaign__slug="small").judge_guided_order
    data = reference()
    data["campaigns"][0]["judge_guided_order"] = True
    assert "campaigns: created 0, updated 1, unchanged 2" in load(write(tmp_path, data))
    assert ReviewSettings.objects.get(campaign__slug="small").judge_guided_order
    data["campaigns"][0]["judge_guided_order"] = "yes"
    err = StringIO()
    with pytest.raises(CommandError, match="nothing was loaded"):
        call_command("load_study", str(write(tmp_path, data)), stdout=StringIO(), stderr=err)
    assert "campaigns[0].judge_guided_order:" in err.getvalue()
    assert ReviewSettings.objects.get(campaign__slug="small").judge_guided_order


def quality_of(slug: str) -> tuple[object, ...]:
    review = ReviewSettings.objects.get(campaign__slug=slug)
    return (
        review.gold_rate,
        review.calibration,
        review.disagreement_spread,
        review.reviewers_max,
        review.max_chars_per_s,
    )


def test_reviewer_quality_settings_load_from_the_file_and_default_when_absent(
    tmp_path: Path,
) -> None:
    load(STUDY)
    assert quality_of("small") == (0.1, False, None, None, 50)
    data = reference()
    data["campaigns"][0].update(
        gold_rate=0.25,
        calibration=True,
        disagreement_spread=3,
        reviewers_max=4,
        max_chars_per_s=None,
    )
    out = load(write(tmp_path, data))
    assert "campaigns: created 0, updated 1, unchanged 2" in out
    # Allowed, and said: calibration with nothing to calibrate on.
    assert "campaign small: calibration is on but the campaign has no calibration answers" in out
    assert quality_of("small") == (0.25, True, 3, 4, None)
    assert quality_of("medium") == (0.1, False, None, None, 50)
    assert "campaigns: created 0, updated 0, unchanged 3" in load(write(tmp_path, data))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"gold_rate": 1.5}, "campaigns[0].gold_rate: must be between 0 and 1, not 1.5"),
        ({"gold_rate": -0.1}, "campaigns[0].gold_rate: must be between 0 and 1, not -0.1"),
        ({"gold_rate": "10%"}, "campaigns[0].gold_rate: must be a number between 0 and 1"),
        ({"gold_rate": True}, "campaigns[0].gold_rate: must be a number between 0 and 1"),
        ({"calibration": 1}, "campaigns[0].calibration: must be true or false"),
        ({"disagreement_spread": 0}, "campaigns[0].disagreement_spread: must be between 1 and 10"),
        ({"disagreement_spread": 11}, "campaigns[0].disagreement_spread: must be between 1 and"),
        (
            {"reviewers_per_output": 3, "reviewers_max": 2},
            "campaigns[0].reviewers_max: must be at least reviewers_per_output (3), not 2",
        ),
        ({"reviewers_max": 21}, "campaigns[0].reviewers_max: must be between 1 and 20, not 21"),
        ({"max_chars_per_s": 0}, "campaigns[0].max_chars_per_s: must be >= 1, not 0"),
        ({"max_chars_per_s": 2.5}, "campaigns[0].max_chars_per_s: must be an integer"),
    ],
)
def test_bad_reviewer_quality_settings_load_nothing(
    tmp_path: Path, settings: dict[str, object], message: str
) -> None:
    load(STUDY)
    before = [database_snapshot(), quality_of("small")]
    data = reference()
    data["endpoints"][0]["max_concurrency"] = 3
    data["campaigns"][0].update(settings)
    err = StringIO()
    with pytest.raises(CommandError, match="nothing was loaded"):
        call_command("load_study", str(write(tmp_path, data)), stdout=StringIO(), stderr=err)
    assert message in err.getvalue()
    assert [database_snapshot(), quality_of("small")] == before
