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
    terms_with_models,
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
    assert masked == f"{MARKER}是{MARKER}开发的，{MARKER}也是；{MARKER}很有名。"


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


# The evasion corpus: a name as someone might write it to slip past the term list, and the
# terms it names. Each is tried in an English and in a Chinese sentence.
EVASIONS: list[tuple[str, list[str]]] = [
    # Fullwidth and other compatibility forms (NFKC)
    ("ＥＲＮＩＥ", ["ERNIE"]),
    ("Ｑｗｅｎ", ["Qwen"]),
    ("ｄｅｅｐｓｅｅｋ", ["DeepSeek"]),
    ("ＧＰＴ－４ｏ", ["GPT"]),
    ("Ｑｗｅｎ２．５－７２Ｂ－Ｉｎｓｔｒｕｃｔ", ["Qwen"]),
    ("Ⓠⓦⓔⓝ", ["Qwen"]),
    ("𝐄𝐑𝐍𝐈𝐄", ["ERNIE"]),
    ("𝙶𝙿𝚃-𝟺", ["GPT"]),
    ("🄴🅁🄽🄸🄴", ["ERNIE"]),
    ("ᴱᴿᴺᴵᴱ", ["ERNIE"]),
    ("⽂⼼⼀⾔", ["文心一言"]),
    ("百\ufa01", ["百度"]),
    ("深度求\uf96a", ["深度求索"]),
    ("⾖包", ["豆包"]),
    ("豆\U0002f829", ["豆包"]),
    ("通义千问２．５", ["通义千问"]),
    # Invisible format characters inside a name
    ("ER\u200bNIE", ["ERNIE"]),
    ("E\u200bR\u200bN\u200bI\u200bE", ["ERNIE"]),
    ("Qw\u200cen", ["Qwen"]),
    ("Deep\u200dSeek", ["DeepSeek"]),
    ("Cl\u2060aude", ["Claude"]),
    ("G\ufeffPT-4", ["GPT"]),
    ("Gem\u00adini", ["Gemini"]),
    ("ER\u00adNIE-4.5", ["ERNIE"]),
    ("Qw\u180een", ["Qwen"]),
    ("Qw\U000e0041en", ["Qwen"]),
    ("Llama\u200b-3.1\u200b-8B", ["Llama"]),
    ("文\u200b心一言", ["文心一言"]),
    ("通\u2060义\u2060千\u2060问", ["通义千问"]),
    ("百\u00ad度", ["百度"]),
    ("深度\u200d求索", ["深度求索"]),
    ("阿里\ufeff云", ["阿里云"]),
    ("字节\u200c跳动", ["字节跳动"]),
    # Other invisible characters: Hangul filler, combining grapheme joiner, variation selector
    ("Qw\u3164en", ["Qwen"]),
    ("Gem\u034fini", ["Gemini"]),
    ("Cla\ufe0fude", ["Claude"]),
    # Combining marks
    ("E\u0301RNIE", ["ERNIE"]),
    ("Qwe\u0308n", ["Qwen"]),
    ("Qwén", ["Qwen"]),
    ("Q\u0336w\u0336e\u0336n\u0336", ["Qwen"]),
    ("Ｑ\u0301ｗｅｎ", ["Qwen"]),
    # Case
    ("qWeN", ["Qwen"]),
    ("cHaTgPt", ["ChatGPT"]),
    ("DEEPSEEK-R1", ["DeepSeek"]),
    # Unicode spaces and hyphens inside an identifier
    ("GPT\u20114", ["GPT"]),
    ("GPT\u20134", ["GPT"]),
    ("ERNIE\u00a04.5", ["ERNIE"]),
    ("ERNIE\u30004.5", ["ERNIE"]),
    ("Claude\u00a03.5\u00a0Sonnet", ["Claude"]),
    ("ＥＲ\u200bＮＩＥ－４．５－２１Ｂ", ["ERNIE"]),
]

