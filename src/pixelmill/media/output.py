"""Output profiles: how a generated picture becomes the files a product serves.

A profile names a format (PNG, JPEG, WebP, AVIF), a quality, a size rule (the long edge, or an
exact size with a fit rule), a file-size cap, and whether public files keep the provenance
metadata. Every image is written under its profile, and beside it (after SUCCESS,
queue/finishing.py) ``web`` and ``thumb`` renditions (smaller, lossy), each sRGB.

A size cap is met by search, not by failing: first the quality (binary search, lossy formats),
then the size (steps of 85 %) until the file fits or the picture would go below
``MIN_EDGE``; when even that does not fit, ``CapMissed`` says what the smallest file was.

Provenance (task id, prompt, final prompt, template version, parameters, engine, model, seed,
time) is embedded as PNG text chunks, or XMP in JPEG / WebP / AVIF, and the same record is
returned to be stored beside the file; ``strip_metadata`` leaves public files without it.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal
from xml.sax.saxutils import escape, unescape

from PIL import Image, ImageCms, ImageOps
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from pixelmill.media.png import FAST_LEVEL, encode_png, restamp
from pixelmill.validation import explain

FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP", "avif": "AVIF"}
EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp", "avif": "avif"}
#: A file is never made smaller than this on its long edge, nor asked to be larger than MAX_EDGE.
MIN_EDGE = 64
MAX_EDGE = 8192
#: The smallest size cap: below it not even a tiny picture with its provenance fits.
MIN_BYTES = 1024
#: The deflate level of a PNG with a size cap: slower, for smaller files (bench/png.py).
CAPPED_LEVEL = 6
XMP_NS = "https://pixelmill.dev/ns/provenance/1.0/"

Edge = Annotated[StrictInt, Field(ge=MIN_EDGE, le=MAX_EDGE)]


class CapMissed(ValueError):
    """No quality and size of the profile fit its cap."""


class Profile(BaseModel):
    """An output profile. Operators write theirs as JSON (``PIXELMILL_OUTPUT_PROFILES``); every
    value is checked, with its type, when the process starts (``from_json``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    format: Literal["png", "jpeg", "webp", "avif"] = "png"
    #: 1-100 for lossy formats; PNG ignores it.
    quality: StrictInt = Field(90, ge=1, le=100)
    #: Scale so that the longer side is this many pixels (never enlarged); None keeps the size.
    long_edge: Edge | None = None
    #: An exact size [width, height] instead, reached by ``fit``: contain (shrink inside) or cover (crop).
    size: tuple[Edge, Edge] | None = None
    fit: Literal["contain", "cover"] = "contain"
    #: Largest file in bytes, met by search (quality, then size); at least MIN_BYTES.
    max_bytes: StrictInt | None = Field(None, ge=MIN_BYTES)
    strip_metadata: StrictBool = False
    #: WebP only: libwebp's effort, 0 (fastest) to 6 (smallest files); None: Pillow's default, 4.
    effort: StrictInt | None = Field(None, ge=0, le=6)

    @field_validator("size", mode="before")
    @classmethod
    def _pair(cls, value: Any) -> Any:
        if value is not None and not (isinstance(value, (list, tuple)) and len(value) == 2):
            raise ValueError(f"must be [width, height] in pixels, e.g. [1200, 800]; got {value!r}")
        return value

    @model_validator(mode="after")
    def _one_size_rule(self) -> Profile:
        if self.size is not None and self.long_edge is not None:
            raise ValueError("set long_edge or size, not both")
        return self

    @classmethod
    def from_json(cls, name: str, spec: Any) -> Profile:
        """A profile from an operator's JSON; ``ValueError`` naming the profile, key and rule."""
        if not isinstance(spec, Mapping):
            raise ValueError(f"profile {name!r}: must be a JSON object of settings")
        if "name" in spec:
            raise ValueError(f"profile {name!r}: name: unknown setting (the key names the profile)")
        try:
            return cls.model_validate({**spec, "name": name})
        except PydanticValidationError as exc:
            reasons = [explain(error, unknown="unknown setting") for error in exc.errors()]
            raise ValueError(f"profile {name!r}: " + "; ".join(reasons)) from None

    @property
    def ext(self) -> str:
        return EXTENSIONS[self.format]


#: The renditions' WebP effort. Pillow's default, 4, took 3x as long as 2 for files 5-15 % smaller
#: at the same PSNR (bench/webp.py), and the renditions beside every image were a fifth of the CPU
#: of a gateway re-hosting upstream pictures (bench/remote_capacity.py). Profiles that callers
#: ask for keep the default unless their operator sets ``effort``: under a size cap, larger files
#: would mean a lower quality.
RENDITION_EFFORT = 2

#: The built-in profiles; operators add their own (PIXELMILL_OUTPUT_PROFILES).
BUILTIN: dict[str, Profile] = {
    "original": Profile(name="original", format="png"),
    "web": Profile(name="web", format="webp", quality=85, long_edge=1024, max_bytes=300_000),
    "jpeg": Profile(name="jpeg", format="jpeg", quality=88),
    "avif": Profile(name="avif", format="avif", quality=60),
}
#: The extra renditions written for every image, whatever its profile.
RENDITIONS: dict[str, Profile] = {
    "web": Profile(name="web", format="webp", quality=82, long_edge=1024, strip_metadata=True, effort=RENDITION_EFFORT),
    "thumb": Profile(name="thumb", format="webp", quality=75, long_edge=256, strip_metadata=True, effort=RENDITION_EFFORT),
}


class Profiles(Mapping[str, Profile]):
    """The built-in profiles and the operator's by name, and besides them ``<format>:<quality>``
    (``webp:80``, ``jpeg:60``, ``png``): a format at its full size, for callers who ask for a
    format rather than a profile (the OpenAI Images API's output_format / output_compression)."""

    def __init__(self, named: Mapping[str, Profile]) -> None:
        self._named = dict(named)

    def __getitem__(self, name: str) -> Profile:
        if name in self._named:
            return self._named[name]
        fmt, sep, quality = name.partition(":")
        if fmt in FORMATS and (not sep or (quality.isdigit() and 1 <= int(quality) <= 100)):
            return Profile.model_validate({"name": name, "format": fmt, **({"quality": int(quality)} if sep else {})})
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._named)

    def __len__(self) -> int:
        return len(self._named)


