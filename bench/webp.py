"""How the WebP renditions beside every image are written: the measurement behind
``media/output.py``'s ``RENDITION_EFFORT`` (issue 20: settings chosen by measurement; issue 21: a
gateway re-hosting every upstream picture spent half its CPU on them).

For one image and the grid of an imagine at 512 and 1024 px (the procedural engine, a fixed
seed), prints for each libwebp ``method`` (0 fastest ... 6 smallest) the median time, the size and
the PSNR against the source of the ``web`` and ``thumb`` renditions, at their qualities.

Run: .venv/bin/python bench/webp.py   (--repeat N)
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import numpy as np
from PIL import Image

from pixelmill.media.output import RENDITIONS, _resized
from png import sample_pictures


def _psnr(a: Image.Image, b: Image.Image) -> float:
    error = np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b.convert("RGB"), dtype=np.float64)) ** 2)
    return float(10 * np.log10(255**2 / error)) if error else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print("| picture | rendition | method | ms (median) | kB | PSNR dB |")
    print("|---|---|---|---|---|---|")
    for label, picture in sample_pictures():
        for name, profile in RENDITIONS.items():
            source = _resized(picture.convert("RGB"), profile)
            for method in range(7):
                times, data = [], b""
                for _ in range(args.repeat):
                    started = time.perf_counter()
                    buf = io.BytesIO()
                    source.save(buf, format="WEBP", quality=profile.quality, method=method)
                    times.append((time.perf_counter() - started) * 1000)
                    data = buf.getvalue()
                psnr = _psnr(source, Image.open(io.BytesIO(data)))
                print(f"| {label} | {name} q{profile.quality} | {method} | {statistics.median(times):.1f} | {len(data) / 1e3:.1f} | {psnr:.2f} |")


if __name__ == "__main__":
    main()
