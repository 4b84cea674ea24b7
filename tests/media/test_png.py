"""The fast PNG writer: any decoder reads back exactly the pixels, profile and text it was given."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms, PngImagePlugin

from pixelmill.media.png import encode_png, restamp
from tests.helpers import png_chunks

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
    assert [kind for kind, _ in png_chunks(data)] == ["IHDR", "iCCP", "iTXt", "IDAT", "IEND"]


def test_a_smooth_picture_is_compressed() -> None:
    ramp = np.broadcast_to(np.linspace(0, 255, 512, dtype=np.uint8)[None, :, None], (512, 512, 3))
    assert len(encode_png(Image.fromarray(np.ascontiguousarray(ramp)))) < ramp.nbytes / 50


def test_other_modes_are_refused() -> None:
    with pytest.raises(ValueError, match="RGB or RGBA, not L"):
        encode_png(Image.new("L", (4, 4)))


def _pillow_png(image: Image.Image, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG", **options)
    return out.getvalue()


def test_an_upstreams_file_keeps_its_image_data_under_our_profile_and_text() -> None:
    pixels = RNG.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    theirs = _pillow_png(Image.fromarray(pixels), pnginfo=_text({"prompt": "their prompt", "Software": "upstream"}), dpi=(72, 72))
    text = {"pixelmill": '{"task_id": "ours"}', "task_id": "ours"}
    kept = restamp(theirs, (40, 24), icc=SRGB, text=text)
    assert kept is not None
    chunks = png_chunks(kept)
    assert [kind for kind, _ in chunks] == ["IHDR", "iCCP", "iTXt", "iTXt", "IDAT", "IEND"]
    assert [body for kind, body in chunks if kind == "IDAT"] == [body for kind, body in png_chunks(theirs) if kind == "IDAT"]
    with Image.open(io.BytesIO(kept)) as decoded:
        assert np.array_equal(np.asarray(decoded), pixels)
        assert decoded.info["icc_profile"] == SRGB and decoded.info["task_id"] == "ours"
        assert "prompt" not in decoded.info and "Software" not in decoded.info and "dpi" not in decoded.info


def test_a_file_whose_pixels_would_change_is_encoded_anew() -> None:
    rgb = Image.fromarray(RNG.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    for data in (
        _pillow_png(rgb, icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()),  # its own profile
        _pillow_png(rgb.convert("RGBA")),
        _pillow_png(rgb.convert("P")),  # a palette
        _pillow_png(rgb.convert("L")),
        _pillow_png(Image.fromarray(RNG.integers(0, 65535, (16, 16), dtype=np.uint16))),  # 16 bits
        b"GIF89a" + bytes(40),
        _pillow_png(rgb)[:-20],  # cut short
    ):
        assert restamp(data, (16, 16)) is None
    assert restamp(_pillow_png(rgb), (16, 17)) is None  # not the task's size
    assert restamp(_pillow_png(rgb), (16, 16)) is not None


def test_nothing_but_the_pixels_is_kept() -> None:
    """Bytes a decoder never shows (after the image data's end, or rows beyond the picture) and
    files laid out otherwise than this writer's are encoded anew, so screening saw all that is
    stored."""
    rgb = Image.fromarray(RNG.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    chunks = png_chunks(_pillow_png(rgb))
    header, data = chunks[0][1], b"".join(body for kind, body in chunks if kind == "IDAT")
    rows = zlib.decompress(data)

    def png(*parts: tuple[bytes, bytes]) -> bytes:
        return b"\x89PNG\r\n\x1a\n" + b"".join(struct.pack(">I", len(b)) + k + b + struct.pack(">I", zlib.crc32(k + b)) for k, b in parts)

    assert restamp(png((b"IHDR", header), (b"IDAT", data), (b"IEND", b"")), (16, 16)) is not None
    assert restamp(png((b"IHDR", header), (b"IDAT", data + b"<html>secret"), (b"IEND", b"")), (16, 16)) is None
    assert restamp(png((b"IHDR", header), (b"IDAT", zlib.compress(rows + bytes(49))), (b"IEND", b"")), (16, 16)) is None
    assert restamp(png((b"IHDR", header), (b"IDAT", zlib.compress(rows[:-1])), (b"IEND", b"")), (16, 16)) is None
    split = png((b"IHDR", header), (b"IDAT", data[:9]), (b"tEXt", b"a\0b"), (b"IDAT", data[9:]), (b"IEND", b""))
    assert restamp(split, (16, 16)) is None
    assert restamp(png((b"IHDR", header), (b"IHDR", header), (b"IDAT", data), (b"IEND", b"")), (16, 16)) is None
    assert restamp(png((b"IHDR", header), (b"IDAT", data)), (16, 16)) is None  # no end


def _text(entries: dict[str, str]) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    for key, value in entries.items():
        info.add_text(key, value)
    return info
