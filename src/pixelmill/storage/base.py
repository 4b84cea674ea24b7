"""The storage interface. Keys are content-addressed (``ab/cd/<sha256>.<ext>``): the same bytes
always get the same key, nothing user-supplied ever reaches a path, and a key's content never
changes, so it can be cached forever."""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass

from pixelmill.exceptions import PixelmillError

CONTENT_TYPES = {
    "png": "image/png", "jpg": "image/jpeg", "webp": "image/webp", "avif": "image/avif", "mp4": "video/mp4",
    # Provenance records stored beside the files they describe.
    "json": "application/json",
}
_KEY_RE = re.compile(r"^[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{64}\.(png|jpg|webp|avif|mp4|json)$")


class StorageUnavailable(ConnectionError):
    """The store could not be reached or was too busy (a network error, a timeout, HTTP 5xx or
    throttling): the same call may pass later. A ``ConnectionError``, so a task attempt that
    meets it is retried after backoff (engines/base.py is_retryable) instead of failing."""


class ObjectNotFound(PixelmillError):
    http_status = 404
    code = 3


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    content_type: str

    @property
    def etag(self) -> str:
        return key_digest(self.key)


def content_key(data: bytes, ext: str) -> str:
    if ext not in CONTENT_TYPES:
        raise ValueError(f"unsupported extension {ext!r}")
    digest = hashlib.sha256(data).hexdigest()
    return f"{digest[:2]}/{digest[2:4]}/{digest}.{ext}"


def is_valid_key(key: str) -> bool:
    return bool(_KEY_RE.match(key))


def key_digest(key: str) -> str:
    return key.rsplit("/", 1)[-1].split(".", 1)[0]


def content_type_of(key: str) -> str:
    return CONTENT_TYPES[key.rsplit(".", 1)[-1]]


class Storage(ABC):
    @abstractmethod
    def put(self, data: bytes, ext: str) -> StoredObject:
        """Store ``data`` under its content key (a no-op when it is already there)."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The bytes of ``key``; ``ObjectNotFound`` when absent or when ``key`` is malformed."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key`` (retention); a missing or malformed key is not an error."""

    def url(self, key: str, base: str) -> str:
        """Where a client fetches ``key``. Default: pixelmill's own ``/files/`` route under ``base``."""
        return f"{base}/files/{key}"

    def check(self) -> None:
        """Raise when the backend cannot serve now (readiness). Default: a lookup round trip."""
        self.exists(content_key(b"readiness probe", "png"))

    def close(self) -> None:
        pass
