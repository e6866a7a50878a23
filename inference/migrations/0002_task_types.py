"""Install the 21 task types of the reference study (DESIGN §2).

A data migration rather than a fixture so every database — a test's included — has them, and so
later changes arrive as further migrations with a history.
"""

from django.db import migrations

# code, 中文, English, modality, 任务描述, description, aliases
TASK_TYPES = [
    (
        "AR",
        "类比推理",
        "analogical reasoning",
        "text",
        "识别概念间的类比关系",
        "Identify analogies between concepts",
        [],
    ),
    (
        "CK",
        "常识性知识挖掘",
        "commonsense knowledge mining",
        "text",
        "提取常识性知识",
        "Surface commonsense knowledge",
        ["CKM"],
    ),
    (
        "CR",
        "常识推理",
        "commonsense reasoning",
        "text",
        "运用常识进行推理判断",
        "Reason with everyday commonsense",
        [],
    ),
    (
        "CG",
        "代码生成",
        "code generation",
        "text",
        "根据需求生成代码",
        "Write code to a specification",
        ["CodeGen"],
    ),
    (
        "TG",
        "文本生成评估",
        "text generation",
        "text",
        "生成连贯、有意义的文本",
        "Write coherent, meaningful text",
        ["EVALG"],
    ),
    ("FP", "事实探测", "fact probing", "text", "识别事实与虚构内容", "Tell facts from fiction", []),
    (
        "GCG",
        "一般条件生成",
        "general conditional generation",
        "text",
        "根据条件生成内容",
        "Generate content under given conditions",
        ["条件生成"],
    ),
    (
        "IE",
        "信息提取",
        "information extraction",
        "text",
        "从文本中提取特定信息",
        "Extract specific information from text",
        [],
    ),
    (
        "MR",
        "数学推理",
        "mathematical reasoning",
        "text",
        "解决数学问题",
        "Solve mathematical problems",
        [],
    ),
    (
        "QA",
        "问题回答",
        "question answering",
        "text",
        "回答各类问题",
        "Answer questions of every kind",
        [],
    ),
    (
        "SP",
        "语义解析",
        "semantic parsing",
        "text",
        "理解语言的语义结构",
        "Understand the semantic structure of language",
        ["SEMP"],
    ),
    (
        "SR",
        "符号推理",
        "symbolic reasoning",
        "text",
        "处理符号逻辑问题",
        "Solve symbolic logic problems",
        [],
    ),
    ("SUM", "总结", "summarization", "text", "文本摘要与总结", "Summarise text", []),
    (
        "TAG",
        "序列标记",
        "sequence tagging",
        "text",
        "文本标注与分类",
        "Label the tokens or spans of a text",
        [],
    ),
    (
        "TC",
        "文本分类",
        "text classification",
        "text",
        "将文本分类到预定义类别",
        "Assign texts to predefined classes",
        [],
    ),
    (
        "TA",
        "理论分析",
        "theory analysis",
        "text",
        "分析理论与概念",
        "Analyse theories and concepts",
        ["Theory"],
    ),
    (
        "MT",
        "机器翻译",
        "machine translation",
        "text",
        "语言间翻译",
        "Translate between languages",
        ["机器翻译"],
    ),
    (
        "LP",
        "语言能力探测",
        "language probing",
        "text",
        "测试语言理解与生成能力",
        "Probe language understanding and production",
        ["语言能力探测"],
    ),
    (
        "MG",
        "多模态接地",
        "multimodal grounding",
        "vision",
        "将文本与视觉内容关联",
        "Ground text in visual content",
        [],
    ),
    (
        "VFP",
        "视觉事实探测",
        "visual fact probing",
        "vision",
        "识别图像中的事实内容",
        "Identify the facts an image shows",
        [],
    ),
    (
        "VQA",
        "视觉问题回答",
        "visual question answering",
        "vision",
        "回答关于图像的问题",
        "Answer questions about an image",
        [],
    ),
]


def install(apps, schema_editor):
    TaskType = apps.get_model("inference", "TaskType")
    for position, (code, zh, en, modality, desc_zh, desc_en, aliases) in enumerate(TASK_TYPES):
        TaskType.objects.update_or_create(
            code=code,
            defaults={
                "name_zh": zh,
                "name_en": en,
                "modality": modality,
                "description_zh": desc_zh,
                "description_en": desc_en,
                "aliases": aliases,
                "position": position,
            },
        )


def uninstall(apps, schema_editor):
    TaskType = apps.get_model("inference", "TaskType")
    TaskType.objects.filter(code__in=[row[0] for row in TASK_TYPES]).delete()


class Migration(migrations.Migration):
    dependencies = [("inference", "0001_initial")]
    operations = [migrations.RunPython(install, uninstall)]
