"""One conformance suite for every storage backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from pixelmill.storage.base import ObjectNotFound, Storage
from pixelmill.storage.local import LocalStorage
from pixelmill.storage.memory import MemoryStorage


@pytest.fixture(params=["local", "memory"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    return LocalStorage(tmp_path / "files") if request.param == "local" else MemoryStorage()


def test_put_is_content_addressed_and_idempotent(storage: Storage) -> None:
    a = storage.put(b"hello", "png")
    b = storage.put(b"hello", "png")
    assert a == b and a.size == 5 and a.content_type == "image/png"
    assert a.key.endswith(".png") and len(a.etag) == 64
    assert storage.put(b"other", "png").key != a.key
    assert storage.get(a.key) == b"hello" and storage.exists(a.key)


@pytest.mark.parametrize("key", ["../etc/passwd", "ab/cd/not-a-hash.png", "", "/abs"])
def test_malformed_or_missing_keys_are_not_found(storage: Storage, key: str) -> None:
    assert not storage.exists(key)
    with pytest.raises(ObjectNotFound):
        storage.get(key)


def test_unknown_extension_is_refused(storage: Storage) -> None:
    with pytest.raises(ValueError, match="extension"):
        storage.put(b"x", "exe")


def test_local_storage_leaves_no_temp_files(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put(b"data", "png")
    assert [p.name for p in tmp_path.rglob(".tmp-*")] == []
