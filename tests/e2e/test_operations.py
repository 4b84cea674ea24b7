"""Every operation after imagine, through the HTTP API of a real server: pixels, sizes, fields,
buttons, MODAL and its expiry, video files decoded."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from pixelmill.media.video import probe_mp4
from tests.conftest import TEST_KEY
from tests.helpers import Server, upload_image, wait_terminal

GEN = "/v1/midjourney/generations"


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # Short clips keep the video tests quick: 1 s at 12 fps.
    srv = Server(tmp_path_factory.mktemp("ops"), TEST_KEY, video_seconds=1, video_fps=12, rate_per_minute=0).start()
    yield srv
    srv.stop()


@pytest.fixture
def api(ops: Server) -> Iterator[httpx.Client]:
    with ops.client() as c:
        yield c


def submit(api: httpx.Client, op: str, body: dict[str, Any], code: int = 1) -> str:
    r = api.post(f"{GEN}/{op}", json=body)
    assert r.status_code == 200 and r.json()["code"] == code, r.text
    return r.json()["data"][0]["task_id"]


def done(api: httpx.Client, op: str, body: dict[str, Any]) -> dict[str, Any]:
    task = wait_terminal(api, submit(api, op, body))
    assert task["status"] == "SUCCESS", task
    return task


def refused(api: httpx.Client, op: str, body: dict[str, Any]) -> str:
    r = api.post(f"{GEN}/{op}", json=body)
    assert r.status_code == 400 and r.json()["code"] == 4, r.text
    return r.json()["description"]


def pixels(api: httpx.Client, url: str) -> np.ndarray:
    r = api.get(url)
    assert r.status_code == 200
    return np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))


upload = upload_image


@pytest.fixture(scope="module")
def picked(ops: Server) -> dict[str, Any]:
    """An upscaled (picked) picture: where Midjourney's single-picture buttons live."""
    with ops.client() as api:
        grid = done(api, "imagine", {"prompt": "a misty lake under mountains at dawn", "seed": 4040})
        return done(api, "upscale", {"task_id": grid["task_id"], "index": 2})


def test_subtle_variations_stay_closer_to_the_picture_than_strong_ones(api: httpx.Client, picked: dict[str, Any]) -> None:
    source = pixels(api, picked["image_urls"][0]).astype(float)
    subtle = done(api, "low-variation", {"task_id": picked["task_id"]})
    strong = done(api, "high-variation", {"task_id": picked["task_id"]})
    assert (subtle["params"]["mode"], strong["params"]["mode"]) == ("subtle", "strong")
    for task in (subtle, strong):
        assert task["action"] == "VARIATION" and task["parent_task_id"] == picked["task_id"] and len(task["image_urls"]) == 4
    far = [np.abs(pixels(api, u) - source).mean() for u in strong["image_urls"]]
    near = [np.abs(pixels(api, u) - source).mean() for u in subtle["image_urls"]]
    assert np.mean(near) < np.mean(far)  # strength 0.35 against 0.7: about half as far
    assert [b["label"] for b in subtle["buttons"]][:4] == ["U1", "U2", "U3", "U4"]


def test_grid_variation_remix_and_reroll(api: httpx.Client) -> None:
    grid = done(api, "imagine", {"prompt": "a red desert at sunset", "seed": 77})
    v2 = done(api, "variation", {"task_id": grid["task_id"], "index": 2})
    assert (v2["index"], v2["params"]["mode"], v2["prompt"]) == (2, "strong", "a red desert at sunset")
    remix = done(api, "variation", {"task_id": grid["task_id"], "index": 1, "prompt": "a blue desert at night", "mode": "subtle"})
    assert remix["params"]["remix"] is True and remix["final_prompt"].startswith("a blue desert at night --seed ")
    reroll_button = next(b for b in grid["buttons"] if b["label"] == "🔄")
    again = wait_terminal(api, submit(api, "action", {"custom_id": reroll_button["custom_id"]}))
    assert again["action"] == "REROLL" and again["parent_task_id"] == grid["task_id"] and again["seed"] != grid["seed"]
    assert again["final_prompt"] == f"a red desert at sunset --seed {again['seed']}"
    assert not np.array_equal(pixels(api, again["grid_image_url"]), pixels(api, grid["grid_image_url"]))


