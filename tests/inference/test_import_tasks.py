"""`manage.py import_tasks`: every format, idempotent re-import, and every bad input rejected
with its own message and nothing written."""

from __future__ import annotations

import base64
import io
import json
import struct
import zipfile
import zlib
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from PIL import Image

from inference.models import Suite, TaskImage, TaskItem, TaskItemImage
from tests.conftest import REPO

pytestmark = pytest.mark.django_db
SAMPLE = REPO / "fixtures" / "sample"


def run(path: Path, *args: str) -> str:
    out = StringIO()
    call_command("import_tasks", str(path), *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def rejected(path: Path, *args: str) -> str:
    """Run an import that must fail; return its messages and check nothing was written."""
    before = (Suite.objects.count(), TaskItem.objects.count(), TaskImage.objects.count())
    err = StringIO()
    with pytest.raises(CommandError, match="nothing was imported"):
        call_command("import_tasks", str(path), *args, stdout=StringIO(), stderr=err)
    assert (Suite.objects.count(), TaskItem.objects.count(), TaskImage.objects.count()) == before
    return err.getvalue()


def png_bytes(size: tuple[int, int] = (64, 48), color: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def write_jsonl(folder: Path, rows: list[dict], name: str = "suite.jsonl") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    return path


TEXT: dict[str, Any] = {"id": "t1", "task_type": "AR", "prompt": "猫之于老鼠,犹如狗之于?"}
VISION: dict[str, Any] = {
    "id": "v1",
    "task_type": "VQA",
    "prompt": "图中有几个圆?",
    "images": ["img/a.png"],
}


def vision_folder(tmp_path: Path, rows: list[dict] | None = None) -> Path:
    folder = tmp_path / "suite"
    (folder / "img").mkdir(parents=True)
    (folder / "img" / "a.png").write_bytes(png_bytes())
    write_jsonl(folder, rows if rows is not None else [TEXT, VISION])
    return folder


# --- The sample suite ------------------------------------------------------------------------


def test_sample_suite_imports_21_task_types_and_at_least_63_items() -> None:
    out = run(SAMPLE)
    items = TaskItem.objects.filter(suite__name="sample")
    assert items.count() >= 63
    assert items.values("task_type").distinct().count() == 21
    assert f"created {items.count()}, updated 0, unchanged 0" in out
    for code in ("MG", "VFP", "VQA"):
        for item in items.filter(task_type__code=code):
            assert item.item_images.count() >= 1
    assert not TaskItemImage.objects.filter(item__task_type__modality="text").exists()


def test_sample_suite_imported_twice_is_all_unchanged() -> None:
    first = run(SAMPLE)
    count = TaskItem.objects.count()
    stamps = list(TaskItem.objects.order_by("pk").values_list("updated_at", flat=True))
    assert run(SAMPLE).strip().endswith(f"created 0, updated 0, unchanged {count}")
    assert "created" in first
    assert list(TaskItem.objects.order_by("pk").values_list("updated_at", flat=True)) == stamps


def test_reimport_with_changes_updates_only_those_items(tmp_path: Path) -> None:
    folder = vision_folder(tmp_path)
    run(folder)
    (folder / "img" / "b.png").write_bytes(png_bytes(color="blue"))
    write_jsonl(
        folder,
        [
            {**TEXT, "prompt": "changed"},
            {**VISION, "images": ["img/b.png", "img/a.png"]},
            {"id": "t2", "task_type": "QA", "prompt": "new"},
        ],
    )
    assert "created 1, updated 2, unchanged 0" in run(folder)
    vision = TaskItem.objects.get(external_id="v1")
    assert [i.width for i in vision.ordered_images()] == [64, 64]
    assert [i.sha256 for i in vision.ordered_images()][1] == TaskImage.objects.get(
        sha256=vision.ordered_images()[1].sha256
    ).sha256
    assert TaskItem.objects.get(external_id="t1").prompt == "changed"


def test_dry_run_validates_and_writes_nothing(tmp_path: Path) -> None:
    out = run(vision_folder(tmp_path), "--dry-run")
    assert "dry run: nothing was written" in out and "created 2, updated 0, unchanged 0" in out
    assert TaskItem.objects.count() == 0 and TaskImage.objects.count() == 0


def test_suite_defaults_to_file_stem_and_can_be_overridden(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, [TEXT], name="my-suite.jsonl")
    run(path)
    run(path, "--suite", "other")
    assert sorted(Suite.objects.values_list("name", flat=True)) == ["my-suite", "other"]


# --- Formats ---------------------------------------------------------------------------------


def test_json_array_csv_and_zip_import_the_same_items(tmp_path: Path) -> None:
    folder = vision_folder(tmp_path)
    (folder / "suite.jsonl").unlink()
    (folder / "suite.json").write_text(
        json.dumps([TEXT, VISION], ensure_ascii=False), encoding="utf-8"
    )
    assert "created 2" in run(folder, "--suite", "a")

    csv_folder = tmp_path / "csv"
    (csv_folder / "img").mkdir(parents=True)
    (csv_folder / "img" / "a.png").write_bytes(png_bytes())
    (csv_folder / "s.csv").write_text(
        "id,task_type,prompt,images,tags,reference\n"
        't1,类比推理,"猫之于老鼠,\n犹如狗之于?",,zh|reasoning,骨头\n'
        "v1,VQA,图中有几个圆?,img/a.png,zh,\n",
        encoding="utf-8",
    )
    assert "created 2" in run(csv_folder, "--suite", "b")
    item = TaskItem.objects.get(suite__name="b", external_id="t1")
    assert item.tags == ["zh", "reasoning"] and item.task_type.code == "AR"
    assert item.prompt == "猫之于老鼠,\n犹如狗之于?"

    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(folder / "suite.json", "bundle/suite.json")
        zf.write(folder / "img" / "a.png", "bundle/img/a.png")
    assert "created 2" in run(archive, "--suite", "c")
    assert TaskImage.objects.count() == 1  # the same bytes are stored once


def test_data_url_images_and_format_from_bytes(tmp_path: Path) -> None:
    data_url = "data:image/jpeg;base64," + base64.b64encode(png_bytes((10, 20))).decode()
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "named.jpg").write_bytes(png_bytes((30, 40), "green"))  # a PNG with a .jpg name
    write_jsonl(folder, [{**VISION, "images": [data_url, "named.jpg"]}])
    run(folder)
    images = TaskItem.objects.get().ordered_images()
    assert [(i.format, i.mime, i.width, i.height) for i in images] == [
        ("PNG", "image/png", 10, 20),
        ("PNG", "image/png", 30, 40),
    ]


def test_exif_orientation_is_applied_and_original_bytes_kept(tmp_path: Path) -> None:
    image = Image.new("RGB", (80, 40), "white")
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif.tobytes())
    original = buffer.getvalue()
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "rot.jpg").write_bytes(original)
    write_jsonl(folder, [{**VISION, "images": ["rot.jpg"]}])
    run(folder)
    stored = TaskImage.objects.get()
    assert (stored.width, stored.height) == (40, 80)
    assert bytes(stored.original) == original
    assert Image.open(io.BytesIO(stored.payload)).size == (40, 80)


