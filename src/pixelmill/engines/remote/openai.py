"""A remote engine over the OpenAI Images API (gpt-image, dall-e), one account or a pool.

The API has no tasks to follow: a call answers with the pictures. So this engine paints the
pixels it is given, as the procedural and diffusers engines do, and the executor prepares every
operation in pixels:

- imagine → ``POST /v1/images/generations`` with ``n`` = one picture per seed (four for a grid), at
  the configured size nearest the task's aspect;
- variation, remix, inpaint, zoom and pan → ``POST /v1/images/edits`` with the picture and, where
  part of it is kept (inpaint, zoom, pan), the mask: transparent where the upstream repaints, as
  the API reads masks. A variation's strength has no form there: subtle and strong are both an
  edit of the whole picture with the task's prompt;
- blend, and an imagine with image prompts → an edit with the pictures as ``image[]``;
- an upscale pick is local (the picture is already stored); a creative upscale is an edit;
- video: refused (the API makes no video), as is a negative prompt's effect (it is not sent).

Pools, failover, health and the Idempotency-Key work as for every remote engine. A call holds its
worker thread while the upstream paints (there is no upstream task to park). An answer lost on the
way back is asked again of the same account under the same key: another pixelmill answers it from
its record, the OpenAI API may make (and bill) the pictures again.
"""

from __future__ import annotations

import base64
import io
import time

from PIL import Image

from pixelmill.engines.base import GenerationRequest, GenerationResult, ProgressCallback, VideoRequest, VideoResult
from pixelmill.engines.remote.contracts import Call
from pixelmill.engines.remote.engine import RemoteEngine
from pixelmill.engines.remote.http import Upstream
from pixelmill.exceptions import EngineError


class OpenAIImagesEngine(RemoteEngine):
    runs_operations = False
    records_upstream = True
    fixes_seeds = False  # the API takes no seed

    def generate(self, request: GenerationRequest, progress: ProgressCallback | None = None) -> GenerationResult:
        record = request.upstream
        call = self._call(request)
        started = time.monotonic()
        answer, account = self._send(lambda _: call, record)
        took = int((time.monotonic() - started) * 1000)
        images = [self._picture(account, item, request) for item in answer.get("data") or [] if isinstance(item, dict)]
        if len(images) < len(request.seeds):
            raise EngineError(f"upstream made {len(images)} pictures, {len(request.seeds)} asked for", retryable=True)
        if record is not None:  # no upstream task to follow: counted, and the account let go
            record.answered(took)
        if progress is not None:
            progress(1.0)
        revised = [str(item["revised_prompt"]) for item in answer["data"] if isinstance(item, dict) and item.get("revised_prompt")]
        meta = {"upstream_account": account.account.name, "upstream_model": self._config.upstream_model}
        return GenerationResult(images=tuple(images[: len(request.seeds)]), model=self.model, meta=meta | ({"revised_prompt": revised[0]} if revised else {}))

    def animate(self, request: VideoRequest, progress: ProgressCallback | None = None) -> VideoResult:
        raise EngineError("the OpenAI Images API makes no video", retryable=False)

    def _call(self, request: GenerationRequest) -> Call:
        # The API needs a prompt; a blend has none, so it says what a blend is.
        prompt = request.prompt or request.source_prompt or "one picture that blends the given pictures"
        fields: dict[str, object] = {"model": self._config.upstream_model, "prompt": prompt, "n": len(request.seeds)}
        if self._config.quality:
            fields["quality"] = self._config.quality
        if self._config.response_format:
            fields["response_format"] = self._config.response_format
        pictures = ([request.init_image] if request.init_image is not None and not request.image_prompts else []) + list(request.image_prompts)
        if not pictures:
            return Call("POST", "/v1/images/generations", fields | {"size": self._size(request.width, request.height)})
        if request.mask is not None and request.init_image is not None:
            # The API repaints where the mask is transparent; pixelmill's masks are white there.
            alpha = Image.eval(request.mask.convert("L").resize(request.init_image.size), lambda v: 255 - v)
            mask = Image.new("RGBA", request.init_image.size, (0, 0, 0, 255))
            mask.putalpha(alpha)
            files = (("image", ("image.png", _png(request.init_image), "image/png")), ("mask", ("mask.png", _png(mask), "image/png")))
            return Call("POST", "/v1/images/edits", fields, files)
        name = "image" if len(pictures) == 1 else "image[]"
        return Call("POST", "/v1/images/edits", fields, tuple((name, (f"image{i}.png", _png(p), "image/png")) for i, p in enumerate(pictures)))

    def _size(self, width: int, height: int) -> str:
        """The configured size nearest the task's aspect (ties: the first)."""
        aspect = width / height

        def off(size: str) -> float:
            w, _, h = size.partition("x")
            return abs(int(w) / int(h) - aspect)

        return min(self._config.sizes, key=off)

    def _picture(self, account: Upstream, item: dict[str, object], request: GenerationRequest) -> Image.Image:
        if isinstance(item.get("b64_json"), str):
            data = base64.b64decode(str(item["b64_json"]))
        elif isinstance(item.get("url"), str):
            data = account.download(str(item["url"]))
        else:
            raise EngineError("upstream answered a picture with neither b64_json nor url", retryable=True)
        try:
            with Image.open(io.BytesIO(data)) as im:
                image = im.convert("RGB")
        except Exception as exc:  # any undecodable answer is the upstream's fault
            raise EngineError(f"upstream picture does not decode: {exc}", retryable=True) from exc
        size = (request.width, request.height)
        return image if image.size == size else image.resize(size, Image.Resampling.LANCZOS)


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=1)  # sent once, at once: speed over size
    return out.getvalue()
