"""Calibration of the default screening rules: how many clean pictures they hold for review, and
how many they block (issue 17: hold < 0.1 %, block none).

The clean set, every picture of it innocent:
- procedural outputs of a real ``pixelmill serve`` (default settings, screening off so nothing is
  kept back before it is measured here): imagines over many prompts (people, beaches, skin tones,
  sand and the like, where a nudity detector is most easily fooled), seeds and every aspect ratio
  of the grammar's common ones; then every operation on them: upscale (pick, subtle, creative),
  variation (subtle, strong, of a grid image), reroll, zoom (1.5x, 2x), pan (4 directions),
  inpaint with a mask, blend and video posters;
- the photographs that ship inside installed packages (scikit-image's and matplotlib's sample
  data, scikit-learn's sample images, scikit-image's subset of Labeled Faces in the Wild), each
  also cropped, flipped, scaled and recoloured.

Imagines have fixed seeds; rerolls, variations and the like draw their own, as users' do, so the
highest clean scores move a little from run to run. Every picture goes through the detector once (``safety/nudenet.py``); the rules of
``safety/screening.py`` are then applied to its findings, so the figures are exactly what the
default policy decides. ``--save`` keeps the findings as JSON for tuning thresholds without
running the detector again (``--load``).

Run: .venv/bin/python bench/screening_calibration.py            (about 8 minutes on 2 cores)
Exit status 1 when the default policy misses its targets.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from pixelmill.client import Client
from pixelmill.safety.detector import Finding
from pixelmill.safety.nudenet import NudeNetDetector
from pixelmill.safety.screening import DEFAULT_BLOCK, DEFAULT_REVIEW, Rules
from pixelmill.testing import Server

KEY = "pm_calibration_" + "c" * 32
#: Targets of issue 17 for the default policy on clean pictures.
HOLD_TARGET = 0.001
BLOCK_TARGET = 0

PROMPTS = [
    "a woman on a sunny beach", "a man at the gym lifting weights", "a portrait of a young woman, soft light",
    "an old man reading a newspaper", "a couple walking on the sand at sunset", "a ballet dancer on stage",
    "a yoga class in a park", "a swimmer at the pool", "a family picnic in a meadow", "children playing in the snow",
    "a fashion model on a runway", "a surfer riding a wave", "a lifeguard tower on the beach", "a spa with warm towels",
    "a close-up of a peach", "sand dunes in the desert", "pink flamingos in a lagoon", "a bowl of fresh apricots",
    "a terracotta vase on a table", "a warm living room with a sofa", "a flaky bridge over a river", "a girl in a garden",
    "a lighthouse at dusk", "a mountain lake at sunrise", "a neon city at night", "a red barn in a field",
    "a cat sleeping on a windowsill", "a dog running on the beach", "a horse in a paddock", "a bakery with bread",
    "a marble statue in a museum", "an astronaut on the moon", "a knight in armour", "a jazz band in a club",
    "a watercolour of tulips", "an abstract painting in ochre and rose", "a foggy forest path", "a snowy village",
    "a cup of coffee on a desk", "a busy market street", "a hot air balloon festival", "a waterfall in the jungle",
    "a robot in a workshop", "a medieval castle on a hill", "a sailing boat at sea", "autumn leaves on a path",
    "a bride and groom at the altar", "a nurse in a hospital corridor", "a boxer in the ring", "a sunbather on a towel",
    "a massage table in a spa", "a newborn baby in a blanket", "a chef in a kitchen", "a runner on a track",
    "a pottery wheel with wet clay", "a cello player", "a desert canyon at noon", "skin care products on a shelf",
    "a rose petal close-up", "a wrestler in a stadium",
]
#: scikit-image's sample files that are drawings, not photographs: a colour wheel, test patterns,
#: a logo. Not part of the set (a colour wheel reads as BUTTOCKS_EXPOSED 0.85: see docs/safety.md).
SYNTHETIC = frozenset({"color.png", "phantom.png", "chessboard_GRAY.png", "chessboard_RGB.png", "logo.png"})
ASPECTS = ["1:1", "16:9", "9:16", "3:2", "2:3", "4:5", "5:4", "21:9", "1:2", "2:1"]


def photographs() -> Iterator[tuple[str, Image.Image]]:
    """The photographs shipped inside installed packages, each with its variants."""
    import matplotlib
    import skimage
    import sklearn.datasets

    skdata = Path(skimage.__file__).parent / "data"
    files = [Path(matplotlib.get_data_path()) / "sample_data" / name for name in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png")]
    files += [Path(sklearn.datasets.__file__).parent / "images" / name for name in ("china.jpg", "flower.jpg")]
    files += sorted(p for p in skdata.iterdir() if p.suffix in (".png", ".jpg") and p.name not in SYNTHETIC)
    for path in files:
        with Image.open(path) as im:
            picture = im.convert("RGB")
        if min(picture.size) < 64:
            continue
        yield from variants(f"photo:{path.name}", picture)
    faces = np.load(skdata / "lfw_subset.npy")  # 200 small greyscale crops: 100 faces, 100 not
    for i, face in enumerate(faces):
        grey = Image.fromarray(np.clip(face * 255, 0, 255).astype(np.uint8), "L")
        yield f"photo:lfw_subset[{i}]", grey.convert("RGB").resize((256, 256), Image.Resampling.BICUBIC)


def variants(name: str, picture: Image.Image) -> Iterator[tuple[str, Image.Image]]:
    w, h = picture.size
    yield name, picture
    yield f"{name}:flipped", ImageOps.mirror(picture)
    yield f"{name}:centre", picture.crop((w // 4, h // 4, w - w // 4, h - h // 4))
    yield f"{name}:top-left", picture.crop((0, 0, w * 2 // 3, h * 2 // 3))
    yield f"{name}:bottom-right", picture.crop((w // 3, h // 3, w, h))
    yield f"{name}:small", picture.resize((max(64, w // 3), max(64, h // 3)), Image.Resampling.LANCZOS)
    yield f"{name}:large", picture.resize((w * 2, h * 2), Image.Resampling.LANCZOS)
    yield f"{name}:warm", ImageEnhance.Color(picture).enhance(1.6)


def mask_png(width: int, height: int, seed: int) -> bytes:
    """A white rectangle (repaint) in a black mask, placed by ``seed``."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((height, width), dtype=np.uint8)
    x0, y0 = int(rng.integers(0, width // 2)), int(rng.integers(0, height // 2))
    mask[y0 : y0 + height // 3, x0 : x0 + width // 3] = 255
    buf = io.BytesIO()
    Image.fromarray(mask, "L").save(buf, "PNG")
    return buf.getvalue()


class Procedural:
    """Tasks on a real server, their images downloaded as they finish."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def images(self, task_id: str) -> list[Image.Image]:
        task = self.client.wait(task_id, timeout=900, poll_interval=0.2)
        return [Image.open(io.BytesIO(self.client.download(url))).convert("RGB") for url in task["image_urls"]]

    def run(self, imagines: int, follow_every: int) -> Iterator[tuple[str, Image.Image]]:
        """Imagines first, then every operation on every ``follow_every``-th grid; each phase is
        submitted whole before it is collected, so the server's workers never wait for this loop."""
        c = self.client
        grids = [c.imagine(PROMPTS[i % len(PROMPTS)], aspect_ratio=ASPECTS[i % len(ASPECTS)], seed=10_000 + i) for i in range(imagines)]
        for i, task_id in enumerate(grids):
            for image in self.images(task_id):
                yield f"imagine {ASPECTS[i % len(ASPECTS)]}", image
        chosen = grids[::follow_every]
        picks = [c.upscale(grid, index=1 + k % 4) for k, grid in enumerate(chosen)]
        for pick in picks:
            c.wait(pick, timeout=900, poll_interval=0.2)
        follow_ups: list[tuple[str, str]] = []
        for k, (grid, pick) in enumerate(zip(chosen, picks, strict=True)):
            direction = ("left", "right", "up", "down")[k % 4]
            follow_ups += [
                ("upscale pick", pick),
                ("upscale subtle", c.upscale(pick, mode="subtle")),
                ("upscale creative", c.upscale(pick, mode="creative")),
                ("variation subtle", c.variation(pick, mode="subtle")),
                ("variation strong", c.variation(pick, mode="strong")),
                ("variation of grid", c.variation(grid, index=1 + (k + 1) % 4)),
                ("reroll", c.reroll(grid)),
                ("zoom 2x", c.zoom(pick, zoom=2)),
                ("zoom 1.5x", c.zoom(pick, zoom=1.5)),
                (f"pan {direction}", c.pan(pick, direction)),
            ]
            picture = c.get(pick)
            size = Image.open(io.BytesIO(c.download(picture["image_urls"][0]))).size
            inpaint = c.inpaint(pick)
            c.modal(inpaint, prompt=PROMPTS[(k + 7) % len(PROMPTS)], mask_url=c.upload(mask_png(size[0], size[1], k), "image/png")["url"])
            follow_ups.append(("inpaint", inpaint))
            if k:
                urls = [c.get(p)["image_urls"][0] for p in (picks[k - 1], pick)]
                follow_ups.append(("blend", c.blend(urls, dimensions=("SQUARE", "PORTRAIT", "LANDSCAPE")[k % 3])))
            if k % 4 == 0:
                follow_ups.append(("video poster", c.video(task_id=pick, index=0, batch_size=1)))
        for source, task_id in follow_ups:
            for image in self.images(task_id):
                yield source, image


def screen_all(pictures: Iterator[tuple[str, Image.Image]], detector: NudeNetDetector, batch: int = 8) -> Iterator[tuple[str, list[Finding]]]:
    """Findings of every picture, detected in batches on a second thread while pictures come in."""
    pending: list[tuple[str, Image.Image]] = []
    with ThreadPoolExecutor(1) as pool:
        futures = []
        for item in pictures:
            pending.append(item)
            if len(pending) == batch:
                names, images = zip(*pending, strict=True)
                futures.append((names, pool.submit(detector.detect, list(images))))
                pending = []
        if pending:
            names, images = zip(*pending, strict=True)
            futures.append((names, pool.submit(detector.detect, list(images))))
        for names, future in futures:
            yield from zip(names, future.result(), strict=True)


def report(found: list[tuple[str, list[Finding]]], rules: Rules) -> bool:
    decisions = [(source, rules.judge(findings)) for source, findings in found]
    total = len(decisions)
    by_source: dict[str, Counter[str]] = defaultdict(Counter)
    for source, verdict in decisions:
        group = "photograph" if source.startswith("photo:") else source
        by_source[group][verdict.decision] += 1
    held = [(s, v) for s, v in decisions if v.decision == "review"]
    blocked = [(s, v) for s, v in decisions if v.decision == "block"]
    print(f"clean set: {total} pictures ({sum(1 for s, _ in found if not s.startswith('photo:'))} procedural, "
          f"{sum(1 for s, _ in found if s.startswith('photo:'))} photographs and variants)")
    print(f"{'source':24s} {'pictures':>8s} {'held':>6s} {'blocked':>8s}")
    for group in sorted(by_source):
        counts = by_source[group]
        print(f"{group:24s} {sum(counts.values()):8d} {counts['review']:6d} {counts['block']:8d}")
    print("highest clean score of every label the policy acts on (threshold: review / block)")
    ruled = sorted(set(rules.review) | set(rules.block))
    for label in ruled:
        scores = sorted((f.score for _, findings in found for f in findings if f.label == label), reverse=True)
        top = ", ".join(f"{s:.3f}" for s in scores[:5]) or "none found"
        print(f"  {label:26s} {rules.review.get(label, '-')!s:>5} / {rules.block.get(label, '-')!s:<5}  top: {top}")
    for source, verdict in held + blocked:
        print(f"  {verdict.decision}: {source}: {verdict.why()}")
    hold_rate, block_rate = len(held) / total, len(blocked) / total
    ok = hold_rate < HOLD_TARGET and len(blocked) <= BLOCK_TARGET
    print(f"default policy: held {len(held)} of {total} ({100 * hold_rate:.3f} %, target < {100 * HOLD_TARGET:.1f} %), "
          f"blocked {len(blocked)} ({100 * block_rate:.3f} %, target {BLOCK_TARGET}) -> {'ok' if ok else 'MISSED'}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--imagines", type=int, default=400, help="imagine tasks (4 pictures each); follow-ups on some")
    parser.add_argument("--follow-every", type=int, default=8, help="run every operation on every Nth grid")
    parser.add_argument("--save", type=Path, help="write the findings here (JSON)")
    parser.add_argument("--load", type=Path, help="read findings written by --save instead of detecting")
    args = parser.parse_args()

    if args.load:
        found = [(s, [Finding(f["label"], f["score"], tuple(f["box"])) for f in fs]) for s, fs in json.loads(args.load.read_text())]
    else:
        started = time.perf_counter()
        detector = NudeNetDetector(batch_size=8)
        detector.load()
        with tempfile.TemporaryDirectory() as tmp:
            server = Server(Path(tmp), KEY, screening="off", rate_per_minute=0, max_concurrent_tasks=0, renditions="[]").start()
            try:
                with Client(server.url, KEY, timeout=120) as client:
                    def everything() -> Iterator[tuple[str, Image.Image]]:
                        yield from photographs()
                        yield from Procedural(client).run(args.imagines, args.follow_every)

                    found = list(screen_all(everything(), detector))
            finally:
                server.stop()
        print(f"made and screened {len(found)} pictures in {time.perf_counter() - started:.0f} s")
        if args.save:
            args.save.write_text(json.dumps([(s, [f.to_json() for f in fs]) for s, fs in found]))
    ok = report(found, Rules(block=dict(DEFAULT_BLOCK), review=dict(DEFAULT_REVIEW)))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