# Whole identifiers: a term with its version, size and variant parts.
IDENTIFIERS: list[tuple[str, list[str]]] = [
    ("ERNIE-4.5-21B-A3B-Paddle", ["ERNIE"]),
    ("ERNIE-4.5-21B-A3B", ["ERNIE"]),
    ("ERNIE 4.5", ["ERNIE"]),
    ("ERNIE-4.5-Turbo", ["ERNIE"]),
    ("ERNIE Bot", ["ERNIE"]),
    ("ERNIE-X1-Turbo-32K", ["ERNIE"]),
    ("Qwen2.5-VL-32B", ["Qwen"]),
    ("Qwen2.5-VL-32B-Instruct", ["Qwen"]),
    ("Qwen3-235B-A22B-Thinking-2507", ["Qwen"]),
    ("Qwen-Max", ["Qwen"]),
    ("qwen2.5:32b", ["Qwen"]),
    ("QwQ-32B-Preview", ["QwQ"]),
    ("DeepSeek-R1-Distill-Qwen-32B", ["DeepSeek", "Qwen"]),
    ("DeepSeek-V3", ["DeepSeek"]),
    ("DeepSeek R1", ["DeepSeek"]),
    ("deepseek-chat", ["DeepSeek"]),
    ("deepseek_r1", ["DeepSeek"]),
    ("GPT-4o-mini", ["GPT"]),
    ("GPT-4o mini", ["GPT"]),
    ("gpt-3.5-turbo-instruct", ["GPT"]),
    ("GPT-4-0613", ["GPT"]),
    ("GPT-4 Turbo", ["GPT"]),
    ("GPT4o", ["GPT"]),
    ("Llama-3.1-8B", ["Llama"]),
    ("Llama-3.1-8B-Instruct", ["Llama"]),
    ("Llama 3.1 8B", ["Llama"]),
    ("llama3:latest", ["Llama"]),
    ("Claude 3.5 Sonnet", ["Claude"]),
    ("claude-3-opus", ["Claude"]),
    ("Gemini 1.5 Pro", ["Gemini"]),
    ("gemini-2.0-flash", ["Gemini"]),
    ("gemma-2-9b-it", ["Gemma"]),
    ("Mistral-7B-Instruct-v0.2", ["Mistral"]),
    ("Mixtral-8x7B-Instruct-v0.1", ["Mixtral"]),
    ("GLM-4.5-Air", ["GLM-4"]),
    ("通义千问2.5-72B", ["通义千问"]),
    ("文心一言4.0", ["文心一言"]),
    ("通义千问3", ["通义千问"]),
]

CORPUS = [*EVASIONS, *IDENTIFIERS]


@pytest.mark.parametrize(("written", "terms"), CORPUS, ids=[w for w, _ in CORPUS])
def test_a_name_however_written_is_masked_whole_in_an_english_sentence(
    written: str, terms: list[str]
) -> None:
    text = f"Hello! I am {written}, happy to help."
    assert find_leaks(text) == terms
    assert mask_leaks(text) == (f"Hello! I am {MARKER}, happy to help.", 1)


@pytest.mark.parametrize(("written", "terms"), CORPUS, ids=[w for w, _ in CORPUS])
def test_a_name_however_written_is_masked_whole_in_a_chinese_sentence(
    written: str, terms: list[str]
) -> None:
    text = f"你好！我是{written}，很高兴为你解答。"
    assert find_leaks(text) == terms
    assert mask_leaks(text) == (f"你好！我是{MARKER}，很高兴为你解答。", 1)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("ERNIE is a model", f"{MARKER} is a model"),
        ("我是Qwen模型", f"我是{MARKER}模型"),
        ("我是ERNIE 4.5模型", f"我是{MARKER}模型"),
        ("GPT-4 and me", f"{MARKER} and me"),
        ("Qwen-based models", f"{MARKER}-based models"),
        ("GPT-4-class models", f"{MARKER}-class models"),
        ("Llama 3.1 is fast", f"{MARKER} is fast"),
        ("I asked GPT-4. It answered.", f"I asked {MARKER}. It answered."),
        ("Ask Qwen next time", f"Ask {MARKER} next time"),
        ("GPT: hello", f"{MARKER}: hello"),
        ("Qwen 2024. Later", f"{MARKER} 2024. Later"),
        ("Qwen 2024年发布", f"{MARKER} 2024年发布"),
        ("腾讯2023年财报", f"{MARKER}2023年财报"),
        ("百度3月发布了文心一言4.0。", f"{MARKER}3月发布了{MARKER}。"),
        ("ChatGPT™ is a trademark", f"{MARKER}™ is a trademark"),
        ("https://api.openai.com/v1", f"https://api.{MARKER}.com/v1"),
    ],
)
def test_an_identifier_ends_where_ordinary_words_begin(text: str, masked: str) -> None:
    assert mask_leaks(text) == (masked, masked.count(MARKER))


@pytest.mark.parametrize(
    "text",
    [
        "GPTQ-free quantisation",
        "ＧＰＴＱ-free quantisation",
        "GPT\u200bQ-free quantisation",
        "Bernie Sanders",
        "Ｂｅｒｎｉｅ Sanders",
        "Ber\u200bnie Sanders",
        "Claudette Colvin",
        "Claude\u200btte Colvin",
        "client = OpenAIClient()",
        "client = Ｏｐｅｎ\u200bＡＩＣｌｉｅｎｔ()",
        "Ancient Ｅｇｙｐｔ",
        "他读《文心雕龙》",
        "他读《文\u200b心雕龙》",
        "他读《⽂⼼雕龙》",
        "这件事一言难尽",
        "这件事一\u200b言难尽",
        "the minimax algorithm",
        "GLM-45 is not a model name",
        "™ and ㎏ and ½",
    ],
)
def test_folding_does_not_make_names_of_other_words(text: str) -> None:
    assert find_leaks(text) == []
    assert mask_leaks(text) == (text, 0)


