"""Identity leaks: words in a model's output that name a model, its vendor or its server.

Blinding (DESIGN §6) needs responses that say "As ERNIE, …" or "我是通义千问" flagged before
grading, and optionally masked for reviewers. Matching rules:

- Matching runs on a folded copy of the text: Unicode NFKC compatibility forms are unfolded
  (fullwidth "ＥＲＮＩＥ" and "Ｑｗｅｎ２．５", circled and mathematical letters, Kangxi radicals
  "⽂⼼⼀⾔"), combining marks are dropped ("E\\u0301RNIE", struck-through "Q\\u0336wen") and
  invisible characters are removed: format characters (category Cf: zero-width space and
  joiners, word joiner, byte order mark, soft hyphen) and the Hangul fillers. So
  "ER\\u200bNIE" and "文\\u200b心一言" match. A compatibility character that spells several
  letters ("™", "㎏") is left as it is, so that "ChatGPT™" still matches. What is found in
  the copy is mapped back to the original: a mask replaces exactly the characters that
  spelled the name, hidden ones included, and the rest of the answer is shown as written.
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
- A match is the whole model identifier, masked with one marker whatever its length, so the
  marker tells nothing about the name: the term, a version written against it ("Qwen2.5",
  "GPT4o", "GLM-4.5", "文心一言4.0"; after a Chinese name only a dotted version or one not
  followed by Chinese, so "百度3月" keeps 3月), then any parts joined to it by "-", "_", ":" or
  a Unicode hyphen that hold a digit ("-4.5", "-21B", "-A3B", "-0613"), are variant words
  (``VARIANT_WORDS`` and ``HYPHENATED_VARIANT_WORDS``: "-Instruct", "-VL", "-mini",
  "-Paddle") or are another Latin term ("-Distill-Qwen-32B"), and any parts after spaces that
  are versions or sizes ("ERNIE 4.5", "Llama 3.1 8B"; not a bare number of three digits or
  more, such as a year) or words in ``VARIANT_WORDS`` ("Claude 3.5 Sonnet", "GPT-4 Turbo").
  Other words end it: "ERNIE is a model", "Qwen模型", "GPT-4 and me" and "Qwen-based" mask
  only the name. ``find_leaks`` reports every term in the identifier ("DeepSeek-R1-Distill-
  Qwen-32B" reports DeepSeek and Qwen).
- Overlapping terms: at any position the longest term wins, and text matched once is not
  matched again, so "通义千问" counts as one occurrence of 通义千问, not also of 通义 and 千问.

Known misses: letters from other scripts that look Latin (a Cyrillic "Е" in "ЕRNIE"), small
capitals ("ᴇʀɴɪᴇ") and other lookalikes that NFKC does not unify; names spelled apart with
visible characters ("E R N I E", "E.R.N.I.E", "Qw-en"); invisible characters that are not
format characters or fillers (the Braille blank U+2800); traditional characters (通義千問)
and pinyin unless they are listed as terms; a Chinese word between a name and its version
("文心大模型4.5" keeps 大模型4.5); a vendor prefix that is not a term ("Meta-Llama-3-8B" keeps
"Meta-"); variant words not in the lists ("Llama-3-Storm" keeps "-Storm"). Known false alarms
of the identifier rule: a small number or a variant word after a name is taken as part of it
("GPT-4 3 times" masks "GPT-4 3", "Qwen max tokens" masks "Qwen max").

The term list is configurable with ``settings.IDENTITY_LEAK_TERMS``, read at call time.
Folding builds its tables once per process (about 0.1 s); then each text costs one
``str.translate`` pass, and Python work only for the rare characters that fold to several or
none (invisible characters, combining marks). Measured on 1 MB: 0.13-0.3 s to mask, English
or Chinese, close to what matching alone took before folding.
"""

from __future__ import annotations

import bisect
import functools
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

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

