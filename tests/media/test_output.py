"""Output profiles: caps met by search on hard images (or a reason why not), provenance that
round-trips in every format, sizes and colour profile as promised."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageCms

from pixelmill.media.output import BUILTIN, RENDITION_EFFORT, RENDITIONS, CapMissed, Profile, Provenance, encode, read_provenance
from tests.helpers import png_chunks

RNG = np.random.default_rng(7)
HARD = {
    "noise": Image.fromarray(RNG.integers(0, 256, (1024, 1024, 3), dtype=np.uint8)),
    "gradient": Image.fromarray(np.dstack([*np.meshgrid(np.linspace(0, 255, 1024), np.linspace(255, 0, 1024)), np.full((1024, 1024), 128.0)]).astype(np.uint8)),
    "noisy-gradient": Image.fromarray(np.clip(np.linspace(0, 255, 1024)[None, :, None] + RNG.normal(0, 40, (1024, 1024, 3)), 0, 255).astype(np.uint8)),
}
PROVENANCE = Provenance(task_id="1763", prompt="a fox ☀", final_prompt="a fox ☀ --seed 7", engine="procedural", model="procedural-v1",
                        seed=7, created="2026-11-23T08:00:00Z", template={"name": "hero", "version": 3}, params={"width": 1024})


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp", "avif"])
@pytest.mark.parametrize("image", list(HARD))
def test_a_capped_profile_meets_its_cap_on_hard_images(fmt: str, image: str) -> None:
    profile = Profile(name="capped", format=fmt, quality=95, max_bytes=150_000)
    out = encode(HARD[image], profile, PROVENANCE)
    assert len(out.data) <= 150_000
    decoded = Image.open(io.BytesIO(out.data))
    decoded.load()
    assert decoded.size == (out.width, out.height) and max(decoded.size) >= 64
    assert read_provenance(out.data) == PROVENANCE.record()  # the record survives the search


def test_a_cap_that_cannot_be_met_says_why() -> None:
    with pytest.raises(CapMissed, match=r"profile tiny: 1,024 bytes cannot be met; the smallest file was [\d,]+ bytes at \d+x\d+"):
        encode(HARD["noise"], Profile(name="tiny", format="png", max_bytes=1024))


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp", "avif"])
def test_provenance_round_trips_and_strip_removes_it(fmt: str) -> None:
    picture = HARD["gradient"].resize((256, 256))
    kept = encode(picture, Profile(name="p", format=fmt), PROVENANCE)
    assert read_provenance(kept.data) == PROVENANCE.record()
    stripped = encode(picture, Profile(name="p", format=fmt, strip_metadata=True), PROVENANCE)
    assert read_provenance(stripped.data) is None


def test_sizes_follow_the_profile() -> None:
    picture = HARD["gradient"].resize((1024, 576))
    assert (encode(picture, BUILTIN["web"]).width, encode(picture, BUILTIN["web"]).height) == (1024, 576)
    thumb = encode(picture, RENDITIONS["thumb"])
    assert (thumb.width, thumb.height) == (256, 144) and thumb.ext == "webp"
    cover = encode(picture, Profile(name="square", format="jpeg", size=(300, 300), fit="cover"))
    contain = encode(picture, Profile(name="box", format="jpeg", size=(300, 300), fit="contain"))
    assert (cover.width, cover.height, contain.width, contain.height) == (300, 300, 300, 169)
    small = Image.new("RGB", (200, 100))
    assert encode(small, Profile(name="big", format="png", long_edge=1024)).width == 200  # never enlarged


def test_files_carry_an_srgb_profile() -> None:
    for fmt in ("png", "jpeg", "webp"):
        out = encode(Image.new("RGB", (64, 64), (200, 60, 60)), Profile(name="p", format=fmt))
        icc = Image.open(io.BytesIO(out.data)).info["icc_profile"]
        assert "sRGB" in ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc)))


def test_a_file_of_another_pixelmill_is_not_transformed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process's sRGB profile differs from ours only in the time written into its header
    (an upstream pixelmill's files): its pixels are taken as sRGB, with no ICC transform."""
    ours = Image.open(io.BytesIO(encode(Image.new("RGB", (64, 64), (200, 60, 60)), BUILTIN["original"]).data))
    icc = ours.info["icc_profile"]
    ours.info["icc_profile"] = icc[:24] + bytes(12) + icc[36:]  # made at another time
    transforms: list[object] = []
    real = ImageCms.profileToProfile
    monkeypatch.setattr(ImageCms, "profileToProfile", lambda *a, **k: transforms.append(a) or real(*a, **k))
    again = encode(ours, BUILTIN["original"])
    assert transforms == [] and np.array_equal(np.asarray(Image.open(io.BytesIO(again.data))), np.asarray(ours.convert("RGB")))


