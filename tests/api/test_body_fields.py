"""Body fields of imagine, table-driven over HTTP: they override the prompt's flags, the task keeps
the user's text and the canonical ``final_prompt``, and every bad value is a code-4 answer with
its exact description."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

IMAGINE = "/v1/midjourney/generations/imagine"

OVERRIDES = [
    # (body, final_prompt of the task)
    ({"prompt": "a cat --ar 16:9", "aspect_ratio": "2:3"}, "a cat --ar 2:3"),
    ({"prompt": "a cat", "aspect_ratio": "1920:1080"}, "a cat --ar 16:9"),
    ({"prompt": "a cat", "size": "1024x576"}, "a cat --ar 16:9"),
    ({"prompt": "a cat", "size": "1024x576", "aspect_ratio": "16:9"}, "a cat --ar 16:9"),
    ({"prompt": "a cat --v 6", "version": "8.1"}, "a cat --v 8.1"),
    ({"prompt": "a cat", "version": 7}, "a cat --v 7"),
    ({"prompt": "a girl", "niji": True, "version": "7"}, "a girl --niji 7"),
    ({"prompt": "a girl", "niji": True}, "a girl --niji 7"),
    ({"prompt": "a girl --niji 5", "version": "6"}, "a girl --niji 6"),
    ({"prompt": "a girl --niji 5", "niji": False}, "a girl"),
    ({"prompt": "a cat --s 5", "stylize": 100, "chaos": 10, "weird": 5, "quality": 2}, "a cat --s 100 --c 10 --weird 5 --q 2"),
    ({"prompt": "a cat --tile", "tile": False}, "a cat"),
    ({"prompt": "a cat", "tile": True, "raw": True, "draft": True}, "a cat --style raw --tile --draft"),
    ({"prompt": "a cat --no dogs", "negative_prompt": "  red\u200b  birds "}, "a cat --no red birds"),
    ({"prompt": "a cat --no dogs", "negative_prompt": ""}, "a cat"),
    ({"prompt": "a cat", "stop": 50}, "a cat --stop 50"),
]

REFUSED = [
    # (body, exact description)
    ({"prompt": "a cat", "stylize": 1001}, "stylize: Input should be less than or equal to 1000"),
    ({"prompt": "a cat", "chaos": -1}, "chaos: Input should be greater than or equal to 0"),
    ({"prompt": "a cat", "weird": "lots"}, "weird: Input should be a valid integer, unable to parse string as an integer"),
    ({"prompt": "a cat", "seed": 4294967296}, "seed: Input should be less than or equal to 4294967295"),
    ({"prompt": "a cat", "iw": 3.5}, "iw: Input should be less than or equal to 3"),
    ({"prompt": "a cat", "repeat": 1}, "repeat: Input should be greater than or equal to 2"),
    ({"prompt": "a cat", "quality": 3}, "quality: must be one of 0.25, 0.5, 1, 2, 4"),
    ({"prompt": "a cat", "version": "9"},
     "version: Input should be '1', '2', '3', '4', '5', '5.1', '5.2', '6', '6.1', '7', '8' or '8.1'"),
    ({"prompt": "a cat", "niji": True, "version": "8.1"}, "version: niji versions are 4, 5, 6, 7, got '8.1'"),
    ({"prompt": "a cat", "niji": "sure"}, "niji: Input should be a valid boolean, unable to interpret input"),
    ({"prompt": "a cat", "aspect_ratio": "9:1"}, "aspect_ratio: must be within 1:4 and 4:1, got '9:1'"),
    ({"prompt": "a cat", "size": "big"}, "size: needs WxH in pixels like 1024x576, got 'big'"),
    ({"prompt": "a cat", "size": "1000x1001"}, "size: sides must be multiples of 8 (image models need it), got 1000x1001"),
    ({"prompt": "a cat", "size": "8192x8192"}, "size: sides must be 64-4096 pixels, got 8192x8192"),
    ({"prompt": "a cat", "size": "1024x576", "aspect_ratio": "1:1"}, "size: 1024x576 is 16:9, but aspect_ratio is 1:1"),
    ({"prompt": "a cat --hd", "size": "1024x576"}, "size: an exact size and --hd both set the resolution; give one"),
    ({"prompt": "a cat", "iw": 2}, "iw: --iw weighs an image prompt; give a leading image URL or image_urls"),
    ({"prompt": "a cat", "sw": 2}, "sw: --sw weighs a style reference; give --sref too"),
    ({"prompt": "a cat", "negative_prompt": "dogs --ar 2:1"}, "negative_prompt: must not contain --parameters, found --ar"),
    ({"prompt": "a cat", "image_urls": ["file:///etc/passwd"]}, "image_urls[0]: 'file:///etc/passwd' is not an http(s) URL"),
    ({"prompt": "a cat", "image_urls": [f"https://x.org/{i}.png" for i in range(6)]},
     "image_urls: List should have at most 5 items after validation, not 6"),
    ({"prompt": "a cat", "sref": ["https://u:p@x.org/a.png"]},
     "sref[0]: https://u:p@x.org/a.png: URLs with user names or passwords are not accepted"),
    ({"prompt": "a cat", "negative_prompt": "x" * 4001}, "negative_prompt: String should have at most 4000 characters"),
]


def _submit(api: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    return api.post(IMAGINE, json=body)


@pytest.mark.parametrize(("seed", "body", "final"), [(1000 + i, *row) for i, row in enumerate(OVERRIDES)])
def test_body_fields_override_flags(api: httpx.Client, seed: int, body: dict[str, Any], final: str) -> None:
    # A seed of its own per case: equal requests would share one task (the request cache).
    r = _submit(api, {**body, "seed": seed})
    assert r.status_code == 200, r.text
    task = api.get(f"/v1/midjourney/{r.json()['data'][0]['task_id']}").json()
    assert task["prompt"] == body["prompt"]  # the user's own text is kept as sent
    assert task["final_prompt"] == f"{final} --seed {seed}"


@pytest.mark.parametrize(("body", "description"), REFUSED)
def test_bad_body_fields_are_code_4_with_the_exact_rule(api: httpx.Client, body: dict[str, Any], description: str) -> None:
    r = _submit(api, body)
    assert r.status_code == 400, r.text
    data = r.json()
    assert data["code"] == 4
    assert data["description"] == description
    assert data["properties"]["field"] == description.split(":", 1)[0]
    assert data["data"] == []


@pytest.mark.parametrize(
    ("path", "raw", "field"),
    [("imagine", b'{"prompt": "a \\ud800 cat"}', "prompt"), ("upscale", b'{"task_id": "\\udc00", "index": 1}', "task_id")],
)
def test_lone_surrogates_are_refused_not_a_500(api: httpx.Client, path: str, raw: bytes, field: str) -> None:
    # Valid JSON, invalid text: JSON may escape a lone UTF-16 surrogate, which no database stores.
    r = api.post(f"/v1/midjourney/generations/{path}", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["code"] == 4
    assert r.json()["description"] == f"{field}: contains an unpaired UTF-16 surrogate; send valid Unicode text"


def test_an_unknown_field_named_with_a_surrogate_is_still_a_json_answer(api: httpx.Client) -> None:
    r = api.post(IMAGINE, content=b'{"prompt": "a cat", "\\ud800": 1}', headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["code"] == 4


def test_repeat_answers_one_task_id_per_run(api: httpx.Client) -> None:
    r = _submit(api, {"prompt": "a cat --repeat 3"})
    assert r.status_code == 200
    ids = [d["task_id"] for d in r.json()["data"]]
    assert len(set(ids)) == 3
    seeds = {api.get(f"/v1/midjourney/{i}").json()["seed"] for i in ids}
    assert len(seeds) == 3
