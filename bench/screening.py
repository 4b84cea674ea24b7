"""Safety throughput on this machine (issue 9): output screening with the NudeNet detector in
images/s per batch size, and the prompt checks in prompts/s (word filter; semantic check with
all-MiniLM-L6-v2, one prompt at a time as a submit sees it, and batched).

Images are procedural 512² and 1024² pictures; prompts are the labelled set in tests/data.

Run: .venv/bin/python bench/screening.py
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

from pixelmill.engines.base import GenerationRequest
from pixelmill.engines.procedural import ProceduralEngine
from pixelmill.safety.moderation import BUILTIN, Moderator
from pixelmill.safety.nudenet import NudeNetDetector
from pixelmill.safety.semantic import BUILTIN_CONCEPTS, SemanticCheck

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "moderation_prompts.tsv"


def images(side: int, count: int):  # type: ignore[no-untyped-def]
    engine = ProceduralEngine()
    out = []
    for i in range(0, count, 4):
        out += engine.generate(GenerationRequest(prompt=f"scene {i}", width=side, height=side, seeds=(i, i + 1, i + 2, i + 3)), lambda *_: None).images
    return out[:count]


def rate(n: int, run, repeats: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return n / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    print("output screening (NudeNet 320n ONNX, CPU)")
    for side in (512, 1024):
        pictures = images(side, args.images)
        for batch in (1, 4, 8):
            detector = NudeNetDetector(batch_size=batch)
            detector.load()
            detector.detect(pictures[:batch])  # warm-up
            per_s = rate(len(pictures), lambda d=detector, p=pictures: d.detect(p), args.repeats)
            print(f"  {side}x{side}  batch {batch}: {per_s:6.1f} images/s  ({1000 / per_s:5.1f} ms/image)")

    with DATA.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    prompts = [row["prompt"] for row in rows]
    words = Moderator(BUILTIN)
    print(f"prompt checks ({len(prompts)} prompts of the labelled set)")
    print(f"  word filter:             {rate(len(prompts), lambda: [words.find('t', p) for p in prompts], args.repeats):8.0f} prompts/s")
    started = time.perf_counter()
    semantic = SemanticCheck(BUILTIN_CONCEPTS, 0.5)
    semantic.load()
    print(f"  semantic check load:     {time.perf_counter() - started:8.1f} s")
    print(f"  semantic, one at a time: {rate(len(prompts), lambda: [semantic.find(p) for p in prompts], 1):8.0f} prompts/s")
    print(f"  semantic, batched:       {rate(len(prompts), lambda: semantic.find_many(prompts), args.repeats):8.0f} prompts/s")

    print(f"quality on the labelled set (semantic threshold {semantic.threshold})")
    by_words = [words.find("t", p) is not None for p in prompts]
    by_meaning = [hit is not None for hit in semantic.find_many(prompts)]
    for name, flagged in (("word filter", by_words), ("semantic", by_meaning), ("both", [a or b for a, b in zip(by_words, by_meaning)])):
        tp = sum(f and r["label"] == "1" for f, r in zip(flagged, rows))
        fp = sum(f and r["label"] == "0" for f, r in zip(flagged, rows))
        banned = sum(r["label"] == "1" for r in rows)
        kinds = {k: (sum(f for f, r in zip(flagged, rows) if r["kind"] == k), sum(r["kind"] == k for r in rows))
                 for k in ("plain", "disguise", "obfuscation", "paraphrase", "near", "clean")}
        print(f"  {name:12s} precision {tp / max(tp + fp, 1):.3f}  recall {tp / banned:.3f}  "
              + "  ".join(f"{k} {n}/{total}" for k, (n, total) in kinds.items()))


if __name__ == "__main__":
    main()
