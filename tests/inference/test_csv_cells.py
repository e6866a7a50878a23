"""A compiled row formatter writes exactly what `format_cell` writes, value by value, for
messy values of every kind it knows; and the scores export declares its columns' kinds right."""

from __future__ import annotations

import datetime
import math
import random
from zoneinfo import ZoneInfo

from django.db import models

from grading.models import Score
from grading.scores_export import FIELDS, KINDS, format_score_row
from inference.csv_writing import format_cell, row_formatter

TRICKY_TEXT = ["", "plain", "=1+1", "+x", "-3", "@SUM(A1)", "\tlead", "\rcr", "'quoted", "中文",
               "a,b", 'say "hi"', "line\nbreak", " =space first", "-", "=", "0"]  # fmt: skip
TRICKY_FLOATS = [0.0, -0.0, 0.0005, 1.0005, 2.675, -0.0004, 123.456789, 1e-9, 1e16, 12345678.9,
                 float("nan"), float("inf"), float("-inf"), 55.125, -1.5]  # fmt: skip


def random_value(kind: str, rng: random.Random) -> object:
    if rng.random() < 0.15:
        return None
    if kind == "text":
        return rng.choice(TRICKY_TEXT) + rng.choice(["", "tail", "=x"])
    if kind == "int":
        return rng.choice([0, -1, 7, 2**40, rng.randint(-(10**6), 10**6)])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "float":
        return rng.choice([*TRICKY_FLOATS, rng.uniform(-1e4, 1e4), rng.random() / 1000])
    zone = rng.choice([datetime.UTC, ZoneInfo("Asia/Shanghai")])
    moment = datetime.datetime(2025, 3, 1, 9, 30, tzinfo=zone)
    return moment + datetime.timedelta(microseconds=rng.choice([0, 1, 123456, 10**9 + 7]))


def test_a_compiled_row_is_format_cell_on_each_value() -> None:
    rng = random.Random(17)
    kinds = ["text", "int", "bool", "float", "datetime"] * 3
    cells = row_formatter(kinds)
    for _ in range(3000):
        row = [random_value(kind, rng) for kind in kinds]
        assert list(cells(row)) == [format_cell(value) for value in row], row


def test_float_cells_round_like_format_cell_at_the_halfway_points() -> None:
    cells = row_formatter(["float"])
    for value in TRICKY_FLOATS:
        expected = format_cell(value)
        assert cells([value]) == (expected,)
        if not math.isfinite(value):
            assert expected == ""


FIELD_KINDS: dict[type[models.Field], str] = {
    models.CharField: "text",
    models.SlugField: "text",
    models.TextField: "text",
    models.BooleanField: "bool",
    models.FloatField: "float",
    models.DateTimeField: "datetime",
    models.IntegerField: "int",
    models.PositiveIntegerField: "int",
    models.PositiveSmallIntegerField: "int",
    models.SmallIntegerField: "int",
}


def field_of(path: str) -> models.Field:
    model: type[models.Model] = Score
    *relations, last = path.split("__")
    for name in relations:
        model = model._meta.get_field(name).related_model  # type: ignore[assignment]
    return model._meta.get_field(last)  # type: ignore[return-value]


def test_the_scores_export_declares_each_columns_kind_from_its_field() -> None:
    assert len(KINDS) == len(FIELDS)
    for path, kind in zip(FIELDS, KINDS, strict=True):
        field = field_of(path)
        declared = next(k for cls, k in FIELD_KINDS.items() if type(field) is cls)
        assert kind == declared, path
    assert format_score_row(tuple(None for _ in FIELDS)) == ("",) * len(FIELDS)