def output_profiles(settings: Any) -> Profiles:
    """The built-in profiles and the operator's (``PIXELMILL_OUTPUT_PROFILES``), by name."""
    return Profiles({**BUILTIN, **{name: Profile.from_json(name, spec) for name, spec in settings.output_profiles.items()}})


@dataclass(frozen=True)
class Encoded:
    data: bytes
    ext: str
    width: int
    height: int
    quality: int | None


@dataclass(frozen=True)
class Provenance:
    task_id: str
    prompt: str
    final_prompt: str
    engine: str
    model: str
    seed: int | None
    created: str
    template: dict[str, Any] | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {"pixelmill": 1, "task_id": self.task_id, "prompt": self.prompt, "final_prompt": self.final_prompt,
                "template": self.template, "params": self.params, "engine": self.engine, "model": self.model,
                "seed": self.seed, "created": self.created}


_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _is_ours(icc: bytes) -> bool:
    """Whether ``icc`` is the sRGB profile pixelmill embeds. LittleCMS writes the time it made the
    profile into its header (bytes 24-36), so another process's copy (an upstream pixelmill's
    files, say) differs there only; converting from it would cost an ICC transform per image
    and change nothing."""
    return icc == _SRGB or (len(icc) == len(_SRGB) and icc[:24] == _SRGB[:24] and icc[36:] == _SRGB[36:])


def _to_srgb(image: Image.Image) -> Image.Image:
    """RGB in sRGB: a picture with another embedded ICC profile is converted, not just relabelled."""
    icc = image.info.get("icc_profile")
    rgb = image.convert("RGB")
    if icc and not _is_ours(icc):
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        rgb = ImageCms.profileToProfile(rgb, src, ImageCms.createProfile("sRGB"), outputMode="RGB") or rgb
    return rgb


def _kept_as_is(image: Image.Image, profile: Profile) -> bool:
    """Whether ``profile`` stores ``image``'s pixels unchanged (``_to_srgb`` and ``_resized``
    leave them), in a PNG without a cap."""
    icc = image.info.get("icc_profile")
    return (
        profile.format == "png" and profile.max_bytes is None and image.mode == "RGB" and profile.size is None
        and (profile.long_edge is None or max(image.size) <= profile.long_edge) and not (icc and not _is_ours(icc))
    )


def _resized(image: Image.Image, profile: Profile) -> Image.Image:
    if profile.size is not None:
        if profile.fit == "cover":
            return ImageOps.fit(image, profile.size, Image.Resampling.LANCZOS)
        copy = image.copy()
        copy.thumbnail(profile.size, Image.Resampling.LANCZOS)
        return copy
    if profile.long_edge is not None and max(image.size) > profile.long_edge:
        copy = image.copy()
        copy.thumbnail((profile.long_edge, profile.long_edge), Image.Resampling.LANCZOS)
        return copy
    return image