def test_the_marker_does_not_reveal_the_length_of_the_name() -> None:
    short, _ = mask_leaks("I am GPT.")
    long, _ = mask_leaks("I am DeepSeek-R1-Distill-Qwen-32B.")
    hidden, _ = mask_leaks("I am E\u200bR\u200bN\u200bI\u200bE.")
    assert short == long == hidden == f"I am {MARKER}."


def test_text_around_a_mask_is_shown_as_written() -> None:
    text = "Ｈｅｌｌｏ！\u200b我是ＥＲ\u200bＮＩＥ－４．５，ｎｉｃｅ。Cafe\u0301 ﬁne ™ 〜 ①"
    expected = f"Ｈｅｌｌｏ！\u200b我是{MARKER}，ｎｉｃｅ。Cafe\u0301 ﬁne ™ 〜 ①"
    assert mask_leaks(text) == (expected, 1)
    # Invisible characters just outside a name stay outside the mask.
    assert mask_leaks("\u200bQwen\u200b is") == (f"\u200b{MARKER}\u200b is", 1)
    assert mask_leaks("e\u0301 Qwe\u0301n e\u0301") == (f"e\u0301 {MARKER} e\u0301", 1)


def test_terms_from_settings_are_folded_too(settings: Settings) -> None:
    settings.IDENTITY_LEAK_TERMS = ["Ａｃｍｅ", "ACME", "Ac\u200bme-7B"]
    assert find_leaks("acme-13b and ACME-7B") == ["Ａｃｍｅ", "Ac\u200bme-7B"]
    assert mask_leaks("acme-13b and ACME-7B") == (f"{MARKER} and {MARKER}", 2)


# Evasions this module does not catch (see the module docstring). Strict: if one starts to be
# caught, the test says so and the docstring should drop it.
@pytest.mark.xfail(strict=True, reason="known miss, listed in inference/leaks.py")
@pytest.mark.parametrize(
    "written",
    [
        "\u0415RNIE",  # Cyrillic Е
        "ᴇʀɴɪᴇ",  # small capitals
        "E R N I E",
        "E.R.N.I.E",
        "Qw\u2800en",  # Braille blank
        "通義千問",  # traditional characters
        "Meta-Llama-3-8B",  # a vendor prefix that is not a term
    ],
)
def test_known_misses_are_not_caught_yet(written: str) -> None:
    assert mask_leaks(f"I am {written}.") == (f"I am {MARKER}.", 1)


def test_a_200_kb_answer_with_evasions_is_masked() -> None:
    paragraph = (
        "Step 1: compare ＥＲＮＩＥ－４．５ with Qw\u200ben2.5-VL-32B-Instruct and 文\u200b心一言. "
        "第二步：这件事一言难尽，但 Claude 3.5 Sonnet 和 GPT-4o-mini 都答对了。Cafe\u0301 ok.\n"
    )
    repeats = 200_000 // len(paragraph) + 1
    text = paragraph * repeats
    assert len(text.encode()) > 200_000
    masked, count = mask_leaks(text)
    assert count == 5 * repeats
    assert (
        masked
        == (
            f"Step 1: compare {MARKER} with {MARKER} and {MARKER}. "
            f"第二步：这件事一言难尽，但 {MARKER} 和 {MARKER} 都答对了。Cafe\u0301 ok.\n"
        )
        * repeats
    )
    assert find_leaks(text) == ["ERNIE", "Qwen", "文心一言", "Claude", "GPT"]


def test_a_studys_own_models_add_their_family_names_to_the_terms() -> None:
    terms = terms_with_models(
        [
            ("Acme 7B", "acme/Acme-7B-Chat"),
            ("ERNIE", "baidu/ERNIE-4.5-0.3B-Paddle"),
            ("x", "yi-34b"),
        ]
    )

    assert "Acme" in terms
    assert [t for t in terms if t.casefold() == "ernie"] == ["ERNIE"]  # already a term: once
    assert not {"x", "yi", "yi-34b"} & {t.casefold() for t in terms}  # too short to be safe
    assert find_leaks("I am Acme-7B-Chat, happy to help.", terms) == ["Acme"]
    assert mask_leaks("I am Acme-7B-Chat.", terms)[0] == "I am [■■■]."
    assert find_leaks("I am Acme-7B-Chat, happy to help.") == []  # the configured terms alone
