"""Identity-leak detection and masking for blinding (DESIGN §6)."""

from __future__ import annotations

import time

import pytest
from django.core.exceptions import ImproperlyConfigured
from pytest_django import Settings

from inference.leaks import (
    DEFAULT_TERMS,
    EVERYDAY_PHRASES,
    find_leaks,
    mask_leaks,
    terms_from_settings,
)

MARKER = "[■■■]"


@pytest.fixture(autouse=True)
def _default_terms(settings: Settings) -> None:
    """Every test starts from the built-in list, whatever the deployment configures."""
    del settings.IDENTITY_LEAK_TERMS


@pytest.mark.parametrize("term", DEFAULT_TERMS)
def test_each_default_term_is_found_in_an_english_sentence(term: str) -> None:
    text = f"Hello! As {term}, I am happy to help with your question."
    assert find_leaks(text) == [term]
    assert mask_leaks(text) == (f"Hello! As {MARKER}, I am happy to help with your question.", 1)


@pytest.mark.parametrize("term", DEFAULT_TERMS)
def test_each_default_term_is_found_in_a_chinese_sentence(term: str) -> None:
    text = f"你好！我是{term}，很高兴为你解答这个问题。"
    assert find_leaks(text) == [term]
    assert mask_leaks(text) == (f"你好！我是{MARKER}，很高兴为你解答这个问题。", 1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I am CHATGPT.", ["ChatGPT"]),
        ("built on chatgpt", ["ChatGPT"]),
        ("deepSEEK-R1 answered", ["DeepSeek"]),
        ("QWEN and qwen and Qwen", ["Qwen"]),
        ("served by VLLM", ["vLLM"]),
        ("ernie bot", ["ERNIE"]),
    ],
)
def test_matching_ignores_case_and_reports_the_listed_spelling(
    text: str, expected: list[str]
) -> None:
    assert find_leaks(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Qwen2.5-72B-Instruct", ["Qwen"]),
        ("GPT4 and gpt-4o", ["GPT"]),
        ("Llama3-8B", ["Llama"]),
        ("model=deepseek_r1", ["DeepSeek"]),
        ("我是Qwen模型", ["Qwen"]),
        ("(Claude)", ["Claude"]),
        ("ERNIE-4.5-Turbo", ["ERNIE"]),
        ("https://api.openai.com/v1", ["OpenAI"]),
        ("run it with llama.cpp", ["llama.cpp"]),
        ("GLM-4.5 is out", ["GLM-4"]),
    ],
)
def test_latin_terms_match_next_to_digits_punctuation_and_cjk(
    text: str, expected: list[str]
) -> None:
    assert find_leaks(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "GPTQ-free quantisation is fine",
        "Ancient Egypt had pyramids.",
        "I googled it.",
        "Bernie Sanders gave a speech.",
        "Claudette Colvin refused to give up her seat.",
        "client = OpenAIClient()",
        "a generalised linear model (GLM) with a log link",
        "the minimax algorithm",
        "GLM-45 is not a model name",
    ],
)
def test_latin_terms_do_not_match_inside_other_words(text: str) -> None:
    assert find_leaks(text) == []
    assert mask_leaks(text) == (text, 0)


def test_spaces_inside_a_term_match_any_whitespace() -> None:
    assert find_leaks("Built by Meta\n   AI in 2024") == ["Meta AI"]
    assert mask_leaks("Meta\tAI") == (MARKER, 1)


def test_longest_overlapping_term_wins_and_is_masked_once() -> None:
    assert find_leaks("我是通义千问") == ["通义千问"]
    assert mask_leaks("我是通义千问") == (f"我是{MARKER}", 1)
    assert mask_leaks("文心一言和阿里巴巴的阿里云") == (f"{MARKER}和{MARKER}的{MARKER}", 3)
    assert find_leaks("ChatGPT") == ["ChatGPT"]


def test_shorter_terms_still_match_on_their_own() -> None:
    assert find_leaks("通义实验室和千问团队") == ["通义", "千问"]
    assert mask_leaks("通义实验室和千问团队") == (f"{MARKER}实验室和{MARKER}团队", 2)


def test_everyday_chinese_phrases_are_not_leaks() -> None:
    text = "这件事一言难尽。我们一言为定，他一言不发地读《文心雕龙》，后来去了阿里山。"
    assert find_leaks(text) == []
    assert mask_leaks(text) == (text, 0)
    assert find_leaks("一言难尽，不过文心一言答对了") == ["文心一言"]
    assert set(EVERYDAY_PHRASES).isdisjoint(DEFAULT_TERMS)


def test_terms_are_reported_once_in_order_of_first_appearance() -> None:
    text = "Qwen says hi. OpenAI's GPT disagrees. qwen again, and 百度 too. GPT!"
    assert find_leaks(text) == ["Qwen", "OpenAI", "GPT", "百度"]


def test_mask_counts_every_occurrence() -> None:
    text = "ChatGPT是OpenAI开发的，GPT-4o也是；ChatGPT很有名。"
    masked, count = mask_leaks(text)
    assert count == 4
    assert masked == f"{MARKER}是{MARKER}开发的，{MARKER}-4o也是；{MARKER}很有名。"


def test_mask_uses_the_given_marker() -> None:
    assert mask_leaks("I am Claude.", marker="<model>") == ("I am <model>.", 1)


def test_mask_keeps_text_aligned_around_characters_whose_lower_case_is_longer() -> None:
    # "İ".lower() is two characters; positions must still line up with the original.
    assert mask_leaks("İstanbul İİ GPT İ") == (f"İstanbul İİ {MARKER} İ", 1)


def test_custom_terms_come_from_settings_at_call_time(settings: Settings) -> None:
    settings.IDENTITY_LEAK_TERMS = ["Acme-7B", "阿克米"]
    assert terms_from_settings() == ["Acme-7B", "阿克米"]
    text = "I am Acme-7B (阿克米), not GPT."
    assert find_leaks(text) == ["Acme-7B", "阿克米"]
    assert mask_leaks(text) == (f"I am {MARKER} ({MARKER}), not GPT.", 2)


def test_explicit_terms_override_settings(settings: Settings) -> None:
    settings.IDENTITY_LEAK_TERMS = ["Acme"]
    assert find_leaks("Acme and Gemini", terms=["gemini"]) == ["gemini"]


def test_default_terms_apply_when_settings_do_not_set_any() -> None:
    assert terms_from_settings() == DEFAULT_TERMS


def test_a_setting_that_is_not_a_list_of_strings_is_refused(settings: Settings) -> None:
    settings.IDENTITY_LEAK_TERMS = "GPT"
    with pytest.raises(ImproperlyConfigured):
        find_leaks("GPT")


def test_blank_terms_match_nothing() -> None:
    assert find_leaks("anything at all", terms=["", "   "]) == []
    assert mask_leaks("anything at all", terms=[""]) == ("anything at all", 0)


def test_empty_text_has_no_leaks() -> None:
    assert find_leaks("") == []
    assert mask_leaks("") == ("", 0)


def test_a_one_megabyte_text_is_scanned() -> None:
    filler = "The quick brown fox jumps over the lazy dog. 今天天气很好，我们去公园散步吧。"
    text = filler * (1_000_000 // len(filler) + 1) + " I am Qwen."
    assert len(text) > 1_000_000
    started = time.perf_counter()
    masked, count = mask_leaks(text)
    elapsed = time.perf_counter() - started
    assert count == 1, f"took {elapsed:.3f}s"
    assert find_leaks(text) == ["Qwen"]
    assert masked.endswith(f" I am {MARKER}.")