def _xmp(record: dict[str, Any]) -> bytes:
    body = escape(json.dumps(record, ensure_ascii=False, sort_keys=True))
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description xmlns:pm="{XMP_NS}"><pm:record>{body}</pm:record></rdf:Description></rdf:RDF></x:xmpmeta>'
    ).encode()


def _png_text(record: dict[str, Any] | None) -> dict[str, str]:
    if record is None:
        return {}
    text = {"pixelmill": json.dumps(record, ensure_ascii=False, sort_keys=True)}
    return text | {key: str(record.get(key) or "") for key in ("prompt", "final_prompt", "task_id")}


def _save(image: Image.Image, profile: Profile, quality: int, record: dict[str, Any] | None) -> bytes:
    if profile.format == "png":
        # On the latency path of every task: media/png.py, ~3x faster than Pillow's encoder at the
        # same size (bench/png.py); a capped profile spends the time for smaller files.
        return encode_png(image, level=FAST_LEVEL if profile.max_bytes is None else CAPPED_LEVEL, icc=_SRGB, text=_png_text(record))
    buf = io.BytesIO()
    options: dict[str, Any] = {"icc_profile": _SRGB, "quality": quality}
    if record is not None:
        options["xmp"] = _xmp(record)
    if profile.format == "webp" and profile.effort is not None:
        options["method"] = profile.effort
    image.save(buf, format=FORMATS[profile.format], **options)
    return buf.getvalue()


def encode(image: Image.Image, profile: Profile, provenance: Provenance | None = None, source: bytes | None = None) -> Encoded:
    """One file of ``image`` under ``profile``, meeting its cap (``CapMissed`` if impossible).
    ``source``: the file ``image`` was decoded from, as it came (an upstream's picture). Where the
    profile keeps the pixels as they are in a PNG, its image data is kept and only the chunks
    around it are written (``png.restamp``): re-hosting four 1024 px pictures took about 70 ms of
    encoding otherwise."""
    record = provenance.record() if provenance is not None and not profile.strip_metadata else None
    if source is not None and _kept_as_is(image, profile):
        kept = restamp(source, image.size, icc=_SRGB, text=_png_text(record), same_colours=_is_ours)
        if kept is not None:
            return Encoded(kept, profile.ext, image.width, image.height, None)
    picture = _resized(_to_srgb(image), profile)
    lossy = profile.format != "png"
    data = _save(picture, profile, profile.quality, record)
    if profile.max_bytes is None or len(data) <= profile.max_bytes:
        return Encoded(data, profile.ext, picture.width, picture.height, profile.quality if lossy else None)
    smallest = len(data)
    while True:
        if lossy:  # the best quality that fits, by binary search
            lo, hi, best = 1, profile.quality, None
            while lo <= hi:
                q = (lo + hi) // 2
                attempt = _save(picture, profile, q, record)
                smallest = min(smallest, len(attempt))
                if len(attempt) <= profile.max_bytes:
                    best, lo = (attempt, q), q + 1
                else:
                    hi = q - 1
            if best is not None:
                return Encoded(best[0], profile.ext, picture.width, picture.height, best[1])
        # Then the size: 85 % per step, down to MIN_EDGE on the long side.
        w, h = picture.size
        if max(w, h) * 0.85 < MIN_EDGE:
            raise CapMissed(
                f"profile {profile.name}: {profile.max_bytes:,} bytes cannot be met; the smallest file was {smallest:,} bytes "
                f"at {w}x{h}{' and quality 1' if lossy else ''}"
            )
        picture = picture.resize((max(1, round(w * 0.85)), max(1, round(h * 0.85))), Image.Resampling.LANCZOS)
        attempt = _save(picture, profile, profile.quality, record)
        smallest = min(smallest, len(attempt))
        if len(attempt) <= profile.max_bytes:
            return Encoded(attempt, profile.ext, picture.width, picture.height, profile.quality if lossy else None)


def read_provenance(data: bytes) -> dict[str, Any] | None:
    """The provenance record embedded in a file written by ``encode``, or None."""
    with Image.open(io.BytesIO(data)) as im:
        if "pixelmill" in im.info:  # PNG iTXt
            record: dict[str, Any] = json.loads(im.info["pixelmill"])
            return record
        xmp = im.info.get("xmp")
    if not xmp:
        return None
    text = xmp.decode() if isinstance(xmp, bytes) else str(xmp)
    start, end = text.find("<pm:record>"), text.find("</pm:record>")
    if start < 0 or end < 0:
        return None
    record = json.loads(unescape(text[start + len("<pm:record>") : end]))
    return record