def _idat(data: bytes) -> list[bytes]:
    return [body for kind, body in png_chunks(data) if kind == "IDAT"]


def test_an_upstreams_png_is_kept_where_the_profile_keeps_its_pixels() -> None:
    picture = HARD["noisy-gradient"].resize((256, 256))
    pillows = io.BytesIO()
    picture.save(pillows, "PNG", compress_level=9)  # deflated otherwise than pixelmill deflates
    ours = Image.open(io.BytesIO(encode(picture, BUILTIN["original"]).data)).info["icc_profile"]
    theirs = io.BytesIO()  # another pixelmill's: its sRGB profile made at another time
    picture.save(theirs, "PNG", icc_profile=ours[:24] + bytes(12) + ours[36:], compress_level=9)
    for source in (pillows.getvalue(), theirs.getvalue()):
        out = encode(picture, BUILTIN["original"], PROVENANCE, source=source)
        assert _idat(out.data) == _idat(source) != _idat(encode(picture, BUILTIN["original"], PROVENANCE).data)
        assert read_provenance(out.data) == PROVENANCE.record()
        decoded = Image.open(io.BytesIO(out.data))
        assert np.array_equal(np.asarray(decoded), np.asarray(picture)) and decoded.info["icc_profile"] == ours
    # A profile that changes the pixels, or the file, encodes them anew.
    for profile in (Profile(name="small", format="png", long_edge=128), Profile(name="capped", format="png", max_bytes=500_000), BUILTIN["web"]):
        assert encode(picture, profile, source=pillows.getvalue()).data == encode(picture, profile).data


@pytest.mark.parametrize(("spec", "message"), [
    ({"format": "gif"}, "profile 'x': format: Input should be 'png', 'jpeg', 'webp' or 'avif'"),
    ({"format": "png", "colour": "red"}, "profile 'x': colour: unknown setting"),
    ({"size": "300x200"}, "profile 'x': size: must be [width, height] in pixels, e.g. [1200, 800]; got '300x200'"),
    ({"size": [300]}, "profile 'x': size: must be [width, height]"),
    ({"size": [300, 20]}, "profile 'x': size[1]: Input should be greater than or equal to 64"),
    ({"max_bytes": 200}, "profile 'x': max_bytes: Input should be greater than or equal to 1024"),
    ({"quality": "85"}, "profile 'x': quality: Input should be a valid integer"),
    ({"quality": 0}, "profile 'x': quality: Input should be greater than or equal to 1"),
    ({"strip_metadata": "yes"}, "profile 'x': strip_metadata: Input should be a valid boolean"),
    ({"long_edge": 800, "size": [300, 300]}, "profile 'x': set long_edge or size, not both"),
    ({"name": "y"}, "profile 'x': name: unknown setting"),
    (["png"], "profile 'x': must be a JSON object"),
])
def test_profiles_refuse_bad_settings_by_key_and_rule(spec: object, message: str) -> None:
    with pytest.raises(ValueError) as err:
        Profile.from_json("x", spec)
    assert str(err.value).startswith(message)


def test_a_profile_from_json_takes_every_setting() -> None:
    p = Profile.from_json("brand", {"format": "jpeg", "quality": 80, "size": [1200, 800], "fit": "cover", "max_bytes": 400_000,
                                    "strip_metadata": True})
    assert (p.name, p.format, p.quality, p.size, p.fit, p.max_bytes, p.strip_metadata, p.ext) == (
        "brand", "jpeg", 80, (1200, 800), "cover", 400_000, True, "jpg")


def test_renditions_are_written_at_a_lower_webp_effort_than_profiles_callers_ask_for() -> None:
    picture = HARD["noisy-gradient"].resize((512, 512))
    default = encode(picture, Profile(name="p", format="webp", quality=82, strip_metadata=True))
    quick = encode(picture, Profile(name="p", format="webp", quality=82, strip_metadata=True, effort=RENDITION_EFFORT))
    assert encode(picture, RENDITIONS["web"]).data == quick.data != default.data
    assert BUILTIN["web"].effort is None  # the caller-facing profile: Pillow's default
    with pytest.raises(ValueError, match="effort: Input should be less than or equal to 6"):
        Profile.from_json("x", {"format": "webp", "effort": 7})
