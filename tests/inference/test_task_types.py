"""`migrate` installs the 21 task types; every spelling the seed uses resolves."""

from __future__ import annotations

import pytest

from inference.models import TaskType

pytestmark = pytest.mark.django_db

CODES = [
    "AR",
    "CK",
    "CR",
    "CG",
    "TG",
    "FP",
    "GCG",
    "IE",
    "MR",
    "QA",
    "SP",
    "SR",
    "SUM",
    "TAG",
    "TC",
    "TA",
    "MT",
    "LP",
    "MG",
    "VFP",
    "VQA",
]


def test_migrate_installs_21_task_types_18_text_and_3_vision() -> None:
    assert list(TaskType.objects.values_list("code", flat=True)) == CODES
    assert sorted(TaskType.objects.filter(modality="vision").values_list("code", flat=True)) == [
        "MG",
        "VFP",
        "VQA",
    ]


@pytest.mark.parametrize(
    ("spelling", "code"),
    [
        ("AR", "AR"),
        ("ar", "AR"),
        ("类比推理", "AR"),
        ("analogical reasoning", "AR"),
        ("CKM", "CK"),
        ("CodeGen", "CG"),
        ("EVALG", "TG"),
        ("SEMP", "SP"),
        ("Theory", "TA"),
        ("机器翻译", "MT"),
        ("语言能力探测", "LP"),
        ("常识推理", "CR"),
        ("AR(类比推理)", "AR"),
        ("CodeGen（代码生成）", "CG"),
        (" VQA ", "VQA"),
    ],
)
def test_resolve_accepts_codes_aliases_and_names(spelling: str, code: str) -> None:
    found = TaskType.objects.resolve(spelling)
    assert found is not None and found.code == code


@pytest.mark.parametrize("spelling", ["", "XX", "推理", "reasoning"])
def test_resolve_rejects_unknown_spellings(spelling: str) -> None:
    assert TaskType.objects.resolve(spelling) is None


def test_every_task_type_has_both_languages() -> None:
    for task_type in TaskType.objects.all():
        assert task_type.name_zh and task_type.name_en and task_type.description_zh
