"""Input images are judged by their bytes: the format by magic number, the size before decoding."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from pixelmill.media.inspect import ImageRefused, inspect_image
from tests.imageserver import png_bomb, png_bytes

LIMIT = 25_000_000


def encoded(fmt: str, size: tuple[int, int] = (40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 120, 200)).save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize(("fmt", "ext"), [("PNG", "png"), ("JPEG", "jpg"), ("WEBP", "webp")])
def test_png_jpeg_and_webp_are_accepted(fmt: str, ext: str) -> None:
    info = inspect_image(encoded(fmt), LIMIT)
    assert (info.format, info.ext, info.width, info.height) == (fmt, ext, 40, 30)


def refusal(data: bytes, limit: int = LIMIT) -> str:
    with pytest.raises(ImageRefused) as err:
        inspect_image(data, limit)
    return err.value.reason


def test_a_png_bomb_is_refused_without_decoding_it() -> None:
    bomb = png_bomb(30_000)
    assert len(bomb) < 2 * 1024 * 1024  # small on the wire, 900 megapixels inside
    assert refusal(bomb) == "declares more than 25,000,000 pixels (a decompression bomb, or simply too large)"


def test_an_image_over_the_pixel_limit_is_refused() -> None:
    assert refusal(png_bytes((100, 100)), limit=5000) == (
        "100x100 declares more than 5,000 pixels (a decompression bomb, or simply too large)"
    )


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"<html>not an image</html>", "is not a PNG, JPEG or WebP image (judged by its bytes)"),
        (encoded("GIF"), "is not a PNG, JPEG or WebP image (judged by its bytes)"),
        (encoded("BMP"), "is not a PNG, JPEG or WebP image (judged by its bytes)"),
        (b"", "is not a PNG, JPEG or WebP image (judged by its bytes)"),
    ],
)
def test_other_content_is_refused(data: bytes, reason: str) -> None:
    assert refusal(data) == reason


def test_a_truncated_image_is_refused() -> None:
    data = png_bytes((300, 300), mode="RGB")
    assert refusal(data[: len(data) // 2]).startswith("could not be decoded as PNG")
