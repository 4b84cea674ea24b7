"""Make the before/after pictures of docs/operations.md with the procedural engine.

    .venv/bin/python docs/operations/make_pictures.py

Starts a real server on a temporary directory, runs every operation through the SDK and writes
small JPEGs (and the describe / shorten texts) next to this script. Seeds are fixed, so the
pictures only change when the engine or an operation does.
"""

from __future__ import annotations

import io
import json
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

from pixelmill.client import Client
from pixelmill.testing import Server

HERE = Path(__file__).resolve().parent
KEY = "pm_docs_" + "d" * 32
#: Long edge of the pictures in the docs: enough to see what happened, small in git.
EDGE = 320


def _small(data: bytes, edge: int = EDGE) -> Image.Image:
    im = Image.open(io.BytesIO(data)).convert("RGB")
    im.thumbnail((edge, edge), Image.Resampling.LANCZOS)
    return im


def _save(name: str, image: Image.Image) -> None:
    # JPEG keeps the docs light in git; the service itself stores lossless PNG.
    image.convert("RGB").save(HERE / f"{name}.jpg", quality=85, optimize=True)
    print(HERE / f"{name}.jpg")


def _strip(frames: list[Image.Image]) -> Image.Image:
    w, h = frames[0].size
    out = Image.new("RGB", (w * len(frames) + 4 * (len(frames) - 1), h), "white")
    for i, f in enumerate(frames):
        out.paste(f, (i * (w + 4), 0))
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        srv = Server(Path(tmp), KEY, video_seconds=2, video_fps=12).start()
        try:
            with Client(srv.url, KEY) as c:
                run(c)
        finally:
            srv.stop()


def run(c: Client) -> None:
    def wait(task_id: str) -> dict:  # type: ignore[type-arg]
        return c.wait(task_id, timeout=120, poll_interval=0.1)

    def get(url: str, edge: int = EDGE) -> Image.Image:
        return _small(c.download(url), edge)

    grid = wait(c.imagine("a serene mountain lake at sunrise, mist rising from the water", seed=2024))
    _save("imagine_grid", get(grid["grid_image_url"]))
    picked = wait(c.upscale(grid["task_id"], 1))
    _save("upscale_pick", get(picked["image_urls"][0]))
    for mode in ("subtle", "strong"):
        task = wait(c.variation(picked["task_id"], mode=mode))
        _save(f"variation_{mode}", get(task["grid_image_url"]))
    remix = wait(c.variation(picked["task_id"], mode="strong", prompt="a frozen lake at night under stars"))
    _save("remix", get(remix["grid_image_url"]))
    creative = wait(c.upscale(picked["task_id"], mode="creative"))
    _save("upscale_creative", get(creative["image_urls"][0]))
    zoom = wait(c.zoom(picked["task_id"], zoom=2))
    _save("zoom_2x", get(zoom["image_urls"][0]))
    for direction in ("left", "up"):
        pan = wait(c.pan(picked["task_id"], direction))
        _save(f"pan_{direction}", get(pan["image_urls"][0]))
    # Inpaint: a mask with a white disc in the sky, uploaded, then /modal.
    mask = Image.new("L", (picked["params"]["width"], picked["params"]["height"]), 0)
    ImageDraw.Draw(mask).ellipse((300, 40, 480, 220), fill=255)
    buf = io.BytesIO()
    mask.save(buf, format="PNG")
    mask_url = c.upload(buf.getvalue(), "image/png")["url"]
    inpaint_id = c.inpaint(picked["task_id"])
    c.modal(inpaint_id, prompt="a red sun in a dark sky", mask_url=mask_url)
    inpaint = wait(inpaint_id)
    _save("inpaint_mask", _small(buf.getvalue()))
    _save("inpaint", get(inpaint["image_urls"][0]))
    # Blend two pictures of different scenes.
    other = wait(c.imagine("a red desert with dunes at sunset", seed=7))
    blend = wait(c.blend([picked["image_urls"][0], other["image_urls"][0]], dimensions="LANDSCAPE"))
    _save("blend_other", get(other["image_urls"][0]))
    _save("blend", get(blend["grid_image_url"]))
    video = wait(c.video(task_id=picked["task_id"], index=0, motion="high"))
    clip = c.download(video["video_urls"][0])
    (HERE / "video.mp4").write_bytes(clip)
    _save("video_poster", _small(c.download(video["image_urls"][0]), 200))
    _save("video_frames", _strip(_frames(clip)))
    describe = wait(c.describe(picked["image_urls"][0]))
    shorten = wait(c.shorten("a very beautiful castle on a hill at dawn, golden light, highly detailed, 8k, masterpiece --ar 3:2"))
    (HERE / "texts.json").write_text(json.dumps({"describe": describe["description"], "shorten": shorten["description"]}, indent=2, ensure_ascii=False) + "\n")
    print(HERE / "texts.json")


def _frames(clip: bytes, count: int = 4) -> list[Image.Image]:
    import av

    with av.open(io.BytesIO(clip)) as container:
        frames = [f.to_image() for f in container.decode(video=0)]
    picks = [frames[round(i * (len(frames) - 1) / (count - 1))] for i in range(count)]
    for f in picks:
        f.thumbnail((200, 200))
    return picks


if __name__ == "__main__":
    sys.exit(main())
