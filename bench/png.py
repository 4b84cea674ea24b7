"""How the PNG files on a task's critical path are written: the measurement behind
``media/png.py`` (issue 20: "PNG compression settings are chosen by measurement").

For the grid and one image of an imagine at 512 and 1024 px (the procedural engine, a fixed seed),
prints the median time and size of: Pillow's encoder at the levels it was used at, and
pixelmill's writer (Sub filter) with zlib-ng at several levels, and with the stdlib zlib and the
Up filter for comparison.

Run: .venv/bin/python bench/png.py   (--repeat N)
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
import zlib
from collections.abc import Callable

import numpy as np
from PIL import Image
from zlib_ng import zlib_ng

from pixelmill.engines.base import GenerationRequest
from pixelmill.engines.procedural import ProceduralEngine
from pixelmill.media.grid import compose_grid
from pixelmill.media.png import encode_png, filtered_rows


def _up_filtered(image: Image.Image) -> bytes:
    rows = np.asarray(image, dtype=np.uint8).reshape(image.height, -1)
    out = np.empty((image.height, rows.shape[1] + 1), dtype=np.uint8)
    out[:, 0] = 2
    out[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=out[1:, 1:])
    return out.tobytes()


def _pillow(level: int) -> Callable[[Image.Image], int]:
    def run(image: Image.Image) -> int:
        buf = io.BytesIO()
        image.save(buf, format="PNG", compress_level=level)
        return len(buf.getvalue())
    return run


CHOICES: dict[str, Callable[[Image.Image], int]] = {
    "Pillow, adaptive filter, level 1 (before)": _pillow(1),
    "Pillow, adaptive filter, level 6 (capped profiles, before)": _pillow(6),
    "Sub filter + stdlib zlib, level 1": lambda im: len(zlib.compress(filtered_rows(im), 1)),
    "Up filter + zlib-ng, level 2": lambda im: len(zlib_ng.compress(_up_filtered(im), 2)),
    "Sub filter + zlib-ng, level 1": lambda im: len(encode_png(im, level=1)),
    "Sub filter + zlib-ng, level 2 (chosen)": lambda im: len(encode_png(im, level=2)),
    "Sub filter + zlib-ng, level 3": lambda im: len(encode_png(im, level=3)),
    "Sub filter + zlib-ng, level 6 (capped profiles)": lambda im: len(encode_png(im, level=6)),
}


def sample_pictures() -> list[tuple[str, Image.Image]]:
    """One image and the grid of an imagine at 512 and 1024 px (the procedural engine, fixed
    seeds), labelled: what the files of a task's critical path are made of."""
    engine = ProceduralEngine()
    pictures = []
    for side in (512, 1024):
        request = GenerationRequest(prompt="a red fox in fresh snow, detailed fur", width=side, height=side, seeds=(1, 2, 3, 4))
        images = engine.generate(request, lambda fraction, preview=None: None).images
        pictures += [(f"image {side}²", images[0]), (f"grid {2 * side}²", compose_grid(list(images)))]
    return pictures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print("| picture | writer | ms (median) | MB |")
    print("|---|---|---|---|")
    for label, picture in sample_pictures():
        for name, write in CHOICES.items():
            times, size = [], 0
            for _ in range(args.repeat):
                started = time.perf_counter()
                size = write(picture)
                times.append((time.perf_counter() - started) * 1000)
            print(f"| {label} | {name} | {statistics.median(times):.1f} | {size / 1e6:.2f} |")


if __name__ == "__main__":
    main()
