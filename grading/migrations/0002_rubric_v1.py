"""Install rubric version 1 (the seed's 0–10 bands and scoring focuses) and the reviewers group."""

from django.db import migrations

BANDS = [
    (
        9,
        10,
        "卓越",
        "excellent",
        "输出质量极高,完全满足或超越预期",
        "Outstanding: fully meets or exceeds expectations",
    ),
    (
        7,
        8,
        "优秀",
        "very good",
        "输出质量很好,基本满足预期",
        "Very good: essentially meets expectations",
    ),
    (5, 6, "良好", "fair", "输出质量尚可,存在小缺陷", "Acceptable, with minor flaws"),
    (3, 4, "一般", "weak", "输出质量一般,存在明显缺陷", "Mediocre, with obvious flaws"),
    (1, 2, "较差", "poor", "输出质量较差,难以满足基本需求", "Poor: hardly meets basic needs"),
    (
        0,
        0,
        "失败",
        "failed",
        "无法完成任务或输出完全不相关",
        "Fails the task, or the output is irrelevant",
    ),
]

FOCUSES = {
    "AR": ("逻辑推理能力", "Logical reasoning"),
    "CK": ("知识广度与准确性", "Breadth and accuracy of knowledge"),
    "CR": ("常识运用与推理合理性", "Use of commonsense and soundness of the reasoning"),
    "CG": ("代码正确性与可读性", "Correctness and readability of the code"),
    "TG": ("流畅度与创造性", "Fluency and creativity"),
    "FP": ("事实准确性", "Factual accuracy"),
    "GCG": ("条件符合度", "Adherence to the given conditions"),
    "IE": ("提取准确性与完整性", "Accuracy and completeness of the extraction"),
    "MR": ("计算准确性与推理过程", "Correct calculation and a sound chain of reasoning"),
    "QA": ("回答准确性与完整性", "Accuracy and completeness of the answer"),
    "SP": ("语义理解深度", "Depth of semantic understanding"),
    "SR": ("逻辑推理能力", "Logical reasoning"),
    "SUM": ("摘要质量与关键点覆盖", "Summary quality and coverage of the key points"),
    "TAG": ("标记准确性", "Tagging accuracy"),
    "TC": ("分类准确性", "Classification accuracy"),
    "TA": ("分析深度与准确性", "Depth and accuracy of the analysis"),
    "MT": ("翻译准确性与流畅度", "Accuracy and fluency of the translation"),
    "LP": ("语言掌握程度", "Command of the language"),
    "MG": ("跨模态理解能力", "Cross-modal understanding"),
    "VFP": ("视觉事实准确性", "Accuracy of the visual facts"),
    "VQA": ("视觉理解与回答质量", "Visual understanding and quality of the answer"),
}


def install(apps, schema_editor):
    Rubric = apps.get_model("grading", "Rubric")
    RubricBand = apps.get_model("grading", "RubricBand")
    ScoringFocus = apps.get_model("grading", "ScoringFocus")
    TaskType = apps.get_model("inference", "TaskType")
    Group = apps.get_model("auth", "Group")

    rubric, _ = Rubric.objects.get_or_create(
        version=1,
        defaults={
            "name": "Reference study 0–10",
            "notes": "The seed study's 0–10 bands and per-task-type scoring focus (评分重点).",
        },
    )
    for low, high, label_zh, label_en, desc_zh, desc_en in BANDS:
        RubricBand.objects.update_or_create(
            rubric=rubric,
            low=low,
            defaults={
                "high": high,
                "label_zh": label_zh,
                "label_en": label_en,
                "description_zh": desc_zh,
                "description_en": desc_en,
            },
        )
    for task_type in TaskType.objects.filter(code__in=FOCUSES):
        focus_zh, focus_en = FOCUSES[task_type.code]
        ScoringFocus.objects.update_or_create(
            rubric=rubric,
            task_type=task_type,
            defaults={"focus_zh": focus_zh, "focus_en": focus_en},
        )
    Group.objects.get_or_create(name="reviewers")


def uninstall(apps, schema_editor):
    apps.get_model("grading", "Rubric").objects.filter(version=1).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("grading", "0001_initial"),
        ("inference", "0002_task_types"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]
    operations = [migrations.RunPython(install, uninstall)]
