"""Rendering model output, which is hostile input, as safe HTML for reviewers.

Three layers, each of which would be enough on its own against script injection:

1. markdown-it-py with the ``html`` option off, so raw HTML in an answer (``<script>``,
   ``<img onerror=…>``, ``<iframe>``) is shown as text, never interpreted. Its link validator
   already refuses ``javascript:``, ``vbscript:`` and ``file:`` destinations.
2. Our own render rules: fenced code is highlighted by Pygments with CSS classes (never inline
   styles), table alignment becomes a class instead of a ``style`` attribute, and images are
   rendered as links (see below).
3. nh3 (ammonia) as the final sanitiser, with the explicit allow-list below: only the tags
   Markdown produces, no ``style`` or event-handler attributes, class names restricted to the
   ones we emit, links restricted to http, https and mailto (relative URLs are dropped too, so
   an answer cannot link into this site) and every link given
   ``rel="noopener noreferrer nofollow"`` and ``target="_blank"``.

Images in model output are never loaded. A remote image would be fetched by the reviewer's
browser as soon as the page opens: that leaks the reviewer's IP address and lets whoever
controls the URL fingerprint and track reviewers (and, through timing, learn who graded what).
An image is rendered as a link reading ``[image: alt text]``, which a reviewer may follow on
purpose, like any other link.

Size guards keep one enormous or pathological answer from hanging a page: text beyond
``max_chars`` is cut with a visible note; an answer with more Markdown markup characters than
``max_markup`` is shown as plain text with a note (markdown-it-py is pure Python and some inputs,
such as tens of thousands of unclosed ``[``, cost tens of microseconds per character); so is an
answer nested deeper than markdown-it's limit, which would otherwise drop the deepest content
without a word; and only the first ``MAX_HIGHLIGHT_CHARS`` of code per answer are highlighted.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

import nh3
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext
from markdown_it import MarkdownIt
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import get_lexer_by_name
from pygments.token import STANDARD_TYPES
from pygments.util import ClassNotFound

MAX_CHARS = 400_000
# Characters that can open or close a Markdown construct, line breaks included (block parsing
# costs per line). Real answers carry about 50-110 of them per KB, so 400 KB of ordinary Markdown
# or code stays under the budget; the worst pathological input at the budget renders in about a
# second on a laptop, against tens of seconds at 400 KB.
MAX_MARKUP = 50_000
MAX_HIGHLIGHT_CHARS = 100_000
_MARKUP_CHARS = re.compile(r"[\n*_\[\]!~`<>&|\\#+\-.)(:]")

LIGHT_STYLE = "default"
DARK_STYLE = "github-dark"
_ALIGN_CLASSES = {f"md-align-{side}" for side in ("left", "center", "right")}
_CONTAINERS = {"blockquote_open", "bullet_list_open", "ordered_list_open", "list_item_open"}
_TOKEN_CLASSES = {name for name in STANDARD_TYPES.values() if name}

ALLOWED_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6",
    "strong", "em", "s", "code", "pre", "span", "blockquote",
    "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}}
ALLOWED_CLASSES = {
    "a": {"md-image"},
    "pre": {"highlight"},
    "span": _TOKEN_CLASSES,
    "th": _ALIGN_CLASSES,
    "td": _ALIGN_CLASSES,
}
ALLOWED_URL_SCHEMES = {"http", "https", "mailto"}
LINK_REL = "noopener noreferrer nofollow"

# The layout rules rendered Markdown needs whatever the page around it: a single 2 MB "word"
# must wrap instead of widening the page, and wide code or tables scroll inside their box.
_LAYOUT_CSS = """\
.md { overflow-wrap: anywhere; }
.md pre { overflow-x: auto; white-space: pre-wrap; overflow-wrap: anywhere; padding: .6rem .8rem;
          border-radius: 6px; }
