"""``POST /v1/uploads``: re-host a user image or mask in pixelmill's own storage (seed 004: store
user uploads yourself, then pass the URL on). The answer's URL works in every image field
(``image_urls``, ``--sref``, ``mask_url`` ...) and is read from storage with no network request.

Send the image as the raw body (``Content-Type: image/png`` / ``image/jpeg`` / ``image/webp`` /
``application/octet-stream``) or as ``multipart/form-data`` with one file field ``file``. The body
is counted while it arrives and refused past the input size limit.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from pixelmill.api.deps import PrincipalDep, RuntimeDep, base_url
from pixelmill.exceptions import ValidationError
from pixelmill.media.inputs import FILES_PATH
from pixelmill.storage.base import content_type_of

router = APIRouter(prefix="/v1", tags=["uploads"])

_RAW_TYPES = ("image/png", "image/jpeg", "image/webp", "application/octet-stream")
#: Room for multipart boundaries and part headers on top of the image itself.
_MULTIPART_OVERHEAD = 64 * 1024
_BINARY = {"schema": {"type": "string", "format": "binary"}}


class UploadedFile(BaseModel):
    url: str
    content_type: str
    width: int
    height: int
    bytes: int


class UploadAnswer(BaseModel):
    code: int
    description: str
    properties: dict[str, Any]
    data: list[UploadedFile]


async def read_limited(request: Request, limit: int, field: str = "file") -> bytes:
    """The request body, refused (naming ``field``) as soon as it is larger than ``limit``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ValidationError(field, f"is larger than {limit:,} bytes (Content-Length {int(declared):,})")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise ValidationError(field, f"is larger than {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _image_bytes(request: Request, limit: int) -> bytes:
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type in _RAW_TYPES:
        return await read_limited(request, limit)
    if content_type == "multipart/form-data":
        body = await read_limited(request, limit + _MULTIPART_OVERHEAD)

        async def replay() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await Request(request.scope, replay).form(max_files=1, max_fields=10)
        except Exception as exc:  # noqa: BLE001 - a malformed multipart body is the caller's error
            raise ValidationError("file", f"the multipart body could not be read ({exc})") from None
        part = form.get("file")
        if not isinstance(part, UploadFile):
            raise ValidationError("file", "the multipart body has no file field named 'file'")
        data = await part.read()
        await form.close()
        return data
    raise ValidationError(
        "Content-Type",
        f"send the image as the raw body ({', '.join(_RAW_TYPES)}) or as multipart/form-data "
        f"with a field 'file', got {content_type or 'none'!r}",
    )


@router.post(
    "/uploads",
    response_model=UploadAnswer,
    responses={400: {"description": "code 4: not an acceptable image (the description says why)"},
               401: {"description": "code 401: missing or invalid API key"}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                **{t: _BINARY for t in _RAW_TYPES},
                "multipart/form-data": {
                    "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}},
                               "required": ["file"]}
                },
            },
        }
    },
)
async def upload(request: Request, principal: PrincipalDep, runtime: RuntimeDep) -> UploadAnswer:  # principal: the key check
    """Store a PNG, JPEG or WebP image (at most the input size limit, 12 MiB by default) and
    answer its pixelmill URL, usable in every image field."""
    data = await _image_bytes(request, runtime.settings.input_max_bytes)
    image = await run_in_threadpool(runtime.inputs.accept, data, "file", "the upload")
    return UploadAnswer(
        code=1,
        description="uploaded",
        properties={},
        data=[
            UploadedFile(
                url=base_url(request, runtime) + FILES_PATH + image.key,
                content_type=content_type_of(image.key),
                width=image.width,
                height=image.height,
                bytes=len(data),
            )
        ],
    )
