"""Serving stored files. Keys are content hashes, so a file never changes: cache it forever."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from pixelmill.api.deps import RuntimeDep
from pixelmill.storage.base import ObjectNotFound, content_type_of, is_valid_key, key_digest

router = APIRouter(tags=["files"])


@router.get("/files/{key:path}", response_class=Response)
def get_file(key: str, request: Request, runtime: RuntimeDep) -> Response:
    if not is_valid_key(key):
        raise ObjectNotFound(f"no file {key}")
    etag = f'"{key_digest(key)}"'
    headers = {"ETag": etag, "Cache-Control": "public, max-age=31536000, immutable"}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    data = runtime.storage.get(key)
    return Response(data, media_type=content_type_of(key), headers=headers)