.md table { display: block; overflow-x: auto; border-collapse: collapse; }
.md th, .md td { border: 1px solid currentColor; padding: .2rem .5rem; }
.md .md-align-left { text-align: left; }
.md .md-align-center { text-align: center; }
.md .md-align-right { text-align: right; }
.md-plain { white-space: pre-wrap; overflow-wrap: anywhere; }
.md-note { font-style: italic; opacity: .75; }
"""


def render_markdown(
    text: str, *, max_chars: int = MAX_CHARS, max_markup: int = MAX_MARKUP
) -> SafeString:
    """Render untrusted Markdown (a model's answer) as sanitised HTML inside ``<div class="md">``.

    Raw HTML in the source is shown as text; images are shown as links, never loaded (see the
    module docstring). Text longer than ``max_chars`` is cut, and text with more than
    ``max_markup`` Markdown markup characters, or nested too deep to format, is shown as plain
    text; either way a note says so.
    """
    shown, note = _truncate(text, max_chars)
    md = _markdown_it()
    env: dict[str, Any] = {"highlight_budget": MAX_HIGHLIGHT_CHARS}
    tokens = md.parse(shown, env) if len(_MARKUP_CHARS.findall(shown)) <= max_markup else None
    if tokens is None or _nests_too_deep(tokens, md.options["maxNesting"]):
        body = format_html('<div class="md-plain">{}</div>', _plain_html(shown))
        note = _join_notes(
            gettext("Shown as plain text: this answer's Markdown is too complex to format."),
            note,
        )
    else:
        # nh3's output is sanitised HTML by construction.
        body = mark_safe(_cleaner().clean(md.renderer.render(tokens, md.options, env)))  # noqa: S308
    return format_html('<div class="md">{}{}</div>', body, _note_html(note))


def render_plain(text: str, *, max_chars: int = MAX_CHARS) -> SafeString:
    """Render untrusted plain text (a reasoning trace): escaped, line breaks kept as ``<br>``.

    Wrapped in ``<div class="md-plain">``, which the stylesheet sets to ``pre-wrap`` so runs of
    spaces survive and long lines wrap.
    """
    shown, note = _truncate(text, max_chars)
    return format_html('<div class="md-plain">{}{}</div>', _plain_html(shown), _note_html(note))


def pygments_css() -> str:
    """The stylesheet for rendered Markdown: highlighting colours and layout rules.

    Token colours come in a light theme and a dark theme, chosen by ``prefers-color-scheme`` like
    the rest of the app; each sits in its own media query so no light rule leaks into dark mode.
    Meant to be served as a static file or from a view, unchanged between requests.
    """
    return "\n".join(
        [
            "/* Generated by grading.markdown.pygments_css(); do not edit. */",
            _LAYOUT_CSS,
            "@media not all and (prefers-color-scheme: dark) {",
            _style_defs(LIGHT_STYLE),
            "}",
            "@media (prefers-color-scheme: dark) {",
            _style_defs(DARK_STYLE),
            "}",
            "",
        ]
    )


def _style_defs(style: str) -> str:
    # Not get_style_defs(): it also emits unscoped rules (`pre { line-height }`) for line numbers.
    formatter = HtmlFormatter(style=style)
    scope = ".md .highlight"
    lines = formatter.get_background_style_defs(scope) + formatter.get_token_style_defs(scope)
    return "\n".join(lines)


def _truncate(text: str, max_chars: int) -> tuple[str, str]:
    if len(text) <= max_chars:
        return text, ""
    note = gettext("Truncated: showing the first %(shown)s of %(total)s characters.") % {
        "shown": f"{max_chars:,}",
        "total": f"{len(text):,}",
    }
    return text[:max_chars], note


def _join_notes(*notes: str) -> str:
    return " ".join(note for note in notes if note)


def _note_html(note: str) -> SafeString:
    if not note:
        return mark_safe("")
    return format_html('<p class="md-note">{}</p>', note)


def _plain_html(text: str) -> SafeString:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "\ufffd")
    return mark_safe(escape(text).replace("\n", "<br>"))  # noqa: S308 - escaped above


@functools.cache
def _cleaner() -> nh3.Cleaner:
    return nh3.Cleaner(
        tags=ALLOWED_TAGS,
        clean_content_tags={"script", "style"},
        attributes=ALLOWED_ATTRIBUTES,
        allowed_classes=ALLOWED_CLASSES,
        url_schemes=ALLOWED_URL_SCHEMES,
        url_relative="deny",
        link_rel=LINK_REL,
        set_tag_attribute_values={"a": {"target": "_blank"}},
        strip_comments=True,
    )


@functools.cache
def _markdown_it() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
    md.core.ruler.push("mark_images_in_links", _mark_images_in_links)
    md.add_render_rule("fence", _render_fence)
    md.add_render_rule("image", _render_image)
    md.add_render_rule("th_open", _render_table_cell_open)
    md.add_render_rule("td_open", _render_table_cell_open)
    return md


@functools.lru_cache(maxsize=256)  # bounded: the language name comes from the answer
def _lexer(language: str) -> Lexer | None:
    try:
        return get_lexer_by_name(language, stripnl=False)
    except ClassNotFound:
        return None


@functools.cache
def _formatter() -> HtmlFormatter[str]:
    return HtmlFormatter(nowrap=True)


def _render_fence(
    self: Any, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    token = tokens[idx]
    words = token.info.split(maxsplit=1)
    lexer = _lexer(words[0].lower()) if words and len(words[0]) <= 50 else None
    code = token.content
    if lexer is not None and len(code) <= env["highlight_budget"]:
        env["highlight_budget"] -= len(code)
        return f'<pre class="highlight"><code>{highlight(code, lexer, _formatter())}</code></pre>\n'
    return f"<pre><code>{escape(code)}</code></pre>\n"


def _render_image(
    self: Any, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    token = tokens[idx]
    alt = self.renderInlineAsText(token.children or [], options, env)
    label = escape(gettext("[image: %(alt)s]") % {"alt": alt} if alt else gettext("[image]"))
    if token.meta.get("in_link"):
        return str(label)
    return f'<a class="md-image" href="{escape(token.attrGet("src") or "")}">{label}</a>'


def _render_table_cell_open(
    self: Any, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    token = tokens[idx]
    style = str(token.attrGet("style") or "")
    side = style.removeprefix("text-align:")
    token.attrs.pop("style", None)
    if side != style and f"md-align-{side}" in _ALIGN_CLASSES:
        token.attrSet("class", f"md-align-{side}")
    return str(self.renderToken(tokens, idx, options, env))


def _nests_too_deep(tokens: Sequence[Token], max_nesting: int) -> bool:
    """Whether markdown-it skipped content: it silently drops whatever sits inside a quote or
    list opened at its maximum nesting depth, which would hide part of the answer."""
    return any(
        token.nesting == 1 and token.level >= max_nesting - 1 and token.type in _CONTAINERS
        for token in tokens
    )


def _mark_images_in_links(state: Any) -> None:
    """Flag images inside a link, which render as bare text: a link cannot contain a link."""
    for block in state.tokens:
        depth = 0
        for child in block.children or ():
            if child.type == "link_open":
                depth += 1
            elif child.type == "link_close":
                depth -= 1
            elif child.type == "image" and depth > 0:
                child.meta["in_link"] = True
