"""Deterministic text for the simulator: answers, reasoning, and the simulator's token unit.

A simulator token ("unit") is one CJK character or punctuation mark, a run of whitespace before a
CJK character, a ``<think>`` or ``</think>`` tag, or up to six other non-space characters, each
with the whitespace before them. Every
string splits into units that join back to the same string, so the server can stream exactly the
units it counts in ``completion_tokens``.

The text is filler that reads like an assistant's answer (paragraphs, a list, sometimes a code
block), Chinese for Chinese prompts and English otherwise. It names no model, vendor or simulator
unless asked to (``identity``), so reviewers cannot tell simulated models apart by their words.
"""

from __future__ import annotations

import hashlib
import random
import re
from typing import Literal

Language = Literal["zh", "en"]

_CJK = "\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef"
# `<think>` and `</think>` are single special tokens in the reasoning models' vocabularies.
_UNIT_RE = re.compile(rf"\s*</?think>|[{_CJK}]|\s*[^\s{_CJK}]{{1,6}}|\s+")
_CJK_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_WORD_RE = re.compile(r"[A-Za-z]+")


def split_units(text: str) -> list[str]:
    """Split ``text`` into simulator tokens; ``"".join(split_units(t)) == t``."""
    return _UNIT_RE.findall(text)


def count_units(text: str) -> int:
    """Number of simulator tokens in ``text``."""
    return len(split_units(text))


def detect_language(text: str) -> Language:
    """``zh`` when the text has at least as many CJK characters as Latin words, else ``en``."""
    cjk = len(_CJK_RE.findall(text))
    return "zh" if cjk and cjk >= len(_LATIN_WORD_RE.findall(text)) else "en"