# Words that name a variant of a model. They are part of the identifier after a hyphen,
# underscore or colon ("Qwen2.5-VL-32B-Instruct", "GPT-4o-mini") and after a space ("GPT-4
# Turbo", "Claude 3.5 Sonnet"). The second list holds words too ordinary to take after a space
# ("ask Qwen next", "ERNIE chat logs"), which name a variant only when joined on.
VARIANT_WORDS: tuple[str, ...] = (
    "instruct", "turbo", "mini", "nano", "pro", "plus", "max", "lite", "flash", "ultra",
    "coder", "vl", "omni", "distill", "bot", "sonnet", "opus", "haiku", "instant", "ai",
    "awq", "gptq", "gguf",
)  # fmt: skip
HYPHENATED_VARIANT_WORDS: tuple[str, ...] = (
    "it", "chat", "base", "next", "preview", "latest", "thinking", "reasoner", "math",
    "vision", "audio", "speed", "tiny", "long", "air", "exp", "moe", "hf", "oss", "paddle",
    "guard", "code",
)  # fmt: skip

_LATIN_LETTER = "A-Za-z\u00c0-\u024f"
_CJK_RANGES = "\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff"
_CJK = re.compile(f"[{_CJK_RANGES}]")

# The identifier around a term (see the module docstring), in lower-cased folded text.
_VERSION = r"[a-z]*\d[a-z\d]*(?:\.\d+[a-z\d]*)*"
_SPACED_VERSION = r"(?!\d{3,}(?![a-z\d]|\.\d))" + _VERSION
_ATTACHED = (
    r"(?<=[a-z])\d{1,2}(?!\d)(?:\.\d+)*[a-z]*"
    r"|(?<=\d)(?:(?:\.\d+)+[a-z]*|[a-z]+)"
    rf"|(?<=[{_CJK_RANGES}])\d{{1,2}}(?:(?:\.\d+)+|(?![\d{_CJK_RANGES}]))[a-z]*"
)
_JOINER = "[-_:\u2010-\u2013\u2212]"

# Invisible letters that are not format characters.
_HANGUL_FILLERS = "\u115f\u1160\u3164\uffa0"


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


_FAMILY = re.compile(r"[A-Za-z][A-Za-z]{2,}")


def terms_with_models(models: Iterable[tuple[str, str]]) -> list[str]:
    """The configured terms and the family names of a study's own models.

    ``models`` are (display name, model id) pairs of the endpoints that answer in a campaign.
    A model unknown to the configured list — an in-house model, an answer imported from
    another tool — is named by its family, the leading word of its name and of its id's last
    part ("acme/Acme-7B-Chat" gives "Acme"), so "I am Acme-7B" is caught like "I am ERNIE".
    Words under three letters are left out: too many ordinary words are that short.
    """
    terms = list(terms_from_settings())
    known = {term.casefold() for term in terms}
    for name, model in models:
        for text in (model, name):
            match = _FAMILY.match(text.rsplit("/", 1)[-1].strip())
            if match and match.group().casefold() not in known:
                known.add(match.group().casefold())
                terms.append(match.group())
    return terms


def find_leaks(text: str, terms: Iterable[str] | None = None) -> list[str]:
    """The distinct terms that occur in ``text``, as spelled in the term list, in order of
    first appearance. ``terms`` defaults to ``terms_from_settings()``."""
    found: dict[str, None] = {}
    for _, _, named in _occurrences(text, terms):
        for term in named:
            found.setdefault(term, None)
    return list(found)


def mask_leaks(
    text: str, terms: Iterable[str] | None = None, marker: str = "[■■■]"
) -> tuple[str, int]:
    """Replace every model identifier that contains a term with ``marker``; return the new
    text and the number of identifiers replaced. ``terms`` defaults to
    ``terms_from_settings()``."""
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


