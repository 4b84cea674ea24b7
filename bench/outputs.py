"""Post-processing cost per imagine (issue 8): four 1024² images and their grid written under
each output profile, with the web and thumb renditions and the provenance record of every image,
through the executor's own publish step (parallel encoders, memory storage).

Prints ms per imagine for each profile, the median of --repeats runs, next to what the engine
took to draw the four images (procedural; a real model takes seconds).

Run: .venv/bin/python bench/outputs.py
"""

from __future__ import annotations

import argparse
import statistics
import time

from pixelmill.engines.base import GenerationRequest
from pixelmill.engines.procedural import ProceduralEngine
from pixelmill.media.output import BUILTIN
from pixelmill.storage.memory import MemoryStorage
from pixelmill.tasks.actions import Action, Lane
from pixelmill.tasks.record import Task
from pixelmill.tasks.status import TaskStatus
from pixelmill.work.execute import Executor, image_seeds


def task(profile: str) -> Task:
    return Task(
        id="1763000000000", tenant_id="bench", action=Action.IMAGINE, status=TaskStatus.IN_PROGRESS, progress=0,
        prompt="a serene mountain lake at sunrise", final_prompt="a serene mountain lake at sunrise --seed 1", description="",
        params={"width": 1024, "height": 1024, "output_profile": profile}, engine="procedural", seed=1, quota=1,
        parent_task_id=None, index=None, result=None, fail_reason=None, submit_time=0, start_time=0, finish_time=None,
        lane=Lane.INTERACTIVE, priority=0, attempt=1, max_attempts=3, scheduled_at=0, lease_owner=None, lease_expires_at=None,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--size", type=int, default=1024)
    args = ap.parse_args()
    engine = ProceduralEngine()
    start = time.perf_counter()
    images = engine.generate(GenerationRequest(prompt="a serene mountain lake at sunrise", width=args.size, height=args.size,
                                               seeds=image_seeds(1))).images
    draw = (time.perf_counter() - start) * 1000
    print(f"{args.size}² x 4 images + grid, renditions web + thumb + metadata; engine (procedural) drew them in {draw:.0f} ms")
    print("| profile | format | ms per imagine (median) | bytes per image (full) |")
    print("|---|---|---|---|")
    for name, profile in BUILTIN.items():
        storage = MemoryStorage()
        executor = Executor({"procedural": engine}, storage, store=None)  # type: ignore[arg-type]
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            _, keys, _ = executor.publish(task(name), images, engine.model)
            times.append((time.perf_counter() - t0) * 1000)
        size = statistics.mean(len(storage.get(k)) for k in keys)
        print(f"| {name} | {profile.format}{f' q{profile.quality}' if profile.format != 'png' else ''} | {statistics.median(times):.0f} | {size:,.0f} |")
        executor.close()


if __name__ == "__main__":
    main()
