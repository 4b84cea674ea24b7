"""Input images named by pixelmill's own file URLs are read from storage, never fetched."""

from __future__ import annotations

import pytest

from pixelmill.exceptions import ValidationError
from pixelmill.media.fetch import FetchPolicy, SafeFetcher
from pixelmill.media.inputs import InputImages
from pixelmill.storage.memory import MemoryStorage
from tests.imageserver import png_bytes

BASE = "https://img.example.com"


def no_network(host: str, port: int) -> list[str]:
    pytest.fail(f"an own file URL caused a lookup of {host}")


@pytest.fixture
def inputs() -> InputImages:
    return InputImages(MemoryStorage(), SafeFetcher(FetchPolicy(), resolver=no_network), max_pixels=10_000_000)


@pytest.mark.parametrize("form", ["absolute", "relative"])
def test_an_uploaded_mask_resolves_from_storage(inputs: InputImages, form: str) -> None:
    mask = png_bytes((64, 64), (255, 255, 255), mode="L")
    key = inputs.accept(mask, "file", "the upload").key
    url = f"{BASE}/files/{key}" if form == "absolute" else f"/files/{key}"
    image = inputs.resolve(url, "mask_url", own_bases=[BASE])
    assert (image.key, image.width, image.height) == (key, 64, 64)


def test_a_malformed_own_file_url_is_code_4(inputs: InputImages) -> None:
    with pytest.raises(ValidationError) as err:
        inputs.resolve(f"{BASE}/files/../../etc/passwd", "mask_url", own_bases=[BASE])
    assert err.value.description == f"mask_url: {BASE}/files/../../etc/passwd: not a pixelmill file URL (malformed key)"