def _occurrences(text: str, terms: Iterable[str] | None) -> Iterator[tuple[int, int, list[str]]]:
    """(start, end, terms named) of each identifier in ``text``, left to right, never
    overlapping; positions are in ``text``, the terms in the order they appear."""
    pattern, canonical = _compile(_normalise(terms))
    if pattern is None or not text:
        return
    folded = _fold(text)
    # Matching runs on a lower-cased copy: the regex engine skips ahead quickly over positions
    # where no term can start, which it cannot do with re.IGNORECASE (measured: about 50 times
    # faster on 1 MB).
    for match in pattern.finditer(folded.text):
        term = canonical[_match_key(match)]
        if term is None:
            continue
        named = [term]
        if match.end(1) < match.end():
            for inner in pattern.finditer(folded.text, match.end(1), match.end()):
                other = canonical[_match_key(inner)]
                if other is not None and other not in named:
                    named.append(other)
        yield *folded.original_span(*match.span()), named


def _match_key(match: re.Match[str]) -> str:
    return " ".join(match.group(1).split())


@dataclass(frozen=True)
class _Folded:
    """Folded, lower-cased text, with what is needed to map its positions back.

    ``changes`` lists each stretch whose length folding changed, as (folded start, folded
    end, original start, original end), in order; ``starts`` holds their folded starts for
    bisect. Between changes, positions correspond one to one.
    """

    text: str
    starts: list[int]
    changes: list[tuple[int, int, int, int]]

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """The span of the original text that folded to ``text[start:end]`` (not empty). A
        changed stretch cut by the span is taken whole."""
        return self._original_start(start), self._original_end(end - 1)

    def _original_start(self, index: int) -> int:
        k = bisect.bisect_right(self.starts, index) - 1
        if k < 0:
            return index
        _, folded_end, original_start, original_end = self.changes[k]
        if index < folded_end:
            return original_start
        return original_end + index - folded_end

    def _original_end(self, last: int) -> int:
        k = bisect.bisect_right(self.starts, last) - 1
        if k < 0:
            return last + 1
        _, folded_end, _, original_end = self.changes[k]
        if last < folded_end:
            return original_end
        return original_end + last + 1 - folded_end


def _fold(text: str) -> _Folded:
    """NFKC-like folding without combining marks, format characters and fillers, then
    lower case (see the module docstring)."""
    one_to_one, others = _folding_tables()
    # Most characters that fold become one other character (fullwidth letters and
    # punctuation): str.translate does those at C speed and keeps positions aligned. Only the
    # rest (invisible characters, marks, characters that spell several) are looked at here.
    translated = text.translate(one_to_one)
    parts: list[str] = []
    starts: list[int] = []
    changes: list[tuple[int, int, int, int]] = []
    copied = length = 0
    for run in others.finditer(text):
        start, end = run.span()
        if start and unicodedata.category(text[start]).startswith("M"):
            start -= 1  # a combining mark belongs to the character before it
        parts.append(translated[copied:start])
        length += start - copied
        copied = end
        for cluster_start, cluster in _clusters(text[start:end], start):
            folded = _fold_cluster(cluster)
            parts.append(folded)
            if len(folded) != len(cluster):
                starts.append(length)
                changes.append(
                    (length, length + len(folded), cluster_start, cluster_start + len(cluster))
                )
            length += len(folded)
    parts.append(translated[copied:])
    return _Folded(_lower("".join(parts)), starts, changes)


def _clusters(run: str, offset: int) -> Iterator[tuple[int, str]]:
    """(position, characters) of each character of ``run`` with the marks that follow it."""
    begin = 0
    for index in range(1, len(run)):
        if not unicodedata.category(run[index]).startswith("M"):
            yield offset + begin, run[begin:index]
            begin = index
    yield offset + begin, run[begin:]


def _fold_cluster(cluster: str) -> str:
    decomposed = unicodedata.normalize("NFKD", cluster)
    folded = unicodedata.normalize("NFC", "".join(c for c in decomposed if not _invisible(c)))
    if len(folded) > 1 and unicodedata.category(cluster[0]).startswith("S"):
        return cluster  # "™" is not the letters T and M: "ChatGPT™" names ChatGPT
    return folded


