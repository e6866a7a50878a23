"""Timing statistics of one generation (DESIGN §5) and the helpers they need.

Everything here is arithmetic on raw offsets (seconds after t0, from `time.perf_counter()`),
kept apart from the network code so it can be tested exactly.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


@dataclass(frozen=True)
class Timings:
    """Raw offsets in seconds after t0; None when the event never happened."""

    t_headers: float | None = None
    t_first_chunk: float | None = None
    t_first_token: float | None = None
    t_first_answer: float | None = None
    t_last_token: float | None = None
    t_end: float | None = None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


def speed_metrics(timings: Timings, completion_tokens: int | None) -> dict[str, float | None]:
    """ttft, ttfa, response time (ms), decode and end-to-end tokens/s, time per output token."""
    metrics: dict[str, float | None] = {
        "ttft_ms": _ms(timings.t_first_token),
        "ttfa_ms": _ms(timings.t_first_answer),
        "response_time_ms": _ms(timings.t_last_token),
        "decode_tps": None,
        "e2e_tps": None,
        "tpot_ms": None,
    }
    n = completion_tokens
    if n is None or n <= 0:
        return metrics
    if timings.t_last_token and timings.t_last_token > 0:
        metrics["e2e_tps"] = round(n / timings.t_last_token, 4)
    if (
        n >= 2
        and timings.t_first_token is not None
        and timings.t_last_token is not None
        and timings.t_last_token > timings.t_first_token
    ):
        decode = timings.t_last_token - timings.t_first_token
        metrics["decode_tps"] = round((n - 1) / decode, 4)
        metrics["tpot_ms"] = round(1000.0 * decode / (n - 1), 4)
    return metrics


def split_think(content: str, cut_off: bool = False) -> tuple[str, str, bool]:
    """Split inline reasoning from an answer: `(reasoning, answer, closed)`.

    DeepSeek-R1 distills put their reasoning before `</think>` in the content; the opening tag
    is often missing because the chat template already sent it. Without a closing tag, the text
    is reasoning if it opened with `<think>` or was cut off by the length limit (the model was
    still thinking); otherwise it is all answer.
    """
    close = content.find(THINK_CLOSE)
    stripped = content.lstrip()
    if close >= 0:
        reasoning = content[:close]
        reasoning = reasoning.lstrip()
        if reasoning.startswith(THINK_OPEN):
            reasoning = reasoning[len(THINK_OPEN) :]
        return reasoning.strip(), content[close + len(THINK_CLOSE) :].strip(), True
    if stripped.startswith(THINK_OPEN):
        return stripped[len(THINK_OPEN) :].strip(), "", False
    if cut_off:
        return stripped.strip(), "", False
    return "", content.strip(), False


class ThinkTracker:
    """Follows a streamed content with inline reasoning, to time the first answer text."""

    def __init__(self) -> None:
        self.text = ""
        self.closed_at: int | None = None

    def feed(self, delta: str) -> bool:
        """Add a content delta; True once non-blank answer text has followed `</think>`."""
        start = max(0, len(self.text) - len(THINK_CLOSE))
        self.text += delta
        if self.closed_at is None:
            found = self.text.find(THINK_CLOSE, start)
            if found < 0:
                return False
            self.closed_at = found + len(THINK_CLOSE)
        return bool(self.text[self.closed_at :].strip())


_CJK = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_TOKEN = re.compile(rf"[{_CJK}]|[A-Za-z]+|\d|[^\s{_CJK}A-Za-z\d]")


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate of a model's token count, for servers that send no usage.

    One token per CJK character, digit and punctuation mark; a Latin word counts one token per
    four letters (rounded up), close to what BPE vocabularies of these models produce.
    """
    count = 0
    for match in _TOKEN.finditer(text):
        piece = match.group()
        count += math.ceil(len(piece) / 4) if piece.isascii() and piece.isalpha() else 1
    return count
