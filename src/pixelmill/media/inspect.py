"""Checking that bytes are an image we accept: PNG, JPEG or WebP by content (never by name or
header), a pixel count under the limit (decompression bombs: a few KiB of PNG can declare
gigapixels), and fully decodable."""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

#: Storage extension by detected format.
EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}


class ImageRefused(Exception):
    """The bytes are not an acceptable image; ``reason`` says why, in words for the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ImageInfo:
    format: str  # "PNG" | "JPEG" | "WEBP"
    width: int
    height: int

    @property
    def ext(self) -> str:
        return EXTENSIONS[self.format]


def sniff(data: bytes) -> str | None:
    """The format from the magic bytes."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def inspect_image(data: bytes, max_pixels: int) -> ImageInfo:
    fmt = sniff(data)
    if fmt is None:
        raise ImageRefused("is not a PNG, JPEG or WebP image (judged by its bytes)")
    bomb = f"declares more than {max_pixels:,} pixels (a decompression bomb, or simply too large)"
    try:
        # Opening reads only the header: the size is known before any pixel is decoded.
        with Image.open(io.BytesIO(data), formats=[fmt]) as im:
            width, height = im.size
            if width * height > max_pixels:
                raise ImageRefused(f"{width}x{height} {bomb}")
            im.load()
    except ImageRefused:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own guard fires on open for absurd sizes, before ours can look.
        raise ImageRefused(bomb) from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure means "not a usable image"
        raise ImageRefused(f"could not be decoded as {fmt} ({type(exc).__name__}: {exc})") from None
    if width < 1 or height < 1:
        raise ImageRefused("has no pixels")
    return ImageInfo(fmt, width, height)
