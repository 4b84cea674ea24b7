"""In-memory storage: the test double that ships next to the interface."""

from __future__ import annotations

import threading

from pixelmill.storage.base import ObjectNotFound, Storage, StoredObject, content_key, content_type_of


class MemoryStorage(Storage):
    def __init__(self) -> None:
        self._objects: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put(self, data: bytes, ext: str) -> StoredObject:
        key = content_key(data, ext)
        with self._lock:
            self._objects.setdefault(key, data)
        return StoredObject(key=key, size=len(data), content_type=content_type_of(key))

    def get(self, key: str) -> bytes:
        try:
            return self._objects[key]
        except KeyError as exc:
            raise ObjectNotFound(f"no file {key}") from exc

    def exists(self, key: str) -> bool:
        return key in self._objects

    def delete(self, key: str) -> None:
        with self._lock:
            self._objects.pop(key, None)