def stable_seed(*parts: object) -> int:
    """A seed that depends only on ``parts`` (not on ``PYTHONHASHSEED`` or the process)."""
    digest = hashlib.sha256(repr(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def make_rng(*parts: object) -> random.Random:
    """A private random generator seeded from ``parts``."""
    # Not for security: the text must merely be reproducible from the request.
    return random.Random(stable_seed(*parts))  # noqa: S311


_EN: dict[str, list[str]] = {
    "openers": [
        "Here is a structured answer to the question.",
        "Let's look at this step by step.",
        "The short answer is that it depends on a few factors, outlined below.",
        "This question can be approached from several angles.",
        "Below is a concise explanation, followed by the main points.",
        "To answer this well, it helps to separate the facts from the interpretation.",
    ],
    "subjects": [
        "the first step",
        "the main idea",
        "a useful approach",
        "the key distinction",
        "this method",
        "the underlying principle",
        "a common mistake",
        "the second consideration",
        "the final result",
        "a careful reading of the question",
        "the simplest explanation",
        "the overall structure",
    ],
    "verbs": [
        "is to identify",
        "depends on",
        "relies on",
        "helps to clarify",
        "makes it easier to compare",
        "shows",
        "highlights",
        "requires attention to",
        "leads directly to",
        "should account for",
        "is closely tied to",
        "can be checked against",
    ],
    "objects": [
        "the assumptions behind the problem",
        "the relationship between the given elements",
        "how the key terms are defined",
        "the constraints stated in the prompt",
        "the most likely interpretation",
        "the evidence that supports each option",
        "the structure of the input",
        "the expected format of the output",
        "the edge cases",
        "the trade-off between accuracy and simplicity",
        "the order in which the steps are applied",
        "the context in which the statement is made",
    ],
    "tails": [
        "",
        "",
        " in a consistent way",
        " before drawing a conclusion",
        " at each stage",
        " in most practical situations",
        " as the example below shows",
    ],
    "connectors": [
        "In practice,",
        "For example,",
        "As a result,",
        "In addition,",
        "On the other hand,",
        "More importantly,",
        "In most cases,",
        "Taken together,",
    ],
    "terms": [
        "Definition",
        "Context",
        "Method",
        "Example",
        "Verification",
        "Limitations",
        "Conclusion",
        "Assumptions",
        "Structure",
        "Evidence",
    ],
    "list_intros": ["The main points are:", "Key points to keep in mind:", "In more detail:"],
    "headings": ["Analysis", "Details", "Key points", "Explanation", "Summary"],
    "closers": [
        "In summary, {s} {v} {o}.",
        "Overall, {s} {v} {o}, which answers the question.",
        "To conclude, {s} {v} {o}.",
    ],
    "r_openers": [
        "Okay, let me think about this carefully.",
        "Alright, so the question is asking for a clear explanation.",
        "Hmm, let me start by restating what is being asked.",
    ],
    "r_templates": [
        "First, I should look at {o}.",
        "Wait, I need to double-check {o}.",
        "So {s} {v} {o}.",
        "Let me consider {o} again.",
        "That seems right, but {o} could change the answer.",
        "Maybe {s} {v} {o}.",
        "Hmm, {s} probably {v} {o}.",
    ],
    "r_closers": [
        "Okay, I think I have enough to write the answer now.",
        "Alright, that should cover it. Let me write the answer.",
    ],
}

_ZH: dict[str, list[str]] = {
    "openers": [
        "下面给出一个结构化的回答。",
        "我们可以分几个步骤来分析这个问题。",
        "这个问题可以从以下几个方面来理解。",
        "简要来说，答案取决于几个关键因素。",
        "要回答好这个问题，需要先把事实和解释区分开。",
    ],
    "subjects": [
        "第一步",
        "核心思路",
        "一个有效的方法",
        "关键的区别",
        "这种方法",
        "基本原理",
        "常见的误区",
        "另一个需要考虑的因素",
        "最终结果",
        "仔细阅读题目",
        "最简单的解释",
        "整体结构",
    ],
    "verbs": [
        "在于明确",
        "取决于",
        "依赖于",
        "有助于理清",
        "可以帮助我们比较",
        "体现了",
        "突出了",
        "需要注意",
        "直接关系到",
        "应当兼顾",
        "与之密切相关的是",
        "可以用来检验",
    ],
    "objects": [
        "问题背后的假设",
        "各要素之间的关系",
        "相关概念的定义",
        "题目给出的约束条件",
        "最合理的解释",
        "支持各个选项的依据",
        "输入内容的结构",
        "输出的格式要求",
        "边界情况",
        "准确性与简洁性之间的平衡",
        "各个步骤的先后顺序",
        "陈述所处的具体语境",
    ],
    "tails": [
        "",
        "",
        "，并保持前后一致",
        "，然后再下结论",
        "，在每个环节都是如此",
        "，这在实际中很常见",
    ],
    "connectors": [
        "在实际应用中，",
        "例如，",
        "因此，",
        "此外，",
        "另一方面，",
        "更重要的是，",
        "在大多数情况下，",
        "综合来看，",
    ],
    "terms": ["定义", "背景", "方法", "示例", "验证", "局限", "结论", "假设", "结构", "依据"],
    "list_intros": ["主要要点如下：", "需要注意以下几点：", "具体来说："],
    "headings": ["分析", "详细说明", "要点", "解释", "小结"],
    "closers": [
        "总之，{s}{v}{o}。",
        "综上所述，{s}{v}{o}。",
        "最后，{s}{v}{o}，这也回答了上面的问题。",
    ],
    "r_openers": [
        "好的，我来仔细想一想这个问题。",
        "嗯，首先要弄清楚题目到底在问什么。",
        "好，我先把问题重新梳理一下。",
    ],
    "r_templates": [
        "首先，我需要确认{o}。",
        "等等，我应该再检查一下{o}。",
        "所以{s}{v}{o}。",
        "让我再考虑一下{o}。",
        "这样看似合理，但{o}可能会影响结论。",
        "也许{s}{v}{o}。",
        "嗯，{s}大概{v}{o}。",
    ],
    "r_closers": ["好，我现在可以整理答案了。", "嗯，这样应该差不多了，下面开始写回答。"],
}

_PHRASES: dict[Language, dict[str, str]] = {
    "en": {
        "code_intro": "A short example in code:",
        "code_comment": "# keep only the items that pass the check",
        "identity": "As {name}, I will answer based on what I know.",
    },
    "zh": {
        "code_intro": "下面用一段简短的代码来说明：",
        "code_comment": "# 只保留通过检查的元素",
        "identity": "作为{name}，我会根据已有的知识来回答。",
    },
}

_CODE_SNIPPETS = [
    (
        "python",
        "def {fn}(items):\n"
        "    {comment}\n"
        "    result = []\n"
        "    for item in items:\n"
        '        if item is not None and item != "":\n'
        "            result.append(item)\n"
        "    return result\n",
    ),
    (
        "python",
        "def {fn}(values):\n"
        "    {comment}\n"
        "    total = 0\n"
        "    for value in values:\n"
        "        if value > 0:\n"
        "            total += value\n"
        "    return total\n",
    ),
    (
        "javascript",
        "function {fn}(items) {{\n"
        "  {comment}\n"
        "  return items.filter((item) => item !== null && item !== undefined);\n"
        "}}\n",
    ),
]
_FUNCTION_NAMES = ["filter_items", "collect", "summarize", "clean_values", "select_valid"]
_CODE_HINTS = ("code", "python", "function", "program", "代码", "函数", "编程", "def ", "```")

# Names used only by the `identity` fault, which exists to test leak detection.
_IDENTITIES = {
    "ernie": ("ERNIE Bot, developed by Baidu", "百度研发的文心一言"),
    "deepseek": ("DeepSeek-R1, developed by DeepSeek", "深度求索开发的 DeepSeek-R1"),
    "qwen": ("Qwen, developed by Alibaba Cloud", "阿里云开发的通义千问"),
}


def identity_name(model: str, language: Language) -> str:
    """The self-description a real model would use, for the ``identity`` fault."""
    lowered = model.lower()
    for key, (english, chinese) in _IDENTITIES.items():
        if key in lowered:
            return chinese if language == "zh" else english
    name = model.rsplit("/", 1)[-1]
    return f"模型 {name}" if language == "zh" else f"the model {name}"


def wants_code(prompt: str) -> bool:
    """Whether the prompt looks like a programming question (then a code block is likely)."""
    lowered = prompt.lower()
    return any(hint in lowered for hint in _CODE_HINTS)


class _Writer:
    """Appends text blocks while keeping a running unit count."""

    def __init__(self, rng: random.Random, language: Language) -> None:
        self.rng = rng
        self.language = language
        self.words = _ZH if language == "zh" else _EN
        self.phrases = _PHRASES[language]
        self.parts: list[str] = []
        self.units = 0

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.units += count_units(text)

    def pick(self, key: str) -> str:
        return self.rng.choice(self.words[key])

    def clause(self) -> tuple[str, str, str]:
        return self.pick("subjects"), self.pick("verbs"), self.pick("objects")

    def sentence(self) -> str:
        subject, verb, obj = self.clause()
        tail = self.pick("tails")
        if self.language == "zh":
            connector = self.pick("connectors") if self.rng.random() < 0.5 else ""
            return f"{connector}{subject}{verb}{obj}{tail}。"
        if self.rng.random() < 0.5:
            return f"{self.pick('connectors')} {subject} {verb} {obj}{tail}."
        return f"{subject[0].upper()}{subject[1:]} {verb} {obj}{tail}."

    def paragraph(self, sentences: int) -> str:
        joiner = "" if self.language == "zh" else " "
        return joiner.join(self.sentence() for _ in range(sentences))


def compose_answer(
    rng: random.Random,
    language: Language,
    target_units: int,
    *,
    code: bool = False,
    identity: str | None = None,
) -> list[str]:
    """Answer text of at least ``target_units`` units, ending on a finished sentence.

    ``code`` makes a fenced code block likely (it still appears now and then without it);
    ``identity`` opens the answer with a self-description naming that model.
    """
    writer = _Writer(rng, language)
    if identity:
        writer.add(writer.phrases["identity"].format(name=identity) + " ")
    writer.add(writer.pick("openers") + ("" if language == "zh" else " ") + writer.paragraph(2))
    blocks_done = 0
    list_done = code_done = False
    headings = rng.sample(writer.words["headings"], k=len(writer.words["headings"]))
    closer_estimate = 24
    while writer.units < target_units - closer_estimate:
        choice = rng.random()
        if not list_done and (blocks_done >= 1 or choice < 0.4):
            writer.add("\n\n" + _list_block(writer))
            list_done = True
        elif not code_done and (code or choice < 0.15) and blocks_done >= 1:
            writer.add("\n\n" + _code_block(writer))
            code_done = True
        elif choice < 0.2 and headings:
            writer.add(f"\n\n### {headings.pop()}\n\n" + writer.paragraph(2))
        else:
            writer.add("\n\n" + writer.paragraph(rng.randint(2, 4)))
        blocks_done += 1
    subject, verb, obj = writer.clause()
    writer.add("\n\n" + writer.pick("closers").format(s=subject, v=verb, o=obj))
    return split_units("".join(writer.parts))


def _list_block(writer: _Writer) -> str:
    numbered = writer.rng.random() < 0.5
    terms = writer.rng.sample(writer.words["terms"], k=writer.rng.randint(3, 5))
    colon = "：" if writer.language == "zh" else ": "
    lines = [writer.pick("list_intros"), ""]
    for index, term in enumerate(terms, start=1):
        marker = f"{index}." if numbered else "-"
        lines.append(f"{marker} **{term}**{colon}{writer.sentence()}")
    return "\n".join(lines)


def _code_block(writer: _Writer) -> str:
    language, template = writer.rng.choice(_CODE_SNIPPETS)
    comment = writer.phrases["code_comment"]
    if language == "javascript":
        comment = "//" + comment[1:]
    body = template.format(fn=writer.rng.choice(_FUNCTION_NAMES), comment=comment)
    return f"{writer.phrases['code_intro']}\n\n```{language}\n{body}```"


def compose_reasoning(rng: random.Random, language: Language, target_units: int) -> list[str]:
    """Thinking-aloud text of at least ``target_units`` units (empty for 0)."""
    if target_units <= 0:
        return []
    writer = _Writer(rng, language)
    space = "" if language == "zh" else " "
    writer.add(writer.pick("r_openers"))
    closer = writer.pick("r_closers")
    closer_units = count_units(closer) + 1
    while writer.units < target_units - closer_units:
        subject, verb, obj = writer.clause()
        sentence = writer.pick("r_templates").format(s=subject, v=verb, o=obj)
        separator = "\n\n" if rng.random() < 0.2 else space
        writer.add(separator + sentence)
    writer.add(space + closer)
    return split_units("".join(writer.parts))