def _invisible(char: str) -> bool:
    return unicodedata.category(char) in ("Cf", "Mn", "Me") or char in _HANGUL_FILLERS


@functools.cache
def _folding_tables() -> tuple[str, re.Pattern[str]]:
    """A str.translate table for the Basic Multilingual Plane that folds each character
    that folds to one other character (a string: indexing it is faster than a dict's misses,
    and characters beyond it stay as they are), and a pattern for runs of the characters that
    folding may change otherwise: combining marks, format characters and fillers, characters
    that fold to several or none, and everything outside the BMP (little of it folds, and one
    range keeps the class a fast bitmap). Built once per process, in about 0.1 s."""
    one_to_one = [chr(code) for code in range(0x10000)]
    ranges: list[str] = []
    first = previous = -2
    for code in range(0x10000):
        char = chr(code)
        if unicodedata.category(char) == "Cs":
            continue
        if not (unicodedata.decomposition(char) or _invisible(char)):
            continue
        folded = _fold_cluster(char)
        if len(folded) == 1 and not unicodedata.category(char).startswith("M"):
            one_to_one[code] = folded
            continue
        if code != previous + 1:
            if first >= 0:
                ranges.append(_class_range(first, previous))
            first = code
        previous = code
    ranges += [_class_range(first, previous), _class_range(0x10000, 0x10FFFF)]
    return "".join(one_to_one), re.compile(f"[{''.join(ranges)}]+")


def _class_range(first: int, last: int) -> str:
    return f"\\U{first:08x}" if first == last else f"\\U{first:08x}-\\U{last:08x}"


def _lower(text: str) -> str:
    """``text.lower()``, keeping the length: the rare characters whose lower case is longer
    (such as "İ") stay as they are."""
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    return "".join(low if len(low := char.lower()) == 1 else char for char in text)


def _key(text: str) -> str:
    return " ".join(_fold(text).text.split())


def _normalise(terms: Iterable[str] | None) -> tuple[str, ...]:
    """Collapse whitespace, drop blanks (an empty term would match everywhere) and drop
    duplicates that fold to the same key, keeping the first spelling."""
    seen: dict[str, str] = {}
    for term in terms_from_settings() if terms is None else terms:
        cleaned = " ".join(term.split())
        if key := _key(cleaned):
            seen.setdefault(key, cleaned)
    return tuple(seen.values())


@functools.lru_cache(maxsize=32)
def _compile(terms: tuple[str, ...]) -> tuple[re.Pattern[str] | None, dict[str, str | None]]:
    """One pattern for the identifiers around all terms and for the everyday phrases that
    contain one of them. Group 1 is the term or phrase.

    Returns the pattern, which matches folded text, and a map from a folded term or phrase
    to the term it stands for (``None`` for an everyday phrase, matched only so that the term
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
    heads = "|".join(_term_pattern(key) for key in keys)
    names = [key for key in keys if re.fullmatch("[a-z]+", key)]
    joined = _alternatives((*VARIANT_WORDS, *HYPHENATED_VARIANT_WORDS, *names))
    spaced = _alternatives(VARIANT_WORDS)
    tail = (
        f"(?:{_ATTACHED})?"
        f"(?:{_JOINER}(?:{_VERSION}|(?:{joined})(?![a-z]))"
        f"|[ \\t]+(?:{_SPACED_VERSION}|(?:{spaced})(?![a-z\\d])))*"
    )
    return re.compile(f"({heads}){tail}"), canonical


def _alternatives(words: Iterable[str]) -> str:
    return "|".join(re.escape(word) for word in sorted(set(words), key=len, reverse=True))


def _term_pattern(key: str) -> str:
    """The pattern for one folded term. It starts with a literal character, which is what
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
