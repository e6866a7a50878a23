"""Rendering hostile model output: raw HTML is text, links are tamed, images are not loaded."""

from __future__ import annotations

import time
from html.parser import HTMLParser

import pytest
from django.utils.safestring import SafeString

from grading import markdown
from grading.markdown import (
    ALLOWED_TAGS,
    MAX_HIGHLIGHT_CHARS,
    pygments_css,
    render_markdown,
    render_plain,
)

SAFE_SCHEMES = ("http://", "https://", "mailto:")
WRAPPERS = {"div"}  # our own containers, added around the sanitised HTML


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {name: value or "" for name, value in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> _Elements:
    parser = _Elements()
    parser.feed(html)
    parser.close()
    return parser


def visible_text(html: str) -> str:
    """What a reader sees: the text with entities decoded, tags gone and the ends trimmed."""
    return "".join(parse(html).text).strip()


def assert_safe(html: str) -> list[tuple[str, dict[str, str]]]:
    """Structural checks that hold for every rendering, whatever the input."""
    assert isinstance(html, SafeString)
    elements = parse(html).elements
    for tag, attrs in elements:
        assert tag in ALLOWED_TAGS | WRAPPERS, tag
        for name in attrs:
            assert not name.startswith("on"), (tag, name)
            assert name not in {"style", "src", "srcdoc", "formaction", "id"}, (tag, name)
        if tag == "a":
            assert attrs["rel"] == "noopener noreferrer nofollow"
            assert attrs["target"] == "_blank"
            assert "href" not in attrs or attrs["href"].startswith(SAFE_SCHEMES), attrs
    return elements


def links(html: str) -> list[dict[str, str]]:
    return [attrs for tag, attrs in assert_safe(html) if tag == "a"]


def test_script_tag_is_shown_as_text_not_run() -> None:
    html = render_markdown("Before <script>alert(1)</script> after")
    assert_safe(html)
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert visible_text(html) == "Before <script>alert(1)</script> after"


def test_script_block_is_shown_as_text_not_run() -> None:
    html = render_markdown("<script>\nfetch('/steal?c=' + document.cookie)\n</script>")
    assert_safe(html)
    assert "<script" not in html
    assert "fetch('/steal?c=' + document.cookie)" in visible_text(html)


def test_img_with_onerror_is_shown_as_text() -> None:
    html = render_markdown("<img src=x onerror=alert(1)>")
    elements = assert_safe(html)
    assert "<img" not in html
    assert all("onerror" not in attrs for _, attrs in elements)
    assert visible_text(html) == "<img src=x onerror=alert(1)>"


@pytest.mark.parametrize(
    "source",
    [
        "[x](javascript:alert(1))",
        "[x](JaVaScRiPt:alert(1))",
        "[x](javascript&colon;alert(1))",
        "[x](&#106;avascript:alert(1))",
        "[x](java\tscript:alert(1))",
        "[x](%6Aavascript:alert(1))",
        "[x](vbscript:msgbox(1))",
        "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
        "[x](data:image/png;base64,iVBORw0KGgo=)",
        "<javascript:alert(1)>",
        "[x]\n\n[x]: javascript:alert(1)",
    ],
)
def test_script_and_data_links_lose_their_target(source: str) -> None:
    html = render_markdown(source)
    assert all("href" not in attrs for attrs in links(html))
    lowered = html.lower()
    assert 'href="javascript' not in lowered
    assert 'href="data' not in lowered
    assert 'href="vbscript' not in lowered
    text = visible_text(html)  # the link text, or the whole source shown as text
    assert text == "x" or text.replace("\n\n", "\n").startswith(("[x]", "<javascript:"))


def test_iframe_is_shown_as_text() -> None:
    html = render_markdown('<iframe src="https://evil.example/"></iframe>')
    assert_safe(html)
    assert "<iframe" not in html
    assert visible_text(html) == '<iframe src="https://evil.example/"></iframe>'


def test_style_tag_cannot_restyle_the_page() -> None:
    html = render_markdown("<style>body{display:none}</style>\n\nStill here.")
    assert_safe(html)
    assert "<style" not in html
    assert "<style>body{display:none}</style>" in visible_text(html)
    assert "Still here." in visible_text(html)


@pytest.mark.parametrize(
    "source",
    [
        "<object data=evil.swf></object>",
        "<embed src=evil.swf>",
        '<form action="https://evil.example"><input name=password></form>',
        '<svg onload="alert(1)"></svg>',
        '<math><mtext><table><mglyph><style><img src=x onerror="alert(1)">',
        '<div style="position:fixed;inset:0">cover</div>',
        "<!-- a comment --><base href='https://evil.example/'>",
        '<meta http-equiv="refresh" content="0;url=https://evil.example/">',
    ],
)
def test_other_raw_html_is_shown_as_text(source: str) -> None:
    html = render_markdown(source)
    elements = assert_safe(html)
    assert [tag for tag, _ in elements] == ["div", "p"]
    assert visible_text(html).strip() == source


def test_raw_link_with_onclick_is_text_and_markdown_links_are_tamed() -> None:
    html = render_markdown(
        '<a href="https://x.example" onclick="alert(1)">raw</a> [ok](https://x.example/?q=1)'
    )
    found = links(html)
    assert found == [
        {
            "href": "https://x.example/?q=1",
            "target": "_blank",
            "rel": "noopener noreferrer nofollow",
        }
    ]
    assert '<a href="https://x.example" onclick' not in html
    assert '<a href="https://x.example" onclick="alert(1)">raw</a>' in visible_text(html)


def test_quote_in_link_destination_cannot_break_out_of_the_attribute() -> None:
    html = render_markdown('[x](https://x.example/"onmouseover="alert(1))')
    (attrs,) = links(html)
    assert attrs["href"].startswith("https://x.example/")
    assert set(attrs) == {"href", "target", "rel"}


def test_relative_and_protocol_relative_links_are_dropped() -> None:
    html = render_markdown("[logout](/accounts/logout/) [far](//evil.example/x) [frag](#top)")
    assert all("href" not in attrs for attrs in links(html))
    assert visible_text(html) == "logout far frag"


@pytest.mark.parametrize(
    "source",
    [
        "&lt;script&gt;alert(1)&lt;/script&gt;",
        "&#60;script&#62;alert(1)&#60;/script&#62;",
        "&#x3C;script&#x3E;alert(1)&#x3C;/script&#x3E;",
        "&#X3c;script&#X3e;alert(1)&#X3c;/script&#X3e;",
    ],
)
def test_entity_encoded_tags_stay_text(source: str) -> None:
    html = render_markdown(source)
    assert_safe(html)
    assert "<script" not in html
    assert visible_text(html) == "<script>alert(1)</script>"


def test_double_encoded_entities_are_shown_literally() -> None:
    html = render_markdown("&amp;lt;b&amp;gt; and &NotAnEntity; and &#0;")
    assert_safe(html)
    assert "<b>" not in html
    assert visible_text(html) == "&lt;b&gt; and &NotAnEntity; and \ufffd"


def test_autolinks_become_safe_links() -> None:
    html = render_markdown("See <https://example.org/a?b=1&c=2> or write to <someone@example.org>.")
    found = links(html)
    assert [attrs["href"] for attrs in found] == [
        "https://example.org/a?b=1&c=2",
        "mailto:someone@example.org",
    ]
    expected = "See https://example.org/a?b=1&c=2 or write to someone@example.org."
    assert visible_text(html) == expected


def test_images_are_links_and_never_loaded() -> None:
    html = render_markdown("![a tracking pixel](https://tracker.example/p.png?reviewer=1)")
    assert "<img" not in html
    (attrs,) = links(html)
    assert attrs["href"] == "https://tracker.example/p.png?reviewer=1"
    assert attrs["class"] == "md-image"
    assert visible_text(html) == "[image: a tracking pixel]"


def test_data_and_script_images_show_only_their_alt_text() -> None:
    html = render_markdown(
        "![inline](data:image/png;base64,iVBORw0KGgo=) ![js](javascript:alert(1))"
    )
    assert "<img" not in html
    assert all("href" not in attrs for attrs in links(html))
    assert "[image: inline]" in visible_text(html)
    assert "js" in visible_text(html)


def test_image_inside_a_link_is_text_inside_that_link() -> None:
    html = render_markdown("[![logo](https://cdn.example/logo.png)](https://example.org)")
    assert "<img" not in html
    assert [attrs["href"] for attrs in links(html)] == ["https://example.org"]
    assert visible_text(html) == "[image: logo]"


def test_table_renders_with_alignment_classes_not_styles() -> None:
    html = render_markdown(
        "| Model | Score |\n|:------|------:|\n| A | **9** |\n| B <script>x</script> | 7 |"
    )
    elements = assert_safe(html)
    tags = [tag for tag, _ in elements]
    assert tags.count("table") == 1 and tags.count("th") == 2 and tags.count("td") == 4
    cells = [attrs.get("class") for tag, attrs in elements if tag in {"th", "td"}]
    assert cells == ["md-align-left", "md-align-right"] * 3
    assert "style=" not in html
    assert "<script" not in html
    assert "B <script>x</script>" in visible_text(html)


def test_fenced_python_is_highlighted_with_classes() -> None:
    html = render_markdown('```python\ndef f(x):\n    return "<b>"  # done\n```')
    elements = assert_safe(html)
    assert ("pre", {"class": "highlight"}) in elements
    assert '<span class="k">def</span>' in html
    assert '<span class="nf">f</span>' in html
    assert "&lt;b&gt;" in html
    assert "style=" not in html
    assert visible_text(html) == 'def f(x):\n    return "<b>"  # done'


@pytest.mark.parametrize("info", ["nosuchlanguage", "", "python onclick=alert(1)x", "<script>"])
def test_unknown_or_missing_language_is_plain_escaped_code(info: str) -> None:
    html = render_markdown(f"```{info}\n<b>bold?</b>\n```")
    elements = assert_safe(html)
    if info.startswith("python"):
        assert ("pre", {"class": "highlight"}) in elements
    else:
        assert elements[1:] == [("pre", {}), ("code", {})]
        assert "<pre><code>&lt;b&gt;bold?&lt;/b&gt;\n</code></pre>" in html
    assert "<b>" not in html
    assert "<script" not in html
    assert "onclick" not in html
    assert "<b>bold?</b>" in visible_text(html)


def test_code_beyond_the_highlight_budget_is_plain() -> None:
    big = "x = 1\n" * (MAX_HIGHLIGHT_CHARS // 6 + 1)
    html = render_markdown(f"```python\ny = 2\n```\n\n```python\n{big}```")
    assert html.count('<pre class="highlight">') == 1
    assert html.count("<pre><code>") == 1
    assert_safe(html)


def test_inline_code_shows_tags_as_text() -> None:
    html = render_markdown("Use `<b>` for bold, not `<script>`.")
    assert_safe(html)
    assert "<code>&lt;b&gt;</code>" in html
    assert "<code>&lt;script&gt;</code>" in html
    assert visible_text(html) == "Use <b> for bold, not <script>."


def test_two_megabyte_single_line_answer_is_truncated_with_a_note() -> None:
    answer = ("lorem ipsum dolor sit amet " * 80_000)[:2_000_000]
    started = time.perf_counter()
    html = render_markdown(answer)
    elapsed = time.perf_counter() - started
    assert_safe(html)
    text = visible_text(html)
    assert text.startswith("lorem ipsum dolor sit amet"), f"took {elapsed:.3f}s"
    assert "Truncated: showing the first 400,000 of 2,000,000 characters." in text
    assert len(html) < 500_000


def test_two_megabyte_line_without_spaces_is_wrapped_by_the_stylesheet() -> None:
    html = render_markdown("x" * 2_000_000)
    assert html.startswith('<div class="md">')
    assert ".md { overflow-wrap: anywhere; }" in pygments_css()
    assert "Truncated" in visible_text(html)


@pytest.mark.parametrize("unit", ["[", "*a", "![a", "- - - a\n", "|x|y|\n", "<"])
def test_pathological_markup_is_shown_as_plain_text(unit: str) -> None:
    answer = unit * (2_000_000 // len(unit))
    html = render_markdown(answer)
    elements = assert_safe(html)
    assert ("div", {"class": "md-plain"}) in elements
    text = visible_text(html)
    assert "Shown as plain text" in text
    assert text.startswith(unit.strip()[:2])


def test_markdown_is_formatted_under_the_markup_budget() -> None:
    assert "md-plain" not in render_markdown("**a** " * 100)
    assert "md-plain" in render_markdown("**a** " * 100, max_markup=399)


def test_nested_lists_keep_their_structure() -> None:
    source = "1. one\n   - a\n     - deep\n   - b\n2. two\n\n3) three"
    elements = assert_safe(render_markdown(source))
    assert [tag for tag, _ in elements if tag in {"ol", "ul", "li"}] == [
        "ol", "li", "ul", "li", "ul", "li", "li", "li", "ol", "li",
    ]  # fmt: skip
    assert ("ol", {"start": "3"}) in elements


def test_nesting_within_the_limit_is_formatted() -> None:
    html = render_markdown("> " * 19 + "nineteen")
    elements = assert_safe(html)
    assert [tag for tag, _ in elements].count("blockquote") == 19
    assert visible_text(html) == "nineteen"


@pytest.mark.parametrize(
    "source",
    [
        "> " * 25 + "deep",
        "".join("  " * i + "- level\n" for i in range(30)) + "  " * 30 + "- deep",
        ">" * 10_000 + " deep",
    ],
)
def test_nesting_beyond_the_limit_is_plain_text_so_nothing_is_hidden(source: str) -> None:
    html = render_markdown(source)
    elements = assert_safe(html)
    assert ("div", {"class": "md-plain"}) in elements
    assert "deep" in visible_text(html)
    assert "Shown as plain text" in visible_text(html)


def test_chinese_text_renders_unchanged() -> None:
    source = (
        "## 结论\n\n**通过**：答案正确，*推理*清楚。表格如下：\n\n"
        "| 项目 | 分数 |\n|---|---|\n| 准确性 | 9 |"
    )
    html = render_markdown(source)
    assert_safe(html)
    assert "<h2>结论</h2>" in html
    assert "<strong>通过</strong>：答案正确，<em>推理</em>清楚。" in html
    assert "准确性" in visible_text(html)


def test_strikethrough_is_kept() -> None:
    html = render_markdown("~~wrong~~ right")
    assert "<s>wrong</s> right" in html


def test_plain_text_is_escaped_and_keeps_line_breaks() -> None:
    html = render_plain("Let me think.\r\n<script>alert(1)</script>\n\n  indented & done\x00")
    assert isinstance(html, SafeString)
    assert "<script" not in html
    assert html == (
        '<div class="md-plain">Let me think.<br>&lt;script&gt;alert(1)&lt;/script&gt;'
        "<br><br>  indented &amp; done\ufffd</div>"
    )


def test_plain_text_is_truncated_with_a_note() -> None:
    html = render_plain("a" * 20, max_chars=5)
    assert html.startswith('<div class="md-plain">aaaaa<p class="md-note">')
    assert "Truncated: showing the first 5 of 20 characters." in html


def test_stylesheet_has_scoped_light_and_dark_token_colours() -> None:
    css = pygments_css()
    assert "@media not all and (prefers-color-scheme: dark) {" in css
    assert "@media (prefers-color-scheme: dark) {" in css
    assert css.count(".md .highlight .k {") == 2
    assert "\npre {" not in css and "td.linenos" not in css


def test_every_class_pygments_can_emit_is_allowed() -> None:
    html = render_markdown("```python\n@decorator\nclass A(B): '''doc'''; x = 0x1F + 2j  # c\n```")
    spans = [attrs.get("class") for tag, attrs in assert_safe(html) if tag == "span"]
    assert spans and all(spans), spans
    assert set(spans) <= markdown.ALLOWED_CLASSES["span"]


def test_the_shipped_code_stylesheet_matches_pygments_css() -> None:
    from pathlib import Path

    from grading.markdown import pygments_css

    shipped = Path(__file__).resolve().parents[2] / "static" / "css" / "pygments.css"
    assert shipped.read_text() == pygments_css(), "regenerate static/css/pygments.css"
