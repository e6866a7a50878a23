"""Identity leaks: words in a model's output that name a model, its vendor or its server.

Blinding (DESIGN §6) needs responses that say "As ERNIE, …" or "我是通义千问" flagged before
grading, and optionally masked for reviewers. Matching rules:

- Case-insensitive throughout; a term is reported as spelled in the term list.
- A term that contains CJK characters matches as a plain substring: Chinese has no spaces
  between words, so "我是文心一言" must match 文心一言. The exceptions are the everyday words and
  idioms in ``EVERYDAY_PHRASES`` ("一言难尽", "文心雕龙", "阿里山"): a term inside one of them
  is neither reported nor masked.
- A Latin term matches as a whole word, with one deliberate twist: at an edge of the term that
  is a letter, the neighbouring character must not be a Latin letter; at an edge that is a
  digit, it must not be a digit. Digits, punctuation, underscores and CJK characters may touch
  a name, so "Qwen2.5", "GPT4", "gpt-4o", "Llama3-8B", "deepseek_r1" and "我是Qwen模型" all
  match, while "GPTQ", "Googled", "Bernie", "Claudette" and "OpenAIClient" do not. Known misses
  are camel-cased identifiers and plurals ("GPTs"). Known false alarms are ordinary words
  that are also names (a llama, the Gemini constellation); the flag asks a person to look.
- Spaces inside a term match any run of whitespace ("Meta  AI", "Meta\\nAI").
- Overlapping terms: at any position the longest term wins, and text matched once is not
  matched again, so "通义千问" counts as one occurrence of 通义千问, not also of 通义 and 千问.

The term list is configurable with ``settings.IDENTITY_LEAK_TERMS``, read at call time.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Sequence

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

DEFAULT_TERMS: tuple[str, ...] = (
    # Baidu
    "ERNIE", "文心", "一言", "文心一言", "Baidu", "百度", "飞桨", "PaddlePaddle", "FastDeploy",
    # DeepSeek
    "DeepSeek", "深度求索",
    # Alibaba
    "Qwen", "QwQ", "通义", "千问", "通义千问", "Alibaba", "阿里", "阿里巴巴", "阿里云",
    # OpenAI
    "GPT", "ChatGPT", "OpenAI",
    # Anthropic
    "Claude", "Anthropic",
    # Meta
    "Llama", "Meta AI",
    # Google
    "Gemini", "Gemma", "Google", "DeepMind",
    # Mistral
    "Mistral", "Mixtral",
    # Other model makers. Left out on purpose, as ordinary words in answers: "MiniMax" (the
    # algorithm), "GLM" (the statistical model), "PaLM", "Bard", "Cohere", "Moonshot", 百川.
    "Kimi", "Moonshot AI", "月之暗面", "智谱", "Zhipu", "ChatGLM", "GLM-4",
    "豆包", "Doubao", "字节跳动", "ByteDance", "Hunyuan", "腾讯", "Tencent",
    "讯飞", "iFlytek", "零一万物", "01.AI", "Baichuan", "InternLM", "Grok", "xAI",
    # Serving stacks, whose names give the deployment away
    "vLLM", "SGLang", "Ollama", "llama.cpp", "TensorRT-LLM", "Hugging Face", "HuggingFace",
)  # fmt: skip

# Everyday Chinese words and idioms that contain a term without naming anyone. An occurrence
# inside one of them is neither reported nor masked ("一言难尽" is not a mention of 一言).
EVERYDAY_PHRASES: tuple[str, ...] = (
    "一言难尽", "一言为定", "一言不发", "一言以蔽之", "一言九鼎", "一言既出", "一言一行",
    "一言堂", "一言不合", "一言半语", "不发一言", "文心雕龙", "阿里山", "阿里郎",
)  # fmt: skip

_LATIN_LETTER = "A-Za-z\u00c0-\u024f"
_CJK = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def terms_from_settings() -> Sequence[str]:
    """The configured terms: ``settings.IDENTITY_LEAK_TERMS`` if set, else ``DEFAULT_TERMS``.

    Read at call time so tests and deployments can change it without re-importing anything.
    """
    terms = getattr(settings, "IDENTITY_LEAK_TERMS", None)
    if terms is None:
        return DEFAULT_TERMS
    if not isinstance(terms, list | tuple) or not all(isinstance(t, str) for t in terms):
        raise ImproperlyConfigured("IDENTITY_LEAK_TERMS must be a list of strings.")
    return terms


def find_leaks(text: str, terms: Iterable[str] | None = None) -> list[str]:
    """The distinct terms that occur in ``text``, as spelled in the term list, in order of
    first appearance. ``terms`` defaults to ``terms_from_settings()``."""
    found: dict[str, None] = {}
    for _, _, term in _occurrences(text, terms):
        found.setdefault(term, None)
    return list(found)


def mask_leaks(
    text: str, terms: Iterable[str] | None = None, marker: str = "[■■■]"
) -> tuple[str, int]:
    """Replace every occurrence of a term with ``marker``; return the new text and the number
    of occurrences replaced. ``terms`` defaults to ``terms_from_settings()``."""
    parts: list[str] = []
    position = count = 0
    for start, end, _ in _occurrences(text, terms):
        parts += [text[position:start], marker]
        position = end
        count += 1
    if not count:
        return text, 0
    parts.append(text[position:])
    return "".join(parts), count


def _occurrences(text: str, terms: Iterable[str] | None) -> Iterator[tuple[int, int, str]]:
    """(start, end, term) of each occurrence, left to right, never overlapping."""
    pattern, canonical = _compile(_normalise(terms))
    if pattern is None or not text:
        return
    # Matching runs on a lower-cased copy: the regex engine skips ahead quickly over positions
    # where no term can start, which it cannot do with re.IGNORECASE (measured: about 50 times
    # faster on 1 MB). The copy has the same length, so spans carry over to the original.
    for match in pattern.finditer(_lower(text)):
        term = canonical[_key(match.group())]
        if term is not None:
            yield match.start(), match.end(), term


def _lower(text: str) -> str:
    """``text.lower()``, keeping the length: the rare characters whose lower case is longer
    (such as "İ") stay as they are."""
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    return "".join(low if len(low := char.lower()) == 1 else char for char in text)


def _key(text: str) -> str:
    return " ".join(_lower(text).split())


def _normalise(terms: Iterable[str] | None) -> tuple[str, ...]:
    """Collapse whitespace, drop blanks (an empty term would match everywhere) and drop
    case-insensitive duplicates, keeping the first spelling."""
    seen: dict[str, str] = {}
    for term in terms_from_settings() if terms is None else terms:
        cleaned = " ".join(term.split())
        if cleaned:
            seen.setdefault(_key(cleaned), cleaned)
    return tuple(seen.values())


@functools.lru_cache(maxsize=32)
def _compile(terms: tuple[str, ...]) -> tuple[re.Pattern[str] | None, dict[str, str | None]]:
    """One alternation of all terms and of the everyday phrases that contain one of them.

    Returns the pattern, which matches lower-cased text, and a map from a lower-cased match to
    the term it stands for (``None`` for an everyday phrase, matched only so that the term
    inside it is not).
    """
    if not terms:
        return None, {}
    canonical: dict[str, str | None] = {_key(term): term for term in terms}
    for phrase in EVERYDAY_PHRASES:
        if any(key in phrase for key in canonical):
            canonical.setdefault(phrase, None)
    # Longest first: at a given position the engine takes the first alternative that matches.
    keys = sorted(canonical, key=len, reverse=True)
    return re.compile("|".join(_term_pattern(key) for key in keys)), canonical


def _term_pattern(key: str) -> str:
    """The pattern for one lower-cased term. It starts with a literal character, which is what
    lets the engine skip ahead; the guard on the character before the term comes after it."""
    head = re.escape(key[0])
    tail = r"\s+".join(re.escape(word) for word in key[1:].split(" "))
    if _CJK.search(key):
        return head + tail
    before, after = _neighbours(key[0]), _neighbours(key[-1])
    guard_before = f"(?<![{before}].)" if before else ""
    guard_after = f"(?![{after}])" if after else ""
    return head + guard_before + tail + guard_after


def _neighbours(edge: str) -> str:
    """The characters that may not touch a Latin term at an edge that is ``edge``."""
    if edge.isascii() and edge.isdigit():
        return "0-9"
    if edge.isalpha():
        return _LATIN_LETTER
    return ""