def test_animated_gif_sends_its_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (16, 16), c) for c in ("red", "green", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "a.gif").write_bytes(buffer.getvalue())
    write_jsonl(folder, [{**VISION, "images": ["a.gif"]}])
    run(folder)
    stored = TaskImage.objects.get()
    assert stored.format == "GIF" and stored.mime == "image/png"
    sent = Image.open(io.BytesIO(stored.payload))
    assert getattr(sent, "n_frames", 1) == 1
    assert sent.convert("RGB").getpixel((0, 0)) == (255, 0, 0)


# --- Bad input -------------------------------------------------------------------------------


def test_malformed_json_line_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps(TEXT) + '\n{"id": "x", \n', encoding="utf-8")
    assert "s.jsonl:2: json: invalid JSON" in rejected(path)


def test_failure_reports_how_many_items_were_rejected(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, [TEXT, {**TEXT, "id": "t2", "prompt": ""}, {**TEXT, "id": "t3"}])
    with pytest.raises(CommandError, match=r"rejected 1 of 3 items, 1 problem\(s\); nothing"):
        call_command("import_tasks", str(path), stdout=StringIO(), stderr=StringIO())


def test_malformed_json_array_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(
        '[\n  {"id": "a", "task_type": "AR", "prompt": "p"},\n  {"id": }\n]', encoding="utf-8"
    )
    assert "s.json:3: json: invalid JSON (Expecting value at column 10)" in rejected(path)


def test_csv_with_a_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("id,task_type\nx,AR\n", encoding="utf-8")
    assert "s.csv:1: header: missing column 'prompt'" in rejected(path)


def test_unknown_task_type(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, [TEXT, {**TEXT, "id": "t2", "task_type": "Poetry"}])
    assert "suite.jsonl:2: task_type: unknown task type 'Poetry'" in rejected(path)


def test_empty_prompt(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, [{**TEXT, "prompt": "   "}])
    assert "suite.jsonl:1: prompt: may not be empty" in rejected(path)


def test_duplicate_id_within_one_file(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, [TEXT, {**TEXT, "prompt": "again"}])
    assert "suite.jsonl:2: id: duplicate id 't1' (first used on line 1)" in rejected(path)


