"""Previews of work in progress. Finished images are written by output profiles (media/output.py)."""

from __future__ import annotations

import io

from PIL import Image

#: Long edge of a preview: enough to see the composition, small enough to send every half second.
PREVIEW_EDGE = 160


def encode_preview(image: Image.Image, edge: int = PREVIEW_EDGE) -> bytes:
    """A low-resolution JPEG of work in progress."""
    small = image.convert("RGB")
    small.thumbnail((edge, edge), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    small.save(buf, format="JPEG", quality=70)
    return buf.getvalue()
