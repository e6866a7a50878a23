"""Benchmark: import of 10,000 text items plus 1,000 items with one image each.

Reports items per second, peak memory (max RSS of the importing process), the number of SQL
queries and the time spent decoding images, for a first import and for a re-import of the same
unchanged file, on SQLite and (when PostgreSQL answers on 127.0.0.1:5432) on PostgreSQL.

    python tests/benchmarks/bench_import.py [--text 10000] [--images 1000]

Each import runs in a fresh child process so its memory high-water mark is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.benchmarks.harness import (
    create_database,
    drop_database,
    migrate,
    postgres_available,
    run_child,
    setup_django,
)

TEXT_TYPES = ["AR", "CK", "CR", "CG", "TG", "FP", "GCG", "IE", "MR", "QA", "SP", "SR", "SUM", "TAG"]


def make_fixture(folder: Path, text_items: int, image_items: int) -> Path:
    """Write a .jsonl suite and its images (each image distinct, 640×480 PNG)."""
    from PIL import Image, ImageDraw

    (folder / "images").mkdir(parents=True)
    rng = random.Random(7)
    lines = []
    for n in range(text_items):
        prompt = f"第{n}题:请解释下面这句话的含义,并举一个生活中的例子。" + "内容" * rng.randint(
            5, 60
        )
        lines.append(
            {
                "id": f"t{n:05d}",
                "task_type": TEXT_TYPES[n % len(TEXT_TYPES)],
                "prompt": prompt,
                "reference": "参考答案要点:" + "要点" * 10,
                "tags": ["zh"],
            }
        )
    for n in range(image_items):
        image = Image.new(
            "RGB", (640, 480), (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        )
        draw = ImageDraw.Draw(image)
        for _ in range(12):
            x, y = rng.randrange(600), rng.randrange(440)
            draw.ellipse([x, y, x + 40, y + 40], fill=(rng.randrange(256), 0, rng.randrange(256)))
        draw.text((10, 10), f"image {n}", fill="white")
        image.save(folder / "images" / f"i{n:04d}.png")
        lines.append(
            {
                "id": f"v{n:04d}",
                "task_type": "VQA",
                "prompt": "图中有几个圆?",
                "images": [f"images/i{n:04d}.png"],
            }
        )
    path = folder / "bench.jsonl"
    path.write_text(
        "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8"
    )
    return folder


def child(path: str) -> None:
    """Import once and print a JSON line of measurements."""
    setup_django()
    from django.db import connection

    import inference.importer as importer

    queries = 0
    image_seconds = 0.0
    original_process = importer.process_image

    def counting(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        nonlocal queries
        queries += 1
        return execute(sql, params, many, context)

    def timed_process(data: bytes):  # type: ignore[no-untyped-def]
        nonlocal image_seconds
        start = time.perf_counter()
        try:
            return original_process(data)
        finally:
            image_seconds += time.perf_counter() - start

    importer.process_image = timed_process  # type: ignore[assignment]
    with connection.execute_wrapper(counting):
        start = time.perf_counter()
        report = importer.import_fixture(Path(path))
        seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "seconds": seconds,
                "items": report.total,
                "created": report.created,
                "unchanged": report.unchanged,
                "queries": queries,
                "image_seconds": image_seconds,
                "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def bench(label: str, fixture: Path, env: dict[str, str]) -> None:
    migrate(env)
    first = run_child(__file__, env, "--child", str(fixture))
    again = run_child(__file__, env, "--child", str(fixture))
    assert first["created"] == first["items"] and again["unchanged"] == again["items"]
    rate1, rate2 = first["items"] / first["seconds"], again["items"] / again["seconds"]
    share = 100 * first["image_seconds"] / first["seconds"]
    speedup = first["seconds"] / again["seconds"]
    print(
        f"{label}: first import  {first['items']:.0f} items in {first['seconds']:.2f} s "
        f"= {rate1:,.0f} items/s; {first['queries']:.0f} queries; image decoding "
        f"{first['image_seconds']:.2f} s ({share:.0f}% of the time); "
        f"peak RSS {first['max_rss_mb']:.0f} MB"
    )
    print(
        f"{label}: re-import     {again['items']:.0f} items in {again['seconds']:.2f} s "
        f"= {rate2:,.0f} items/s; {again['queries']:.0f} queries; "
        f"peak RSS {again['max_rss_mb']:.0f} MB"
    )
    print(f"{label}: re-import is {speedup:.1f}x faster than the first import")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child")
    parser.add_argument("--text", type=int, default=10_000)
    parser.add_argument("--images", type=int, default=1_000)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    with tempfile.TemporaryDirectory(prefix="gradebench-bench-") as tmp:
        work = Path(tmp)
        fixture = make_fixture(work / "bench", args.text, args.images)
        print(f"fixture: {args.text} text items + {args.images} items with one 640x480 PNG each")
        base_env = {**os.environ, "GRADEBENCH_VAR_DIR": str(work / "var")}
        base_env.pop("REDIS_URL", None)
        sqlite_env = {**base_env, "DATABASE_URL": f"sqlite:///{work / 'bench.sqlite3'}"}
        bench("SQLite", fixture, sqlite_env)
        if postgres_available():
            name = f"gradebench_bench_{os.getpid()}"
            create_database(name)
            try:
                url = f"postgres://postgres@127.0.0.1:5432/{name}"
                pg_env = {**base_env, "DATABASE_URL": url}
                bench("PostgreSQL", fixture, pg_env)
            finally:
                drop_database(name)
        else:
            print("PostgreSQL: not reachable on 127.0.0.1:5432, skipped")


if __name__ == "__main__":
    main()
