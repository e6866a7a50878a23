"""The strict reading of a judge's reply: one JSON object, an integer score 0–10, a rationale."""

from __future__ import annotations

import json
import random

import pytest

from inference.judge_reply import RESPONSE_FORMAT, RESPONSE_FORMAT_NAME, Reply, read_reply


def test_a_well_formed_reply_gives_its_score_and_rationale() -> None:
    reply = read_reply('  {"rationale": "Accurate and complete.", "score": 8}\n')
    assert reply == Reply(8, "Accurate and complete.", "")
    assert reply.parsed


@pytest.mark.parametrize(
    ("text", "finish_reason", "problem"),
    [
        ('{"rationale": "fine"}', "stop", "no score"),
        ('{"rationale": "fine", "score": 11}', "stop", "outside 0–10"),
        ('{"rationale": "fine", "score": -1}', "stop", "outside 0–10"),
        ('{"rationale": "fine", "score": 7.5}', "stop", "not an integer: 7.5"),
        ('{"rationale": "fine", "score": 7.0}', "stop", "not an integer: 7.0"),
        ('{"rationale": "fine", "score": "7"}', "stop", 'not an integer: "7"'),
        ('{"rationale": "fine", "score": true}', "stop", "not an integer: true"),
        ('{"rationale": "fine", "score": null}', "stop", "not an integer: null"),
        ('{"rationale": "fine", "score": NaN}', "stop", "NaN is not JSON"),
        ('{"rationale": "a", "score": 6, "score": 8}', "stop", "'score' appears more than once"),
        ('{"rationale": "a", "score": 6}\n{"rationale": "b", "score": 8}', "stop", "text after"),
        ('[{"rationale": "a", "score": 6}, {"rationale": "b", "score": 8}]', "stop", "list"),
        ('Here it is: {"rationale": "a", "score": 6}', "stop", "text before the JSON object"),
        ('{"rationale": "a", "score": 6}\nHope this helps!', "stop", "text after"),
        ('```json\n{"rationale": "a", "score": 6}\n```', "stop", "text before"),
        ("", "stop", "empty reply"),
        ("   \n ", "stop", "empty reply"),
        ("I'm sorry, but I can't evaluate this answer.", "stop", "not a JSON object"),
        ('{"rationale": "a", "score": 6}', "length", "cut off by the length limit"),
        ('{"rationale": "a long rationale that was cut', "length", "cut off"),
        ('{"rationale": "a long rationale that was cut', "stop", "not valid JSON"),
        ('{"score": 6}', "stop", "no rationale"),
        ('{"rationale": ["a"], "score": 6}', "stop", "rationale is not a string"),
    ],
)
def test_every_reply_that_is_not_exactly_one_score_gives_none_and_says_why(
    text: str, finish_reason: str, problem: str
) -> None:
    reply = read_reply(text, finish_reason)
    assert reply.score is None and not reply.parsed
    assert problem in reply.problem, reply.problem


def test_the_problem_quotes_a_long_reply_briefly() -> None:
    reply = read_reply("No. " * 500)
    assert reply.score is None and len(reply.problem) < 120


def test_the_requested_format_names_the_schema_the_reader_enforces() -> None:
    schema = RESPONSE_FORMAT["json_schema"]
    assert RESPONSE_FORMAT["type"] == "json_schema"
    assert schema["name"] == RESPONSE_FORMAT_NAME == "gradebench_judgement"
    assert schema["strict"] is True
    assert schema["schema"]["required"] == ["rationale", "score"]
    assert schema["schema"]["properties"]["score"] == {
        "type": "integer",
        "minimum": 0,
        "maximum": 10,
    }


def _expected(value: object) -> int | None:
    """The score a reply `{"rationale": "r", "score": value}` must give, decided apart."""
    if type(value) is int and 0 <= value <= 10:
        return value
    return None


def test_seeded_random_replies_are_read_exactly_as_the_rules_say() -> None:
    rng = random.Random(20261207)
    values: list[object] = [*range(-3, 14), 0.5, 7.5, 10.0, "5", "ten", True, False, None, [5], {}]
    wrappings = ["{body}", " {body} ", "\n{body}\n", "x{body}", "{body}.", "{body}{body}"]
    for _ in range(500):
        value = rng.choice(values)
        rationale = rng.choice(["ok", "", "很好", 'quote " inside'])
        keys = [("rationale", rationale), ("score", value)]
        rng.shuffle(keys)
        if rng.random() < 0.15:
            keys.append(("comment", "extra keys are ignored"))
        body = "{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in keys) + "}"
        wrapping = rng.choice(wrappings)
        finish = rng.choice(["stop", "stop", "stop", "length"])
        reply = read_reply(wrapping.format(body=body), finish)
        clean = wrapping.strip() == "{body}" and finish == "stop"
        expected = _expected(value) if clean else None
        assert reply.score == expected, (wrapping, body, finish, reply)
        assert bool(reply.problem) == (expected is None)
        if expected is not None:
            assert reply.rationale == rationale.strip()
