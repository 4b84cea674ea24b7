"""Post-processing cost per imagine (issues 8 and 20): four 1024² images and their grid, under
each output profile, through the executor's own steps (parallel encoders, memory storage).

Prints, the median of --repeats runs:
- the critical path: ``publish`` with output screening on (NudeNet, when the safety extra is
  installed): the screening stage, then the postprocess stage, which is what the caller waits for
  after screening (issue 20's target: ≤ 150 ms at 1024²). Encoding starts beside screening, so
  postprocess is what is left of it;
- the same with screening off: all of the encoding is then on the path;
- what is made after SUCCESS (``finish``): web and thumb renditions and the provenance records.

Run: .venv/bin/python bench/outputs.py   (--size 512, --repeats N)
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

from PIL import Image

from pixelmill.engines.base import GenerationRequest
from pixelmill.engines.procedural import ProceduralEngine
from pixelmill.media.output import BUILTIN
from pixelmill.observe.stages import StageTimer, timing
from pixelmill.safety.screening import Screening
from pixelmill.storage.memory import MemoryStorage
from pixelmill.tasks.actions import Action, Lane
from pixelmill.tasks.record import Task
from pixelmill.tasks.status import TaskStatus
from pixelmill.work.execute import Executor, image_seeds


def task(profile: str, side: int) -> Task:
    return Task(
        id="1763000000000", tenant_id="bench", action=Action.IMAGINE, status=TaskStatus.IN_PROGRESS, progress=0,
        prompt="a serene mountain lake at sunrise", final_prompt="a serene mountain lake at sunrise --seed 1", description="",
        params={"width": side, "height": side, "output_profile": profile}, engine="procedural", seed=1, quota=1,
        parent_task_id=None, index=None, result=None, fail_reason=None, submit_time=0, start_time=0, finish_time=None,
        lane=Lane.INTERACTIVE, priority=0, attempt=1, max_attempts=3, scheduled_at=0, lease_owner=None, lease_expires_at=None,
    )


def _median_stages(executor: Executor, work: Task, images: list[Image.Image], model: str, repeats: int) -> tuple[dict[str, float], Task]:
    runs = []
    published = None
    for _ in range(repeats):
        timer = StageTimer()
        started = time.perf_counter()
        with timing(timer):
            published = executor.publish(work, images, model)
        runs.append(timer.milliseconds() | {"total": (time.perf_counter() - started) * 1000})
    assert published is not None
    done = replace(work, status=TaskStatus.SUCCESS, result=published.result(work.params["width"], work.params["height"]))
    return {name: statistics.median(r.get(name, 0.0) for r in runs) for name in runs[0]}, done


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--size", type=int, default=1024)
    args = ap.parse_args()
    engine = ProceduralEngine()
    start = time.perf_counter()
    images = list(engine.generate(GenerationRequest(prompt="a serene mountain lake at sunrise", width=args.size, height=args.size,
                                                    seeds=image_seeds(1))).images)
    draw = (time.perf_counter() - start) * 1000
    screening = Screening.from_settings("auto", None)
    if screening.detector is not None:
        screening.detector.load()
    print(f"{args.size}² x 4 images + grid; engine (procedural) drew them in {draw:.0f} ms; screening: "
          f"{'NudeNet' if screening.enabled else 'off (the safety extra is not installed)'}")
    print("| profile | format | screening ms | postprocess ms (critical path) | postprocess ms, screening off | after SUCCESS ms | bytes per image |")
    print("|---|---|---|---|---|---|---|")
    for name, profile in BUILTIN.items():
        storage = MemoryStorage()
        work = task(name, args.size)
        screened = Executor({"procedural": engine}, storage, store=None, screening=screening)  # type: ignore[arg-type]
        plain = Executor({"procedural": engine}, storage, store=None)  # type: ignore[arg-type]
        on, done = _median_stages(screened, work, images, engine.model, args.repeats)
        off, _ = _median_stages(plain, work, images, engine.model, args.repeats)
        after = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            plain.finish(done)
            after.append((time.perf_counter() - t0) * 1000)
        assert done.result is not None
        size = statistics.mean(len(storage.get(k)) for k in done.result.image_keys)
        fmt = f"{profile.format}{f' q{profile.quality}' if profile.format != 'png' else ''}"
        print(f"| {name} | {fmt} | {on.get('screening', 0):.0f} | {on['postprocess']:.0f} | {off['postprocess']:.0f} | "
              f"{statistics.median(after):.0f} | {size:,.0f} |")
        screened.close()
        plain.close()


if __name__ == "__main__":
    main()