def test_zoom_out_keeps_the_size_and_shrinks_the_picture_into_the_centre(api: httpx.Client, picked: dict[str, Any]) -> None:
    source = Image.fromarray(pixels(api, picked["image_urls"][0]))
    zoomed = done(api, "zoom", {"task_id": picked["task_id"], "zoom": 2})
    w, h = source.size
    inner = np.asarray(source.resize((w // 2, h // 2), Image.Resampling.LANCZOS))
    for url in zoomed["image_urls"]:
        out = pixels(api, url)
        assert out.shape == (h, w, 3)
        assert np.array_equal(out[h // 4 : h // 4 + h // 2, w // 4 : w // 4 + w // 2], inner)
    assert "Zoom Out 2x" not in [b["label"] for b in zoomed["buttons"]]  # a grid offers U/V/reroll


@pytest.mark.parametrize("direction", ["left", "right", "up", "down"])
def test_pan_extends_the_canvas_and_keeps_the_pixels_at_their_offset(api: httpx.Client, picked: dict[str, Any], direction: str) -> None:
    source = pixels(api, picked["image_urls"][0])
    h, w = source.shape[:2]
    task = done(api, "pan", {"task_id": picked["task_id"], "direction": direction})
    out = pixels(api, task["image_urls"][0])
    grow = {"left": (h, w + w // 2), "right": (h, w + w // 2), "up": (h + h // 2, w), "down": (h + h // 2, w)}[direction]
    assert out.shape[:2] == grow and (task["params"]["width"], task["params"]["height"]) == (grow[1], grow[0])
    y, x = {"left": (0, w // 2), "right": (0, 0), "up": (h // 2, 0), "down": (0, 0)}[direction]
    assert np.array_equal(out[y : y + h, x : x + w], source)


def test_custom_zoom_waits_in_modal_for_its_factor(api: httpx.Client, picked: dict[str, Any]) -> None:
    task_id = submit(api, "zoom", {"task_id": picked["task_id"], "custom": True}, code=21)
    assert api.get(f"/v1/midjourney/{task_id}").json()["status"] == "MODAL"
    assert refused(api, "modal", {"task_id": task_id, "prompt": "a lake"}) == "zoom: a custom zoom needs a zoom factor 1-2 (zoom, or --zoom in prompt)"
    r = api.post(f"{GEN}/modal", json={"task_id": task_id, "prompt": "a wide misty lake --zoom 1.5"})
    assert r.json() == {"code": 1, "description": "submitted", "properties": {}, "data": [{"task_id": task_id}]}
    task = wait_terminal(api, task_id)
    assert task["status"] == "SUCCESS" and task["params"]["zoom"] == 1.5 and task["prompt"] == "a wide misty lake --zoom 1.5"
    assert "--zoom" not in task["final_prompt"]
    assert refused(api, "modal", {"task_id": task_id, "zoom": 2}).startswith(f"task_id: task {task_id} is SUCCESS; /modal only continues")
    assert refused(api, "zoom", {"task_id": picked["task_id"]}) == "zoom: give zoom (1-2), or custom: true to supply it through /modal"


def test_inpaint_repaints_the_transparent_area_of_a_cut_out_mask(api: httpx.Client, picked: dict[str, Any]) -> None:
    source = pixels(api, picked["image_urls"][0])
    h, w = source.shape[:2]
    cut = Image.new("RGBA", (w, h), (0, 0, 0, 255))
    cut.paste((0, 0, 0, 0), (0, 0, w // 3, h // 3))  # transparent top-left corner: repaint it
    task_id = submit(api, "inpaint", {"task_id": picked["task_id"]}, code=21)
    assert refused(api, "modal", {"task_id": task_id, "prompt": "a glowing moon"}) == "mask_url: inpaint needs prompt and mask_url (white = repaint)"
    submit(api, "modal", {"task_id": task_id, "prompt": "a glowing moon", "mask_url": upload(api, cut)})
    task = wait_terminal(api, task_id)
    out = pixels(api, task["image_urls"][0])
    repaint = np.zeros((h, w), bool)
    repaint[: h // 3, : w // 3] = True
    assert np.array_equal(out[~repaint], source[~repaint]) and not np.array_equal(out[repaint], source[repaint])
    assert task["final_prompt"] == f"a glowing moon --seed {task['seed']}"


def test_describe_blend_and_shorten(api: httpx.Client, picked: dict[str, Any]) -> None:
    described = done(api, "describe", {"image_url": picked["image_urls"][0]})
    lines = described["description"].split("\n\n")
    assert described["prompt"] == "" and len(lines) == 4 and all("--ar 1:1" in line for line in lines)
    from_task = done(api, "describe", {"task_id": picked["task_id"]})
    assert from_task["description"] == described["description"] and from_task["parent_task_id"] == picked["task_id"]

    red, blue = upload(api, Image.new("RGB", (300, 200), (220, 30, 30))), upload(api, Image.new("RGB", (200, 300), (30, 30, 220)))
    blend = done(api, "blend", {"image_urls": [red, blue], "dimensions": "LANDSCAPE"})
    w, h = blend["params"]["width"], blend["params"]["height"]
    assert abs(w / h - 1.5) < 0.03 and pixels(api, blend["image_urls"][0]).shape == (h, w, 3) and len(blend["image_urls"]) == 4
    assert refused(api, "blend", {"image_urls": [red]}).startswith("image_urls: List should have at least 2 items")

    short = done(api, "shorten", {"prompt": "a very beautiful castle on a hill at dawn, highly detailed, 8k --ar 3:2"})
    assert short["description"].startswith("1\ufe0f\u20e3 castle hill dawn --ar 3:2")
    assert "Words that carried little weight: a, very, beautiful, on, at, highly, detailed, 8k" in short["description"]
    assert short["image_urls"] == [] and short["buttons"] == []


def test_video_clips_decode_with_the_frames_size_and_price_asked_for(api: httpx.Client, ops: Server, picked: dict[str, Any]) -> None:
    grid_id = picked["parent_task_id"]
    task = done(api, "video", {"task_id": grid_id, "index": 0, "batch_size": 2, "motion": "high"})
    assert task["quota"] == 2 and task["params"]["price_key"] == "midjourney@video" and task["parent_task_id"] == grid_id
    assert len(task["video_urls"]) == 2 and len(task["image_urls"]) == 2  # a poster per clip
    clips = []
    for url in task["video_urls"]:
        r = api.get(url)
        assert r.headers["content-type"] == "video/mp4"
        clips.append(r.content)
        info = probe_mp4(r.content)
        assert (info.codec, info.width, info.height, info.frames, info.seconds) == ("h264", 480, 480, 12, 1.0)
    assert clips[0] != clips[1]  # each clip has its own seed
    hd = done(api, "video", {"image_url": picked["image_urls"][0], "video_type": "vid_1.1_i2v_720", "batch_size": 4})
    assert (hd["quota"], hd["params"]["price_key"], len(hd["video_urls"])) == (8, "midjourney@video-720p", 4)
    assert probe_mp4(api.get(hd["video_urls"][0]).content).height == 720
    end = upload(api, Image.new("RGB", (256, 256), (250, 250, 250)))
    fade = done(api, "video", {"image_url": picked["image_urls"][0], "end_url": end, "video_type": "vid_1.1_i2v_start_end_480"})
    assert len(fade["video_urls"]) == 1
    assert refused(api, "video", {"image_url": end, "video_type": "vid_1.1_i2v_start_end_480"}) == "end_url: vid_1.1_i2v_start_end_480 needs end_url"
    assert refused(api, "video", {"task_id": grid_id, "index": 4}).startswith("index: Input should be less than or equal to 3")


def test_buttons_apply_only_where_they_are_listed(api: httpx.Client, picked: dict[str, Any]) -> None:
    labels = [b["label"] for b in picked["buttons"]]
    assert labels == ["Upscale (Subtle)", "Upscale (Creative)", "Vary (Subtle)", "Vary (Strong)", "Vary (Region)", "Zoom Out 2x",
                      "Zoom Out 1.5x", "Custom Zoom", "⬅️", "➡️", "⬆️", "⬇️", "Animate (Low motion)", "Animate (High motion)"]
    by_label = {b["label"]: b["custom_id"] for b in picked["buttons"]}
    pan = wait_terminal(api, submit(api, "action", {"custom_id": by_label["⬅️"], "task_id": picked["task_id"]}))
    assert pan["action"] == "PAN" and pan["params"]["direction"] == "left"
    creative = wait_terminal(api, submit(api, "action", {"custom_id": by_label["Upscale (Creative)"]}))
    assert creative["params"]["upscale_mode"] == "creative" and pixels(api, creative["image_urls"][0]).shape[:2] == (1024, 1024)
    assert "Upscale (Subtle)" not in [b["label"] for b in creative["buttons"]]
    custom = submit(api, "action", {"custom_id": by_label["Custom Zoom"]}, code=21)
    assert api.get(f"/v1/midjourney/{custom}").json()["status"] == "MODAL"

    grid_id = picked["parent_task_id"]
    not_here = refused(api, "action", {"custom_id": f"MJ::JOB::pan_left::1::{grid_id}"})
    assert not_here.startswith(f"custom_id: 'MJ::JOB::pan_left::1::{grid_id}' does not apply to task {grid_id} (IMAGINE); its buttons: U1, U2")
    assert refused(api, "action", {"custom_id": by_label["⬅️"], "task_id": grid_id}).endswith(f"is a button of task {picked['task_id']}, not of {grid_id}")
    assert refused(api, "action", {"custom_id": "U1"}).startswith("custom_id: 'U1' is not a button id")
    assert refused(api, "upscale", {"custom_id": by_label["⬅️"]}) == f"custom_id: '{by_label['⬅️']}' is a pan button; send it to /pan or /action"
    gone = api.post(f"{GEN}/action", json={"custom_id": "MJ::JOB::upsample::1::nosuchtask"})
    assert gone.status_code == 404 and gone.json()["code"] == 3


def test_the_parent_chain_can_be_walked_back_to_the_imagine(api: httpx.Client, picked: dict[str, Any]) -> None:
    pan = done(api, "pan", {"task_id": picked["task_id"], "direction": "up"})
    zoom = done(api, "zoom", {"task_id": pan["task_id"], "index": 3, "zoom": 1.5})
    chain, task = [], zoom
    while task["parent_task_id"]:
        task = api.get(f"/v1/midjourney/{task['parent_task_id']}").json()
        chain.append(task["action"])
    assert chain == ["PAN", "UPSCALE", "IMAGINE"]


def test_operations_refuse_what_does_not_apply(api: httpx.Client, picked: dict[str, Any]) -> None:
    grid_id = picked["parent_task_id"]
    assert refused(api, "variation", {"task_id": grid_id}) == f"index: task {grid_id} is a grid: say which image (1-4)"
    assert refused(api, "pan", {"task_id": picked["task_id"], "index": 2, "direction": "up"}).startswith(f"index: task {picked['task_id']} has one picture")
    short = done(api, "shorten", {"prompt": "a castle"})
    assert refused(api, "zoom", {"task_id": short["task_id"], "zoom": 2}) == f"task_id: task {short['task_id']} is a SHORTEN task; it has no picture to zoom out of"
    assert refused(api, "pan", {"task_id": picked["task_id"], "direction": "sideways"}).startswith("direction: Input should be")
    assert refused(api, "imagine", {"prompt": "a cat --zoom 2"}) == "prompt: --zoom belongs to a custom zoom's /modal call, not to imagine"


def test_an_unanswered_modal_is_cancelled_and_refunded(tmp_path: Path) -> None:
    srv = Server(tmp_path, TEST_KEY, modal_timeout_seconds=4, sweep_interval_seconds=0.2).start()
    try:
        out = srv.cli("keys", "create", "--tenant", "waiting").stdout.split()
        key_id, plaintext = out[1], out[-1]
        srv.cli("keys", "balance", key_id, "--set", "5")
        with srv.client(plaintext) as api:
            grid = done(api, "imagine", {"prompt": "a portrait"})
            up = done(api, "upscale", {"task_id": grid["task_id"], "index": 1})
            task_id = submit(api, "inpaint", {"task_id": up["task_id"]}, code=21)
            assert api.get(f"/v1/midjourney/{task_id}").json()["quota"] == 1
            task = wait_terminal(api, task_id, timeout=20)
            assert task["status"] == "CANCEL" and task["quota"] == 0
            assert task["fail_reason"] == "no /modal call within 4s; cancelled and refunded"
        with srv.client() as admin:
            assert admin.get(f"/v1/admin/keys/{key_id}/balance").json()["balance"] == 3  # imagine + upscale kept
    finally:
        srv.stop()
