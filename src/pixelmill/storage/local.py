"""Local-disk storage: one file per content key under a root folder."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pixelmill.storage.base import ObjectNotFound, Storage, StoredObject, content_key, content_type_of, is_valid_key


class LocalStorage(Storage):
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path_of(self, key: str) -> Path:
        if not is_valid_key(key):
            raise ObjectNotFound(f"no file {key}")
        return self.root / key

    def put(self, data: bytes, ext: str) -> StoredObject:
        key = content_key(data, ext)
        path = self.root / key
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename: a reader (or a crash) never sees half a file under a real key.
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return StoredObject(key=key, size=len(data), content_type=content_type_of(key))

    def get(self, key: str) -> bytes:
        try:
            return self.path_of(key).read_bytes()
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"no file {key}") from exc

    def check(self) -> None:
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise OSError(f"storage folder {self.root} is not writable")

    def delete(self, key: str) -> None:
        if is_valid_key(key):
            (self.root / key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return is_valid_key(key) and (self.root / key).exists()