def test_vision_item_without_image(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, [{**VISION, "images": []}])
    assert "suite.jsonl:1: images: a VQA (vision) item needs at least one image" in rejected(path)


def test_text_item_with_image(tmp_path: Path) -> None:
    folder = vision_folder(tmp_path, [{**TEXT, "images": ["img/a.png"]}])
    assert "suite.jsonl:1: images: a AR (text) item takes no images" in rejected(folder)


@pytest.mark.parametrize("reference", ["../secret.png", "img/../../secret.png"])
def test_image_path_outside_the_folder(tmp_path: Path, reference: str) -> None:
    (tmp_path / "secret.png").write_bytes(png_bytes())
    folder = vision_folder(tmp_path, [{**VISION, "images": [reference]}])
    assert f"images[0]: {reference}: path leaves the fixture's folder" in rejected(folder)


def test_absolute_image_path(tmp_path: Path) -> None:
    (tmp_path / "secret.png").write_bytes(png_bytes())
    folder = vision_folder(tmp_path, [{**VISION, "images": [str(tmp_path / "secret.png")]}])
    assert "absolute paths are not accepted" in rejected(folder)


def test_symlink_pointing_out_of_the_folder(tmp_path: Path) -> None:
    (tmp_path / "secret.png").write_bytes(png_bytes())
    folder = vision_folder(tmp_path, [{**VISION, "images": ["img/link.png"]}])
    (folder / "img" / "link.png").symlink_to(tmp_path / "secret.png")
    assert "img/link.png: path leaves the fixture's folder" in rejected(folder)


def test_missing_image_file(tmp_path: Path) -> None:
    folder = vision_folder(tmp_path, [{**VISION, "images": ["img/nope.png"]}])
    assert "images[0]: img/nope.png: file not found" in rejected(folder)


def test_a_file_that_is_not_an_image(tmp_path: Path) -> None:
    folder = vision_folder(tmp_path, [{**VISION, "images": ["img/notes.png"]}])
    (folder / "img" / "notes.png").write_text("just some text", encoding="utf-8")
    assert "img/notes.png: not an image Pillow can read" in rejected(folder)


def test_a_truncated_png(tmp_path: Path) -> None:
    folder = vision_folder(tmp_path, [{**VISION, "images": ["img/cut.png"]}])
    noisy = Image.effect_noise((200, 200), 64).convert("RGB")
    buffer = io.BytesIO()
    noisy.save(buffer, "PNG")
    (folder / "img" / "cut.png").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    assert "img/cut.png: corrupt or truncated image" in rejected(folder)


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def test_a_20000_by_20000_image_is_refused_as_a_decompression_bomb(tmp_path: Path) -> None:
    folder = vision_folder(tmp_path, [{**VISION, "images": ["img/huge.png"]}])
    (folder / "img" / "huge.png").write_bytes(_png_header_only(20000, 20000))
    assert "img/huge.png: image has too many pixels" in rejected(folder)


def test_a_zip_with_parent_directory_entries(tmp_path: Path) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("suite.jsonl", json.dumps(TEXT) + "\n")
        zf.writestr("../../outside.txt", "gotcha")
    assert "evil.zip: entry '../../outside.txt': path leaves the archive's folder" in rejected(
        archive
    )
    assert not (tmp_path.parent / "outside.txt").exists()


def test_a_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_bytes(
        json.dumps(TEXT).encode()
        + b"\n"
        + '{"id": "g", "task_type": "AR", "prompt": "你好"}'.encode("gbk")
        + b"\n"
    )
    assert "s.jsonl:2: file: not UTF-8 text" in rejected(path)


def test_every_problem_is_reported_not_just_the_first(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path,
        [
            {**TEXT, "task_type": "??"},
            {**TEXT, "id": "t2", "prompt": ""},
            {"id": "t3", "prompt": "no type"},
            {**VISION, "id": "v9", "images": []},
        ],
    )
    messages = rejected(path)
    assert "suite.jsonl:1: task_type" in messages
    assert "suite.jsonl:2: prompt" in messages
    assert "suite.jsonl:3: task_type: missing" in messages
    assert "suite.jsonl:4: images" in messages


def test_a_failed_reimport_leaves_the_previous_suite_untouched(tmp_path: Path) -> None:
    folder = vision_folder(tmp_path)
    run(folder)
    prompts = list(TaskItem.objects.values_list("prompt", flat=True))
    write_jsonl(folder, [{**TEXT, "prompt": "changed"}, {**VISION, "images": ["img/missing.png"]}])
    rejected(folder)
    assert list(TaskItem.objects.values_list("prompt", flat=True)) == prompts
