"""The fast PNG writer: any decoder reads back exactly the pixels, profile and text it was given."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms

from pixelmill.media.png import encode_png

RNG = np.random.default_rng(11)
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.mark.parametrize(("mode", "shape"), [("RGB", (1, 1, 3)), ("RGB", (37, 53, 3)), ("RGBA", (64, 17, 4)), ("RGB", (300, 1, 3))])
def test_pixels_round_trip_exactly(mode: str, shape: tuple[int, int, int]) -> None:
    pixels = RNG.integers(0, 256, shape, dtype=np.uint8)
    data = encode_png(Image.fromarray(pixels, mode))
    with Image.open(io.BytesIO(data)) as decoded:
        assert decoded.format == "PNG" and decoded.mode == mode
        assert np.array_equal(np.asarray(decoded), pixels)


def test_the_colour_profile_and_text_are_read_back() -> None:
    text = {"pixelmill": '{"prompt": "a fox ☀"}', "prompt": "a fox ☀", "task_id": "1763"}
    data = encode_png(Image.new("RGB", (8, 8), (200, 30, 40)), icc=SRGB, text=text)
    with Image.open(io.BytesIO(data)) as decoded:
        decoded.load()
        assert decoded.info["icc_profile"] == SRGB
        assert {key: decoded.info[key] for key in text} == text


def test_every_chunk_carries_a_correct_checksum() -> None:
    data = encode_png(Image.new("RGB", (5, 5)), icc=SRGB, text={"a": "b"})
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    at, kinds = 8, []
    while at < len(data):
        length = int.from_bytes(data[at : at + 4], "big")
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        assert int.from_bytes(data[at + 8 + length : at + 12 + length], "big") == zlib.crc32(kind + body)
        kinds.append(kind.decode())
        at += 12 + length
    assert kinds == ["IHDR", "iCCP", "iTXt", "IDAT", "IEND"]


def test_a_smooth_picture_is_compressed() -> None:
    ramp = np.broadcast_to(np.linspace(0, 255, 512, dtype=np.uint8)[None, :, None], (512, 512, 3))
    assert len(encode_png(Image.fromarray(np.ascontiguousarray(ramp)))) < ramp.nbytes / 50


def test_other_modes_are_refused() -> None:
    with pytest.raises(ValueError, match="RGB or RGBA, not L"):
        encode_png(Image.new("L", (4, 4)))
