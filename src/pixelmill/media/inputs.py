"""Input images (image prompts, style/character references, masks, blend and describe sources,
video frames): turned into objects in pixelmill's own storage at submit time.

- A pixelmill file URL (``<our base URL>/files/<key>`` or just ``/files/<key>``, e.g. from
  ``POST /v1/uploads``) is read straight from storage: no network request at all.
- Any other URL goes through ``SafeFetcher`` (public hosts only, 12 MiB while streaming).
- Either way the bytes must be a PNG, JPEG or WebP image under the pixel limit.

Fetching at submit time means every refusal is a code-4 answer to the caller naming the URL, and
workers only ever read storage: a retry never depends on a third-party URL still working.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from PIL import Image

from pixelmill.exceptions import ValidationError
from pixelmill.media.fetch import FetchRefused, SafeFetcher
from pixelmill.media.inspect import ImageInfo, ImageRefused, inspect_image
from pixelmill.storage.base import ObjectNotFound, Storage, is_valid_key

FILES_PATH = "/files/"


class InputScreening(Protocol):
    """What input images are screened by (``safety.screening.Screening``), as this module needs
    it: media sits below safety and does not import it."""

    @property
    def enabled(self) -> bool: ...

    def check_inputs(self, tenant_id: str, field_name: str, images: Sequence[Image.Image]) -> None: ...


@dataclass(frozen=True)
class InputImage:
    url: str
    key: str
    width: int
    height: int

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "key": self.key, "width": self.width, "height": self.height}


class InputImages:
    def __init__(self, storage: Storage, fetcher: SafeFetcher, max_pixels: int, screening: InputScreening | None = None) -> None:
        #: Screens pictures (not masks) against the tenant's input rules: code 24 on a hit.
        self._screening = screening if screening is not None and screening.enabled else None
        self._storage = storage
        self._fetcher = fetcher
        self._max_pixels = max_pixels

    @property
    def fetcher(self) -> SafeFetcher:
        return self._fetcher

    def close(self) -> None:
        self._fetcher.close()

    def accept(self, data: bytes, field: str, source: str) -> InputImage:
        """Check bytes (an upload or a download) and store them under their content key."""
        if len(data) > self._fetcher.policy.max_bytes:
            raise ValidationError(field, f"{source}: is larger than {self._fetcher.policy.max_bytes:,} bytes")
        info = self._inspect(data, field, source)
        key = self._storage.put(data, info.ext).key
        return InputImage(url=source, key=key, width=info.width, height=info.height)

    def resolve(self, url: str, field: str, own_bases: Sequence[str], screen_for: str | None = None) -> InputImage:
        """The stored input behind ``url``; with ``screen_for`` (a tenant), screened too."""
        image, data = self._resolve(url, field, own_bases)
        if screen_for is not None and self._screening is not None:
            with Image.open(io.BytesIO(data)) as im:
                self._screening.check_inputs(screen_for, field, [im.convert("RGB")])
        return image

    def _resolve(self, url: str, field: str, own_bases: Sequence[str]) -> tuple[InputImage, bytes]:
        key = own_file_key(url, own_bases)
        if key is not None:
            if not is_valid_key(key):
                raise ValidationError(field, f"{url}: not a pixelmill file URL (malformed key)")
            try:
                data = self._storage.get(key)
            except ObjectNotFound:
                raise ValidationError(field, f"{url}: no such file in pixelmill's storage") from None
            info = self._inspect(data, field, url)
            return InputImage(url=url, key=key, width=info.width, height=info.height), data
        try:
            data = self._fetcher.fetch(url)
        except FetchRefused as exc:
            raise ValidationError(field, f"{url}: {exc.reason}") from None
        return self.accept(data, field, url), data

    def _inspect(self, data: bytes, field: str, source: str) -> ImageInfo:
        try:
            return inspect_image(data, self._max_pixels)
        except ImageRefused as exc:
            raise ValidationError(field, f"{source}: {exc.reason}") from None


def own_file_key(url: str, own_bases: Sequence[str]) -> str | None:
    """The storage key when ``url`` names one of our own files, else None."""
    if url.startswith(FILES_PATH):
        return url[len(FILES_PATH):]
    for base in own_bases:
        prefix = base.rstrip("/") + FILES_PATH
        if url.startswith(prefix):
            return url[len(prefix):]
    return None
